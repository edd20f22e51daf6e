"""The judgement and skip endpoints, through HTTP, asserting on database state (annotate/api/views.py)."""

import uuid

import pytest
from django.utils import timezone

from annotate.models import Assignment, Judgement, Pair
from tests.conftest import client_for, make_round

pytestmark = pytest.mark.django_db
JUDGEMENTS = "/api/v1/judgements/"


def claim(user, taste, prefetch=1):
    response = client_for(user).get(f"/api/v1/assignments/next/?taste={taste.slug}&prefetch={prefetch}")
    assert response.status_code == 200, response.content
    return response.json()


def submit(user, assignment_id, **fields):
    body = {"assignment": assignment_id, "choice": "left", "client_uuid": str(uuid.uuid4()), **fields}
    return client_for(user).post(JUDGEMENTS, body, format="json")


def test_next_answers_the_assignment_shape(taste, annotator):
    make_round(taste, pairs=3)
    (item,) = claim(annotator, taste)
    assignment = Assignment.objects.select_related("pair__image_a", "pair__image_b").get(pk=item["id"])
    left, right = (
        (assignment.pair.image_a, assignment.pair.image_b)
        if assignment.left_is_a
        else (assignment.pair.image_b, assignment.pair.image_a)
    )
    assert item["left"] == {"url": left.file.url, "width": 8, "height": 8}
    assert item["right"]["url"] == right.file.url
    assert item["prompt"] == assignment.pair.prompt.text
    assert item["lease_expires_at"].startswith(str(assignment.lease_expires_at.year))


def test_next_answers_204_when_nothing_is_left(taste, annotator):
    response = client_for(annotator).get(f"/api/v1/assignments/next/?taste={taste.slug}")
    assert response.status_code == 204


def test_next_refuses_tastes_the_annotator_is_not_in(taste, annotator):
    from annotate import services

    services.taste_create(slug="landscapes")
    assert client_for(annotator).get("/api/v1/assignments/next/?taste=landscapes").status_code == 403
    assert client_for(annotator).get("/api/v1/assignments/next/?taste=nope").status_code == 404
    response = client_for(annotator).get("/api/v1/assignments/next/?taste=portraits&prefetch=0")
    assert response.status_code == 400 and "prefetch" in response.json()


@pytest.mark.parametrize(
    ("screen_choice", "left_is_a", "stored"),
    [
        ("left", True, "a"),
        ("left", False, "b"),
        ("right", True, "b"),
        ("right", False, "a"),
        ("tie", False, "tie"),
        ("both_bad", True, "both_bad"),
    ],
)
def test_choice_is_stored_relative_to_a_and_b(taste, annotator, screen_choice, left_is_a, stored):
    make_round(taste, pairs=1)
    (item,) = claim(annotator, taste)
    Assignment.objects.filter(pk=item["id"]).update(left_is_a=left_is_a)
    response = submit(annotator, item["id"], choice=screen_choice, flags_left=["waxy_skin"], duration_ms=1234)
    assert response.status_code == 201, response.content
    judgement = Judgement.objects.get()
    assert judgement.choice == stored
    assert (judgement.flags_a, judgement.flags_b) == ((["waxy_skin"], []) if left_is_a else ([], ["waxy_skin"]))
    assert judgement.duration_ms == 1234
    assert Assignment.objects.get().state == Assignment.State.JUDGED
    assert Pair.objects.get().judged_count == 1


def test_replaying_a_submission_returns_the_same_judgement(taste, annotator):
    make_round(taste, pairs=1)
    (item,) = claim(annotator, taste)
    client_uuid = str(uuid.uuid4())
    first = submit(annotator, item["id"], client_uuid=client_uuid, choice="right")
    replay = submit(annotator, item["id"], client_uuid=client_uuid, choice="right")
    assert (first.status_code, replay.status_code) == (201, 200)
    assert first.json() == replay.json()
    assert Judgement.objects.count() == 1 and Pair.objects.get().judged_count == 1


def test_replay_after_the_lease_expired_still_returns_the_judgement(taste, annotator):
    make_round(taste, pairs=1)
    (item,) = claim(annotator, taste)
    client_uuid = str(uuid.uuid4())
    assert submit(annotator, item["id"], client_uuid=client_uuid).status_code == 201
    Assignment.objects.update(lease_expires_at=timezone.now() - timezone.timedelta(seconds=1), claimed_at=timezone.now() - timezone.timedelta(minutes=20))
    assert submit(annotator, item["id"], client_uuid=client_uuid).status_code == 200


def test_a_second_judgement_of_a_judged_assignment_is_refused(taste, annotator):
    make_round(taste, pairs=1)
    (item,) = claim(annotator, taste)
    assert submit(annotator, item["id"]).status_code == 201
    response = submit(annotator, item["id"], choice="right")
    assert response.status_code == 409 and response.json()["code"] == "assignment_closed"
    assert Judgement.objects.get().choice in {"a", "b"}


def test_a_client_uuid_reused_for_another_assignment_is_refused(taste, annotator):
    make_round(taste, pairs=2)
    first, second = claim(annotator, taste, prefetch=2)
    client_uuid = str(uuid.uuid4())
    assert submit(annotator, first["id"], client_uuid=client_uuid).status_code == 201
    response = submit(annotator, second["id"], client_uuid=client_uuid)
    assert response.status_code == 409 and response.json()["code"] == "duplicate_client_uuid"
    assert Judgement.objects.count() == 1


