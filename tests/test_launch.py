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
    assert round_.training_config == {"beta": 500}
    assert round_.guard_rails == {  # the rails on by default
        "human_flags": {"margin": 0.05, "significance": 0.05}, "diversity": {"max_drop": 0.25},
        "adherence": {"max_drop": 0.05, "significance": 0.05}}


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
        ({"tags": ["no-such-tag"]}, "No prompt carries all of the tags no-such-tag"),
        ({"training": {"learning_rate": 1e9}}, "learning rate 1000000000.0 is out of bounds"),
        ({"training": {"beta": 1e12}}, "DPO β 1000000000000.0 is out of bounds"),
        ({"training": {"steps": 100_000_000}}, "training steps 100000000 is out of bounds"),
        ({"training": {"learning_rate": float("nan")}}, "learning rate nan is out of bounds"),
        ({"sampling": {"steps": 10_000}}, "sampling steps 10000 is out of bounds"),
        ({"sampling": {"width": 100_000}}, "width 100000 is out of bounds"),
        ({"pair_quota": 10**7, "label_quota": 10}, "pair quota 10000000 is out of bounds"),
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
    assert lead_browser.get(f"/admin/annotate/round/add/?taste={ready_taste.slug}").url.endswith(
        f"/admin/annotate/round/launch/?taste={ready_taste.slug}")
    form = {"taste": ready_taste.slug, "heldout_share": 0.2, "pair_quota": 10, "label_quota": 20, "overlap": 2,
            "eval_pair_quota": 8, "reference": "parent", "promotion_threshold": 0.5, "rail__adherence": "on",
            "rail__adherence__max_drop": 0.05, "auto_advance": "on"}
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
    assert progress["annotation"] == {"done": 0, "all": 0, "total": 20} and progress["actions"] == ["pause", "release", "cancel"]

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


def own_defaults(folder, **training):
    """Give a model folder its own chisel.json (a 64 px model trained at lr 3e-3, β 1000 by default)."""
    from sampler.model_defaults import ModelDefaults, write_model_defaults

    write_model_defaults(folder, ModelDefaults(
        sampling={"steps": 12, "guidance": 3.0, "width": 64, "height": 64, "max_sequence_length": 32},
        training={"learning_rate": 3e-3, "beta": 1000.0, "steps": 300, "reference": "base", **training},
    ))


def test_blank_model_settings_take_the_base_models_own_defaults(taste, model_dir):
    own_defaults(model_dir)
    taste_base_checkpoint(taste=taste, model_path=model_dir)
    taste.refresh_from_db()
    base = taste.current_checkpoint.base_model
    assert (base.default_width, base.default_steps, base.default_guidance) == (64, 12, 3.0)
    round_ = round_launch(taste=taste, settings=settings(training={"rank": 4}))
    assert round_.training_config == {"learning_rate": 3e-3, "beta": 1000.0, "steps": 300, "reference": "base",
                                      "rank": 4}
    assert [round_.sampling_config[k] for k in ("steps", "width", "height")] == [12, 64, 64]
    Round.objects.update(state="done")
    scaled = round_launch(taste=taste, settings=settings(training={"beta": 2000.0}))
    assert scaled.training_config["learning_rate"] == pytest.approx(1.5e-3)  # the rate scales with 1/β


def test_unusual_settings_launch_with_a_warning_naming_the_usual_range(ready_taste):
    from annotate.launch import launch_warnings

    usual = settings(training={"learning_rate": 1e-4, "beta": 2000.0})
    assert launch_warnings(taste=ready_taste, settings=usual) == []
    odd = settings(training={"learning_rate": 0.05, "beta": 50.0}, sampling={"steps": 4}, overlap=2, eval_pair_quota=4)
    assert launch_warnings(taste=ready_taste, settings=odd) == [
        "The eval pair quota 4 is unusual (usually 16–400).",
        "The sampling steps 4 is unusual for this FLUX model (usually 20–50).",
        "The learning rate 0.05 is unusual for this FLUX model (usually 1e-05–0.001).",
        "The DPO β 50 is unusual for this FLUX model (usually 500–5000).",
    ]
    assert round_launch(taste=ready_taste, settings=odd).state == "sampling"


def launch_form(taste, **changes) -> dict:
    return {"taste": taste.slug, "prompt_text": "\n".join(PROMPTS), "heldout_share": 0.2, "pair_quota": 10,
            "label_quota": 20, "overlap": 2, "eval_pair_quota": 8, "promotion_threshold": 0.5,
            "rail__adherence": "on", "rail__adherence__max_drop": 0.05, "auto_advance": "on", **changes}


