"""Celery tasks run by a real worker over the Redis broker (annotate/tasks.py)."""

import pytest
from django.utils import timezone

from annotate import services
from annotate.models import Assignment, Pair
from annotate.tasks import reap_expired_leases
from chisel.celery import app
from tests.conftest import make_annotator, make_round, wait_until


def test_every_beat_entry_names_a_registered_task():
    app.loader.import_default_modules()
    for entry in app.conf.beat_schedule.values():
        assert entry["task"] in app.tasks


@pytest.mark.integration
def test_a_worker_reaps_expired_leases(celery_worker_process):
    taste = services.taste_create(slug="reaping")
    make_round(taste, pairs=2, overlap=1)
    annotator = make_annotator(taste)
    stale, fresh = services.assignment_claim(annotator=annotator, taste=taste, count=2)
    past = timezone.now() - timezone.timedelta(minutes=30)
    Assignment.objects.filter(pk=stale.pk).update(claimed_at=past, lease_expires_at=past + timezone.timedelta(minutes=10))

    reap_expired_leases.delay()

    wait_until(
        lambda: Assignment.objects.get(pk=stale.pk).state == Assignment.State.EXPIRED, timeout=30, what="the reaper"
    )
    assert Assignment.objects.get(pk=fresh.pk).state == Assignment.State.LEASED
    assert Pair.objects.get(pk=stale.pair_id).assigned_count == 0
    assert Pair.objects.get(pk=fresh.pair_id).assigned_count == 1
