"""Celery tasks of the annotation app: thin wrappers that take ids and call services."""

import logging
from pathlib import Path

from celery import shared_task

from annotate import sampling, services

logger = logging.getLogger(__name__)


@shared_task
def reap_expired_leases() -> int:
    """Return pairs whose lease ran out to the pool (beat, every CHISEL_REAP_SECONDS)."""
    return services.leases_reap_expired()


@shared_task
def refill_sample_buffers() -> int:
    """Start a sample task for every round whose buffer of open pairs ran low (beat)."""
    started = 0
    for round_id in sampling.rounds_wanting_samples():
        started += refill_round(round_id)
    return started


def refill_round(round_id: int) -> int:
    return sampling.round_refill(round_id=round_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)  # routed to the "sample" queue (CELERY_TASK_ROUTES)
def sample_pairs(round_id: int, requests: list[list[int]], hold: str | None = None) -> int:
    """Sample train pairs for (prompt id, seed) requests of a round and store them; safe to run twice. `hold` is the
    round's hold as reserved: renewed while the task works, released only while it is still this task's."""
    with sampling.HoldKeeper(round_id, hold):
        requests = sampling.round_missing_requests(round_id=round_id, requests=[tuple(r) for r in requests])
        if not requests:
            return 0
        from sampler.loading import ModelLoadError, pipelines
        from sampler.pairs import sample_train_pairs

        try:
            spec, params, pair_requests = sampling.round_sampling_inputs(round_id=round_id, requests=requests)
            sampled = sample_train_pairs(pipelines, spec, pair_requests, params)
        except ModelLoadError as exc:
            sampling.round_fail_sampling(round_id=round_id, reason=f"Sampling failed: {exc}")
            return 0
        created = sampling.round_store_pairs(round_id=round_id, requests=requests, sampled=sampled)
    refill_round(round_id)  # keep going without waiting for the next beat
    return created


def sample_base_batch(round_id: int, requests, cache) -> int:
    """Child-vs-base pairs for these keys: the child's images, and the root's where none is stored yet (`cache`
    hands out loaded pipelines: `sampler.loading.pipelines` in a worker)."""
    from sampler.pairs import sample_images

    root, child, params, pair_requests, root_made = sampling.round_base_inputs(round_id=round_id, requests=requests)
    missing = [(key, request) for key, request in zip(requests, pair_requests, strict=True)
               if tuple(key) not in root_made]
    root_new = sample_images(cache, root, [request for _, request in missing], params)
    child_new = sample_images(cache, child, pair_requests, params)
    return sampling.round_store_base_pairs(
        round_id=round_id, requests=[tuple(key) for key in requests], root_made=root_made,
        root_sampled={tuple(key): image for (key, _), image in zip(missing, root_new, strict=True)},
        child_sampled=child_new,
    )


@shared_task(acks_late=True, reject_on_worker_lost=True)  # routed to the "sample" queue
def sample_round_eval(round_id: int, batch: int = 8, hold: str | None = None) -> int:
    """Sample an evaluating round's missing eval pairs (parent vs child), then its child-vs-base pairs (when the
    parent is not the root), a batch at a time; safe to run twice. The
    round's `hold` is renewed while the task works and released only while it is still this task's."""
    from annotate.loop import round_base_requests, round_eval_requests
    from annotate.models import Pair, Round
    from sampler.loading import ModelLoadError, pipelines
    from sampler.pairs import sample_eval_pairs

    created = 0
    keeper = sampling.HoldKeeper(round_id, hold).__enter__()  # released in `finally`
    try:
        round_ = Round.objects.select_related("parent_checkpoint").get(pk=round_id)
        missing = sampling.round_missing_eval_requests(round_=round_, wanted=round_eval_requests(round_))
        base_missing = sampling.round_missing_eval_requests(round_=round_, wanted=round_base_requests(round_),
                                                            kind=Pair.Kind.BASE)
        for kind, keys in (("eval", missing), ("base", base_missing)):
            for start in range(0, len(keys), batch):
                if not Round.objects.filter(pk=round_id, state=Round.State.EVALUATING, paused=False).exists():
                    return created
                requests = keys[start:start + batch]
                if kind == "eval":
                    parent, child, params, pair_requests = sampling.round_eval_inputs(round_id=round_id,
                                                                                      requests=requests)
                    sampled = sample_eval_pairs(pipelines, parent, child, pair_requests, params)
                    created += sampling.round_store_eval_pairs(round_id=round_id, requests=requests, sampled=sampled)
                else:
                    created += sample_base_batch(round_id, requests, pipelines)
    except ModelLoadError as exc:
        sampling.round_fail_eval(round_id=round_id, reason=f"Sampling eval pairs failed: {exc}")
    finally:
        keeper.__exit__(None, None, None)
    return created


@shared_task
def advance_rounds() -> int:
    """Move rounds whose step is finished, and start eval sampling where it is missing (beat)."""
    from annotate import loop
    from annotate.models import Round

    moves = loop.rounds_advance()
    for round_id in Round.objects.filter(state=Round.State.EVALUATING).values_list("id", flat=True):
        if hold := sampling.round_reserve_eval(round_id=round_id):
            sample_round_eval.delay(round_id, hold=hold)
    return len(moves)


