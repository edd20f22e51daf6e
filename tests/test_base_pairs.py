"""Child-vs-base pairs: a round whose parent is not the lineage's root also measures its child against the root on
the eval prompts; the gate ignores them and the decision records the measured cumulative figure."""

import re
import uuid
import zlib
from types import SimpleNamespace

import pytest
from PIL import Image as PILImage

from annotate import loop, services, tasks
from annotate.errors import RoundClosed
from annotate.evaluation import clustered_rate
from annotate.exports import ExportOptions, export_preferences
from annotate.images import image_store
from annotate.models import BaseModel, Checkpoint, Judgement, Pair, Prompt, Round
from annotate.sampling import round_eval_inputs, round_store_eval_pairs
from sampler.pairs import sample_eval_pairs
from tests.conftest import make_annotator, png_bytes

pytestmark = pytest.mark.django_db

SIZE = 16


class CountingCache:
    """A stand-in model: a flat image whose colour follows (prompt, seed, LoRA chain); counts the images it makes
    per chain length (0: the root)."""

    def __init__(self):
        self.made: dict[int, int] = {}

    def get(self, spec):
        def pipeline(*, prompt, generator, output_type, **kwargs):
            self.made[len(spec.lora_paths)] = self.made.get(len(spec.lora_paths), 0) + len(prompt)
            return SimpleNamespace(images=[
                PILImage.new("RGB", (SIZE, SIZE), tuple(zlib.crc32(f"{text}/{g.initial_seed()}/{spec.lora_paths}"
                                                                   .encode()).to_bytes(4, "big")[:3]))
                for text, g in zip(prompt, generator, strict=True)])
        return pipeline


def lineage(taste, tmp_path, depth: int) -> list[Checkpoint]:
    base = BaseModel.objects.create(name="flat", kind="flux", path=str(tmp_path / "base"), default_width=SIZE,
                                    default_height=SIZE)
    chain = [Checkpoint.objects.create(taste=taste, base_model=base, status=Checkpoint.Status.RETIRED)]
    for i in range(depth):
        chain.append(Checkpoint.objects.create(taste=taste, base_model=base, parent=chain[-1],
                                               lora_path=str(tmp_path / f"lora-{i}")))
    return chain


def evaluating(taste, number: int, parent: Checkpoint, child: Checkpoint, prompts, quota: int = 6) -> Round:
    return Round.objects.create(
        taste=taste, number=number, state=Round.State.EVALUATING, parent_checkpoint=parent, child_checkpoint=child,
        overlap=1, pair_quota=quota, label_quota=quota, eval_pair_quota=quota, guard_rails={},
        sampling_config={"prompt_ids": [], "eval_prompt_ids": [p.pk for p in prompts], "width": SIZE, "height": SIZE},
    )


def sample_evaluation(round_: Round, cache) -> None:
    """What `sample_round_eval` does, with a stand-in model: eval pairs, then child-vs-base pairs."""
    requests = loop.round_eval_requests(round_)
    parent, child, params, pair_requests = round_eval_inputs(round_id=round_.pk, requests=requests)
    round_store_eval_pairs(round_id=round_.pk, requests=requests,
                           sampled=sample_eval_pairs(cache, parent, child, pair_requests, params))
    if base := loop.round_base_requests(round_):
        tasks.sample_base_batch(round_.pk, base, cache)


