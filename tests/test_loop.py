"""The closed loop end to end: rounds sampled, judged over HTTP, trained and evaluated by a real Celery worker."""

import io
import threading
import uuid

import pytest
from django.core.management import call_command
from django.db import transaction

from annotate import loop, services, tasks
from annotate.models import BaseModel, Checkpoint, Pair, Prompt, Round, Taste, TrainingJob
from tests.conftest import wait_until
from tests.models import build_tiny_flux

TRAIN = {"steps": 3, "batch_size": 2, "rank": 4, "max_sequence_length": 32, "learning_rate": 1e-3,
         "heldout_fraction": 0, "checkpoint_every": 100}
SAMPLING = {"steps": 2, "guidance": 3.5, "width": 64, "height": 64, "max_sequence_length": 32, "low_water": 6,
            "batch": 6}


@pytest.fixture(scope="module")
def tiny_flux_dir(tmp_path_factory):
    return build_tiny_flux(tmp_path_factory.mktemp("loop") / "flux")


def new_round(taste: Taste, *, training_config: dict = TRAIN) -> Round:
    train = [Prompt.objects.create(text=text) for text in ("a red circle", "a blue square", "a green triangle")]
    heldout = [Prompt.objects.create(text=text, split=Prompt.Split.HELDOUT) for text in ("a yellow circle", "a red square")]
    taste.refresh_from_db()
    return Round.objects.create(
        taste=taste, number=taste.rounds.count() + 1, parent_checkpoint=taste.current_checkpoint, pair_quota=6,
        label_quota=6, overlap=1, eval_pair_quota=4, promotion_threshold=0.0, guard_rails={},
        sampling_config={**SAMPLING, "prompt_ids": [p.pk for p in train], "eval_prompt_ids": [p.pk for p in heldout]},
        training_config=training_config,
    )


class Annotators:
    """Simulated annotators judging over HTTP in the background until stopped. They answer at random: the tiny
    untrained model's images differ in brightness by less than the dark oracle notices, so it would tie them all."""

    def __init__(self, url: str, taste: Taste) -> None:
        self.url, self.taste, self.stopped = url, taste, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        from django.db import connection

        try:
            while not self.stopped.is_set():
                call_command("simulate_annotators", "--taste", self.taste.slug, "--oracle", "random", "--annotators",
                             "1", "--until-idle", "--idle", "0.5", "--url", self.url, stdout=io.StringIO())
        finally:
            connection.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join(timeout=30)


def run_round(round_: Round, states: list[str], timeout: float = 300) -> Round:
    """Start the round and play the beat (advance_rounds) until it settles; record each state seen."""
    assert loop.round_start(round_id=round_.pk)

    def settled():
        tasks.advance_rounds()
        state = Round.objects.values_list("state", flat=True).get(pk=round_.pk)
        if not states or states[-1] != state:
            states.append(state)
        return state in (Round.State.DONE, Round.State.FAILED)

    wait_until(settled, timeout=timeout, interval=0.5, what=f"round {round_.number} to finish")
    return Round.objects.select_related("child_checkpoint", "parent_checkpoint").get(pk=round_.pk)


