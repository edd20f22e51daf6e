"""Who may do what: token and session auth, CSRF, roles, and image access (annotate/access.py)."""

import uuid

import pytest
from django.test import Client
from rest_framework.test import APIClient

from annotate.models import Judgement
from tests.conftest import client_for, make_round

pytestmark = pytest.mark.django_db


def test_anonymous_callers_are_refused(taste):
    for url in ("/api/v1/me/", f"/api/v1/assignments/next/?taste={taste.slug}", "/api/v1/tastes/"):
        assert APIClient().get(url).status_code == 401
    assert APIClient().post("/api/v1/judgements/", {}, format="json").status_code == 401


def test_a_bad_token_is_refused(annotator):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.get("/api/v1/me/").status_code == 401


def test_token_auth_works_for_scripts(annotator):
    response = client_for(annotator).get("/api/v1/me/")
    assert response.status_code == 200 and response.json()["username"] == annotator.username


def test_session_auth_works_for_the_browser_and_needs_csrf_to_write(taste, annotator):
    make_round(taste, pairs=1)
    browser = Client(enforce_csrf_checks=True)
    login_page = browser.get("/login/")
    response = browser.post(
        "/login/",
        {"username": annotator.username, "password": "pw-annotator-1",
         "csrfmiddlewaretoken": login_page.cookies["csrftoken"].value},
    )
    assert response.status_code == 302
    (item,) = browser.get(f"/api/v1/assignments/next/?taste={taste.slug}").json()
    body = {"assignment": item["id"], "choice": "left", "client_uuid": str(uuid.uuid4())}

    refused = browser.post("/api/v1/judgements/", body, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert Judgement.objects.count() == 0

    token = browser.cookies["csrftoken"].value
    accepted = browser.post("/api/v1/judgements/", body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201 and Judgement.objects.count() == 1


def test_annotators_are_denied_the_admin_and_lead_endpoints(taste, annotator):
    assert client_for(annotator).get("/api/v1/tastes/").status_code == 403
    assert client_for(annotator).get(f"/api/v1/tastes/{taste.slug}/").status_code == 403
    browser = Client()
    browser.force_login(annotator)
    response = browser.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert browser.get("/admin/annotate/judgement/").status_code == 302


def test_leads_see_every_taste_and_its_counts(taste, lead, annotator):
    make_round(taste, pairs=2)
    (item,) = client_for(annotator).get(f"/api/v1/assignments/next/?taste={taste.slug}").json()
    client_for(annotator).post(
        "/api/v1/judgements/", {"assignment": item["id"], "choice": "tie", "client_uuid": str(uuid.uuid4())}, format="json"
    )
    (summary,) = client_for(lead).get("/api/v1/tastes/").json()
    assert summary == {"slug": "portraits", "name": "Portraits", "annotator_count": 1, "open_round_count": 1,
                       "current_checkpoint": None}
    counts = client_for(lead).get(f"/api/v1/tastes/{taste.slug}/").json()
    assert counts == {"slug": "portraits", "pairs": 2, "complete_pairs": 0, "judgements": 1, "judgements_last_24h": 1}
    assert client_for(lead).get("/api/v1/tastes/nope/").status_code == 404


def test_images_need_a_login_and_are_cached_for_long(taste, annotator):
    make_round(taste, pairs=1)
    (item,) = client_for(annotator).get(f"/api/v1/assignments/next/?taste={taste.slug}").json()
    url = item["left"]["url"]
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    by_token = client_for(annotator).get(url)
    assert by_token.status_code == 200 and by_token["Content-Type"] == "image/png"
    assert by_token["Cache-Control"] == "private, max-age=31536000, immutable"
    assert b"".join(by_token.streaming_content).startswith(b"\x89PNG")
    browser = Client()
    browser.force_login(annotator)
    assert browser.get(url).status_code == 200
    assert browser.get("/media/../chisel/settings.py").status_code == 404
    assert browser.get("/media/images/none.png").status_code == 404


def test_schema_and_docs_are_served(annotator):
    schema = client_for(annotator).get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in ("/api/v1/assignments/next/", "/api/v1/judgements/", "/api/v1/assignments/{assignment_id}/skip/", "/api/v1/me/"):
        assert path in text
    assert client_for(annotator).get("/api/docs/").status_code == 200