@shared_task
def requeue_stale_exports() -> int:
    """Queue again (or fail, past their attempts) the exports whose worker died mid-run (beat)."""
    from annotate.export_jobs import exports_requeue_stale

    return len(exports_requeue_stale())


@shared_task(acks_late=True, reject_on_worker_lost=True)
def run_export(export_id: int) -> None:
    """Write a requested preference dataset export."""
    from annotate.export_jobs import export_run

    export_run(export_id=export_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)  # routed to the "train" queue
def train_round(job_id: int) -> int | None:
    """Claim a training job, export its round, train, and record the candidate checkpoint."""
    from annotate import storage, training
    from annotate.models import TrainingJob

    attempt = training.training_job_claim(job_id=job_id)
    if attempt is None:
        return None  # someone else holds it, or it is finished
    job = TrainingJob.objects.select_related("round__taste", "round__parent_checkpoint__base_model").get(pk=job_id)
    run_dir = training.training_run_dir(job)
    states = storage.RunSync(run_dir)  # with object storage: resume from the state another host's attempt saved
    heartbeat = training.Heartbeat(job_id, attempt, metrics_path=run_dir / "metrics.jsonl")
    heartbeat.start()
    try:
        states.fetch()
        data = training.training_dataset_export(job=job, run_dir=run_dir)

        def watchdog():
            heartbeat.check()
            states.push()

        result = _train(job, data, run_dir, training.training_checkpoint_dir(run_dir, attempt), watchdog=watchdog)
    except training.HeartbeatLost as exc:
        logger.warning("Training job %s attempt %s stopped: %s", job_id, attempt, exc)
        return None
    except Exception as exc:
        training.training_job_fail(job_id=job_id, attempt=attempt, reason=f"{type(exc).__name__}: {exc}")
        logger.exception("Training job %s failed", job_id)
        return None
    finally:
        heartbeat.stop()
    try:
        # The attempt's own folder, under its own key: a stale attempt's upload never meets this one's.
        lora_path = storage.checkpoint_publish(run_dir=run_dir, lora=result.checkpoint)
    except Exception as exc:
        training.training_job_fail(job_id=job_id, attempt=attempt, reason=f"{type(exc).__name__}: {exc}")
        logger.exception("Training job %s: the checkpoint could not be stored", job_id)
        return None
    candidate = training.training_job_finish(job_id=job_id, attempt=attempt, lora_path=lora_path,
                                             metrics=result.final)
    return candidate.pk if candidate else None


def _train(job, data, run_dir, checkpoint, watchdog):
    """In this process on one device; through `accelerate launch` across the GPUs of this worker when it has several.
    `watchdog()` runs after every step (or every few seconds while `accelerate launch` runs) and raises to stop."""
    import os

    import torch

    from annotate.sampling import checkpoint_spec
    from trainer.config import TrainConfig
    from trainer.train import TrainResult, train

    spec = checkpoint_spec(job.round.parent_checkpoint)
    config = TrainConfig.from_dict(job.config)
    processes = int(os.environ.get("CHISEL_TRAIN_PROCESSES", torch.cuda.device_count() or 1))
    if processes <= 1:
        return train(config, data=data, base=spec.base_path, parents=tuple(spec.lora_paths), out=run_dir,
                     checkpoint=checkpoint, progress=False, on_step=lambda step: watchdog())
    import json
    import subprocess
    import sys

    import yaml

    (run_dir / "config.yaml").write_text(yaml.safe_dump(job.config))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes), "-m", "trainer",
               "train", "--config", str(run_dir / "config.yaml"), "--data", str(data), "--base", spec.base_path,
               "--out", str(run_dir), "--checkpoint", str(checkpoint)]
    for parent in spec.lora_paths:
        command += ["--parent", parent]
    import time

    from django.conf import settings

    deadline = time.monotonic() + settings.CHISEL_TRAIN_TIMEOUT.total_seconds()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as launched:
        while True:
            try:
                stdout, stderr = launched.communicate(timeout=5)
                break
            except subprocess.TimeoutExpired:
                try:
                    watchdog()
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"accelerate launch ran past CHISEL_TRAIN_TIMEOUT "
                                           f"({settings.CHISEL_TRAIN_TIMEOUT}); stopped")
                except Exception:
                    launched.kill()
                    raise
    if launched.returncode != 0:
        raise RuntimeError(f"accelerate launch failed: {stderr[-2000:]}")
    summary = json.loads(stdout.strip().splitlines()[-1])
    return TrainResult(Path(summary["checkpoint"]), Path(summary["metrics"]), summary["steps"], summary["pairs"],
                       summary["ties_dropped"], summary["final"])


@shared_task
def requeue_stale_training() -> int:
    """Wake a worker for every training job whose holder stopped heartbeating (beat)."""
    from annotate import training

    stale = training.training_jobs_stale()
    for job_id in stale:
        train_round.delay(job_id)
    return len(stale)
