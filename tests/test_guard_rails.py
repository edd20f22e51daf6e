"""Guard-rails: each breaks on a child that violates it and holds on one that does not (real images and judgements);
the toy world's adherence rail only through its setting."""

import ast
import io
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from annotate import loop, services
from annotate.guard_rails import check_guard_rails, registry
from annotate.images import image_store
from annotate.models import BaseModel, Checkpoint, Pair, Prompt, Round
from sampler.toy.guard_rail import adherence_verdict
from sampler.toy.world import draw
from tests.conftest import make_annotator

pytestmark = pytest.mark.django_db
PARAMS = {"steps": 20, "guidance": 3.5, "width": 64, "height": 64, "max_sequence_length": 32}
ANNOTATE = Path(__file__).resolve().parent.parent / "annotate"


def paired(*, both: int, lost: int, gained: int, neither: int) -> tuple[list[bool], list[bool]]:
    parent = [True] * both + [True] * lost + [False] * gained + [False] * neither
    child = [True] * both + [False] * lost + [True] * gained + [False] * neither
    return parent, child


def test_a_large_consistent_drop_breaks_the_rail():
    parent, child = paired(both=60, lost=20, gained=2, neither=14)  # 83.3% → 64.6%, p ≈ 0.00005
    verdict = adherence_verdict(parent, child, max_drop=0.05, significance=0.05)
    assert not verdict["ok"] and "20 images lost, 2 gained" in verdict["detail"]
    assert verdict["parent"] == 80 / 96 and verdict["child"] == 62 / 96


def test_a_drop_past_the_limit_that_chance_explains_passes():
    parent, child = paired(both=70, lost=10, gained=4, neither=12)  # 6.25 points, p ≈ 0.09
    assert adherence_verdict(parent, child, max_drop=0.05, significance=0.05)["ok"]
    # judged by the drop alone, the same images break it
    assert not adherence_verdict(parent, child, max_drop=0.05, significance=1.0)["ok"]


def test_a_significant_drop_within_the_limit_passes():
    parent, child = paired(both=900, lost=40, gained=10, neither=50)  # 3 points on 1000 images, p < 0.001
    assert adherence_verdict(parent, child, max_drop=0.05, significance=0.05)["ok"]


def test_no_changed_verdicts_pass():
    parent, child = paired(both=50, lost=0, gained=0, neither=46)
    verdict = adherence_verdict(parent, child, max_drop=0.05, significance=0.05)
    assert verdict["ok"] and "p = 1.000" in verdict["detail"]


def stored(prompt, seed: int, checkpoint, *, adherent: bool, **settings):
    image = draw(prompt.text, seed)[0] if adherent else PILImage.new("RGB", (64, 64), (128, 128, 128))
    out = io.BytesIO()
    image.save(out, format="PNG")
    params = {"prompt": prompt.text, "seed": seed, **PARAMS, **settings, "model": {"checkpoint": checkpoint.pk}}
    return image_store(prompt=prompt, data=out.getvalue(), checkpoint=checkpoint, seed=seed, params=params)


def test_small_drops_a_round_may_not_add_up_against_the_base(taste):
    # 40 keys: the base draws all of them right, the parent 34, the child 30 (all of its misses the parent's too).
    base_model = BaseModel.objects.create(name="toy", kind="flux", path="/models/toy")
    root = Checkpoint.objects.create(taste=taste, base_model=base_model)
    parent = Checkpoint.objects.create(taste=taste, base_model=base_model, parent=root)
    child = Checkpoint.objects.create(taste=taste, base_model=base_model, parent=parent)
    prompt = Prompt.objects.create(text="a red circle")
    round_ = Round.objects.create(taste=taste, number=2, parent_checkpoint=parent, child_checkpoint=child)
    for seed in range(40):
        stored(prompt, seed, root, adherent=True)
        Pair.objects.create(round=round_, taste=taste, prompt=prompt, seed=seed, kind=Pair.Kind.EVAL,
                            image_a=stored(prompt, seed, parent, adherent=seed >= 6),
                            image_b=stored(prompt, seed, child, adherent=seed >= 10))
    stored(prompt, 0, root, adherent=False, steps=50)  # made with other settings: not the base's image of key 0

    rails = check_guard_rails(round_id=round_.pk, rails={"adherence": {"max_drop": 0.05}})["adherence"]
    assert not rails["ok"]
    assert "4 images lost, 0 gained, sign test p = 0.062" in rails["detail"]  # against the parent: chance
    assert "against the base on 40 of its images" in rails["detail"]
    assert "10 images lost, 0 gained" in rails["detail"]  # against the base: no accident
    assert rails["figures"]["base.lost"] == 10 and rails["figures"]["lost"] == 4

    loose = check_guard_rails(round_id=round_.pk, rails={"adherence": {"max_drop": 0.30}})["adherence"]
    assert loose["ok"] and loose["parent"] == 34 / 40 and loose["child"] == 30 / 40


