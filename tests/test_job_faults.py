"""Jobs that survive faults: Celery set for long GPU tasks, exports of dead workers retried or failed, training
attempts capped, a cancelled round's job stopped, sample holds renewed and fenced."""

import re
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from annotate import loop, rounds, sampling, training
from annotate.models import Checkpoint, Export, Round, TrainingJob
from annotate.tasks import requeue_stale_exports, run_export, sample_pairs, train_round
from chisel.celery import app
from tests.conftest import client_for, make_round, wait_until
from tests.test_training_jobs import CONFIG, judged_round

TOY_FLUX = Path(__file__).resolve().parent.parent / "models" / "toy-flux"


def test_celery_is_set_for_long_gpu_tasks():
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    for name in ("annotate.tasks.sample_pairs", "annotate.tasks.sample_round_eval", "annotate.tasks.train_round",
                 "annotate.tasks.run_export"):
        assert app.tasks[name].acks_late and app.tasks[name].reject_on_worker_lost, name
    if not conf.broker_url.startswith("filesystem://"):  # Redis: redelivery only after the longest task
        timeout = conf.broker_transport_options["visibility_timeout"]
        assert timeout > django_settings.CHISEL_TRAIN_TIMEOUT.total_seconds()
    assert "annotate.tasks.requeue_stale_exports" in {e["task"] for e in conf.beat_schedule.values()}


def _die_mid_run(export_id: int, attempt: int) -> None:
    """What a worker killed mid-export leaves: the row running, its progress stamp getting old."""
    stale = timezone.now() - django_settings.CHISEL_EXPORT_STALE - timedelta(seconds=1)
    Export.objects.filter(pk=export_id).update(state=Export.State.RUNNING, attempt=attempt, heartbeat_at=stale)


@pytest.mark.django_db
def test_an_export_whose_worker_died_is_run_again_then_failed_after_its_attempts(lead, taste):
    make_round(taste, pairs=2)
    api = client_for(lead)
    export_id = api.post("/api/v1/exports/", {"format": "pickapic"}, format="json").json()["id"]
    _die_mid_run(export_id, attempt=1)
    fresh = Export.objects.create(requested_by=lead, state=Export.State.RUNNING, attempt=1, heartbeat_at=timezone.now())
    assert requeue_stale_exports() == 1  # the live one is left alone
    assert api.get(f"/api/v1/exports/{export_id}/").json()["state"] == "queued"
    assert Export.objects.get(pk=fresh.pk).state == "running"
    run_export(export_id)  # the redelivered task
    export = Export.objects.get(pk=export_id)
    assert (export.state, export.attempt) == ("done", 2)

    again = Export.objects.create(requested_by=lead)
    _die_mid_run(again.pk, attempt=django_settings.CHISEL_EXPORT_MAX_ATTEMPTS)
    assert requeue_stale_exports() == 0
    body = api.get(f"/api/v1/exports/{again.pk}/").json()
    assert body["state"] == "failed" and "gave up after 3 attempts" in body["error"]


@pytest.mark.django_db
def test_a_late_export_attempt_cannot_overwrite_the_newer_one(lead, taste):
    make_round(taste, pairs=1)
    export = Export.objects.create(requested_by=lead)
    run_export(export.pk)
    Export.objects.filter(pk=export.pk).update(state=Export.State.RUNNING, attempt=5)  # someone else's attempt now
    mine = Export.objects.filter(pk=export.pk, state=Export.State.RUNNING, attempt=4)
    assert mine.update(state=Export.State.FAILED) == 0  # the guard export_run writes through


@pytest.mark.django_db
def test_training_attempts_are_capped_and_the_round_fails_with_the_reason(settings):
    settings.CHISEL_TRAIN_MAX_ATTEMPTS = 2
    round_ = judged_round(TOY_FLUX, pairs=2)
    Round.objects.filter(pk=round_.pk).update(state=Round.State.TRAINING)
    job = TrainingJob.objects.create(round=round_, config=CONFIG)
    later = timezone.now() + settings.CHISEL_TRAIN_LEASE + timedelta(seconds=1)
    assert training.training_job_claim(job_id=job.pk) == 1
    assert training.training_job_claim(job_id=job.pk, now=later) == 2  # the first worker died
    assert training.training_job_claim(job_id=job.pk, now=later + settings.CHISEL_TRAIN_LEASE * 2) is None
    job.refresh_from_db()
    assert job.state == "failed" and "Gave up after 2 attempts" in job.error
    loop.rounds_advance()
    round_.refresh_from_db()
    assert round_.state == "failed" and "Gave up after 2 attempts" in round_.error


@pytest.mark.django_db(transaction=True)
def test_cancelling_a_round_stops_its_training_and_attaches_no_candidate(settings):
    settings.CHISEL_TRAIN_LEASE = timedelta(seconds=3)  # a heartbeat every second
    round_ = judged_round(TOY_FLUX, pairs=4)
    Round.objects.filter(pk=round_.pk).update(state=Round.State.TRAINING)
    job = TrainingJob.objects.create(round=round_, config={**CONFIG, "steps": 100_000}, steps=100_000)

    def cancel():
        try:
            wait_until(lambda: TrainingJob.objects.get(pk=job.pk).step >= 2, timeout=120, what="training to start")
            assert rounds.round_cancel(round_id=round_.pk)
        finally:
            connection.close()

    lead = threading.Thread(target=cancel)
    lead.start()
    assert train_round(job.pk) is None  # stopped at the next heartbeat
    lead.join()
    job.refresh_from_db()
    round_.refresh_from_db()
    assert (job.state, job.error, job.candidate_id) == ("failed", "The round was cancelled.", None)
    assert round_.state == "cancelled" and round_.child_checkpoint_id is None
    assert not Checkpoint.objects.filter(status=Checkpoint.Status.CANDIDATE).exists()
    assert train_round(job.pk) is None  # a redelivered message finds nothing to do


