"""Training use cases: queue a round's training job, claim it with a lease, heartbeat, finish or fail."""

import socket
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from annotate import locks
from annotate.exports import ExportOptions, export_preferences
from annotate.models import Checkpoint, Pair, Round, TrainingJob


def training_job_create(*, round_id: int, config: dict | None = None) -> TrainingJob:
    """Queue training for a round (its training_config unless `config` is given); a worker picks it up."""
    from annotate.tasks import train_round

    from trainer.config import TrainConfig

    round_ = Round.objects.get(pk=round_id)
    config = config if config is not None else round_.training_config
    job = TrainingJob.objects.create(round=round_, config=config, steps=TrainConfig.from_dict(config).steps)
    transaction.on_commit(lambda: train_round.delay(job.pk))
    return job


def training_job_claim(*, job_id: int, worker: str | None = None, now: datetime | None = None) -> int | None:
    """Take the job if it is queued or its holder's lease ran out; returns the new attempt number, or None."""
    now = now or timezone.now()
    claimable = Q(state=TrainingJob.State.QUEUED) | Q(state=TrainingJob.State.RUNNING, lease_until__lt=now)
    with transaction.atomic():
        updated = TrainingJob.objects.filter(claimable, pk=job_id).update(
            state=TrainingJob.State.RUNNING, attempt=F("attempt") + 1, lease_until=now + settings.CHISEL_TRAIN_LEASE,
            heartbeat_at=now, started_at=now, worker=worker or socket.gethostname(), error="", step=0,
        )
        if not updated:
            return None
        return TrainingJob.objects.values_list("attempt", flat=True).get(pk=job_id)


def training_job_heartbeat(*, job_id: int, attempt: int, step: int | None = None, now: datetime | None = None) -> bool:
    """Renew the lease of a running attempt (and record its step); False if the attempt lost the job."""
    now = now or timezone.now()
    progress = {"step": step} if step is not None else {}
    return bool(TrainingJob.objects.filter(pk=job_id, attempt=attempt, state=TrainingJob.State.RUNNING).update(
        lease_until=now + settings.CHISEL_TRAIN_LEASE, heartbeat_at=now, **progress,
    ))


def training_run_dir(job: TrainingJob, attempt: int) -> Path:
    round_ = job.round
    return Path(settings.CHISEL_CHECKPOINT_ROOT) / round_.taste.slug / f"round-{round_.number}" / f"job-{job.pk}-attempt-{attempt}"


def training_dataset_export(*, job: TrainingJob, run_dir: Path) -> Path:
    """The round's train judgements frozen into the file the trainer reads (ties dropped)."""
    path = run_dir / "data" / "pairs.parquet"
    export_preferences(ExportOptions(out=path, rounds=[job.round_id], kinds=[Pair.Kind.TRAIN], ties="drop"))
    return path


def training_job_finish(*, job_id: int, attempt: int, lora_path: Path, metrics: dict) -> Checkpoint | None:
    """Record the trained LoRA as the round's candidate checkpoint, unless this attempt is stale."""
    with transaction.atomic():
        job = locks.lock_training_job(job_id=job_id).select_related("round__parent_checkpoint").get()
        if job.state != TrainingJob.State.RUNNING or job.attempt != attempt:
            return None
        parent = job.round.parent_checkpoint
        candidate = Checkpoint.objects.create(
            taste_id=job.round.taste_id, base_model_id=parent.base_model_id, parent=parent,
            lora_path=str(lora_path), status=Checkpoint.Status.CANDIDATE, metrics=metrics,
        )
        TrainingJob.objects.filter(pk=job_id).update(
            state=TrainingJob.State.DONE, candidate=candidate, metrics=metrics, finished_at=timezone.now(),
            step=F("steps"), run_dir=str(Path(lora_path).parent),
        )
        Round.objects.filter(pk=job.round_id).update(child_checkpoint=candidate)
    return candidate


def training_job_fail(*, job_id: int, attempt: int, reason: str) -> bool:
    """Mark the attempt failed with its reason (a stale attempt changes nothing)."""
    return bool(TrainingJob.objects.filter(pk=job_id, attempt=attempt, state=TrainingJob.State.RUNNING).update(
        state=TrainingJob.State.FAILED, error=reason, finished_at=timezone.now(),
    ))


def training_jobs_stale(*, now: datetime | None = None) -> list[int]:
    """Running jobs whose holder stopped renewing its lease (a killed worker)."""
    now = now or timezone.now()
    return list(TrainingJob.objects.filter(state=TrainingJob.State.RUNNING, lease_until__lt=now).values_list("id", flat=True))