def test_the_launch_form_bounds_every_number_and_warns_on_the_unusual(lead_browser, ready_taste):
    absurd = lead_browser.post("/admin/annotate/round/launch/", launch_form(
        ready_taste, learning_rate="1e9", beta="1e12", train_steps="100000000", steps="100000", guidance="1000"))
    assert absurd.status_code == 200 and not Round.objects.exists()
    errors = absurd.context["form"].errors
    assert set(errors) == {"learning_rate", "beta", "train_steps", "steps", "guidance"}
    assert errors["learning_rate"] == ["Ensure this value is less than or equal to 0.1."]
    launched = lead_browser.post("/admin/annotate/round/launch/", launch_form(ready_taste, learning_rate="0.05"),
                                 follow=True)
    assert Round.objects.get().training_config["learning_rate"] == 0.05
    shown = [str(m) for m in launched.context["messages"]]
    assert "The learning rate 0.05 is unusual for this FLUX model (usually 1e-05–0.001)." in shown


def test_the_launch_form_says_what_blanks_fall_back_to_and_prefills_from_the_last_round(lead_browser, taste, model_dir):
    page = lead_browser.get("/admin/annotate/round/launch/")
    assert "this taste has no model yet" in page.content.decode()  # the only taste, chosen for the lead
    taste_base_checkpoint(taste=taste, model_path=model_dir)  # no chisel.json: FLUX.1's defaults
    form = lead_browser.get(f"/admin/annotate/round/launch/?taste={taste.slug}").context["form"]
    assert form.fields["learning_rate"].help_text.endswith(
        "Blank: 0.0001 (the FLUX family's default). Usually 1e-05–0.001 for this FLUX model.")
    assert form.fields["size"].help_text.startswith("Width and height in pixels. Blank: 1024 (model's default).")
    assert (form.initial["pair_quota"], form.initial["learning_rate"], form.initial["size"]) == (60, 1e-4, 1024)

    own_defaults(model_dir, rank=4)
    taste.refresh_from_db()
    form = lead_browser.get(f"/admin/annotate/round/launch/?taste={taste.slug}").context["form"]
    assert "Blank: 0.003 (model's own default, from its chisel.json)" in form.fields["learning_rate"].help_text
    assert form.fields["rank"].help_text.startswith("Blank: 4 (model's own default")
    blanks = {name: "" for name in ("steps", "guidance", "size", "beta", "learning_rate", "train_steps", "rank",
                                    "reference")}
    assert lead_browser.post("/admin/annotate/round/launch/", launch_form(taste, **blanks)).status_code == 302
    first = Round.objects.get()
    assert first.training_config == {"learning_rate": 3e-3, "beta": 1000.0, "steps": 300, "reference": "base",
                                     "rank": 4}
    first.state = "done"
    first.save()
    form = lead_browser.get(f"/admin/annotate/round/launch/?taste={taste.slug}").context["form"]
    assert (form.initial["pair_quota"], form.initial["eval_pair_quota"], form.initial["learning_rate"],
            form.initial["rank"], form.initial["heldout_share"]) == (10, 8, 3e-3, 4, 0.2)


def test_create_taste_records_the_toy_models_own_size_and_steps():
    from sampler.toy import defaults as toy

    out = io.StringIO()
    call_command("create_taste", "shapes", "--model", "models/toy-sd", stdout=out)
    assert f"sampled at 64×64 px in {toy.SAMPLING['sd']['steps']} steps" in out.getvalue()
    base = Checkpoint.objects.get(taste__slug="shapes").base_model
    assert (base.kind, base.default_width, base.default_height, base.default_steps) == (
        "sd", 64, 64, toy.SAMPLING["sd"]["steps"])


def test_a_broken_chisel_json_is_refused_in_one_line(model_dir):
    (model_dir / "chisel.json").write_text('{"sampling": {"steps": -3}}')
    with pytest.raises(CommandError, match="sampling steps must be a positive whole number"):
        call_command("create_taste", "broken", "--model", str(model_dir), stdout=io.StringIO())


def test_the_launch_form_chooses_each_rounds_guard_rails_and_prefills_them(lead_browser, ready_taste):
    form = lead_browser.get(f"/admin/annotate/round/launch/?taste={ready_taste.slug}").context["form"]
    ticked = {name: form[f"rail__{name}"].value() for name in ("human_flags", "diversity", "adherence", "ai_look")}
    assert ticked == {"human_flags": True, "diversity": True, "adherence": True, "ai_look": False}
    assert form["rail__diversity__max_drop"].value() == 0.25
    assert form.fields["rail__ai_look__brightness_max_drop"].help_text == "Blank: no bound."
    page = lead_browser.get(f"/admin/annotate/round/launch/?taste={ready_taste.slug}").content.decode()
    assert 'id="guard-rails"' in page and "figures are shown in the decision even when it is off" in page

    refused = lead_browser.post("/admin/annotate/round/launch/", launch_form(
        ready_taste, rail__human_flags="on", rail__diversity__max_drop="1.5"))
    assert refused.status_code == 200 and not Round.objects.exists()
    assert refused.context["form"].errors == {"rail__diversity__max_drop": [
        "Ensure this value is less than or equal to 1.0."]}

    chosen = launch_form(ready_taste, rail__human_flags="on", rail__human_flags__margin="0.1", rail__ai_look="on",
                         rail__ai_look__brightness_max_rise="0.2", rail__ai_look__sharpness_max_drop="",
                         rail__diversity__max_drop="0.4")  # diversity and adherence left unticked
    chosen.pop("rail__adherence")
    assert lead_browser.post("/admin/annotate/round/launch/", chosen).status_code == 302
    first = Round.objects.get()
    assert first.guard_rails == {"human_flags": {"margin": 0.1, "significance": 0.05},
                                 "ai_look": {"brightness_max_rise": 0.2, "saturation_max_rise": 0.1,
                                             "sharpness_max_drop": 0.25}}
    settings_page = lead_browser.get(f"/admin/annotate/round/{first.pk}/change/").content.decode()
    assert "breaks when the child&#x27;s mean brightness rises more than 20%" in settings_page

    Round.objects.filter(pk=first.pk).update(state="done")
    form = lead_browser.get(f"/admin/annotate/round/launch/?taste={ready_taste.slug}").context["form"]
    assert (form["rail__ai_look"].value(), form["rail__ai_look__brightness_max_rise"].value()) == (True, 0.2)
    assert (form["rail__human_flags__margin"].value(), form["rail__diversity"].value()) == (0.1, True)  # on by default