def test_a_round_beyond_the_first_gets_child_vs_base_pairs_and_the_base_is_sampled_once(taste, tmp_path):
    root, first, second, third = lineage(taste, tmp_path, 3)
    prompts = [Prompt.objects.create(text=f"held-out {i}", split=Prompt.Split.HELDOUT) for i in range(3)]
    opening = evaluating(taste, 1, root, first, prompts)
    assert loop.round_base_requests(opening) == []  # its eval pairs already compare with the base
    sample_evaluation(opening, CountingCache())
    assert not Pair.objects.filter(round=opening, kind=Pair.Kind.BASE).exists()

    cache = CountingCache()
    round_ = evaluating(taste, 2, first, second, prompts)
    sample_evaluation(round_, cache)
    evals = list(Pair.objects.filter(round=round_, kind=Pair.Kind.EVAL).select_related("image_a", "image_b"))
    bases = list(Pair.objects.filter(round=round_, kind=Pair.Kind.BASE).select_related("image_a", "image_b"))
    assert len(evals) == len(bases) == 6
    # The same held-out prompts, as often each; seeds of their own, so no image of the round is in two pairs (an
    # annotator who met the child's image twice would know it).
    assert sorted(p.prompt_id for p in bases) == sorted(p.prompt_id for p in evals)
    assert sorted(p.seed - loop.BASE_SEED_BASE for p in bases) == sorted(p.seed - loop.EVAL_SEED_BASE for p in evals)
    assert all(p.image_a.checkpoint_id == root.pk and p.image_b.checkpoint_id == second.pk for p in bases)
    assert all(p.image_a.seed == p.image_b.seed == p.seed for p in bases)
    images = [p.image_a.sha256 for p in evals + bases] + [p.image_b.sha256 for p in evals + bases]
    assert len(set(images)) == len(images)
    assert cache.made == {2: 12, 1: 6, 0: 6}  # child on both key sets, parent and root on theirs

    # The next round asks for the same keys: the root's images are reused, only the child is sampled.
    again = CountingCache()
    later = evaluating(taste, 3, second, third, prompts)
    sample_evaluation(later, again)
    assert 0 not in again.made and again.made[3] == 12
    reused = sorted(Pair.objects.filter(round=later, kind=Pair.Kind.BASE).values_list("image_a_id", flat=True))
    assert reused == sorted(p.image_a_id for p in bases)
    assert tasks.sample_base_batch(later.pk, loop.round_base_requests(later), again) == 0  # once


def judge(annotator, taste, choose) -> int:
    """Judge every pair the annotator is offered, `choose(pair)` naming image "a", "b" or "tie"."""
    judged = 0
    while assignments := services.assignment_claim(annotator=annotator, taste=taste, count=8):
        for assignment in assignments:
            choice = choose(Pair.objects.get(pk=assignment.pair_id))
            screen = {"a": "left" if assignment.left_is_a else "right",
                      "b": "right" if assignment.left_is_a else "left", "tie": "tie"}[choice]
            services.judgement_submit(annotator=annotator, assignment_id=assignment.pk, choice=screen,
                                      client_uuid=uuid.uuid4())
            judged += 1
    return judged


def test_the_gate_reads_only_parent_vs_child_and_the_decision_records_the_measured_figure(taste, tmp_path):
    root, parent, child = lineage(taste, tmp_path, 2)
    prompts = [Prompt.objects.create(text=f"held-out {i}", split=Prompt.Split.HELDOUT) for i in range(3)]
    round_ = evaluating(taste, 2, parent, child, prompts)
    sample_evaluation(round_, CountingCache())
    # The child loses every comparison with its parent and wins every one with the base: the gate rejects it on
    # the first, whatever the second says; the round waits for both before deciding.
    served = []

    def choose(pair):
        served.append(pair.kind)
        return "a" if pair.kind == Pair.Kind.EVAL else "b"

    annotator = make_annotator(taste)
    assert judge(annotator, taste, choose) == 12 and set(served) == {"eval", "base"}
    progress = loop.round_progress(round_id=round_.pk)
    assert progress["evaluation"]["done"] == progress["base"]["done"] == progress["base"]["total"] == 6
    assert progress["base"]["win"]["rate"] == 1.0 and progress["evaluation"]["win"]["rate"] == 0.0

    assert loop.rounds_advance() == [(round_.pk, "done")]
    decision = Round.objects.get(pk=round_.pk).decision
    assert not decision["promote"] and decision["win"]["n"] == 6 and decision["win"]["rate"] == 0.0
    measured = clustered_rate(Judgement.objects.filter(pair__round=round_, pair__kind=Pair.Kind.BASE)
                              .order_by("id").values_list("pair__prompt_id", "pair_id", "choice"))
    assert decision["cumulative"]["source"] == "base"
    cumulative = decision["cumulative"]["win"]
    assert (cumulative["rate"], cumulative["n"], cumulative["prompts"]) == (1.0, 6, 3)
    assert (cumulative["low"], cumulative["high"]) == (measured.low, measured.high)

    # A base pair takes labels only while the round evaluates: a late one is refused like an eval pair's.
    late = Pair.objects.filter(round=round_, kind=Pair.Kind.BASE).first()
    assert not services.round_takes_labels(pair=late, round_state=Round.State.DONE)
    assert services.round_takes_labels(pair=late, round_state=Round.State.EVALUATING)
    assert not services.round_takes_labels(pair=late, round_state=Round.State.ANNOTATING)


