"""The claim service: leases, overlap, ordering, sides, and the reaper (annotate/services.py, scheduler.py)."""

import pytest

from annotate import services
from annotate.models import Assignment, Pair, Round
from tests.conftest import later, make_annotator, make_round

pytestmark = pytest.mark.django_db


def test_claim_hands_out_up_to_count_and_counts_leases(taste, annotator):
    make_round(taste, pairs=5)
    claimed = services.assignment_claim(annotator=annotator, taste=taste, count=3)
    assert len(claimed) == 3
    assert {a.state for a in claimed} == {Assignment.State.LEASED}
    assert sorted(Pair.objects.values_list("assigned_count", flat=True)) == [0, 0, 1, 1, 1]


def test_asking_again_returns_held_leases_before_new_ones(taste, annotator):
    make_round(taste, pairs=5)
    first = services.assignment_claim(annotator=annotator, taste=taste, count=2)
    again = services.assignment_claim(annotator=annotator, taste=taste, count=3)
    assert [a.pk for a in again[:2]] == [a.pk for a in first]
    assert Assignment.objects.filter(annotator=annotator).count() == 3


def test_lease_length_follows_the_setting(taste, annotator, settings):
    settings.CHISEL_LEASE = services.timezone.timedelta(minutes=3)
    make_round(taste, pairs=1)
    (assignment,) = services.assignment_claim(annotator=annotator, taste=taste)
    assert (assignment.lease_expires_at - assignment.claimed_at).total_seconds() == 180


def test_overlap_bounds_how_many_annotators_hold_a_pair(taste):
    make_round(taste, pairs=1, overlap=2)
    first, second, third = (make_annotator(taste) for _ in range(3))
    assert services.assignment_claim(annotator=first, taste=taste)
    assert services.assignment_claim(annotator=second, taste=taste)
    assert services.assignment_claim(annotator=third, taste=taste) == []


def test_one_annotator_never_gets_a_pair_twice_even_after_judging_or_skipping(taste, annotator):
    make_round(taste, pairs=2, overlap=3)
    (judged,) = services.assignment_claim(annotator=annotator, taste=taste)
    services.judgement_submit(annotator=annotator, assignment_id=judged.pk, choice="left", client_uuid=services.uuid.uuid4())
    (skipped,) = services.assignment_claim(annotator=annotator, taste=taste)
    services.assignment_skip(annotator=annotator, assignment_id=skipped.pk)
    assert skipped.pair_id != judged.pair_id
    assert services.assignment_claim(annotator=annotator, taste=taste) == []


def test_partially_judged_pairs_come_first(taste, annotator, other_annotator):
    round_ = make_round(taste, pairs=4, overlap=2)
    last = round_.pairs.order_by("-id").first()
    # Someone else has started on the newest pair; it must be finished before fresh ones are opened.
    Pair.objects.filter(pk=last.pk).update(assigned_count=1)
    (assignment,) = services.assignment_claim(annotator=annotator, taste=taste)
    assert assignment.pair_id == last.pk


def test_sides_are_randomised_per_assignment_and_stored(taste):
    make_round(taste, pairs=60, overlap=1)
    annotator = make_annotator(taste)
    sides = {}
    for _ in range(6):
        for assignment in services.assignment_claim(annotator=annotator, taste=taste, count=10):
            sides[assignment.pk] = assignment.left_is_a
            services.assignment_skip(annotator=annotator, assignment_id=assignment.pk)
    assert len(sides) == 60
    assert 10 < sum(sides.values()) < 50  # 60 fair coins: both sides appear often
    assert dict(Assignment.objects.values_list("pk", "left_is_a")) == sides


def test_only_rounds_that_are_open_hand_out_pairs(taste, annotator):
    make_round(taste, pairs=2, state=Round.State.DRAFT)
    make_round(taste, pairs=2, state=Round.State.TRAINING)
    assert services.assignment_claim(annotator=annotator, taste=taste) == []
    make_round(taste, pairs=1, state=Round.State.ANNOTATING)
    assert len(services.assignment_claim(annotator=annotator, taste=taste, count=5)) == 1


def test_other_tastes_pairs_are_not_handed_out(taste, annotator):
    other = services.taste_create(slug="landscapes")
    make_round(other, pairs=3)
    assert services.assignment_claim(annotator=annotator, taste=taste) == []


def test_prefetch_is_capped(taste, annotator, settings):
    settings.CHISEL_MAX_PREFETCH = 4
    make_round(taste, pairs=10)
    assert len(services.assignment_claim(annotator=annotator, taste=taste, count=50)) == 4


def test_reaper_returns_expired_leases_to_the_pool(taste, annotator, other_annotator):
    make_round(taste, pairs=1, overlap=1)
    (lease,) = services.assignment_claim(annotator=annotator, taste=taste)
    assert services.assignment_claim(annotator=other_annotator, taste=taste) == []
    assert services.leases_reap_expired() == 0  # not yet expired
    assert services.leases_reap_expired(now=later(minutes=11)) == 1
    lease.refresh_from_db()
    assert lease.state == Assignment.State.EXPIRED
    assert Pair.objects.get().assigned_count == 0
    assert len(services.assignment_claim(annotator=other_annotator, taste=taste)) == 1


def test_an_expired_lease_can_be_claimed_again_by_the_same_annotator(taste, annotator):
    make_round(taste, pairs=1, overlap=1)
    (lease,) = services.assignment_claim(annotator=annotator, taste=taste)
    services.leases_reap_expired(now=later(minutes=11))
    (again,) = services.assignment_claim(annotator=annotator, taste=taste)
    assert again.pk == lease.pk and again.state == Assignment.State.LEASED
    assert Pair.objects.get().assigned_count == 1


def test_the_database_refuses_over_assignment(taste):
    from django.db import IntegrityError, transaction

    round_ = make_round(taste, pairs=1, overlap=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        round_.pairs.update(assigned_count=2)
