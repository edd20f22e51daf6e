"""The README's command-line and admin paths on the demo's SQLite database (the suite's default is PostgreSQL)."""

import html
import json
import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from sampler.toy import defaults as toy
from tests.conftest import REPO, VENV_BIN, free_port, stop, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sqlite_env(tmp_path_factory):
    """A migrated SQLite database holding the demo world (its round 1 on the toy model, with `toy` prompts)."""
    root = tmp_path_factory.mktemp("sqlite")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CELERY_", "DJANGO_"))}
    env.update(
        CHISEL_ENV_FILE="/dev/null", SECRET_KEY="sqlite-paths-secret-key-only-for-this-test-0123456789abcdef",
        DEBUG="true", DATABASE_URL=f"sqlite:///{root / 'db.sqlite3'}", CELERY_BROKER_URL="filesystem://",
        CELERY_FS_DIR=str(root / "celery"), MEDIA_ROOT=str(root / "media"), STATIC_ROOT=str(root / "static"),
        SECURE_SSL_REDIRECT="false", SESSION_COOKIE_SECURE="false", CSRF_COOKIE_SECURE="false",
        ALLOWED_HOSTS="localhost,127.0.0.1",
    )
    env["ROOT"] = str(root)
    manage(env, "migrate", "--noinput", "-v0")
    assert "lead" in manage(env, "seed_demo", "--pairs", "4")
    return env


def run(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "python"), "manage.py", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180)


def manage(env, *args) -> str:
    result = run(env, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def query(env, code: str):
    """Run `code` (which sets `out`) in the app against the SQLite database; answers `out` as JSON."""
    script = f"import json\nfrom annotate.models import *\n{code}\nprint(json.dumps(out))"
    return json.loads(manage(env, "shell", "-c", script).strip().splitlines()[-1])


def close_rounds(env, taste: str) -> None:
    query(env, f"out = Round.objects.filter(taste__slug='{taste}').update(state='done')")


def refused(result: subprocess.CompletedProcess, text: str) -> None:
    assert result.returncode == 1 and text in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_the_readme_commands_run_on_sqlite(sqlite_env, tmp_path):
    env = sqlite_env
    assert "Created taste 'portraits'" in manage(env, "create_taste", "portraits", "--name", "Portraits")
    assert "API token: " in manage(env, "create_annotator", "ann", "--taste", "portraits")
    assert "API token: " in manage(env, "create_lead", "lena")

    # the README's next round of the demo, by prompt tags
    close_rounds(env, "demo")
    launched = manage(env, "launch_round", "--taste", "demo", "--tags", "toy", "--pairs", "60", "--overlap", "2")
    round_id = int(re.search(r"Launched round (\d+)", launched).group(1))
    assert "120 labels" in launched
    assert "sampling" in manage(env, "round_status", str(round_id))
    config = query(env, f"r = Round.objects.get(pk={round_id}); out = [r.sampling_config, r.training_config]")
    assert len(config[0]["prompt_ids"]) + len(config[0]["eval_prompt_ids"]) == len(toy.split_captions()[0]) + len(
        toy.split_captions()[1])
    assert config[0]["width"] == 64 and config[1] == toy.TRAINING["flux"]  # the toy's own, not FLUX.1's

    # a taste on the SD toy, launched from a prompt file: sampled and trained with the toy's defaults
    manage(env, "create_taste", "shapes-sd", "--model", "models/toy-sd")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\na green triangle\n")
    launched = manage(env, "launch_round", "--taste", "shapes-sd", "--prompts", str(prompts), "--pairs", "10",
                      "--overlap", "1")
    assert "2 train and 1 held-out prompts" in launched
    sampling, training, base = query(env, "r = Round.objects.get(taste__slug='shapes-sd'); "
                                          "b = r.parent_checkpoint.base_model; out = [r.sampling_config, "
                                          "r.training_config, [b.default_width, b.default_steps]]")
    assert (sampling["width"], sampling["steps"], base) == (64, 10, [64, 10])
    assert training == toy.TRAINING["sd"]

    # bounds: the absurd is refused in one line, the unusual launches with a warning line
    manage(env, "create_taste", "bounds", "--model", "models/toy-flux")
    for flag, value, text in (("--lr", "1e9", "learning rate"), ("--train-steps", "100000000", "training steps")):
        refused(run(env, "launch_round", "--taste", "bounds", "--tags", "toy", flag, value), text)
    warned = run(env, "launch_round", "--taste", "bounds", "--tags", "toy", "--lr", "0.05")
    assert warned.returncode == 0 and "Launched round" in warned.stdout
    assert "Warning: The learning rate 0.05 is unusual for this FLUX model" in warned.stderr


def test_the_admin_launch_form_launches_by_tags_on_sqlite(sqlite_env):
    env = sqlite_env
    lead_password = json.loads(Path(env["ROOT"], "demo-logins.json").read_text())["lead"]
    close_rounds(env, "demo")
    last_quota = query(env, "out = Round.objects.filter(taste__slug='demo').order_by('-number')[0].pair_quota")
    port = free_port()
    log = open(os.path.join(env["ROOT"], f"runserver-{port}.log"), "w")
    server = subprocess.Popen([str(VENV_BIN / "python"), "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                              cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        browser = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        wait_until(lambda: _answers(browser), timeout=60, what="runserver")
        browser.post("/admin/login/", data={"username": "lead", "password": lead_password, "next": "/admin/",
                                             "csrfmiddlewaretoken": browser.cookies["csrftoken"]})
        form = browser.get("/admin/annotate/round/launch/?taste=demo")
        page = html.unescape(form.text)
        assert form.status_code == 200 and "Blank: 64 (toy-flux's default)" in page
        assert "Blank: 0.003 (toy-flux's own default, from its chisel.json)" in page
        assert f'name="pair_quota" value="{last_quota}"' in page  # pre-filled from the demo's last round
        fields = {"taste": "demo", "prompt_tags": "toy", "heldout_share": "0.2", "pair_quota": "60",
                  "label_quota": "120", "overlap": "2", "eval_pair_quota": "24", "promotion_threshold": "0.5",
                  "rail__adherence": "on", "rail__adherence__max_drop": "0.05", "auto_advance": "on",
                  "csrfmiddlewaretoken": browser.cookies["csrftoken"]}
        absurd = browser.post("/admin/annotate/round/launch/", data={**fields, "learning_rate": "1e9", "beta": "1e12",
                                                                     "train_steps": "100000000"})
        assert absurd.status_code == 200 and absurd.text.count("Ensure this value is less than or equal to") == 3
        done = browser.post("/admin/annotate/round/launch/", data=fields)  # every model field blank
        assert done.status_code == 302, done.text[-3000:]
        round_id = int(re.search(r"/round/(\d+)/change/", done.headers["location"]).group(1))
    finally:
        stop(server)
        log.close()
    sampling, training = query(env, f"r = Round.objects.get(pk={round_id}); "
                                    "out = [r.sampling_config, r.training_config]")
    assert (sampling["width"], sampling["steps"]) == (64, toy.SAMPLING["flux"]["steps"]) and sampling["prompt_ids"]
    assert training == toy.TRAINING["flux"]


def _answers(browser: httpx.Client) -> bool:
    try:
        return browser.get("/admin/login/").status_code == 200
    except httpx.TransportError:
        return False