@pytest.mark.django_db
def test_a_job_cancelled_after_its_last_heartbeat_records_no_candidate(tmp_path):
    round_ = judged_round(TOY_FLUX, pairs=2)
    job = TrainingJob.objects.create(round=round_, config=CONFIG)
    attempt = training.training_job_claim(job_id=job.pk)
    rounds.round_cancel(round_id=round_.pk)
    assert training.training_job_finish(job_id=job.pk, attempt=attempt, lora_path=tmp_path, metrics={}) is None
    assert not Checkpoint.objects.filter(status=Checkpoint.Status.CANDIDATE).exists()
    assert TrainingJob.objects.get(pk=job.pk).state == "failed"


@pytest.mark.django_db
def test_a_sample_hold_is_renewed_and_a_stale_task_cannot_release_a_newer_hold(taste, settings):
    round_ = sampling_round(taste)
    old = sampling.round_reserve_samples(round_id=round_.pk, now=timezone.now() - timedelta(hours=1))
    new = sampling.round_reserve_samples(round_id=round_.pk)  # the old hold ran out: a second task took the round
    assert old.hold and new.hold and old.hold != new.hold
    assert sampling.round_renew_hold(round_id=round_.pk, hold=old.hold) is None
    assert not sampling.round_release_sampling(round_id=round_.pk, hold=old.hold)
    round_.refresh_from_db()
    assert round_.sampling_until.isoformat() == new.hold  # still the new task's

    renewed = sampling.round_renew_hold(round_id=round_.pk, hold=new.hold, now=timezone.now() + timedelta(minutes=10))
    assert renewed and renewed > new.hold
    assert sampling.round_release_sampling(round_id=round_.pk, hold=renewed)
    assert Round.objects.get(pk=round_.pk).sampling_until is None


@pytest.mark.django_db(transaction=True)
def test_a_working_sample_task_keeps_renewing_its_hold(taste):
    round_ = sampling_round(taste)
    job = sampling.round_reserve_samples(round_id=round_.pk)
    with sampling.HoldKeeper(round_.pk, job.hold, every=0.2) as keeper:
        wait_until(lambda: keeper.hold != job.hold, timeout=10, what="a renewal")
        held = Round.objects.get(pk=round_.pk).sampling_until
        assert held.isoformat() == keeper.hold and held > timezone.now() + sampling.sampling_hold() - timedelta(seconds=5)
    assert Round.objects.get(pk=round_.pk).sampling_until is None  # released on exit


@pytest.mark.django_db
def test_a_stale_sample_task_leaves_the_newer_tasks_hold_alone(taste):
    round_ = sampling_round(taste)
    stale = sampling.round_reserve_samples(round_id=round_.pk, now=timezone.now() - timedelta(hours=1))
    newer = sampling.round_reserve_samples(round_id=round_.pk)
    assert sample_pairs(round_.pk, [], hold=stale.hold) == 0  # nothing to sample, and nothing to release
    assert Round.objects.get(pk=round_.pk).sampling_until.isoformat() == newer.hold


def sampling_round(taste) -> Round:
    round_ = make_round(taste, pairs=0, state=Round.State.SAMPLING)
    Round.objects.filter(pk=round_.pk).update(pair_quota=100)
    return round_


def test_the_domain_never_imports_the_tasks_module():
    import annotate

    root = Path(annotate.__file__).parent
    pattern = re.compile(r"from annotate\.tasks import|from annotate import tasks|import annotate\.tasks")
    importers = [path.name for path in root.glob("*.py") if path.name != "tasks.py" and pattern.search(path.read_text())]
    assert importers == [], f"{importers} import annotate.tasks: queue by name (annotate/enqueue.py) instead"


@pytest.mark.django_db
def test_an_accelerate_launch_that_runs_past_its_timeout_is_killed(settings, monkeypatch, tmp_path):
    from annotate.tasks import _train

    settings.CHISEL_TRAIN_TIMEOUT = timedelta(seconds=1)
    monkeypatch.setenv("CHISEL_TRAIN_PROCESSES", "2")
    round_ = judged_round(TOY_FLUX, pairs=2)
    job = TrainingJob.objects.create(round=round_, config={**CONFIG, "steps": 100_000}, steps=100_000)
    # A real dataset: with a missing one the trainer fails on its own, and on a quick machine before the deadline.
    data = training.training_dataset_export(job=job, run_dir=tmp_path)
    started = timezone.now()
    with pytest.raises(RuntimeError, match="ran past CHISEL_TRAIN_TIMEOUT"):
        _train(job, data, tmp_path, tmp_path / "checkpoint", watchdog=lambda: None)
    assert (timezone.now() - started).total_seconds() < 30