# Rails for any model: a round of eval pairs on held-out prompts, image A the parent's and B the child's.

def picture(key: int, *, brighter: float = 1.0) -> PILImage.Image:
    """A 32 px picture of random coloured blocks, one per key; `brighter` scales its light."""
    blocks = np.random.default_rng(key).integers(30, 150, size=(4, 4, 3))
    pixels = np.kron(blocks, np.ones((8, 8, 1))) * brighter
    return PILImage.fromarray(pixels.clip(0, 255).astype(np.uint8))


def eval_round(taste, tmp_path, *, rails: dict, parent, child, prompts: int = 3, seeds: int = 6,
               flags=lambda i: ([], []), choice: str = "tie") -> Round:
    """An evaluating round: `parent(p, s)` / `child(p, s)` draw each side's image of held-out prompt p, seed s;
    one annotator judges every eval pair `choice`, flagging images A and B with `flags(pair index)`."""
    base, _ = BaseModel.objects.get_or_create(name="model", defaults={"kind": "flux", "path": str(tmp_path)})
    before = Checkpoint.objects.create(taste=taste, base_model=base, status=Checkpoint.Status.CURRENT)
    after = Checkpoint.objects.create(taste=taste, base_model=base, parent=before, lora_path=str(tmp_path / "c"))
    round_ = Round.objects.create(taste=taste, number=1, parent_checkpoint=before, child_checkpoint=after,
                                  state=Round.State.EVALUATING, overlap=1, guard_rails=rails, promotion_threshold=0.5)
    index = {}
    for p in range(prompts):
        prompt = Prompt.objects.create(text=f"a held-out prompt {p}", split=Prompt.Split.HELDOUT)
        for seed in range(seeds):
            images = []
            for draw_side, checkpoint in ((parent, before), (child, after)):
                out = io.BytesIO()
                draw_side(p, seed).save(out, format="PNG")
                images.append(image_store(prompt=prompt, data=out.getvalue(), checkpoint=checkpoint, seed=seed,
                                          params={"prompt": prompt.text, "seed": seed, **PARAMS}))
            pair = Pair.objects.create(round=round_, taste=taste, prompt=prompt, seed=seed, kind=Pair.Kind.EVAL,
                                       image_a=images[0], image_b=images[1], overlap=1)
            index[pair.pk] = len(index)
    annotator = make_annotator(taste)
    while assignments := services.assignment_claim(annotator=annotator, taste=taste, count=10):
        for assignment in assignments:
            flags_a, flags_b = flags(index[assignment.pair_id])
            left, right = (flags_a, flags_b) if assignment.left_is_a else (flags_b, flags_a)
            screen = {"b": "right" if assignment.left_is_a else "left", "tie": "tie"}[choice]
            services.judgement_submit(annotator=annotator, assignment_id=assignment.pk, choice=screen,
                                      client_uuid=uuid.uuid4(), flags_left=left, flags_right=right)
    return round_


def same(p: int, s: int) -> PILImage.Image:
    return picture(100 * p + s)