def test_an_expired_lease_is_refused_and_nothing_is_written(taste, annotator):
    make_round(taste, pairs=1)
    (item,) = claim(annotator, taste)
    Assignment.objects.update(
        claimed_at=timezone.now() - timezone.timedelta(minutes=20),
        lease_expires_at=timezone.now() - timezone.timedelta(minutes=10),
    )
    response = submit(annotator, item["id"])
    assert response.status_code == 409
    assert response.json()["code"] == "lease_expired" and "expired" in response.json()["detail"]
    assert Judgement.objects.count() == 0 and Pair.objects.get().judged_count == 0


def test_a_foreign_assignment_is_refused_and_nothing_is_written(taste, annotator, other_annotator):
    make_round(taste, pairs=1)
    (item,) = claim(annotator, taste)
    response = submit(other_annotator, item["id"])
    assert response.status_code == 403 and "another annotator" in response.json()["detail"]
    skip = client_for(other_annotator).post(f"/api/v1/assignments/{item['id']}/skip/")
    assert skip.status_code == 403
    assert Judgement.objects.count() == 0 and Assignment.objects.get().state == Assignment.State.LEASED


def test_an_unknown_assignment_is_refused(annotator):
    response = submit(annotator, 999999)
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert client_for(annotator).post("/api/v1/assignments/999999/skip/").status_code == 404


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"choice": "up"}, "choice"),
        ({"flags_left": ["ugly"]}, "flags_left"),
        ({"client_uuid": "not-a-uuid"}, "client_uuid"),
        ({"duration_ms": -5}, "duration_ms"),
    ],
)
def test_bad_fields_get_a_field_error_and_write_nothing(taste, annotator, fields, bad_field):
    make_round(taste, pairs=1)
    (item,) = claim(annotator, taste)
    response = submit(annotator, item["id"], **fields)
    assert response.status_code == 400
    assert bad_field in response.json()
    assert Judgement.objects.count() == 0


def test_skip_releases_the_pair_and_is_idempotent(taste, annotator, other_annotator):
    make_round(taste, pairs=1, overlap=1)
    (item,) = claim(annotator, taste)
    for _ in range(2):
        assert client_for(annotator).post(f"/api/v1/assignments/{item['id']}/skip/").status_code == 204
    assert Assignment.objects.get().state == Assignment.State.SKIPPED
    assert Pair.objects.get().assigned_count == 0
    assert Assignment.objects.get(pk=claim(other_annotator, taste)[0]["id"]).pair_id == Assignment.objects.get(
        pk=item["id"]).pair_id
    # ...and the skipped pair is not offered to the one who skipped it.
    assert client_for(annotator).get(f"/api/v1/assignments/next/?taste={taste.slug}").status_code == 204


def test_a_judged_assignment_cannot_be_skipped(taste, annotator):
    make_round(taste, pairs=1)
    (item,) = claim(annotator, taste)
    submit(annotator, item["id"])
    response = client_for(annotator).post(f"/api/v1/assignments/{item['id']}/skip/")
    assert response.status_code == 409
    assert Pair.objects.get().assigned_count == 1


def test_me_counts_judgements_per_taste(taste, annotator):
    make_round(taste, pairs=3)
    for item in claim(annotator, taste, prefetch=2):
        submit(annotator, item["id"])
    me = client_for(annotator).get("/api/v1/me/").json()
    assert me["judged_today"] == me["judged_total"] == 2
    assert me["tastes"] == [
        {"slug": "portraits", "name": "Portraits", "judged_today": 2, "judged_total": 2,
         "round": {"id": taste.rounds.get().pk, "number": 1, "state": "annotating", "judged": 2}}
    ]
    assert me["is_lead"] is False


def amend(user, assignment_id, **fields):
    return client_for(user).put(f"/api/v1/assignments/{assignment_id}/judgement/", {"choice": "right", **fields},
                                format="json")


def test_amending_replaces_the_judgement_within_the_lease(taste, annotator):
    make_round(taste, pairs=1)
    (item,) = claim(annotator, taste)
    Assignment.objects.filter(pk=item["id"]).update(left_is_a=True)
    submit(annotator, item["id"], choice="left", flags_left=["artifacts"])
    for _ in range(2):  # idempotent
        response = amend(annotator, item["id"], choice="right", flags_right=["flat_colour"], duration_ms=900)
        assert response.status_code == 200, response.content
    judgement = Judgement.objects.get()
    assert (judgement.choice, judgement.flags_a, judgement.flags_b) == ("b", [], ["flat_colour"])
    assert judgement.amendments == 1 and judgement.amended_at is not None
    assert Pair.objects.get().judged_count == 1


def test_amending_is_refused_after_the_lease_or_before_judging_or_by_others(taste, annotator, other_annotator):
    make_round(taste, pairs=2)
    first, second = claim(annotator, taste, prefetch=2)
    assert amend(annotator, second["id"]).json()["code"] == "assignment_closed"
    submit(annotator, first["id"], choice="left")
    assert amend(other_annotator, first["id"]).status_code == 403
    Assignment.objects.filter(pk=first["id"]).update(
        claimed_at=timezone.now() - timezone.timedelta(minutes=20),
        lease_expires_at=timezone.now() - timezone.timedelta(minutes=10),
    )
    response = amend(annotator, first["id"])
    assert response.status_code == 409 and response.json()["code"] == "lease_expired"
    assert Judgement.objects.get().amendments == 0
