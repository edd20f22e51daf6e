"""Celery tasks of the annotation app: thin wrappers that take ids and call services."""

import logging

from celery import shared_task
from django.db import transaction

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
    job = sampling.round_reserve_samples(round_id=round_id)
    if job is None:
        return 0
    transaction.on_commit(lambda: sample_pairs.delay(job.round_id, [list(r) for r in job.requests]))
    return 1


@shared_task(acks_late=True)  # routed to the "sample" queue (CELERY_TASK_ROUTES)
def sample_pairs(round_id: int, requests: list[list[int]]) -> int:
    """Sample train pairs for (prompt id, seed) requests of a round and store them; safe to run twice."""
    from sampler.loading import ModelLoadError, pipelines
    from sampler.pairs import sample_train_pairs

    requests = sampling.round_missing_requests(round_id=round_id, requests=[tuple(r) for r in requests])
    if not requests:
        sampling.round_release_sampling(round_id=round_id)
        return 0
    try:
        spec, params, pair_requests = sampling.round_sampling_inputs(round_id=round_id, requests=requests)
        sampled = sample_train_pairs(pipelines, spec, pair_requests, params)
    except ModelLoadError as exc:
        sampling.round_fail(round_id=round_id, reason=f"Sampling failed: {exc}")
        return 0
    created = sampling.round_store_pairs(round_id=round_id, requests=requests, sampled=sampled)
    sampling.round_release_sampling(round_id=round_id)
    refill_round(round_id)  # keep going without waiting for the next beat
    return created


@shared_task(acks_late=True)
def run_export(export_id: int) -> None:
    """Write a requested preference dataset export."""
    from annotate.export_jobs import export_run

    export_run(export_id=export_id)
