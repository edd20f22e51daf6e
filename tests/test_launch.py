"""Launching and steering rounds: the service's checks, the admin cockpit, the commands and the lead API."""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from annotate.errors import DomainError
from annotate.launch import LaunchSettings, round_launch, taste_base_checkpoint
from annotate.models import Checkpoint, Prompt, Round

pytestmark = pytest.mark.django_db

PROMPTS = [f"a red circle {i}" for i in range(10)]


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    return folder


@pytest.fixture
def ready_taste(taste, model_dir):
    taste_base_checkpoint(taste=taste, model_path=model_dir)
    taste.refresh_from_db()
    return taste


def settings(**changes) -> LaunchSettings:
    return LaunchSettings(**{"prompt_texts": PROMPTS, "pair_quota": 10, "label_quota": 20, **changes})


def test_a_launch_splits_the_prompts_and_starts_sampling(ready_taste):
    round_ = round_launch(taste=ready_taste, settings=settings(heldout_share=0.3, training={"beta": 500}))
    config = round_.sampling_config
    assert (round_.state, round_.number, round_.parent_checkpoint) == ("sampling", 1, ready_taste.current_checkpoint)
    assert len(config["eval_prompt_ids"]) == 3 and len(config["prompt_ids"]) == 7
    assert not set(config["eval_prompt_ids"]) & set(config["prompt_ids"])
    assert set(Prompt.objects.filter(pk__in=config["eval_prompt_ids"]).values_list("split", flat=True)) == {"heldout"}
    assert round_.training_config == {"beta": 500} and round_.guard_rails == {"adherence": {"max_drop": 0.05}}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"prompt_texts": ["only one"]}, "at least two prompts"),
        ({"label_quota": 1, "overlap": 2}, "below the overlap"),
        ({"label_quota": 50}, "more than 10 pairs"),
        ({"pair_quota": 0}, "pair quota"),
        ({"promotion_threshold": 1.5}, "threshold"),
        ({"training": {"reference": "grandparent"}}, "reference"),
        ({"training": {"learning_rte": 1}}, "Unknown training settings"),
        ({"sampling": {"stpes": 4}}, "Unknown sampling settings"),
        ({"prompt_ids": [999999]}, "Unknown prompt ids"),
    ],
)
def test_bad_settings_are_refused_and_create_nothing(ready_taste, changes, message):
    prompts = Prompt.objects.count()
    with pytest.raises(DomainError, match=message):
        round_launch(taste=ready_taste, settings=settings(**changes))
    assert not Round.objects.exists() and Prompt.objects.count() == prompts


def test_a_taste_without_a_model_or_with_a_running_round_is_refused(taste, ready_taste, tmp_path):
    round_launch(taste=ready_taste, settings=settings())
    with pytest.raises(DomainError, match="still sampling"):
        round_launch(taste=ready_taste, settings=settings())
    ready_taste.current_checkpoint.base_model.__class__.objects.update(path=str(tmp_path / "gone"))
    Round.objects.update(state="done")
    with pytest.raises(DomainError, match="no model_index.json"):
        round_launch(taste=ready_taste, settings=settings())


def test_the_admin_launch_form_creates_a_round_or_shows_the_error(lead_browser, ready_taste):
    page = lead_browser.get("/admin/annotate/round/launch/")
    assert page.status_code == 200 and b"Launch round" in page.content
    assert lead_browser.get("/admin/annotate/round/add/").url.endswith("/admin/annotate/round/launch/")
    form = {"taste": ready_taste.slug, "heldout_share": 0.2, "pair_quota": 10, "label_quota": 20, "overlap": 2,
            "eval_pair_quota": 8, "reference": "parent", "promotion_threshold": 0.5, "adherence_max_drop": 0.05,
            "auto_advance": "on"}
    refused = lead_browser.post("/admin/annotate/round/launch/", {**form, "prompt_text": "just one"})
    assert refused.status_code == 200 and b"at least two prompts" in refused.content
    assert not Round.objects.exists()
    upload = SimpleUploadedFile("prompts.txt", "\n".join(PROMPTS).encode())
    done = lead_browser.post("/admin/annotate/round/launch/", {**form, "prompt_file": upload, "train_steps": 40})
    round_ = Round.objects.get()
    assert done.status_code == 302 and done.url == f"/admin/annotate/round/{round_.pk}/change/"
    assert round_.training_config == {"steps": 40, "reference": "parent"} and round_.eval_pair_quota == 8


