"""Guard-rails of promotion: image checks of a round's eval pairs that the child may not degrade, whatever its win rate.

A round's `guard_rails` maps a check to its limits, e.g. `{"adherence": {"max_drop": 0.05}}`:
- `adherence`: the share of eval images whose shape and colour match a toy-world caption (absolute drop, in
  points of share); not applicable when the prompts are not toy captions. Parent and child images share their
  (prompt, seed), so the drop is also tested against chance: the rail breaks when it exceeds `max_drop` *and* a
  one-sided sign test on the images whose verdict changed says the child is worse (p below `significance`,
  default 0.05; 1 judges by the drop alone). On ~100 images a 6-point drop is often noise.
- any image diagnostic (`brightness`, `saturation`, `rgb_entropy`, `sharpness`, `flat_share`, …): the mean over
  the child's eval images against the parent's, as a relative change (`max_drop`, `max_rise`).
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

from annotate.models import Pair


@dataclass(frozen=True)
class Sides:
    """The eval images of a round: the parent's (image A) and the child's (image B), with the prompts."""

    prompts: list[str]
    parent: list
    child: list


def round_eval_sides(*, round_id: int) -> Sides:
    pairs = (
        Pair.objects.filter(round_id=round_id, kind=Pair.Kind.EVAL)
        .select_related("prompt", "image_a", "image_b")
        .order_by("id")
    )
    return Sides(
        prompts=[p.prompt.text for p in pairs], parent=[p.image_a for p in pairs], child=[p.image_b for p in pairs]
    )


def check_guard_rails(*, round_id: int, rails: dict) -> dict:
    """{name: {"ok": bool, "detail": str, "parent": float | None, "child": float | None}} for every rail."""
    if not rails:
        return {}
    sides = round_eval_sides(round_id=round_id)
    if not sides.prompts:
        return {name: _result(False, "no eval images to check") for name in rails}
    return {name: _check(name, limits, sides) for name, limits in rails.items()}


def _check(name: str, limits: dict, sides: Sides) -> dict:
    if name == "adherence":
        parent, child = _toy_adherence(sides.prompts, sides.parent), _toy_adherence(sides.prompts, sides.child)
        if parent is None:
            return _result(True, "not applicable: the prompts are not toy-world captions")
        return adherence_verdict(parent, child, max_drop=limits.get("max_drop", 0.05),
                                 significance=limits.get("significance", 0.05))
    parent, child = _mean_diagnostic(sides.parent, name), _mean_diagnostic(sides.child, name)
    if parent is None or child is None:
        return _result(False, f"no image diagnostic '{name}'")
    change = (child - parent) / abs(parent) if parent else 0.0
    ok = change >= -limits.get("max_drop", np.inf) and change <= limits.get("max_rise", np.inf)
    return _result(ok, f"{name} {parent:.4g} → {child:.4g} ({change:+.1%}; limits {limits})", parent, child)


def adherence_verdict(parent: list[bool], child: list[bool], *, max_drop: float, significance: float) -> dict:
    """The adherence rail on paired verdicts (image i of the parent and of the child share prompt and seed)."""
    from scipy.stats import binomtest  # here, not at import: web processes load this module too

    before, after = float(np.mean(parent)), float(np.mean(child))
    lost = sum(p and not c for p, c in zip(parent, child, strict=True))  # adherent for the parent only
    gained = sum(c and not p for p, c in zip(parent, child, strict=True))
    p_value = binomtest(lost, lost + gained, 0.5, alternative="greater").pvalue if lost + gained else 1.0
    too_far = before - after > max_drop + 1e-9
    ok = not (too_far and p_value < significance)
    detail = (f"adherence {before:.1%} → {after:.1%} (may drop {max_drop:.0%}; {lost} images lost, {gained} gained, "
              f"sign test p = {p_value:.3f})")
    return _result(ok, detail, before, after)


def _result(ok: bool, detail: str, parent: float | None = None, child: float | None = None) -> dict:
    return {"ok": bool(ok), "detail": detail, "parent": parent, "child": child}


def _mean_diagnostic(images, key: str) -> float | None:
    values = [image.diagnostics[key] for image in images if key in image.diagnostics]
    return float(np.mean(values)) if values else None


def _toy_adherence(prompts: list[str], images) -> list[bool] | None:
    from sampler.toy.checkers import adherence
    from sampler.toy.world import parse_caption

    if not all(spec.shape and spec.colour for spec in map(parse_caption, prompts)):
        return None
    hits = []
    for prompt, image in zip(prompts, images):
        with image.file.open("rb") as handle, PILImage.open(handle) as decoded:
            hits.append(adherence(decoded.convert("RGB"), prompt))
    return hits