def test_launch_round_turns_rails_on_and_off_and_sets_their_limits(ready_taste, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS))
    launch = ["launch_round", "--taste", ready_taste.slug, "--prompts", str(prompts), "--pairs", "10"]
    for flags, message in ((["--rail", "nope"], "Unknown guard-rail 'nope'; known: human_flags, diversity, ai_look"),
                           (["--rail-limit", "diversity.max_drop=2"],
                            r"max_drop \(largest fall, as a share\) 2.0 is out of bounds: it must be between 0 and 1"),
                           (["--rail-limit", "diversity.floor=0.1"], "Guard-rail 'diversity' has no limit 'floor'"),
                           (["--rail-limit", "diversity=0.1"], "write NAME.KEY=VALUE"),
                           (["--no-rail", "diversity", "--rail-limit", "diversity.max_drop=0.1"], "turned off")):
        with pytest.raises(CommandError, match=message):
            call_command(*launch, *flags, stdout=io.StringIO())
    assert not Round.objects.exists()
    call_command(*launch, "--no-rail", "diversity", "--rail", "ai_look", "--rail-limit", "human_flags.margin=0.2",
                 "--rail-limit", "ai_look.saturation_max_rise=0.3", stdout=io.StringIO())
    round_ = Round.objects.get()
    assert round_.guard_rails == {"human_flags": {"margin": 0.2, "significance": 0.05},
                                  "adherence": {"max_drop": 0.05, "significance": 0.05},
                                  "ai_look": {"brightness_max_rise": 0.1, "saturation_max_rise": 0.3,
                                              "sharpness_max_drop": 0.25}}
    Round.objects.update(state="done")
    call_command(*launch, "--no-rail", "all", stdout=io.StringIO())
    assert Round.objects.order_by("-number").first().guard_rails == {}


def test_the_carry_over_test_is_set_per_launch_and_zero_turns_it_off(lead_browser, taste, model_dir):
    own_defaults(model_dir, carry_over_alpha=0.05)
    taste_base_checkpoint(taste=taste, model_path=model_dir)
    taste.refresh_from_db()
    form = lead_browser.get(f"/admin/annotate/round/launch/?taste={taste.slug}").context["form"]
    assert form.fields["carry_over_alpha"].help_text.endswith("Blank: 0.05 (model's own default, from its chisel.json).")
    assert form.initial["carry_over_alpha"] == 0.05
    assert lead_browser.post("/admin/annotate/round/launch/", launch_form(taste, carry_over_alpha="0")).status_code == 302
    off = Round.objects.get()
    assert off.training_config["carry_over_alpha"] is None  # over the model's own 0.05
    off.state = "done"
    off.save()
    form = lead_browser.get(f"/admin/annotate/round/launch/?taste={taste.slug}").context["form"]
    assert form.initial["carry_over_alpha"] == 0  # prefilled as off, not blank (which would take 0.05)
    refused = lead_browser.post("/admin/annotate/round/launch/", launch_form(taste, carry_over_alpha="0.9"))
    assert refused.context["form"].errors["carry_over_alpha"] == ["Ensure this value is less than or equal to 0.5."]
    assert lead_browser.post("/admin/annotate/round/launch/", launch_form(taste, carry_over_alpha="")).status_code == 302
    assert Round.objects.order_by("-number").first().training_config["carry_over_alpha"] == 0.05


def test_launch_round_sets_the_carry_over_test_or_turns_it_off(model_dir, tmp_path):
    own_defaults(model_dir, carry_over_alpha=0.05)
    call_command("create_taste", "shell-taste", "--model", str(model_dir), stdout=io.StringIO())
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS))
    launch = ["launch_round", "--taste", "shell-taste", "--prompts", str(prompts), "--pairs", "10", "--overlap", "1"]
    with pytest.raises(CommandError, match="carry-over test's level α 0.9 is out of bounds"):
        call_command(*launch, "--carry-over-alpha", "0.9", stdout=io.StringIO())
    call_command(*launch, "--carry-over-alpha", "0", stdout=io.StringIO())
    assert Round.objects.get().training_config["carry_over_alpha"] is None
