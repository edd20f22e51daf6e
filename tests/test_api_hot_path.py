"""The annotator's two hot calls stay lean and correct: pinned query counts for `next` and for a submission,
the token cache's limits, and the guarded submission's refusals (annotate/api/authentication.py, services.py)."""

import uuid

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from annotate.api import authentication
from annotate.models import Assignment, Judgement, Pair
from tests.conftest import client_for, later, make_annotator, make_round

pytestmark = pytest.mark.django_db

# next: token+user, taste access, held leases, SAVEPOINT (BEGIN outside the test's transaction), two strategies,
# one write statement, RELEASE (COMMIT), load
NEXT_QUERIES = 9
# next with the token cached: one fewer
NEXT_QUERIES_CACHED = 8
# submit: the guarded write, in a SAVEPOINT here (outside a transaction a single statement needs no BEGIN/COMMIT)
SUBMIT_QUERIES = 3


@pytest.fixture(autouse=True)
def empty_token_cache():
    authentication._cache.clear()
    yield
    authentication._cache.clear()


def test_next_and_submit_use_a_pinned_number_of_queries(taste, annotator, django_assert_max_num_queries):
    make_round(taste, pairs=3, overlap=1)
    api = client_for(annotator)
    with django_assert_max_num_queries(NEXT_QUERIES):
        (item,) = api.get("/api/v1/assignments/next/", {"taste": taste.slug}).json()
    body = {"assignment": item["id"], "choice": "left", "client_uuid": str(uuid.uuid4())}
    with django_assert_max_num_queries(SUBMIT_QUERIES):
        assert api.post("/api/v1/judgements/", body, format="json").status_code == 201
    with django_assert_max_num_queries(NEXT_QUERIES_CACHED):
        assert api.get("/api/v1/assignments/next/", {"taste": taste.slug}).status_code == 200
    # A replay costs a lookup or two more, and still writes nothing.
    assert api.post("/api/v1/judgements/", body, format="json").status_code == 200
    assert Judgement.objects.count() == 1


def test_the_answers_keep_their_shape(taste, annotator):
    make_round(taste, pairs=1, overlap=1)
    api = client_for(annotator)
    (item,) = api.get("/api/v1/assignments/next/", {"taste": taste.slug}).json()
    assignment = Assignment.objects.select_related("pair__prompt", "pair__image_a", "pair__image_b").get()
    left, right = (
        (assignment.pair.image_a, assignment.pair.image_b)
        if assignment.left_is_a
        else (assignment.pair.image_b, assignment.pair.image_a)
    )
    assert item == {
        "id": assignment.pk,
        "prompt": assignment.pair.prompt.text,
        "left": {"url": left.file.url, "width": left.width, "height": left.height},
        "right": {"url": right.file.url, "width": right.width, "height": right.height},
        "lease_expires_at": assignment.lease_expires_at.isoformat().replace("+00:00", "Z"),
    }
    client_uuid = str(uuid.uuid4())
    body = {"assignment": item["id"], "choice": "left", "flags_left": ["artifacts"], "client_uuid": client_uuid,
            "duration_ms": 1200}  # fmt: skip
    created = api.post("/api/v1/judgements/", body, format="json").json()
    replayed = api.post("/api/v1/judgements/", body, format="json").json()
    judgement = Judgement.objects.get()
    expected = {
        "id": judgement.pk,
        "assignment": assignment.pk,
        "choice": "left",  # as on the screen: the answer does not say which image is A (the parent, in eval)
        "flags_left": ["artifacts"],
        "flags_right": [],
        "duration_ms": 1200,
        "client_uuid": client_uuid,
        "created_at": judgement.created_at.isoformat().replace("+00:00", "Z"),
        "amended_at": None,
    }
    assert created == expected and replayed == expected
    assert judgement.choice == ("a" if assignment.left_is_a else "b")
    assert judgement.flags_a == (["artifacts"] if assignment.left_is_a else [])
    pair = Pair.objects.get()
    assert (pair.assigned_count, pair.judged_count) == (1, 1)
    assert Assignment.objects.get().state == Assignment.State.JUDGED


