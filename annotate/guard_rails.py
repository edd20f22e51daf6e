"""Guard-rails of promotion: image checks of a round's eval pairs that the child may not degrade, whatever its win rate.

A round's `guard_rails` maps a check to its limits, e.g. `{"adherence": {"max_drop": 0.05}}`:
- `adherence`: the share of eval images whose shape and colour match a toy-world caption (absolute drop, in
  points of share); not applicable when the prompts are not toy captions. Parent and child images share their
  (prompt, seed), so the drop is also tested against chance: the rail breaks when it exceeds `max_drop` *and* a
  one-sided sign test on the images whose verdict changed says the child is worse (p below `significance`,
  default 0.05; 1 judges by the drop alone). On ~100 images a 6-point drop is often noise. The child is held to
  the same limit against the lineage's root (the base model) on the keys the root has images of (rounds share
  their eval keys, so round 1's parent images serve): drops of a few points a round may not add up.
- any image diagnostic (`brightness`, `saturation`, `rgb_entropy`, `sharpness`, `flat_share`, …): the mean over
  the child's eval images against the parent's, as a relative change (`max_drop`, `max_rise`).
"""

import json
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

from annotate.models import Checkpoint, Image, Pair, Round


@dataclass(frozen=True)
class Sides:
    """The eval images of a round: the parent's (image A) and the child's (image B), with the prompts; and the
    lineage root's image of each key where one exists (None where not, or when the parent is the root)."""

    prompts: list[str]
    parent: list
    child: list
    root: list


def round_eval_sides(*, round_id: int) -> Sides:
    pairs = list(
        Pair.objects.filter(round_id=round_id, kind=Pair.Kind.EVAL)
        .select_related("prompt", "image_a", "image_b")
        .order_by("id")
    )
    return Sides(
        prompts=[p.prompt.text for p in pairs], parent=[p.image_a for p in pairs], child=[p.image_b for p in pairs],
        root=_root_images(round_id=round_id, pairs=pairs),
    )


def _root_images(*, round_id: int, pairs: list[Pair]) -> list:
    """The root checkpoint's image of each pair's (prompt, seed) under the same sampling settings."""
    parent = Round.objects.select_related("parent_checkpoint").get(pk=round_id).parent_checkpoint
    if parent is None or parent.parent_id is None or not pairs:  # the parent is the root: its check is the one
        return [None] * len(pairs)
    root = parent
    while root.parent_id is not None:
        root = Checkpoint.objects.only("id", "parent_id").get(pk=root.parent_id)

    def key(image) -> tuple:
        settings = {k: v for k, v in image.params.items() if k not in ("model", "prompt", "seed")}
        return image.prompt_id, image.seed, json.dumps(settings, sort_keys=True)

    found = Image.objects.filter(
        checkpoint=root, prompt_id__in={p.prompt_id for p in pairs}, seed__in={p.seed for p in pairs}
    )
    by_key = {key(image): image for image in found}
    return [by_key.get(key(p.image_b)) for p in pairs]


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
        limit, significance = limits.get("max_drop", 0.05), limits.get("significance", 0.05)
        verdict = adherence_verdict(parent, child, max_drop=limit, significance=significance)
        kept = [i for i, image in enumerate(sides.root) if image is not None]
        if not kept:
            return verdict
        root = _toy_adherence([sides.prompts[i] for i in kept], [sides.root[i] for i in kept])
        against_root = adherence_verdict(root, [child[i] for i in kept], max_drop=limit, significance=significance)
        return _result(verdict["ok"] and against_root["ok"],
                       f"{verdict['detail']}; against the base on {len(kept)} of its images: {against_root['detail']}",
                       verdict["parent"], verdict["child"])
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
    detail = (f"adherence {before:.1%} → {after:.1%} ({(after - before) * 100:+.1f} points; breaks on a fall of more than "
              f"{max_drop * 100:g} points that a one-sided sign test confirms, p < {significance:g}): {lost} images lost, "
              f"{gained} gained, sign test p = {p_value:.3f}")
    return _result(ok, detail, before, after)


def describe_guard_rails(rails: dict) -> list[tuple[str, str]]:
    """(name, what exactly is checked) for each of a round's guard-rails, in words for the cockpit."""
    described = []
    for name, limits in rails.items():
        if name == "adherence":
            significance = limits.get("significance", 0.05)
            test = (f"and a one-sided sign test on the images whose verdict changed says the child is worse "
                    f"(p < {significance:g})" if significance < 1 else "(by the drop alone)")
            described.append((name, f"breaks when the child's caption adherence falls more than "
                                    f"{limits.get('max_drop', 0.05) * 100:g} points below the parent's, or below the base "
                                    f"model's on the eval keys it has images of, {test}; toy-world captions only"))
        else:
            bounds = [f"fall more than {limits['max_drop']:.0%}" if "max_drop" in limits else "",
                      f"rise more than {limits['max_rise']:.0%}" if "max_rise" in limits else ""]
            described.append((name, f"breaks when the child's mean {name} over its eval images would "
                                    f"{' or '.join(b for b in bounds if b) or 'change (no limit set)'} against the parent's"))
    return described


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
