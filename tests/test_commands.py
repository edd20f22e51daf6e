"""Management commands that create users and tastes (annotate/management/commands)."""

import io

import pytest
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from annotate.models import Taste
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_annotator_prints_a_working_token(taste):
    printed = run("create_annotator", "dana", "--taste", taste.slug)
    token = printed.split("API token: ")[1].strip()
    user = Token.objects.get(key=token).user
    user.token = token
    assert not user.is_staff
    assert client_for(user).get("/api/v1/me/").json()["tastes"][0]["slug"] == taste.slug


def test_create_annotator_in_several_tastes(taste):
    run("create_taste", "landscapes", "--name", "Landscapes")
    run("create_annotator", "eve", "--taste", taste.slug, "--taste", "landscapes")
    assert sorted(Taste.objects.filter(annotators__username="eve").values_list("slug", flat=True)) == [
        "landscapes",
        "portraits",
    ]


def test_create_annotator_names_unknown_tastes(taste):
    with pytest.raises(CommandError, match="Unknown taste\\(s\\): nope. Known tastes: portraits"):
        run("create_annotator", "frank", "--taste", "nope")


def test_create_lead_makes_staff_with_a_token(db):
    printed = run("create_lead", "grace", "--password", "a-long-password-1")
    token = Token.objects.get(key=printed.split("API token: ")[1].strip())
    assert token.user.is_staff and token.user.check_password("a-long-password-1")
    with pytest.raises(CommandError, match="already exists"):
        run("create_lead", "grace")


def test_seed_demo_is_idempotent(db, media_root):
    first = run("seed_demo", "--pairs", "3")
    second = run("seed_demo", "--pairs", "3")
    assert first == second and "alice" in first
    # With the toy model in models/toy-flux, the demo round samples its 3 pairs on the worker.
    (round_,) = Taste.objects.get(slug="demo").rounds.all()
    assert (round_.state, round_.pair_quota) == ("sampling", 3) and round_.sampling_config["eval_prompt_ids"]