def test_human_flags_break_when_the_child_draws_more_flags_than_chance_explains(taste, tmp_path):
    # 18 pairs; both sides flagged "artifacts" on pairs 0 and 1; "off prompt": the child on 12 pairs, the parent on 1.
    def flags(i):
        both = ["artifacts"] if i < 2 else []
        return both + (["off_prompt"] if i == 17 else []), both + (["off_prompt"] if 2 <= i < 14 else [])

    round_ = eval_round(taste, tmp_path, rails={"human_flags": {}}, parent=same, child=same, flags=flags)
    rail = check_guard_rails(round_id=round_.pk, rails=round_.guard_rails)["human_flags"]
    assert not rail["ok"] and rail["detail"].endswith("; broken on all, off_prompt")
    assert "off_prompt 0.06 → 0.67 per judgement (12 pairs worse, 1 better, p = 0.002)" in rail["detail"]
    figures = rail["figures"]
    assert (figures["judgements"], figures["artifacts.parent"], figures["artifacts.child"]) == (18, 0.1111, 0.1111)
    assert figures["off_prompt.child"] == round(12 / 18, 4) and figures["artifacts.p"] == 1.0


def test_human_flags_hold_when_the_flags_do_not_move_or_chance_explains_the_rise(taste, tmp_path):
    swapped = eval_round(taste, tmp_path, rails={"human_flags": {}}, parent=same, child=same,
                         flags=lambda i: (["artifacts"] if i in (0, 1) else [], ["artifacts"] if i in (2, 3) else []))
    rail = check_guard_rails(round_id=swapped.pk, rails=swapped.guard_rails)["human_flags"]
    assert rail["ok"] and "broken" not in rail["detail"]
    assert "artifacts 0.11 → 0.11 per judgement (2 pairs worse, 2 better, p = 0.688)" in rail["detail"]
    Round.objects.filter(pk=swapped.pk).update(state=Round.State.DONE)

    # three more flagged pairs for the child: past the 0.05 margin (0.17), but p = 0.125
    few = eval_round(services.taste_create(slug="few"), tmp_path, rails={"human_flags": {}}, parent=same, child=same,
                     flags=lambda i: ([], ["waxy_skin"] if i < 3 else []))
    rail = check_guard_rails(round_id=few.pk, rails=few.guard_rails)["human_flags"]
    assert rail["ok"] and "waxy_skin 0.00 → 0.17 per judgement (3 pairs worse, 0 better, p = 0.125)" in rail["detail"]
    strict = check_guard_rails(round_id=few.pk, rails={"human_flags": {"significance": 1.0}})["human_flags"]
    assert not strict["ok"]  # judged by the margin alone, the same flags break it


def test_diversity_breaks_on_a_child_that_draws_one_image_whatever_the_seed(taste, tmp_path):
    collapsed = eval_round(taste, tmp_path, rails={"diversity": {}}, parent=same, child=lambda p, s: picture(100 * p))
    rail = check_guard_rails(round_id=collapsed.pk, rails=collapsed.guard_rails)["diversity"]
    assert not rail["ok"] and rail["figures"]["child"] == 0 and rail["figures"]["change"] == -1.0
    assert (rail["figures"]["prompts"], rail["figures"]["images"]) == (3, 18)
    assert "on 3 held-out prompts, 18 images a side (breaks on a fall of more than 25%)" in rail["detail"]


def test_diversity_holds_on_a_child_as_varied_as_its_parent_and_without_two_seeds(taste, tmp_path):
    varied = eval_round(taste, tmp_path, rails={"diversity": {"max_drop": 0.1}}, parent=same,
                        child=lambda p, s: picture(7000 + 100 * p + s))
    rail = check_guard_rails(round_id=varied.pk, rails=varied.guard_rails)["diversity"]
    assert rail["ok"] and abs(rail["figures"]["change"]) < 0.1 and rail["figures"]["parent"] > 0.1
    Round.objects.filter(pk=varied.pk).update(state=Round.State.DONE)

    single = eval_round(services.taste_create(slug="single"), tmp_path, rails={"diversity": {}}, parent=same,
                        child=lambda p, s: picture(100 * p), seeds=1)
    rail = check_guard_rails(round_id=single.pk, rails=single.guard_rails)["diversity"]
    assert rail["ok"] and rail["detail"] == "not applicable: no held-out prompt has eval images of two seeds"


