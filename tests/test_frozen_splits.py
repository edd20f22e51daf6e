"""Frozen, leak-free splits: rounds own their prompt lists, the lineage keeps its held-out prompts, late
judgements are refused, the quota counts decisive labels, the trainer holds out whole pairs and prompts."""

import json
import uuid

import pytest
from PIL import Image as PILImage

from annotate import loop, services
from annotate.errors import DomainError
from annotate.launch import LaunchSettings, round_launch, taste_base_checkpoint
from annotate.models import Assignment, Judgement, Pair, Round
from annotate.sampling import round_prompt_ids, round_reserve_samples
from tests.conftest import client_for, make_round
from trainer.data import PreferencePair, heldout_indices

pytestmark = pytest.mark.django_db

PROMPTS = [f"a blue square {i}" for i in range(10)]


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    return folder


def ready(slug, model_dir):
    taste = services.taste_create(slug=slug)
    taste_base_checkpoint(taste=taste, model_path=model_dir)
    taste.refresh_from_db()
    return taste


def launch(taste, **changes) -> Round:
    return round_launch(taste=taste, settings=LaunchSettings(**{"pair_quota": 10, "label_quota": 20, **changes}))


def test_a_later_launch_for_another_taste_changes_nothing_of_a_running_round(model_dir):
    first, second = ready("first", model_dir), ready("second", model_dir)
    running = launch(first, prompt_texts=PROMPTS, heldout_share=0.3)
    train, heldout = running.sampling_config["prompt_ids"], running.sampling_config["eval_prompt_ids"]
    # The second taste holds out every prompt the first trains on, and trains on the first's held-out ones.
    launch(second, prompt_ids=train + heldout, heldout_share=0.7, seed=3)
    running.refresh_from_db()
    assert (running.sampling_config["prompt_ids"], running.sampling_config["eval_prompt_ids"]) == (train, heldout)
    assert round_prompt_ids(running) == sorted(train)  # it samples what it was launched with...
    job = round_reserve_samples(round_id=running.pk)
    assert job is not None and {prompt for prompt, _ in job.requests} <= set(train)  # ...and does not stall
    assert loop.round_eval_requests(running)[0][0] in heldout


def test_a_prompt_held_out_for_a_taste_stays_held_out_in_every_later_round(model_dir):
    taste = ready("lineage", model_dir)
    first = launch(taste, prompt_texts=PROMPTS, heldout_share=0.3)
    train_1, held_1 = set(first.sampling_config["prompt_ids"]), set(first.sampling_config["eval_prompt_ids"])
    Round.objects.filter(pk=first.pk).update(state=Round.State.DONE)
    second = launch(taste, prompt_ids=sorted(train_1 | held_1), prompt_texts=["a new prompt 1", "a new prompt 2"],
                    heldout_share=0.5, seed=9)  # another seed and share would reshuffle everything
    train_2, held_2 = set(second.sampling_config["prompt_ids"]), set(second.sampling_config["eval_prompt_ids"])
    assert held_1 <= held_2 and not held_2 & train_1 and not train_2 & held_1
    Round.objects.filter(pk=second.pk).update(state=Round.State.DONE)
    with pytest.raises(DomainError, match="trained on by an earlier round"):
        launch(taste, prompt_ids=sorted(train_1))
    with pytest.raises(DomainError, match="held out by earlier rounds"):
        launch(taste, prompt_ids=sorted(held_2))


def submit(user, assignment_id, choice="left"):
    return client_for(user).post("/api/v1/judgements/", {"assignment": assignment_id, "choice": choice,
                                                         "client_uuid": str(uuid.uuid4())}, format="json")


def claim(user, taste, n=1):
    return client_for(user).get("/api/v1/assignments/next/", {"taste": taste.slug, "prefetch": n}).json()


