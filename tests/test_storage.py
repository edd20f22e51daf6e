"""CHISEL_STORAGE=s3 on a real S3 server (SeaweedFS): images, exports and LoRA checkpoints live in the bucket, and a
host reads them with nothing in its own folders; a checkpoint folder without its manifest is not a checkpoint."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.conf import settings

from annotate import storage
from annotate.export_jobs import export_run
from annotate.models import BaseModel, Checkpoint, Export, Pair
from annotate.sampling import checkpoint_spec
from tests.conftest import client_for, make_annotator, make_lead, make_round, s3_client, s3_keys
from tests.test_datasets import judged_world


def files_under(folder) -> list[Path]:
    return [p for p in Path(folder).rglob("*") if p.is_file()] if Path(folder).exists() else []


def test_images_are_stored_in_the_bucket_and_served_through_the_app_to_those_who_may_see_them(
    taste, annotator, s3_storage, s3_bucket
):
    round_ = make_round(taste, pairs=1)
    pair = Pair.objects.select_related("image_a").get(round=round_)
    name = pair.image_a.file.name
    assert f"{s3_storage['CHISEL_S3_PREFIX']}/media/{name}" in s3_keys(s3_bucket, s3_storage["CHISEL_S3_PREFIX"])
    assert not files_under(settings.MEDIA_ROOT), "nothing is written on this host"

    url = pair.image_a.file.url
    assert url == f"/media/{name}"  # the app's URL, never the bucket's: the object stays private
    served = client_for(annotator).get(url)
    assert served.status_code == 200 and served["Content-Type"] == "image/png"
    body = b"".join(served.streaming_content)
    assert body == s3_client().get_object(Bucket=s3_bucket, Key=f"{s3_storage['CHISEL_S3_PREFIX']}/media/{name}")["Body"].read()
    assert client_for(make_lead()).get(url).status_code == 200
    assert client_for(make_annotator(None)).get(f"/media/{name}").status_code == 404
    assert client_for(annotator).get("/media/images/no-such-file.png").status_code == 404
    assert client_for(annotator).get("/media/../../secret.png").status_code == 404


def test_an_export_is_written_to_the_bucket_and_downloads_with_nothing_on_this_host(taste, s3_storage, s3_bucket):
    judged_world(taste)
    lead = make_lead()
    export = Export.objects.create(requested_by=lead, options={"ties": "keep"})
    export_run(export_id=export.pk)
    export.refresh_from_db()
    assert export.state == Export.State.DONE, export.error
    keys = s3_keys(s3_bucket, f"{s3_storage['CHISEL_S3_PREFIX']}/exports/")
    assert f"{s3_storage['CHISEL_S3_PREFIX']}/exports/{export.file_name}" in keys
    assert any(key.endswith("/README.md") for key in keys)
    assert not files_under(settings.CHISEL_EXPORT_ROOT)

    download = client_for(lead).get(f"/api/v1/exports/{export.pk}/download/")
    assert download.status_code == 200
    assert download["Content-Disposition"].endswith(f'filename="chisel-export-{export.pk}.parquet"')
    assert pq.read_table(pa.BufferReader(b"".join(download.streaming_content))).num_rows == 5


def lora_folder(root: Path, weights: bytes) -> Path:
    folder = root / "checkpoint"
    folder.mkdir(parents=True)
    (folder / "pytorch_lora_weights.safetensors").write_bytes(weights)
    (folder / "adapter_config.json").write_text("{}")
    return folder


def test_a_checkpoint_crosses_hosts_through_the_bucket_and_only_once_its_manifest_is_there(
    taste, s3_storage, s3_bucket, settings, tmp_path
):
    run_dir = Path(settings.CHISEL_CHECKPOINT_ROOT) / "portraits" / "round-1" / "job-1-attempt-1"
    (run_dir / "data").mkdir(parents=True)
    (run_dir / "data" / "pairs.parquet").write_bytes(b"PAR1 rows")
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 0.7}\n')
    key = storage.checkpoint_publish(run_dir=run_dir, lora=lora_folder(run_dir, b"weights-1"))
    assert key == "portraits/round-1/job-1-attempt-1/checkpoint"
    stored = set(s3_keys(s3_bucket, f"{s3_storage['CHISEL_S3_PREFIX']}/checkpoints/"))
    assert {f"{s3_storage['CHISEL_S3_PREFIX']}/checkpoints/portraits/round-1/job-1-attempt-1/{name}" for name in (
        "data/pairs.parquet", "metrics.jsonl", "checkpoint/pytorch_lora_weights.safetensors",
        "checkpoint/adapter_config.json", "checkpoint/MANIFEST.json")} == stored
    with pytest.raises(storage.StorageError, match="not overwritten"):
        storage.checkpoint_publish(run_dir=run_dir, lora=run_dir / "checkpoint")

    # Another host: its own empty folders, the same bucket.
    settings.CHISEL_CHECKPOINT_ROOT, settings.CHISEL_CACHE_ROOT = tmp_path / "b" / "checkpoints", tmp_path / "b" / "cache"
    base = BaseModel.objects.create(name="b", kind="flux", path=str(tmp_path / "base"))
    root = Checkpoint.objects.create(taste=taste, base_model=base, status=Checkpoint.Status.CURRENT)
    child = Checkpoint.objects.create(taste=taste, base_model=base, parent=root, lora_path=key)
    (local,) = checkpoint_spec(child).lora_paths
    assert Path(local).is_relative_to(settings.CHISEL_CACHE_ROOT)
    assert (Path(local) / "pytorch_lora_weights.safetensors").read_bytes() == b"weights-1"
    assert checkpoint_spec(child).lora_paths == (local,)  # the cached copy is reused
    assert storage.run_file_text(key, "metrics.jsonl") == '{"step": 1, "loss": 0.7}\n'

    # A folder whose upload stopped before its manifest, and one whose file no longer matches it, are refused.
    half = tmp_path / "half"
    storage.folder_upload(storage.checkpoint_storage(), lora_folder(half, b"weights-2"), "portraits/round-2/run/checkpoint")
    broken = Checkpoint.objects.create(taste=taste, base_model=base, parent=root,
                                       lora_path="portraits/round-2/run/checkpoint")
    with pytest.raises(storage.StorageError, match="not a complete checkpoint"):
        checkpoint_spec(broken)
    prefix = f"{s3_storage['CHISEL_S3_PREFIX']}/checkpoints/portraits/round-1/job-1-attempt-1/checkpoint"
    s3_client().put_object(Bucket=s3_bucket, Key=f"{prefix}/pytorch_lora_weights.safetensors", Body=b"weights-X")
    settings.CHISEL_CACHE_ROOT = tmp_path / "c" / "cache"
    with pytest.raises(storage.StorageError, match="does not match its manifest"):
        checkpoint_spec(child)
    assert not [p for p in files_under(settings.CHISEL_CACHE_ROOT) if p.name == "MANIFEST.json"]
    assert json.loads(s3_client().get_object(Bucket=s3_bucket, Key=f"{prefix}/MANIFEST.json")["Body"].read())["files"]


def test_with_local_storage_a_checkpoint_is_its_folder_on_this_host(taste, tmp_path):
    run_dir = Path(settings.CHISEL_CHECKPOINT_ROOT) / "run"
    lora = lora_folder(run_dir, b"w")
    assert storage.checkpoint_publish(run_dir=run_dir, lora=lora) == str(lora)
    assert storage.lora_local(str(lora)) == str(lora)
    assert storage.lora_local("run/checkpoint") == str(lora)


@pytest.mark.django_db(transaction=True)
def test_a_retry_on_another_host_resumes_from_the_state_the_first_attempt_saved_in_the_bucket(
    s3_storage, s3_bucket, settings, tmp_path, caplog
):
    from datetime import timedelta

    from django.utils import timezone

    from annotate import training
    from annotate.models import TrainingJob
    from annotate.tasks import train_round
    from tests.models import build_tiny_flux
    from tests.test_training_jobs import CONFIG, judged_round
    from trainer.config import TrainConfig
    from trainer.train import train

    def host(name: str) -> None:
        settings.CHISEL_CHECKPOINT_ROOT, settings.CHISEL_CACHE_ROOT = tmp_path / name / "run", tmp_path / name / "cache"

    config = {**CONFIG, "steps": 4, "checkpoint_every": 2}
    round_ = judged_round(build_tiny_flux(tmp_path / "flux"), pairs=4)
    job = TrainingJob.objects.create(round=round_, config=config, steps=4)

    # Host A: the first attempt saves its state at step 2 and dies at step 3 (its lease then runs out).
    host("a")
    assert training.training_job_claim(job_id=job.pk) == 1
    run_dir, sync = training.training_run_dir(job), storage.RunSync(training.training_run_dir(job))
    data = training.training_dataset_export(job=job, run_dir=run_dir)
    train(TrainConfig.from_dict(config), data=data, base=str(round_.parent_checkpoint.base_model.path), parents=(),
          out=run_dir, progress=False, on_step=lambda step: sync.push(), stop_after=3)
    prefix = f"{s3_storage['CHISEL_S3_PREFIX']}/checkpoints/{run_dir.relative_to(settings.CHISEL_CHECKPOINT_ROOT)}"
    assert f"{prefix}/states/step-000002/MANIFEST.json" in s3_keys(s3_bucket, prefix)
    TrainingJob.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    # Host B, with empty folders: the retry takes the state from the bucket and trains steps 3 and 4 only.
    host("b")
    caplog.set_level("INFO", logger="trainer.train")
    assert train_round(job.pk) is not None
    job.refresh_from_db()
    assert (job.state, job.attempt, job.metrics["step"]) == ("done", 2, 4), job.error
    assert "Resuming from" in caplog.text and "(step 2)" in caplog.text
    logged = [json.loads(line)["step"] for line in (training.training_run_dir(job) / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4]  # steps 1-2 from host A's log in the bucket, 3-4 trained here
    assert job.candidate.lora_path.endswith("/checkpoint-attempt-2")
    assert f"{prefix}/checkpoint-attempt-2/MANIFEST.json" in s3_keys(s3_bucket, prefix)