def test_a_round_waits_for_its_child_vs_base_labels_before_deciding(taste, tmp_path):
    root, parent, child = lineage(taste, tmp_path, 2)
    prompts = [Prompt.objects.create(text=f"held-out {i}", split=Prompt.Split.HELDOUT) for i in range(2)]
    round_ = evaluating(taste, 2, parent, child, prompts, quota=4)
    requests = loop.round_eval_requests(round_)
    parent_spec, child_spec, params, pair_requests = round_eval_inputs(round_id=round_.pk, requests=requests)
    round_store_eval_pairs(round_id=round_.pk, requests=requests,
                           sampled=sample_eval_pairs(CountingCache(), parent_spec, child_spec, pair_requests, params))
    annotator = make_annotator(taste)
    assert judge(annotator, taste, lambda pair: "b") == 4
    assert loop.rounds_advance() == []  # its base pairs are not sampled yet
    tasks.sample_base_batch(round_.pk, loop.round_base_requests(round_), CountingCache())
    assert loop.rounds_advance() == []  # nor judged
    assert judge(annotator, taste, lambda pair: "tie") == 4
    assert loop.rounds_advance() == [(round_.pk, "done")]
    decision = Round.objects.get(pk=round_.pk).decision
    assert decision["win"]["rate"] == 1.0 and decision["cumulative"]["win"]["rate"] == 0.5


def test_child_vs_base_pairs_are_exported_with_the_eval_pairs(taste, tmp_path, media_root):
    root, parent, child = lineage(taste, tmp_path, 2)
    prompt = Prompt.objects.create(text="held-out", split=Prompt.Split.HELDOUT)
    round_ = evaluating(taste, 2, parent, child, [prompt], quota=1)
    images = [image_store(prompt=prompt, data=png_bytes((i, 0, 0)), checkpoint=c, seed=1)
              for i, c in enumerate((parent, child, root), start=1)]
    Pair.objects.create(round=round_, taste=taste, prompt=prompt, image_a=images[0], image_b=images[1],
                        kind=Pair.Kind.EVAL, seed=1, overlap=1)
    Pair.objects.create(round=round_, taste=taste, prompt=prompt, image_a=images[2], image_b=images[1],
                        kind=Pair.Kind.BASE, seed=1, overlap=1)
    train_prompt = Prompt.objects.create(text="train")
    a, b = (image_store(prompt=train_prompt, data=png_bytes((0, i, 0)), checkpoint=parent, seed=i) for i in (1, 2))
    train = Pair.objects.create(round=round_, taste=taste, prompt=train_prompt, image_a=a, image_b=b, overlap=1,
                                held_back=True)
    assert judge(make_annotator(taste), taste, lambda pair: "b") == 3 and train.pk
    summary = export_preferences(ExportOptions(out=tmp_path / "out", format="jsonl"))
    assert summary.split_rows == {"train": 1, "validation": 2}
    assert "child vs base" in summary.validation


def test_the_charts_page_shows_the_measured_figure_against_the_base(lead_browser, taste, tmp_path):
    root, parent, child = lineage(taste, tmp_path, 2)
    prompts = [Prompt.objects.create(text=f"held-out {i}", split=Prompt.Split.HELDOUT) for i in range(3)]
    round_ = evaluating(taste, 2, parent, child, prompts)
    sample_evaluation(round_, CountingCache())
    choices = iter(["b", "b", "a", "tie", "b", "b"] * 2)
    judge(make_annotator(taste), taste, lambda pair: "a" if pair.kind == Pair.Kind.EVAL else next(choices))
    assert loop.rounds_advance() == [(round_.pk, "done")]
    html = lead_browser.get(f"/admin/annotate/taste/{taste.pk}/charts/").content.decode()
    measured = clustered_rate(Judgement.objects.filter(pair__round=round_, pair__kind=Pair.Kind.BASE)
                              .order_by("id").values_list("pair__prompt_id", "pair_id", "choice"))
    row = re.search(r'<tr data-round="2">(.*?)</tr>', html, re.S).group(1)
    assert re.search(r'class="win-rate">([^<]*)<', row).group(1) == "0.000"  # the gate's figure: vs the parent
    assert re.search(r'class="cumulative">([^<]*)<', row).group(1) == f"{measured.rate:.3f}"
    assert f"[{measured.low:.3f}, {measured.high:.3f}] (n=6)" in row
    strength = re.search(rf'<tr data-strength="{child.pk}">(.*?)</tr>', html, re.S).group(1)
    assert re.search(r'class="measured">([^<]*)<', strength).group(1) == f"{measured.rate:.3f}"
    assert "measured ◇" in html