@pytest.mark.integration
def test_two_rounds_advance_in_order_with_the_lineage_and_decisions_recorded(
    celery_worker_process, live_server, tiny_flux_dir
):
    taste = services.taste_create(slug="loop")
    base = BaseModel.objects.create(name="tiny-loop", kind="flux", path=str(tiny_flux_dir), default_steps=2,
                                    default_width=64, default_height=64, default_max_sequence_length=32)
    root = Checkpoint.objects.create(taste=taste, base_model=base, status=Checkpoint.Status.CURRENT)
    Taste.objects.filter(pk=taste.pk).update(current_checkpoint=root)

    with Annotators(live_server.url, taste):
        decided = []
        for number in (1, 2):
            parent = Taste.objects.get(pk=taste.pk).current_checkpoint
            states: list[str] = []
            round_ = run_round(new_round(taste), states)
            assert round_.state == "done", round_.error
            # Every forward state in order (a fast step may pass between two polls, never out of order).
            order = ["sampling", "annotating", "training", "evaluating", "done"]
            assert [order.index(s) for s in states] == sorted(order.index(s) for s in states)
            assert states[-1] == "done" and "training" in states

            assert round_.parent_checkpoint_id == parent.pk
            child = round_.child_checkpoint
            assert child.parent_id == parent.pk and child.lora_path
            decision = round_.decision
            assert decision["by"] == "rule" and decision["threshold"] == 0.0
            win = decision["win"]
            assert win["n"] == Pair.objects.filter(round=round_, kind="eval").count() == 4
            assert win["wins"] + win["losses"] + win["ties"] == win["n"]
            assert 0.0 <= win["low"] <= win["rate"] <= win["high"] <= 1.0
            assert decision["promote"] == (win["low"] > 0.0)
            current = Taste.objects.get(pk=taste.pk).current_checkpoint
            if decision["promote"]:
                assert current == child and Checkpoint.objects.get(pk=parent.pk).status == "retired"
            else:
                assert current == parent and Checkpoint.objects.get(pk=child.pk).status == "rejected"
            eval_pairs = Pair.objects.filter(round=round_, kind="eval").select_related("image_a", "image_b")
            assert all(p.image_a.checkpoint_id == parent.pk and p.image_b.checkpoint_id == child.pk for p in eval_pairs)
            assert all(p.image_a.seed == p.image_b.seed == p.seed for p in eval_pairs)
            # The cumulative figure against the base: round 1's parent is the base, so its eval pairs give it; round
            # 2's parent is round 1's child, so its child-vs-base pairs (sampled by the worker, judged like the
            # others, never read by the gate) give it.
            base_pairs = Pair.objects.filter(round=round_, kind="base").select_related("image_a", "image_b")
            cumulative = decision["cumulative"]
            if number == 1:
                assert not base_pairs and cumulative == {"source": "eval", "win": win}
            else:
                assert cumulative["source"] == "base" and cumulative["win"]["n"] == base_pairs.count() == 4
                assert all(p.image_a.checkpoint_id == root.pk and p.image_b.checkpoint_id == child.pk
                           for p in base_pairs)
                assert {(p.prompt_id, p.seed - loop.BASE_SEED_BASE) for p in base_pairs} == {
                    (p.prompt_id, p.seed - loop.EVAL_SEED_BASE) for p in eval_pairs}
                assert 0.0 <= cumulative["win"]["low"] <= cumulative["win"]["rate"] <= cumulative["win"]["high"] <= 1
            decided.append(decision["promote"])
            if number == 1 and not decision["promote"]:  # round 2 must build on round 1's child: the lead's call
                with transaction.atomic():
                    loop.checkpoint_promote(taste=taste, checkpoint=child)
        assert Checkpoint.objects.filter(taste=taste, status="current").count() == 1

        # A round whose training fails stops in `failed` with the reason and leaves the current checkpoint alone.
        current = Taste.objects.get(pk=taste.pk).current_checkpoint
        broken = new_round(taste, training_config={**TRAIN, "target_modules": ["no_such_module"]})
        failed = run_round(broken, [])
        assert (failed.state, failed.failed_in) == ("failed", "training")
        assert "Training failed" in failed.error and "no_such_module" in failed.error
        assert failed.child_checkpoint is None
        assert Taste.objects.get(pk=taste.pk).current_checkpoint == current
        assert TrainingJob.objects.get(round=failed).state == "failed"


@pytest.mark.django_db
def test_a_decision_is_taken_once_and_a_lead_may_override_the_rule(taste, tmp_path):
    base = BaseModel.objects.create(name="b", kind="flux", path=str(tmp_path))
    parent = Checkpoint.objects.create(taste=taste, base_model=base, status=Checkpoint.Status.CURRENT)
    child = Checkpoint.objects.create(taste=taste, base_model=base, parent=parent, lora_path=str(tmp_path / "c"))
    round_ = Round.objects.create(taste=taste, number=1, parent_checkpoint=parent, child_checkpoint=child,
                                  state=Round.State.EVALUATING, guard_rails={})
    decision = loop.round_decide(round_id=round_.pk, promote=True, by="lead-1")
    assert decision["promote"] and not decision["rule_promote"] and decision["by"] == "lead-1"
    assert "no evaluation judgements" in decision["reason"]
    assert loop.round_decide(round_id=round_.pk) is None  # decided already: a double click changes nothing
    taste.refresh_from_db()
    assert taste.current_checkpoint == child
    assert Checkpoint.objects.get(pk=parent.pk).status == "retired"


@pytest.mark.django_db
def test_pause_stops_handing_out_pairs_and_resume_restores_them(taste, annotator):
    from tests.conftest import make_round

    round_ = make_round(taste, pairs=3)
    assert loop.round_pause(round_id=round_.pk) and not loop.round_pause(round_id=round_.pk)
    assert services.assignment_claim(annotator=annotator, taste=taste) == []
    assert loop.round_resume(round_id=round_.pk)
    assert len(services.assignment_claim(annotator=annotator, taste=taste)) == 1