def test_the_guarded_submission_refuses_what_it_must(taste, annotator, other_annotator):
    make_round(taste, pairs=3, overlap=1)
    api, other = client_for(annotator), client_for(other_annotator)
    (mine,) = api.get("/api/v1/assignments/next/", {"taste": taste.slug}).json()
    body = {"assignment": mine["id"], "choice": "tie", "client_uuid": str(uuid.uuid4())}
    assert other.post("/api/v1/judgements/", body, format="json").status_code == 403
    missing = {**body, "assignment": mine["id"] + 1000}
    assert api.post("/api/v1/judgements/", missing, format="json").status_code == 404
    Assignment.objects.filter(pk=mine["id"]).update(claimed_at=later(minutes=-11), lease_expires_at=later(seconds=-1))
    expired = api.post("/api/v1/judgements/", body, format="json")
    assert expired.status_code == 409 and "expired" in expired.json()["detail"]
    assert Judgement.objects.count() == 0 and Pair.objects.filter(judged_count__gt=0).count() == 0

    (fresh,) = api.get("/api/v1/assignments/next/", {"taste": taste.slug}).json()
    used = {"assignment": fresh["id"], "choice": "left", "client_uuid": str(uuid.uuid4())}
    assert api.post("/api/v1/judgements/", used, format="json").status_code == 201
    again = api.post("/api/v1/judgements/", {**used, "client_uuid": str(uuid.uuid4())}, format="json")
    assert again.status_code == 409
    (third,) = api.get("/api/v1/assignments/next/", {"taste": taste.slug}).json()
    reused = api.post("/api/v1/judgements/", {**used, "assignment": third["id"]}, format="json")
    assert reused.status_code == 409 and Judgement.objects.count() == 1
    assert Assignment.objects.get(pk=third["id"]).state == Assignment.State.LEASED  # the statement rolled back


def test_a_deactivated_user_or_deleted_token_is_refused_at_once_in_this_process(taste):
    annotator, other = make_annotator(taste), make_annotator(taste)
    assert client_for(annotator).get("/api/v1/me/").status_code == 200
    assert client_for(other).get("/api/v1/me/").status_code == 200
    user = get_user_model().objects.get(pk=annotator.pk)
    user.is_active = False
    user.save()
    assert client_for(annotator).get("/api/v1/me/").status_code == 401
    Token.objects.filter(user=other).delete()  # a queryset delete still sends post_delete per row
    assert client_for(other).get("/api/v1/me/").status_code == 401


def test_a_change_made_elsewhere_takes_effect_within_the_ttl(taste, monkeypatch):
    annotator = make_annotator(taste)
    clock = [1000.0]
    monkeypatch.setattr(authentication.time, "monotonic", lambda: clock[0])
    assert client_for(annotator).get("/api/v1/me/").status_code == 200
    # As another process would: no signal reaches this one.
    get_user_model().objects.filter(pk=annotator.pk).update(is_active=False)
    assert client_for(annotator).get("/api/v1/me/").status_code == 200
    clock[0] += authentication.TTL_SECONDS + 0.1
    assert client_for(annotator).get("/api/v1/me/").status_code == 401


def test_claimed_assignments_come_with_their_images_and_load_the_rest_on_demand(taste, annotator):
    from annotate import services
    from annotate.models import Image, Prompt

    make_round(taste, pairs=2, overlap=1)
    first, second = services.assignment_claim(annotator=annotator, taste=taste, count=2)
    assert first.pair_id < second.pair_id  # the scheduler's order: oldest pair first
    for assignment in (first, second):
        pair = Pair.objects.get(pk=assignment.pair_id)
        assert (assignment.pair.assigned_count, assignment.pair.overlap, assignment.pair.round_id) == (1, 1, pair.round_id)
        assert assignment.pair.prompt.text == Prompt.objects.get(pk=pair.prompt_id).text
        for loaded, image_id in ((assignment.pair.image_a, pair.image_a_id), (assignment.pair.image_b, pair.image_b_id)):
            stored = Image.objects.get(pk=image_id)
            assert (loaded.pk, loaded.file.name, loaded.width, loaded.height) == (
                stored.pk, stored.file.name, stored.width, stored.height
            )
            assert (loaded.sha256, loaded.params) == (stored.sha256, stored.params)  # deferred, read on demand
