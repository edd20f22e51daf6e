"""The adherence guard-rail: a drop beyond the limit breaks it only when the paired images say it is no accident."""

import io

from PIL import Image as PILImage

from annotate.guard_rails import adherence_verdict, check_guard_rails
from annotate.images import image_store
from annotate.models import BaseModel, Checkpoint, Pair, Prompt, Round
from sampler.toy.world import draw

PARAMS = {"steps": 20, "guidance": 3.5, "width": 64, "height": 64, "max_sequence_length": 32}


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

    loose = check_guard_rails(round_id=round_.pk, rails={"adherence": {"max_drop": 0.30}})["adherence"]
    assert loose["ok"] and loose["parent"] == 34 / 40 and loose["child"] == 30 / 40
