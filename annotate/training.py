"""Training use cases: queue a round's training job, claim it with a lease, keep it with a heartbeat, finish or fail."""

import json
import logging
import socket
import threading
import time
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from annotate import locks, trust
from annotate.enqueue import TRAIN_ROUND, enqueue_on_commit
from annotate.exports import ExportOptions, export_preferences
from annotate.models import Checkpoint, Pair, Round, TrainingJob

logger = logging.getLogger(__name__)


def training_job_create(*, round_id: int, config: dict | None = None) -> TrainingJob:
    """Queue training for a round (its training_config unless `config` is given); a worker picks it up."""
    from trainer.config import TrainConfig

    round_ = Round.objects.get(pk=round_id)
    config = config if config is not None else round_.training_config
    job = TrainingJob.objects.create(round=round_, config=config, steps=TrainConfig.from_dict(config).steps)
    enqueue_on_commit(TRAIN_ROUND, job.pk)
    return job


def training_job_claim(*, job_id: int, worker: str | None = None, now: datetime | None = None) -> int | None:
    """Take the job if it is queued or its holder's lease ran out; returns the new attempt number, or None. A job
    that used its CHISEL_TRAIN_MAX_ATTEMPTS fails instead (its round then fails with the reason), and a job whose
    round was cancelled is closed."""
    now = now or timezone.now()
    claimable = Q(state=TrainingJob.State.QUEUED) | Q(state=TrainingJob.State.RUNNING, lease_until__lt=now)
    limit = settings.CHISEL_TRAIN_MAX_ATTEMPTS
    TrainingJob.objects.filter(claimable, pk=job_id, round__state=Round.State.CANCELLED).update(
        state=TrainingJob.State.FAILED, error="The round was cancelled.", finished_at=now,
    )
    TrainingJob.objects.filter(claimable, pk=job_id, attempt__gte=limit).update(
        state=TrainingJob.State.FAILED, finished_at=now,
        error=f"Gave up after {limit} attempts: the worker of attempt {limit} stopped without finishing "
              f"(no heartbeat for {settings.CHISEL_TRAIN_LEASE}).",
    )
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
    mine = TrainingJob.objects.filter(pk=job_id, attempt=attempt, state=TrainingJob.State.RUNNING)
    if mine.filter(round__state=Round.State.CANCELLED).update(
        state=TrainingJob.State.FAILED, error="The round was cancelled.", finished_at=now,
    ):
        return False  # the worker stops at its next check
    return bool(mine.update(lease_until=now + settings.CHISEL_TRAIN_LEASE, heartbeat_at=now, **progress))


def training_run_dir(job: TrainingJob) -> Path:
    """The job's run folder on this host, shared by its attempts: its dataset, metrics and resumable states, so an
    attempt that takes over from a dead one resumes from the newest saved state instead of step 0 (with object
    storage, fetched from the bucket first: storage.RunSync). Each attempt writes its LoRA to a folder of its own
    (`training_checkpoint_dir`): a stale attempt cannot replace the one recorded."""
    round_ = job.round
    return Path(settings.CHISEL_CHECKPOINT_ROOT) / round_.taste.slug / f"round-{round_.number}" / f"job-{job.pk}"


def training_checkpoint_dir(run_dir: Path, attempt: int) -> Path:
    return run_dir / f"checkpoint-attempt-{attempt}"


def training_dataset_export(*, job: TrainingJob, run_dir: Path) -> Path:
    """The round's train judgements frozen into the file the trainer reads (ties dropped; gold pairs are never
    train pairs). With the round's trust mode, untrusted annotators are left out or every row carries its
    annotator's trust as its weight (annotate/trust.py). Written once per job: later attempts read the same file."""
    path = run_dir / "data" / "pairs.parquet"
    if path.is_file():  # frozen by an earlier attempt of the job: its saved states were trained on it
        return path
    annotators, weights = trust.training_filter(round_=job.round)
    export_preferences(ExportOptions(
        out=path, rounds=[job.round_id], kinds=[Pair.Kind.TRAIN], ties="drop", annotators=annotators, weights=weights
    ))
    return path


def training_job_finish(*, job_id: int, attempt: int, lora_path: Path | str, metrics: dict) -> Checkpoint | None:
    """Record the trained LoRA as the round's candidate checkpoint, unless this attempt is stale."""
    with transaction.atomic():
        job = locks.lock_training_job(job_id=job_id).select_related("round__parent_checkpoint").get()
        if job.state != TrainingJob.State.RUNNING or job.attempt != attempt:
            return None
        if job.round.state == Round.State.CANCELLED:  # cancelled after the last heartbeat: nothing is attached
            TrainingJob.objects.filter(pk=job_id).update(state=TrainingJob.State.FAILED, finished_at=timezone.now(),
                                                        error="The round was cancelled.")
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


