"""The toy world's guard-rail: caption adherence of the child's eval images may not fall below the parent's.

Registered with the promotion gate through `settings.CHISEL_GUARD_RAIL_MODULES` (annotate/guard_rails.py reads
`GUARD_RAILS`); a pure function of the eval pairs as plain data. Not applicable when the prompts are not toy-world
captions: a real model has no checker that reads its images.

`adherence`: the share of eval images whose shape and colour match their caption (absolute drop, in points of
share). Parent and child images share their (prompt, seed), so the drop is also tested against chance: the rail
breaks when it exceeds `max_drop` *and* a one-sided sign test on the images whose verdict changed says the child
is worse (p below `significance`, default 0.05; 1 judges by the drop alone). On ~100 images a 6-point drop is
often noise. The child is held to the same limit against the lineage's root (the base model) on the keys the root
has images of (rounds share their eval keys, so round 1's parent images serve): drops of a few points a round may
not add up.
"""

import numpy as np


def adherence_rail(sides, limits: dict) -> dict:
    parent, child = _adherence(sides.prompts, sides.parent), _adherence(sides.prompts, sides.child)
    if parent is None:
        return {"ok": True, "detail": "not applicable: the prompts are not toy-world captions", "figures": {}}
    limit, significance = limits["max_drop"], limits["significance"]
    verdict = adherence_verdict(parent, child, max_drop=limit, significance=significance)
    kept = [i for i, image in enumerate(sides.root or []) if image is not None]
    if not kept:
        return verdict
    root = _adherence([sides.prompts[i] for i in kept], [sides.root[i] for i in kept])
    against_root = adherence_verdict(root, [child[i] for i in kept], max_drop=limit, significance=significance)
    return {"ok": verdict["ok"] and against_root["ok"], "parent": verdict["parent"], "child": verdict["child"],
            "figures": {**verdict["figures"], **{f"base.{k}": v for k, v in against_root["figures"].items()},
                        "base.images": len(kept)},
            "detail": f"{verdict['detail']}; against the base on {len(kept)} of its images: {against_root['detail']}"}


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
    return {"ok": ok, "detail": detail, "parent": before, "child": after,
            "figures": {"parent": round(before, 4), "child": round(after, 4), "lost": lost, "gained": gained,
                        "p": round(p_value, 4)}}


def describe(limits: dict) -> str:
    significance = limits["significance"]
    test = (f"and a one-sided sign test on the images whose verdict changed says the child is worse "
            f"(p < {significance:g})" if significance < 1 else "(by the drop alone)")
    return (f"breaks when the child's caption adherence falls more than {limits['max_drop'] * 100:g} points below the "
            f"parent's, or below the base model's on the eval keys it has images of, {test}; toy-world captions only")


def _adherence(prompts: list[str], images) -> list[bool] | None:
    from sampler.toy.checkers import adherence
    from sampler.toy.world import parse_caption

    if not all(spec.shape and spec.colour for spec in map(parse_caption, prompts)):
        return None
    return [adherence(image.load(), prompt) for prompt, image in zip(prompts, images, strict=True)]


GUARD_RAILS = [
    {"name": "adherence", "check": adherence_rail, "on": True, "describe": describe,
     "summary": "toy world only: caption adherence may not fall below the parent's or the base's (sign test)",
     "limits": {"max_drop": (0.05, 0.0, 1.0, "largest fall, as a share"),
                "significance": (0.05, 0.0, 1.0, "significance")}},
]
