"""Logins and credentials: lockout after wrong passwords, request rates, the Lead role, token rotation and expiry."""

import io
import random

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotate.models import Round
from tests.conftest import client_for, make_annotator, make_lead, make_round

def run_command(*args) -> tuple[str, str, int]:
    """(stdout, stderr, exit status) as manage.py would give them (a CommandError is one line and status 1)."""
    out = io.StringIO()
    try:
        call_command(*args, stdout=out)
    except CommandError as exc:
        return out.getvalue(), f"CommandError: {exc}", 1
    return out.getvalue(), "", 0


FAST_HASHER = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # logins by the dozen, without PBKDF2's cost


def an_address() -> str:
    """A client address of its own per test and run (throttle counters live in Redis between runs)."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


@pytest.fixture
def fast_logins(settings):
    settings.PASSWORD_HASHERS = FAST_HASHER
    settings.AXES_FAILURE_LIMIT = 3
    return settings


def post_login(client: Client, path: str, username: str, password: str):
    return client.post(path, {"username": username, "password": password})


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_wrong_passwords_lock_the_user_out_with_a_page_until_axes_reset(fast_logins, taste, path):
    user = make_annotator(taste) if path == "/login/" else make_lead()
    password = "pw-annotator-1" if path == "/login/" else "pw-lead-1"
    for _ in range(2):
        assert post_login(Client(REMOTE_ADDR=an_address()), path, user.username, "wrong").status_code == 200
    assert post_login(Client(REMOTE_ADDR=an_address()), path, user.username, "wrong").status_code == 429  # the 3rd
    # Locked per user: from yet another address, even the right password is refused, with a page saying why.
    locked = post_login(Client(REMOTE_ADDR=an_address()), path, user.username, password)
    assert locked.status_code == 429
    assert b"Too many login attempts" in locked.content and b"axes_reset" in locked.content
    assert b"for 30 minutes." in locked.content  # the cool-off in words, not as ISO 8601 ("PT30M")
    call_command("axes_reset", verbosity=0)
    assert post_login(Client(REMOTE_ADDR=an_address()), path, user.username, password).status_code == 302


def test_wrong_passwords_from_one_address_lock_that_address_for_every_user(fast_logins, taste):
    address = an_address()
    for i in range(3):
        post_login(Client(REMOTE_ADDR=address), "/login/", f"nobody-{i}", "wrong")
    user = make_annotator(taste)
    assert post_login(Client(REMOTE_ADDR=address), "/login/", user.username, "pw-annotator-1").status_code == 429
    assert post_login(Client(REMOTE_ADDR=an_address()), "/login/", user.username, "pw-annotator-1").status_code == 302


def test_the_default_lockout_is_strict_enough_for_production():
    from django.conf import settings

    assert settings.AXES_ENABLED and settings.AXES_FAILURE_LIMIT <= 10
    assert settings.AXES_LOCKOUT_PARAMETERS == ["ip_address", "username"]


def test_login_posts_per_address_are_rate_limited(fast_logins, taste):
    fast_logins.CHISEL_THROTTLE_RATES = {**fast_logins.CHISEL_THROTTLE_RATES, "login": "3/min"}
    fast_logins.AXES_FAILURE_LIMIT = 100
    user = make_annotator(taste)
    client = Client(REMOTE_ADDR=an_address())
    for _ in range(3):
        assert post_login(client, "/login/", user.username, "pw-annotator-1").status_code == 302
    refused = post_login(client, "/login/", user.username, "pw-annotator-1")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0


def test_api_scopes_are_throttled_per_user_with_the_error_shape(settings, taste, annotator, other_annotator):
    settings.CHISEL_THROTTLE_RATES = {**settings.CHISEL_THROTTLE_RATES, "claims": "2/min"}
    make_round(taste, pairs=4)
    client = client_for(annotator)
    for _ in range(2):
        assert client.get("/api/v1/assignments/next/?taste=portraits").status_code == 200
    refused = client.get("/api/v1/assignments/next/?taste=portraits")
    assert refused.status_code == 429 and refused.json()["code"] == "throttled" and "Retry-After" in refused
    # Another annotator has their own count.
    assert client_for(other_annotator).get("/api/v1/assignments/next/?taste=portraits").status_code == 200


def test_a_fast_expert_never_meets_the_default_rates():
    from django.conf import settings
    from rest_framework.throttling import SimpleRateThrottle

    rates = settings.CHISEL_THROTTLE_RATES
    per_minute = {scope: n * 60 / seconds
                  for scope, (n, seconds) in ((s, SimpleRateThrottle.parse_rate(None, r)) for s, r in rates.items())}
    # 1 judgement a second: 60 claims and 60 submissions a minute at most, with room for undo and skips.
    assert per_minute["claims"] >= 120 and per_minute["submissions"] >= 120


def test_leads_are_staff_in_the_lead_group_not_superusers(db):
    lead = make_lead()
    assert lead.is_staff and not lead.is_superuser
    assert list(lead.groups.values_list("name", flat=True)) == ["Lead"]
    out, err, status = run_command("create_lead", "root-1", "--password", "a-Long-pass-phrase-9", "--superuser")
    assert status == 0 and "superuser" in out


def test_a_lead_uses_every_admin_page_without_being_superuser(taste, lead):
    round_ = make_round(taste, pairs=2, state=Round.State.ANNOTATING)
    annotator = make_annotator(taste)
    browser = Client()
    browser.force_login(lead)
    pages = [
        "/admin/", "/admin/annotate/round/", f"/admin/annotate/round/{round_.pk}/change/",
        "/admin/annotate/round/launch/",
        f"/admin/annotate/round/{round_.pk}/review/", f"/admin/annotate/round/{round_.pk}/progress/",
        "/admin/annotate/taste/", f"/admin/annotate/taste/{taste.pk}/charts/",
        f"/admin/annotate/taste/{taste.pk}/annotators/add/", "/admin/annotate/pair/", "/admin/annotate/judgement/",
        "/admin/annotate/export/", "/admin/annotate/export/add/", "/admin/auth/user/", "/admin/auth/user/add/",
        f"/admin/auth/user/{annotator.pk}/change/",
    ]
    for path in pages:
        assert browser.get(path).status_code == 200, path


def test_a_lead_cannot_make_anyone_staff_or_superuser_nor_touch_a_superuser(taste, lead):
    root = make_lead()
    root.is_superuser = True
    root.save()
    annotator = make_annotator(taste)
    browser = Client()
    browser.force_login(lead)
    page = browser.get(f"/admin/auth/user/{annotator.pk}/change/")
    assert b'name="is_superuser"' not in page.content and b'name="is_staff"' not in page.content
    browser.post(f"/admin/auth/user/{annotator.pk}/change/", {
        "username": annotator.username, "is_active": "on", "is_staff": "on", "is_superuser": "on",
        "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00",
        "tastes-TOTAL_FORMS": "0", "tastes-INITIAL_FORMS": "0",
        "TasteMembership_annotator-TOTAL_FORMS": "0", "TasteMembership_annotator-INITIAL_FORMS": "0",
    })
    annotator.refresh_from_db()
    assert not annotator.is_staff and not annotator.is_superuser
    # A superuser's page is read-only to a lead, and their password cannot be set.
    assert b'name="username"' not in browser.get(f"/admin/auth/user/{root.pk}/change/").content
    assert browser.get(f"/admin/auth/user/{root.pk}/password/").status_code == 403


def test_rotate_token_command_replaces_the_key_and_revoke_removes_it(taste, annotator):
    old = annotator.token
    assert client_for(annotator).get("/api/v1/me/").status_code == 200
    out, err, status = run_command("rotate_token", annotator.username)
    new = out.strip().rsplit(" ", 1)[-1]
    assert status == 0 and new != old
    annotator.token = old
    assert client_for(annotator).get("/api/v1/me/").status_code == 401
    annotator.token = new
    assert client_for(annotator).get("/api/v1/me/").status_code == 200
    out, err, status = run_command("rotate_token", annotator.username, "--revoke")
    assert status == 0 and client_for(annotator).get("/api/v1/me/").status_code == 401
    out, err, status = run_command("rotate_token", "no-such-user")
    assert status == 1 and err.strip() == "CommandError: There is no user 'no-such-user'."


def test_a_lead_rotates_and_revokes_tokens_from_the_user_admin(taste, lead, annotator, other_annotator):
    browser = Client()
    browser.force_login(lead)
    answer = browser.post("/admin/auth/user/", {"action": "rotate_tokens", "_selected_action": [annotator.pk]})
    assert answer.status_code == 302
    assert Token.objects.get(user=annotator).key != annotator.token
    assert client_for(annotator).get("/api/v1/me/").status_code == 401
    browser.post("/admin/auth/user/", {"action": "revoke_tokens", "_selected_action": [other_annotator.pk]})
    assert not Token.objects.filter(user=other_annotator).exists()
    assert client_for(other_annotator).get("/api/v1/me/").status_code == 401


def test_tokens_expire_after_the_configured_days(settings, taste, annotator):
    assert client_for(annotator).get("/api/v1/me/").status_code == 200  # off by default
    settings.CHISEL_TOKEN_TTL_DAYS = 7
    Token.objects.filter(user=annotator).update(created=timezone.now() - timezone.timedelta(days=8))
    from annotate.api.authentication import forget

    forget(key=annotator.token)  # another process would see the change within its cache's few seconds
    refused = client_for(annotator).get("/api/v1/me/")
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]
    run_command("rotate_token", annotator.username)
    annotator.token = Token.objects.get(user=annotator).key
    assert client_for(annotator).get("/api/v1/me/").status_code == 200
