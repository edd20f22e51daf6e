"""Training jobs: a real worker trains a round into a candidate checkpoint; leases keep stale attempts out."""

import uuid
from pathlib import Path

import pytest
from django.utils import timezone

from annotate import services, training
from annotate.images import image_store
from annotate.models import BaseModel, Checkpoint, Pair, Prompt, Round, TrainingJob
from tests.conftest import make_annotator, png_bytes, wait_until
from tests.models import build_tiny_flux

CONFIG = {"steps": 3, "batch_size": 2, "max_sequence_length": 32, "learning_rate": 1e-3, "heldout_fraction": 0}


@pytest.fixture(scope="module")
def tiny_flux_dir(tmp_path_factory):
    return build_tiny_flux(tmp_path_factory.mktemp("flux") / "flux")


def judged_round(model_dir: Path, pairs: int = 6) -> Round:
    taste = services.taste_create(slug=f"training-{uuid.uuid4().hex[:6]}")
    base = BaseModel.objects.create(name=f"tiny-{taste.slug}", kind="flux", path=str(model_dir))
    parent = Checkpoint.objects.create(taste=taste, base_model=base, status=Checkpoint.Status.CURRENT)
    round_ = Round.objects.create(taste=taste, number=1, parent_checkpoint=parent, state=Round.State.ANNOTATING,
                                  overlap=1, training_config=CONFIG)
    for index in range(pairs):
        prompt = Prompt.objects.create(text="a red circle")
        images = [image_store(prompt=prompt, data=png_bytes((index * 20, side * 200, 50), (32, 32)),
                              params={"guidance": 3.5}) for side in (0, 1)]
        Pair.objects.create(round=round_, taste=taste, prompt=prompt, image_a=images[0], image_b=images[1], overlap=1)
    annotator = make_annotator(taste)
    for assignment in services.assignment_claim(annotator=annotator, taste=taste, count=pairs):
        services.judgement_submit(annotator=annotator, assignment_id=assignment.pk, choice="left",
                                  client_uuid=uuid.uuid4())
    return round_


@pytest.mark.integration
def test_a_worker_trains_a_round_into_a_candidate_checkpoint(celery_worker_process, tiny_flux_dir):
    round_ = judged_round(tiny_flux_dir)
    job = training.training_job_create(round_id=round_.pk)
    wait_until(lambda: TrainingJob.objects.get(pk=job.pk).state in ("done", "failed"), timeout=240, interval=1,
               what="the training job")
    job.refresh_from_db()
    assert job.state == "done", job.error
    assert job.attempt == 1 and job.metrics["step"] == 3
    candidate = job.candidate
    assert candidate.status == Checkpoint.Status.CANDIDATE and candidate.parent_id == round_.parent_checkpoint_id
    assert (Path(candidate.lora_path) / "pytorch_lora_weights.safetensors").exists()
    assert (Path(candidate.lora_path).parent / "data" / "pairs.parquet").exists()
    round_.refresh_from_db()
    assert round_.child_checkpoint_id == candidate.pk


@pytest.mark.django_db
def test_a_stale_attempt_cannot_write_its_result(tiny_flux_dir, tmp_path, settings):
    round_ = judged_round(tiny_flux_dir, pairs=2)
    job = TrainingJob.objects.create(round=round_, config=CONFIG)
    first = training.training_job_claim(job_id=job.pk)
    assert first == 1 and training.training_job_claim(job_id=job.pk) is None  # held
    later = timezone.now() + settings.CHISEL_TRAIN_LEASE + timezone.timedelta(seconds=1)
    assert training.training_jobs_stale(now=later) == [job.pk]
    second = training.training_job_claim(job_id=job.pk, now=later)
    assert second == 2
    assert not training.training_job_heartbeat(job_id=job.pk, attempt=first)
    assert training.training_job_finish(job_id=job.pk, attempt=first, lora_path=tmp_path, metrics={}) is None
    assert not training.training_job_fail(job_id=job.pk, attempt=first, reason="late")
    assert not Checkpoint.objects.filter(status=Checkpoint.Status.CANDIDATE).exists()
    assert training.training_job_finish(job_id=job.pk, attempt=second, lora_path=tmp_path, metrics={"loss": 0.5})
    job.refresh_from_db()
    assert (job.state, job.attempt, job.error) == ("done", 2, "")


@pytest.mark.integration
def test_a_round_of_only_ties_fails_its_job_with_the_reason(celery_worker_process, tiny_flux_dir):
    round_ = judged_round(tiny_flux_dir, pairs=2)
    from annotate.models import Judgement

    Judgement.objects.filter(pair__round=round_).update(choice="tie")
    job = training.training_job_create(round_id=round_.pk)
    wait_until(lambda: TrainingJob.objects.get(pk=job.pk).state == "failed", timeout=120, what="the failure")
    job.refresh_from_db()
    assert "no pairs" in job.error or "only ties" in job.error
    assert job.candidate is None and not Checkpoint.objects.filter(status="candidate").exists()


@pytest.mark.django_db(transaction=True)
def test_training_stops_once_another_attempt_took_the_job(tiny_flux_dir, settings):
    from datetime import timedelta
    import threading

    from django.db import connection

    from annotate.tasks import train_round

    settings.CHISEL_TRAIN_LEASE = timedelta(seconds=3)  # a heartbeat every second
    round_ = judged_round(tiny_flux_dir, pairs=4)
    job = TrainingJob.objects.create(round=round_, config={**CONFIG, "steps": 100_000}, steps=100_000)

    def take_over():  # the lease "ran out" and another worker claimed the job
        try:
            wait_until(lambda: TrainingJob.objects.get(pk=job.pk).step >= 2, timeout=120, what="training to start")
            assert training.training_job_claim(job_id=job.pk, now=timezone.now() + timedelta(seconds=10)) == 2
        finally:
            connection.close()

    thief = threading.Thread(target=take_over)
    thief.start()
    assert train_round(job.pk) is None  # stopped, not finished
    thief.join()
    job.refresh_from_db()
    assert (job.state, job.attempt, job.candidate_id) == ("running", 2, None)
    logged = (training.training_run_dir(job) / "metrics.jsonl").read_text().splitlines()
    assert 2 <= len(logged) < 1000