@pytest.mark.django_db
def test_a_round_whose_labels_are_in_moves_to_training_once(taste, annotator, tmp_path):
    from tests.conftest import make_round

    round_ = make_round(taste, pairs=2, overlap=1)
    base = BaseModel.objects.create(name="b", kind="flux", path=str(tmp_path))
    parent = Checkpoint.objects.create(taste=taste, base_model=base, status=Checkpoint.Status.CURRENT)
    Round.objects.filter(pk=round_.pk).update(label_quota=2, pair_quota=2, parent_checkpoint=parent,
                                              training_config={"steps": 7})
    assert loop.rounds_advance() == []  # no labels yet
    for assignment in services.assignment_claim(annotator=annotator, taste=taste, count=2):
        services.judgement_submit(annotator=annotator, assignment_id=assignment.pk, choice="left",
                                  client_uuid=uuid.uuid4())
    assert loop.rounds_advance() == [(round_.pk, "training")]
    assert loop.rounds_advance() == []
    job = TrainingJob.objects.get(round=round_)
    assert (job.state, job.steps) == ("queued", 7)
    assert loop.round_progress(round_id=round_.pk)["annotation"] == {"done": 2, "all": 2, "total": 2}


@pytest.mark.django_db
def test_a_round_whose_labels_did_not_carry_over_ends_unevaluated_and_its_taste_keeps_the_parent(
    taste, lead_browser, tmp_path
):
    base = BaseModel.objects.create(name="b", kind="flux", path=str(tmp_path))
    parent = Checkpoint.objects.create(taste=taste, base_model=base, status=Checkpoint.Status.CURRENT)
    Taste.objects.filter(pk=taste.pk).update(current_checkpoint=parent)
    prompt = Prompt.objects.create(text="a red square", split=Prompt.Split.HELDOUT)
    tests = {1: {"correct": 17, "pairs": 34, "p_value": 0.568, "alpha": 0.05, "carried": False},
             2: {"correct": 24, "pairs": 34, "p_value": 0.012, "alpha": 0.05, "carried": True}}
    made = {}
    for number, test in tests.items():
        round_ = Round.objects.create(taste=taste, number=number, parent_checkpoint=parent, state=Round.State.TRAINING,
                                      guard_rails={}, sampling_config={"eval_prompt_ids": [prompt.pk]})
        child = Checkpoint.objects.create(taste=taste, base_model=base, parent=parent, lora_path=str(tmp_path / "c"))
        TrainingJob.objects.create(round=round_, state="done", candidate=child, steps=9, step=9,
                                   metrics={"heldout_implicit_accuracy": test["correct"] / 34, "carry_over": test})
        made[number] = (round_, child)
    with transaction.atomic():  # the eval sampling the carried round queues runs on commit; none for the other
        moves = loop.rounds_advance()
    assert moves == [(made[1][0].pk, "done"), (made[2][0].pk, "evaluating")]
    declined, child = Round.objects.get(pk=made[1][0].pk), made[1][1]
    decision = declined.decision
    assert not decision["promote"] and not decision["rule_promote"] and decision["carry_over"] == tests[1]
    assert "did not carry over" in decision["reason"] and "17 of 34" in decision["reason"]
    assert declined.child_checkpoint == child and Checkpoint.objects.get(pk=child.pk).status == "rejected"
    assert not Pair.objects.filter(round=declined).exists()
    taste.refresh_from_db()
    assert taste.current_checkpoint == parent
    progress = loop.round_progress(round_id=declined.pk)  # what the cockpit polls
    assert progress["state"] == "done" and progress["evaluation"]["done"] == 0
    out = io.StringIO()
    call_command("round_status", str(declined.pk), stdout=out)
    assert "did not carry over" in out.getvalue()
    page = lead_browser.get(f"/admin/annotate/round/{declined.pk}/change/").content.decode()
    assert "did not carry over" in page and "17 of 34 held-out pairs ranked as labelled" in page
    assert "not kept: the child is its parent" in page
    # An evaluated round's decision carries its test too, passed.
    assert loop.round_decide(round_id=made[2][0].pk, promote=False, by="lead-1")["carry_over"] == tests[2]
    page = lead_browser.get(f"/admin/annotate/round/{made[2][0].pk}/change/").content.decode()
    assert "24 of 34 held-out pairs ranked as labelled" in page and "kept)" in page
