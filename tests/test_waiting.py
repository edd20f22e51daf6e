"""Annotators waiting for pairs: the refill samples for them, and `next` says why they wait (annotate/waiting.py)."""

import uuid

import pytest

from annotate.models import Round
from annotate.sampling import round_reserve_samples
from annotate.tasks import refill_sample_buffers
from annotate.waiting import WAITING_TTL
from tests.conftest import client_for, later, make_annotator, make_round

pytestmark = pytest.mark.django_db


def next_response(user, taste):
    return client_for(user).get(f"/api/v1/assignments/next/?taste={taste.slug}&prefetch=10")


def judge_everything(user, taste, *, stop_at: int | None = None) -> int:
    """Claim and judge until `next` is empty (or `stop_at` are judged, without asking once more)."""
    judged = 0
    while judged != stop_at and (response := next_response(user, taste)).status_code == 200:
        for item in response.json():
            body = {"assignment": item["id"], "choice": "left", "client_uuid": str(uuid.uuid4())}
            assert client_for(user).post("/api/v1/judgements/", body, format="json").status_code == 201
            judged += 1
    return judged


def waiting_reason(user, taste) -> str:
    response = next_response(user, taste)
    assert response.status_code == 204, response.content
    return response.headers["X-Chisel-Waiting"]


def open_round(taste, *, pairs=25, overlap=2, pair_quota=100, low_water=20, **fields) -> Round:
    round_ = make_round(taste, pairs=pairs, overlap=overlap)
    Round.objects.filter(pk=round_.pk).update(
        pair_quota=pair_quota, sampling_config={"low_water": low_water, "batch": 8}, **fields
    )
    return round_


def test_a_lone_annotator_who_judged_every_pair_gets_a_refill(taste, django_capture_on_commit_callbacks):
    # 25 pairs wanting two annotators each: 25 are "open", above the low water of 20, but none is for alice.
    alice = make_annotator(taste)
    round_ = open_round(taste)
    assert judge_everything(alice, taste, stop_at=25) == 25
    assert refill_sample_buffers() == 0  # she has not found `next` empty yet

    assert waiting_reason(alice, taste) == "sampling"
    with django_capture_on_commit_callbacks() as queued:
        assert refill_sample_buffers() == 1
    round_.refresh_from_db()
    assert round_.sample_cursor == 8 and round_.sampling_until is not None and len(queued) == 1


def test_an_annotator_who_waited_long_ago_no_longer_counts(taste):
    alice = make_annotator(taste)
    open_round(taste)
    judge_everything(alice, taste)
    waiting_reason(alice, taste)
    (round_id,) = Round.objects.values_list("pk", flat=True)
    assert round_reserve_samples(round_id=round_id, now=later(seconds=WAITING_TTL.total_seconds() + 1)) is None


def test_a_waiting_annotator_with_enough_pairs_left_starts_no_refill(taste):
    alice, bob = make_annotator(taste), make_annotator(taste)
    open_round(taste, pairs=25, low_water=20)
    taste_round = Round.objects.get()
    Round.objects.filter(pk=taste_round.pk).update(paused=True)
    assert waiting_reason(bob, taste) == "paused"  # bob is marked waiting, and has 25 pairs he may take
    Round.objects.filter(pk=taste_round.pk).update(paused=False)
    assert refill_sample_buffers() == 0
    assert judge_everything(alice, taste, stop_at=25) == 25  # alice judged them all but never waited: bob has 25
    assert refill_sample_buffers() == 0


def test_next_says_the_worker_is_sampling(taste):
    alice = make_annotator(taste)
    open_round(taste, pairs=2)
    judge_everything(alice, taste)
    assert waiting_reason(alice, taste) == "sampling"


def test_next_says_the_round_is_paused(taste):
    open_round(taste, pairs=3, paused=True)
    assert waiting_reason(make_annotator(taste), taste) == "paused"


def test_next_says_the_round_is_training(taste):
    open_round(taste, pairs=3, state=Round.State.TRAINING)
    assert waiting_reason(make_annotator(taste), taste) == "training"


def test_next_says_the_label_quota_is_reached(taste):
    alice = make_annotator(taste)
    open_round(taste, pairs=2, label_quota=2)
    judge_everything(alice, taste)
    assert waiting_reason(alice, taste) == "quota_reached"


def test_next_says_nothing_is_left_for_you_when_the_rest_is_with_others(taste):
    alice, bob = make_annotator(taste), make_annotator(taste)
    open_round(taste, pairs=2, pair_quota=2)
    judge_everything(alice, taste)
    assert waiting_reason(alice, taste) == "nothing_left"  # bob may still judge both pairs
    assert next_response(bob, taste).status_code == 200


def test_next_says_nothing_is_left_without_an_open_round(taste):
    assert waiting_reason(make_annotator(taste), taste) == "nothing_left"
    open_round(taste, pairs=2, state=Round.State.DONE)
    assert waiting_reason(make_annotator(taste), taste) == "nothing_left"


def test_the_schema_documents_the_waiting_header(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    header = schema["paths"]["/api/v1/assignments/next/"]["get"]["responses"]["204"]["headers"]["X-Chisel-Waiting"]
    assert set(header["schema"]["enum"]) == {"sampling", "training", "paused", "quota_reached", "nothing_left"}