class HeartbeatLost(RuntimeError):
    """The attempt no longer holds its training job (its lease ran out and another attempt took it, or the job
    was closed): training must stop, its result could not be recorded."""


class Heartbeat:
    """Renews a training job's lease (and records its step) from a thread while the trainer runs.

    A database error (SQLite's `database is locked`, a dropped PostgreSQL connection) does not end the thread:
    it retries with exponential back-off (from `every` up to `max_delay`) on a fresh connection, and says so in
    one log line when the trouble starts, one when the lease runs out meanwhile and one when it is over. The
    training loop calls `check()` after every step: it raises `HeartbeatLost` once a renewal found the job
    taken, and starts the thread again if it died. The cockpit shows the age of the last renewal.
    """

    def __init__(self, job_id: int, attempt: int, every: float | None = None, metrics_path=None,
                 max_delay: float | None = None) -> None:
        lease = settings.CHISEL_TRAIN_LEASE.total_seconds()
        self.job_id, self.attempt = job_id, attempt
        # Often enough for the lead's progress bar; the lease itself is renewed far before it runs out.
        self.every = every or min(5.0, lease / 3)
        self.max_delay = max_delay or max(self.every, lease / 10)  # several tries before the lease runs out
        self.metrics_path = Path(metrics_path) if metrics_path else None
        self.failures = 0  # consecutive failed renewals
        self.last_success = time.monotonic()
        self.lost = False
        self.restarts = 0
        self.stopped = threading.Event()
        self.thread = self._thread()

    def _thread(self) -> threading.Thread:
        return threading.Thread(target=self.run, daemon=True, name=f"heartbeat-job-{self.job_id}")

    def start(self) -> None:
        self.thread.start()

    def run(self) -> None:
        from django.db import connection

        try:
            while not self.stopped.wait(self._delay()):
                if not self.beat():
                    return
        finally:
            connection.close()

    def _delay(self) -> float:
        return min(self.every * 2 ** self.failures, self.max_delay) if self.failures else self.every

    def beat(self) -> bool:
        """One renewal; False when the job is lost (the thread ends), True otherwise, whatever went wrong."""
        from django.db import DatabaseError, connection

        try:
            held = training_job_heartbeat(job_id=self.job_id, attempt=self.attempt, step=self.step())
        except Exception as exc:  # noqa: BLE001 - a heartbeat that dies lets the lease run out under a live worker
            if isinstance(exc, DatabaseError):
                connection.close()  # a broken connection is not reused; the next try connects afresh
            self._failed(exc)
            return True
        if self.failures:
            logger.info("Training job %s: heartbeat renewed again after %d failed tries (%.0f s)", self.job_id,
                           self.failures, time.monotonic() - self.last_success)
        self.failures, self.last_success = 0, time.monotonic()
        if not held:
            self.lost = True
            logger.warning("Training job %s attempt %s lost its lease", self.job_id, self.attempt)
        return held

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line, whatever the driver's message
        if self.failures == 1:
            logger.warning("Training job %s: heartbeat failed (%s); retrying with back-off", self.job_id, reason[:300])
        age = time.monotonic() - self.last_success
        if age > settings.CHISEL_TRAIN_LEASE.total_seconds() >= age - self._delay():
            logger.warning("Training job %s: no heartbeat for %.0f s, the lease ran out (another worker may take "
                           "the job); still retrying", self.job_id, age)

    def step(self) -> int | None:
        """The last step the trainer logged in its metrics.jsonl, if any."""
        if self.metrics_path is None or not self.metrics_path.exists():
            return None
        lines = self.metrics_path.read_bytes().rstrip().rsplit(b"\n", 1)
        try:
            return int(json.loads(lines[-1])["step"])
        except (ValueError, KeyError, IndexError):
            return None  # a line being written

    def check(self) -> None:
        """The watchdog, called by the training loop: stop when the job is lost (taken by another attempt, or its
        round cancelled), restart a dead thread."""
        if self.lost:
            raise HeartbeatLost(f"training job {self.job_id} is no longer held by attempt {self.attempt} "
                                f"(taken by another attempt, or its round was cancelled)")
        if not self.thread.is_alive() and not self.stopped.is_set():
            self.restarts += 1
            logger.warning("Training job %s: the heartbeat thread had died; restarted (%d)", self.job_id, self.restarts)
            self.thread = self._thread()
            self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)
