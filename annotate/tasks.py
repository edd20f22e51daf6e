"""Celery tasks of the annotation app: thin wrappers around services."""

from celery import shared_task

from annotate import services


@shared_task
def reap_expired_leases() -> int:
    """Return pairs whose lease ran out to the pool (run by beat every 30 s)."""
    return services.leases_reap_expired()
