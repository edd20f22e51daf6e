"""The deployment files keep their rules: requirements split without torch on the web, the compose stack's services
healthy and on the right queues and GPUs, the web image without torch; `docker compose config` where docker runs."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ML = {"torch", "diffusers", "transformers", "peft", "accelerate", "safetensors"}


def requirements(name: str) -> tuple[dict[str, str], list[str]]:
    """(package → pinned version, included files) of requirements/<name>."""
    pins, includes = {}, []
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            includes.append(line[3:].strip())
        elif line:
            package, _, version = line.partition("==")
            assert version, f"requirements/{name}: {line} is not pinned"
            pins[re.sub(r"\[.*\]", "", package).lower()] = version
    return pins, includes


def test_requirements_are_split_web_worker_dev_and_pinned():
    web, web_includes = requirements("web.txt")
    worker, worker_includes = requirements("worker.txt")
    dev, dev_includes = requirements("dev.txt")
    assert not web_includes and worker_includes == ["web.txt"] and dev_includes == ["worker.txt"]
    assert not ML & set(web), "the web tier installs no ML package"
    assert {"torch", "diffusers", "transformers", "peft", "accelerate"} <= set(worker)
    assert {"django", "celery", "gunicorn", "psycopg"} <= set(web) and "pytest" in dev
    assert not set(web) & set(worker) and not (set(web) | set(worker)) & set(dev), "each pin in one file"
    assert "-r requirements/dev.txt" in (ROOT / "requirements.txt").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"\.installed: requirements\.txt requirements/web\.txt requirements/worker\.txt "
                     r"requirements/dev\.txt", makefile)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker" / "compose.yml").read_text())


def command(service: dict) -> str:
    value = service.get("command", "")
    return " ".join(value) if isinstance(value, list) else value


def queues(service: dict) -> set[str]:
    found = re.search(r"--queues[ =](\S+)", command(service))
    return set(found.group(1).split(",")) if found else set()


def test_compose_runs_every_process_with_health_checks(compose):
    services = compose["services"]
    assert {"db", "redis", "objectstore", "web", "beat", "worker", "worker-sample", "worker-train"} <= set(services)
    for name, service in services.items():
        depends = service.get("depends_on", {})
        waits = isinstance(depends, dict) and depends and all("condition" in d for d in depends.values())
        assert "healthcheck" in service or waits, f"{name} has neither a healthcheck nor conditions it waits on"
        if isinstance(depends, dict):
            for other, rule in depends.items():
                if rule["condition"] == "service_healthy":
                    assert "healthcheck" in services[other], f"{name} waits for {other}, which has no healthcheck"
    assert "gunicorn" in command(services["web"]) or "gunicorn" in (ROOT / "docker" / "Dockerfile").read_text()
    assert "beat" in command(services["beat"])
    assert "seaweedfs" in services["objectstore"]["image"] or "minio" in services["objectstore"]["image"]


def test_compose_workers_consume_their_queues_on_the_right_images_and_gpus(compose):
    services = compose["services"]
    workers = {name: s for name, s in services.items() if "celery" in command(s) and " worker" in command(s)}
    assert {name: queues(s) for name, s in workers.items()} == {
        "worker": {"celery"}, "worker-sample": {"sample"}, "worker-train": {"train"},
    }
    for name in ("worker-sample", "worker-train"):
        service = services[name]
        assert service["build"]["target"] == "worker" and "--concurrency 1" in command(service)
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices and all(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices), name
    for name in ("web", "beat", "worker", "migrate"):
        assert services[name]["build"]["target"] == "web", f"{name} runs the web image, without torch"
        assert "deploy" not in services[name]
    for name in ("web", "beat", "worker", "worker-sample", "worker-train"):
        environment = services[name]["environment"]
        assert environment["CHISEL_STORAGE"] == "s3" and "objectstore" in environment["CHISEL_S3_ENDPOINT_URL"]


def test_the_web_image_installs_no_torch_and_the_worker_image_the_cuda_build():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    stages = dict(re.findall(r"^FROM \S+ AS (\w+)\n(.*?)(?=^FROM |\Z)", dockerfile, flags=re.M | re.S))
    assert {"web", "worker"} <= set(stages)
    assert "requirements/web.txt" in stages["web"] and "worker.txt" not in stages["web"]
    assert "requirements.txt" not in stages["web"].replace("requirements/web.txt", "")
    assert "requirements/worker.txt" in stages["worker"] and re.search(r"TORCH_INDEX=\S*/whl/cu\d+", stages["worker"])


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client")
def test_docker_compose_config_accepts_the_stack(tmp_path):
    if subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode != 0:
        pytest.skip("no docker engine answers")
    env = tmp_path / ".env"
    env.write_text("SECRET_KEY=x\nPOSTGRES_PASSWORD=x\nS3_ACCESS_KEY=x\nS3_SECRET_KEY=x\n")
    done = subprocess.run(["docker", "compose", "-f", str(ROOT / "docker" / "compose.yml"), "--env-file", str(env),
                           "config", "--quiet"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
