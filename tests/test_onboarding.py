"""Onboarding annotators: the admin's add-annotators page, invite links, the user admin and create_annotator
(annotate/onboarding.py, annotate/onboarding_admin.py, frontend/invite.py)."""

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.authtoken.models import Token

from annotate import services
from tests.conftest import client_for, make_annotator

pytestmark = pytest.mark.django_db

GOOD_PASSWORD = "velvet-harbour-47"


def add_url(taste) -> str:
    return f"/admin/annotate/taste/{taste.pk}/annotators/add/"


def add(lead_browser, taste, usernames: str, credential: str = "invite", **extra) -> str:
    response = lead_browser.post(add_url(taste), {"usernames": usernames, "credential": credential, **extra})
    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"]  # links and passwords are shown once
    return response.content.decode()


def row_of(html: str, username: str) -> str:
    return html.split(f'data-user="{username}"')[1].split("</tr>")[0]


def log_in(username: str, password: str) -> Client:
    browser = Client()
    response = browser.post("/login/", {"username": username, "password": password})
    assert response.status_code == 302, f"{username} could not log in"
    return browser


def test_invite_link_sets_a_password_once(lead_browser, taste):
    html = add(lead_browser, taste, "dana")
    invite = re.search(r'class="invite-url">http://testserver(/invite/[^<]+)</code>', row_of(html, "dana")).group(1)
    token = re.search(r'class="token">(\w+)<', row_of(html, "dana")).group(1)
    dana = get_user_model().objects.get(username="dana")
    assert not dana.is_staff and not dana.has_usable_password() and list(dana.tastes.all()) == [taste]
    assert Token.objects.get(user=dana).key == token

    browser = Client()
    form_url = browser.get(invite)["Location"]  # the token moves into the session, out of the URL
    assert form_url.endswith("/set-password/") and "Welcome to Chisel, dana" in browser.get(form_url).content.decode()
    refused = browser.post(form_url, {"new_password1": "dana", "new_password2": "dana"})
    assert refused.status_code == 200 and "too short" in refused.content.decode()  # the password validators ran
    assert not get_user_model().objects.get(username="dana").has_usable_password()
    done = browser.post(form_url, {"new_password1": GOOD_PASSWORD, "new_password2": GOOD_PASSWORD})
    assert done.status_code == 302 and browser.get("/annotate/")["Location"] == f"/annotate/{taste.slug}/"  # logged in

    log_in("dana", GOOD_PASSWORD)
    again = Client().get(invite)
    assert again.status_code == 410 and "no longer works" in again.content.decode()


def test_generated_password_is_shown_once_and_works(lead_browser, taste):
    html = add(lead_browser, taste, "erin\nfrank", credential="password")
    passwords = [re.search(r'class="password">([^<]+)<', row_of(html, name)).group(1) for name in ("erin", "frank")]
    for name, password in zip(("erin", "frank"), passwords, strict=True):
        assert get_user_model().objects.get(username=name).check_password(password)
        log_in(name, password)
    later = lead_browser.get(add_url(taste)).content.decode() + lead_browser.get("/admin/auth/user/").content.decode()
    assert not any(password in later for password in passwords)


def test_existing_users_keep_their_password_unless_asked(lead_browser, taste):
    other = services.taste_create(slug="landscapes")
    gina = make_annotator(other, "gina")
    html = add(lead_browser, taste, "gina")
    assert "keeps their password" in row_of(html, "gina") and gina.token in row_of(html, "gina")
    assert "landscapes, portraits" in row_of(html, "gina")
    assert get_user_model().objects.get(username="gina").check_password("pw-annotator-1")
    html = add(lead_browser, taste, "gina", reset_existing="on")
    assert "/invite/" in row_of(html, "gina") and "(already in portraits)" in row_of(html, "gina")


def test_bad_usernames_are_refused_whole(lead_browser, taste):
    response = lead_browser.post(add_url(taste), {"usernames": "hank\nnot a name!", "credential": "invite"})
    assert "&#x27;not a name!&#x27;" in response.content.decode()
    assert not get_user_model().objects.filter(username="hank").exists()


def test_annotators_cannot_onboard(taste, annotator):
    browser = Client()
    browser.force_login(annotator)
    response = browser.post(add_url(taste), {"usernames": "ivan", "credential": "password"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert not get_user_model().objects.filter(username="ivan").exists()


def test_user_admin_shows_tokens_and_tastes(lead_browser, taste, annotator):
    assert add_url(taste) in lead_browser.get("/admin/annotate/taste/").content.decode()
    page = lead_browser.get(f"/admin/auth/user/{annotator.pk}/change/").content.decode()
    assert annotator.token in page and "portraits" in page
    assert "portraits" in row_of_list(lead_browser.get("/admin/auth/user/").content.decode(), annotator.username)


def row_of_list(html: str, username: str) -> str:
    return html.split(f">{username}</a>")[1].split("</tr>")[0]


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_annotator_adds_an_existing_user(taste):
    other = services.taste_create(slug="landscapes")
    jo = make_annotator(other, "jo")
    printed = run("create_annotator", "jo", "--taste", taste.slug)
    assert "Existing user 'jo': added to portraits; password unchanged." in printed
    assert printed.split("API token: ")[1].strip() == jo.token
    jo.refresh_from_db()
    assert jo.check_password("pw-annotator-1")
    assert set(jo.tastes.values_list("slug", flat=True)) == {"portraits", "landscapes"}
    assert client_for(jo).get("/api/v1/me/").status_code == 200
    assert "already in portraits" in run("create_annotator", "jo", "--taste", taste.slug)


def test_create_annotator_sets_a_password_only_when_asked_and_checks_it(taste):
    make_annotator(taste, "kim")
    with pytest.raises(CommandError, match="^Password refused: .*This password is too short"):
        run("create_annotator", "kim", "--taste", taste.slug, "--password", "kim")
    with pytest.raises(CommandError, match="^Password refused: .*too common"):
        run("create_annotator", "lou", "--taste", taste.slug, "--password", "password123")
    assert not get_user_model().objects.filter(username="lou").exists()
    assert "password changed" in run("create_annotator", "kim", "--taste", taste.slug, "--password", GOOD_PASSWORD)
    assert get_user_model().objects.get(username="kim").check_password(GOOD_PASSWORD)


def test_create_lead_checks_the_password(db):
    with pytest.raises(CommandError, match="^Password refused"):
        run("create_lead", "max", "--password", "12345678")
    assert not get_user_model().objects.filter(username="max").exists()