def test_ai_look_bounds_break_on_a_brighter_child_and_hold_on_an_unchanged_one(taste, tmp_path):
    brighter = eval_round(taste, tmp_path, rails={"ai_look": {"brightness_max_rise": 0.1}}, parent=same,
                          child=lambda p, s: picture(100 * p + s, brighter=1.35))
    rail = check_guard_rails(round_id=brighter.pk, rails=brighter.guard_rails)["ai_look"]
    assert not rail["ok"] and rail["detail"].endswith("; broken on brightness")
    assert "brightness 0.3528 → 0.4745 (+34.5%; rise ≤ 10%)" in rail["detail"]
    assert rail["figures"]["brightness.change"] == pytest.approx(0.35, abs=0.02)
    assert rail["figures"]["saturation.change"] == pytest.approx(0, abs=0.02)
    assert check_guard_rails(round_id=brighter.pk, rails={"ai_look": {"brightness_max_rise": 0.5}})["ai_look"]["ok"]
    Round.objects.filter(pk=brighter.pk).update(state=Round.State.DONE)

    unchanged = eval_round(services.taste_create(slug="unchanged"), tmp_path, rails={"ai_look": {}}, parent=same,
                           child=same)
    rail = check_guard_rails(round_id=unchanged.pk, rails=unchanged.guard_rails)["ai_look"]
    assert rail["ok"] and all(rail["figures"][f"{key}.change"] == 0 for key in ("brightness", "saturation",
                                                                                 "sharpness"))


def test_a_decision_shows_every_rails_figures_and_ai_look_off_never_blocks(taste, tmp_path, lead_browser):
    # The child wins every pair and is brighter: with the AI-look bounds off it is promoted, the figures recorded.
    round_ = eval_round(taste, tmp_path, rails={"human_flags": {"margin": 0.05, "significance": 0.05}},
                        parent=same, child=lambda p, s: picture(100 * p + s, brighter=1.35), choice="b")
    decision = loop.round_decide(round_id=round_.pk)
    assert decision["promote"], decision["reason"]
    look = decision["guard_rails"]["ai_look"]
    assert look["on"] is False and look["ok"] and look["figures"]["brightness.change"] == pytest.approx(0.35, abs=0.02)
    assert look["detail"].startswith("figures only, no bound set: brightness 0.3528 → 0.4745 (+34.5%);")
    assert decision["guard_rails"]["human_flags"]["on"] and decision["guard_rails"]["human_flags"]["ok"]
    page = lead_browser.get(f"/admin/annotate/round/{round_.pk}/change/").content.decode()
    assert 'data-rail="ai_look"' in page and "ai_look: off — figures only" in page and "brightness.change 0.34" in page
    assert 'data-rail="human_flags"' in page and "all.child 0.0" in page
    Round.objects.filter(pk=round_.pk).update(state=Round.State.DONE)

    bounded = eval_round(services.taste_create(slug="bounded"), tmp_path,
                         rails={"ai_look": {"brightness_max_rise": 0.1}}, parent=same,
                         child=lambda p, s: picture(100 * p + s, brighter=1.35), choice="b")
    decision = loop.round_decide(round_id=bounded.pk)
    assert not decision["promote"] and decision["reason"] == "guard-rail(s) broken: ai_look"


def test_the_toy_rail_registers_only_through_its_setting(taste, tmp_path, settings):
    assert "adherence" in registry()
    settings.CHISEL_GUARD_RAIL_MODULES = []
    assert list(registry()) == ["human_flags", "diversity", "ai_look"]
    round_ = eval_round(taste, tmp_path, rails={"adherence": {}}, parent=same, child=same, seeds=1)
    rail = check_guard_rails(round_id=round_.pk, rails=round_.guard_rails)["adherence"]
    assert not rail["ok"] and "no module in CHISEL_GUARD_RAIL_MODULES registers it" in rail["detail"]


ALLOWED_TOY_IMPORTS = {"demo.py", "management/commands/toy_model.py", "management/commands/simulate_annotators.py"}


def test_annotate_names_the_toy_world_only_in_its_own_commands_and_demo():
    found = set()
    for path in ANNOTATE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [f"{node.module}.{alias.name}" for alias in node.names] if isinstance(node, ast.ImportFrom) else
                     [node.value] if isinstance(node, ast.Constant) and isinstance(node.value, str) else [])
            if any(name == "sampler.toy" or name.startswith("sampler.toy.") for name in names):
                found.add(path.relative_to(ANNOTATE).as_posix())
    assert found and found <= ALLOWED_TOY_IMPORTS, found - ALLOWED_TOY_IMPORTS