def test_the_cockpit_shows_progress_and_its_actions_steer_the_round(lead_browser, ready_taste):
    round_ = round_launch(taste=ready_taste, settings=settings())
    page = lead_browser.get(f"/admin/annotate/round/{round_.pk}/change/")
    assert page.status_code == 200 and b'data-step="annotation"' in page.content and b"Pause" in page.content
    progress = lead_browser.get(f"/admin/annotate/round/{round_.pk}/progress/").json()
    assert progress["annotation"] == {"done": 0, "total": 20} and progress["actions"] == ["pause", "release", "cancel"]

    lead_browser.post(f"/admin/annotate/round/{round_.pk}/act/pause/")
    assert Round.objects.get(pk=round_.pk).paused
    again = lead_browser.post(f"/admin/annotate/round/{round_.pk}/act/pause/", follow=True)
    assert b"does not allow it now" in again.content  # a second click is refused with a message, not an error
    lead_browser.post(f"/admin/annotate/round/{round_.pk}/act/cancel/")
    cancelled = Round.objects.get(pk=round_.pk)
    assert cancelled.state == "cancelled" and cancelled.error.startswith("cancelled by lead")
    assert lead_browser.post(f"/admin/annotate/round/{round_.pk}/act/explode/").status_code == 403


def test_annotators_cannot_reach_the_cockpit_or_the_round_api(annotator, ready_taste):
    round_ = round_launch(taste=ready_taste, settings=settings())
    browser = Client()
    browser.force_login(annotator)
    assert browser.get("/admin/annotate/round/launch/").status_code == 302  # to the admin login
    assert browser.post(f"/admin/annotate/round/{round_.pk}/act/cancel/").status_code == 302
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {annotator.token}")
    assert api.get("/api/v1/rounds/").status_code == 403
    assert Round.objects.get(pk=round_.pk).state == "sampling"


def test_the_lead_api_lists_and_shows_rounds(lead, ready_taste):
    round_ = round_launch(taste=ready_taste, settings=settings())
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {lead.token}")
    listed = api.get(f"/api/v1/rounds/?taste={ready_taste.slug}").json()
    assert [r["id"] for r in listed] == [round_.pk] and listed[0]["state"] == "sampling"
    detail = api.get(f"/api/v1/rounds/{round_.pk}/").json()
    assert detail["progress"]["sampling"] == {"done": 0, "total": 10}
    assert detail["sampling_config"]["eval_prompt_ids"]
    assert api.get("/api/v1/rounds/999999/").status_code == 404


def test_the_commands_create_a_taste_launch_a_round_and_report_it(model_dir, tmp_path):
    call_command("create_taste", "shell-taste", "--model", str(model_dir), stdout=io.StringIO())
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS))
    out = io.StringIO()
    call_command("launch_round", "--taste", "shell-taste", "--prompts", str(prompts), "--pairs", "10", "--overlap",
                 "1", "--train-steps", "30", "--lr", "0.001", stdout=out)
    round_ = Round.objects.get()
    assert f"Launched round {round_.pk}" in out.getvalue() and "8 train and 2 held-out prompts" in out.getvalue()
    assert round_.training_config == {"learning_rate": 0.001, "steps": 30} and round_.label_quota == 10
    status = io.StringIO()
    call_command("round_status", str(round_.pk), stdout=status)
    assert "sampling" in status.getvalue() and "annotation      0 / 10" in status.getvalue()
    with pytest.raises(CommandError, match="no model_index.json|not a diffusers model folder"):
        call_command("create_taste", "broken", "--model", str(tmp_path / "nothing"), stdout=io.StringIO())
    with pytest.raises(CommandError, match="There is no round"):
        call_command("round_status", "999999")