def test_judgements_after_the_dataset_froze_or_the_decision_are_refused_with_round_closed(taste, annotator):
    round_ = make_round(taste, pairs=5, overlap=1)
    items = claim(annotator, taste, 5)
    assert submit(annotator, items[0]["id"]).status_code == 201
    # A round failed while annotating (its sampler broke) still takes train labels: a retry resumes that step.
    Round.objects.filter(pk=round_.pk).update(state=Round.State.FAILED, failed_in=Round.State.ANNOTATING)
    assert submit(annotator, items[4]["id"]).status_code == 201
    Round.objects.filter(pk=round_.pk).update(state=Round.State.TRAINING, failed_in="")  # the dataset froze
    late = submit(annotator, items[1]["id"])
    assert late.status_code == 409 and late.json()["code"] == "round_closed"
    amended = client_for(annotator).put(f"/api/v1/assignments/{items[0]['id']}/judgement/", {"choice": "right"},
                                        format="json")
    assert amended.status_code == 409 and amended.json()["code"] == "round_closed"
    first = Judgement.objects.get(assignment_id=items[0]["id"])
    assert first.choice == ("a" if Assignment.objects.get(pk=items[0]["id"]).left_is_a else "b")
    assert Judgement.objects.count() == 2
    # An eval pair is judged while the round evaluates, and not once its decision is made.
    Round.objects.filter(pk=round_.pk).update(state=Round.State.EVALUATING)
    Pair.objects.filter(pk=Assignment.objects.get(pk=items[2]["id"]).pair_id).update(kind=Pair.Kind.EVAL)
    Pair.objects.filter(pk=Assignment.objects.get(pk=items[3]["id"]).pair_id).update(kind=Pair.Kind.EVAL)
    assert submit(annotator, items[2]["id"]).status_code == 201
    Round.objects.filter(pk=round_.pk).update(state=Round.State.DONE)
    closed = submit(annotator, items[3]["id"])
    assert closed.status_code == 409 and closed.json()["code"] == "round_closed"
    assert Judgement.objects.count() == 3


def test_leases_held_when_the_dataset_froze_are_handed_back_not_offered_again(taste, annotator):
    round_ = make_round(taste, pairs=3, overlap=1)
    held = claim(annotator, taste, 2)
    assert [item["id"] for item in claim(annotator, taste, 2)] == [item["id"] for item in held]  # asked twice: same
    Round.objects.filter(pk=round_.pk).update(state=Round.State.TRAINING)
    response = client_for(annotator).get("/api/v1/assignments/next/", {"taste": taste.slug, "prefetch": 2})
    assert response.status_code == 204  # not the two leases again, each refused on submission
    leases = Assignment.objects.filter(pk__in=[item["id"] for item in held])
    assert set(leases.values_list("state", flat=True)) == {Assignment.State.EXPIRED}
    assert sum(Pair.objects.filter(round=round_).values_list("assigned_count", flat=True)) == 0


def test_the_label_quota_counts_decisive_labels(taste, annotator, other_annotator):
    round_ = make_round(taste, pairs=3, overlap=2)
    Round.objects.filter(pk=round_.pk).update(label_quota=2)
    for user, choice in ((annotator, "tie"), (other_annotator, "both_bad"), (annotator, "left")):
        (item,) = claim(user, taste)
        assert submit(user, item["id"], choice).status_code == 201
    progress = loop.round_progress(round_id=round_.pk)
    assert progress["annotation"] == {"done": 1, "all": 3, "total": 2}
    assert loop.rounds_advance() == []  # three answers, one decisive label: the round keeps annotating
    (item,) = claim(other_annotator, taste)
    assert submit(other_annotator, item["id"], "right").status_code == 201
    assert loop.rounds_advance() == [(round_.pk, Round.State.TRAINING)]


def test_the_trainers_held_out_rows_never_share_a_pair_or_a_prompt_with_training():
    image = PILImage.new("RGB", (4, 4))
    # Overlap 2: each pair judged twice; 3 prompts (too few to split by), then 12 prompts.
    few = [PreferencePair(f"prompt {p % 3}", image, image, None, pair_key=f"pair:{p}") for p in range(20) for _ in range(2)]
    held = heldout_indices(few, 0.2, seed=0)
    assert held and len(held) < len(few)
    assert not {few[i].pair_key for i in held} & {few[i].pair_key for i in range(len(few)) if i not in held}
    many = [PreferencePair(f"prompt {p % 12}", image, image, None, pair_key=f"pair:{p}") for p in range(48) for _ in range(2)]
    held = heldout_indices(many, 0.2, seed=0)
    assert held and not {many[i].caption for i in held} & {many[i].caption for i in range(len(many)) if i not in held}
