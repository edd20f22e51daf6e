"""The annotator's two hot calls stay lean: a pinned number of queries for `next` and for a submission."""

import uuid

import pytest

from tests.conftest import client_for, make_round

pytestmark = pytest.mark.django_db

# next: token, taste access, held leases, BEGIN, two strategies, count, expired leases, insert, COMMIT, load
NEXT_QUERIES = 11
# submit: token, BEGIN, lock, insert judgement, close assignment, count, COMMIT (no replay lookup on the happy path)
SUBMIT_QUERIES = 7


def test_next_and_submit_use_a_pinned_number_of_queries(taste, annotator, django_assert_max_num_queries):
    make_round(taste, pairs=3, overlap=1)
    api = client_for(annotator)
    with django_assert_max_num_queries(NEXT_QUERIES):
        (item,) = api.get("/api/v1/assignments/next/", {"taste": taste.slug}).json()
    body = {"assignment": item["id"], "choice": "left", "client_uuid": str(uuid.uuid4())}
    with django_assert_max_num_queries(SUBMIT_QUERIES):
        assert api.post("/api/v1/judgements/", body, format="json").status_code == 201
    # A replay costs a lookup or two more, and still writes nothing.
    assert api.post("/api/v1/judgements/", body, format="json").status_code == 200
