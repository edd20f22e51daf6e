"""The production shape on one machine: a web host (the live server and the beat, in this process) and a worker host
(a Celery subprocess), each in its own working directory with its own empty media, export, checkpoint and cache
folders, sharing only PostgreSQL, Redis and the S3 bucket. A whole round (sampling, annotation over HTTP, training,
evaluation, the decision) and an export cross between them through the bucket alone."""

from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotate import services
from annotate.models import BaseModel, Checkpoint, Pair, Taste, TrainingJob
from tests.conftest import celery_worker, make_lead, s3_keys, wait_until
from tests.test_loop import Annotators, new_round, run_round, tiny_flux_dir  # noqa: F401 - a fixture


def host_folders(root: Path) -> dict[str, str]:
    """One host's own folders, as settings names → paths (created empty)."""
    folders = {"MEDIA_ROOT": root / "media", "CHISEL_EXPORT_ROOT": root / "exports",
               "CHISEL_CHECKPOINT_ROOT": root / "checkpoints", "CHISEL_CACHE_ROOT": root / "cache"}
    for folder in folders.values():
        folder.mkdir(parents=True)
    return {name: str(folder) for name, folder in folders.items()}


def files(folder: str) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


@pytest.mark.integration
def test_a_round_and_an_export_cross_from_host_to_host_through_the_bucket_alone(
    transactional_db, s3_storage, s3_bucket, settings, tmp_path, live_server, tiny_flux_dir  # noqa: F811
):
    web, worker = host_folders(tmp_path / "web"), host_folders(tmp_path / "worker")
    for name, path in web.items():
        setattr(settings, name, Path(path))
    taste = services.taste_create(slug="hosts")
    # The base model's folder plays the weights installed on every machine; all the loop makes is in the bucket.
    base = BaseModel.objects.create(name="tiny-hosts", kind="flux", path=str(tiny_flux_dir), default_steps=2,
                                    default_width=64, default_height=64, default_max_sequence_length=32)
    root = Checkpoint.objects.create(taste=taste, base_model=base, status=Checkpoint.Status.CURRENT)
    Taste.objects.filter(pk=taste.pk).update(current_checkpoint=root)

    with celery_worker(tmp_path / "worker.log", {**s3_storage, **worker}, cwd=tmp_path / "worker"):
        with Annotators(live_server.url, taste):  # fetch the images from the web host and judge them over HTTP
            round_ = run_round(new_round(taste), [], timeout=120)
        assert round_.state == "done", round_.error

        lead = make_lead()
        # Closed at the end: a kept-alive connection holds the live server's database session open.
        with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Token {lead.token}"}, timeout=30) as api:
            queued = api.post("/api/v1/exports/", json={"ties": "keep"})
            assert queued.status_code in (201, 202), queued.text
            export_id = queued.json()["id"]
            wait_until(lambda: api.get(f"/api/v1/exports/{export_id}/").json()["state"] in ("done", "failed"),
                       timeout=60, what="the export")
            download = api.get(f"/api/v1/exports/{export_id}/download/")
        assert download.status_code == 200, download.text
        assert pq.read_table(pa.BufferReader(download.content)).num_rows > 0

    child = round_.child_checkpoint
    assert child.parent_id == root.pk and not Path(child.lora_path).is_absolute(), "a key in the bucket, not a path"
    prefix = s3_storage["CHISEL_S3_PREFIX"]
    stored = s3_keys(s3_bucket, prefix)
    assert f"{prefix}/checkpoints/{child.lora_path}/MANIFEST.json" in stored
    assert f"{prefix}/checkpoints/{Path(child.lora_path).parent}/data/pairs.parquet" in stored
    images = Pair.objects.filter(round=round_).values_list("image_a__file", "image_b__file")
    assert {f"{prefix}/media/{name}" for pair in images for name in pair} <= set(stored)
    assert Pair.objects.filter(round=round_, kind="eval").count() == 4
    assert TrainingJob.objects.get(round=round_).state == "done"
    decision = round_.decision
    current = Taste.objects.get(pk=taste.pk).current_checkpoint
    assert current == (child if decision["promote"] else root)

    # Neither host kept a file of its own, but the worker's cache copy of the child it sampled eval pairs from
    # (downloaded from the bucket, as a GPU worker that did not train it would) and its training scratch.
    for folder in ("MEDIA_ROOT", "CHISEL_EXPORT_ROOT", "CHISEL_CHECKPOINT_ROOT", "CHISEL_CACHE_ROOT"):
        assert not files(web[folder]), f"the web host wrote in its {folder}"
    assert not files(worker["MEDIA_ROOT"]) and not files(worker["CHISEL_EXPORT_ROOT"])
    assert "MANIFEST.json" in files(str(Path(worker["CHISEL_CACHE_ROOT"]) / "checkpoints" / child.lora_path))
