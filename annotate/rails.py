"""The built-in guard-rails, for any model: human defect flags, diversity across seeds, "AI look" drift.

Each is a pure function of a round's eval pairs as plain data (annotate/guard_rails.py `EvalSides`: image A is
the parent's, image B the child's, on the same prompt and seed) and its limits; the registry reads `GUARD_RAILS`.
"""

from collections import defaultdict

import numpy as np

LOOK_KEYS = ("brightness", "saturation", "sharpness")  # the "AI look": overly bright, oversaturated, soft


def human_flags(sides, limits: dict) -> dict:
    """The child's eval images may not draw more defect flags than the parent's, per flag and in all.

    On each eval pair the flags of the child's image are counted against the parent's, over the pair's
    judgements. A count (all flags, or one flag) breaks the rail when the child's rate (flags per judgement)
    exceeds the parent's by more than `margin` *and* a one-sided sign test over the pairs whose counts differ
    says the child draws more (p below `significance`; each single flag is tested at `significance` divided by
    the number of flags seen, Bonferroni, so that six or seven flags do not multiply false alarms).
    """
    from scipy.stats import binomtest  # here, not at import: web processes load this module too

    judged = [i for i, n in enumerate(sides.judgements) if n]
    if not judged:
        return {"ok": True, "detail": "not applicable: no eval pair has a judgement yet", "figures": {}}
    margin, significance = limits["margin"], limits["significance"]
    seen = sorted({flag for i in judged for image in (sides.parent[i], sides.child[i]) for flag in image.flags})
    judgements = sum(sides.judgements[i] for i in judged)
    figures, broken, lines = {"judgements": judgements}, [], []
    for flag in ["all", *seen]:
        count = (lambda image: sum(image.flags.values())) if flag == "all" else (lambda image: image.flags[flag])
        parent = [count(sides.parent[i]) for i in judged]
        child = [count(sides.child[i]) for i in judged]
        worse = sum(c > p for p, c in zip(parent, child, strict=True))
        better = sum(c < p for p, c in zip(parent, child, strict=True))
        p_value = binomtest(worse, worse + better, 0.5, alternative="greater").pvalue if worse + better else 1.0
        level = significance if flag == "all" else significance / len(seen)
        before, after = sum(parent) / judgements, sum(child) / judgements
        if after - before > margin + 1e-9 and p_value < level:
            broken.append(flag)
        figures |= {f"{flag}.parent": round(before, 4), f"{flag}.child": round(after, 4),
                    f"{flag}.p": round(p_value, 4)}
        lines.append(f"{flag} {before:.2f} → {after:.2f} per judgement ({worse} pairs worse, {better} better, "
                     f"p = {p_value:.3f})")
    return {"ok": not broken, "figures": figures,
            "detail": f"{'; '.join(lines)} over {judgements} judgements of {len(judged)} eval pairs (breaks on a rise "
                      f"of more than {margin:g} flags per judgement that a one-sided sign test confirms, "
                      f"p < {significance:g}, {significance:g} ÷ flags seen for one flag)"
                      + (f"; broken on {', '.join(broken)}" if broken else "")}


def diversity(sides, limits: dict) -> dict:
    """The child's diversity across seeds on the held-out prompts may not fall more than `max_drop` (a share) below
    the parent's: the mode-collapse monitor (sampler/diversity.py: mean pairwise distance of one prompt's images
    across seeds, averaged over prompts)."""
    from sampler.diversity import mean_pairwise_distance

    by_prompt = defaultdict(list)
    for i, prompt in enumerate(sides.prompts):
        by_prompt[prompt].append(i)
    groups = [indices for indices in by_prompt.values() if len({sides.child[i].seed for i in indices}) > 1]
    if not groups:
        return {"ok": True, "figures": {"prompts": 0},
                "detail": "not applicable: no held-out prompt has eval images of two seeds"}
    # sampler.diversity.diversity over the groups, one prompt's images in memory at a time
    parent = float(np.mean([mean_pairwise_distance([sides.parent[i].load() for i in group]) for group in groups]))
    child = float(np.mean([mean_pairwise_distance([sides.child[i].load() for i in group]) for group in groups]))
    change = (child - parent) / parent if parent else 0.0
    max_drop = limits["max_drop"]
    ok = change >= -max_drop - 1e-9
    return {"ok": ok, "parent": parent, "child": child,
            "figures": {"parent": round(parent, 4), "child": round(child, 4), "change": round(change, 4),
                        "prompts": len(groups), "images": sum(map(len, groups))},
            "detail": f"diversity across seeds {parent:.4f} → {child:.4f} ({change:+.1%}) on {len(groups)} held-out "
                      f"prompts, {sum(map(len, groups))} images a side (breaks on a fall of more than {max_drop:.0%})"}


def ai_look(sides, limits: dict) -> dict:
    """The mean brightness, saturation and sharpness of the child's eval images against the parent's, as relative
    changes; each `<key>_max_rise` / `<key>_max_drop` set bounds that move."""
    figures, lines, broken = {}, [], []
    for key in LOOK_KEYS:
        parent, child = _mean(sides.parent, key), _mean(sides.child, key)
        change = (child - parent) / abs(parent) if parent else 0.0
        figures |= {f"{key}.parent": round(parent, 4), f"{key}.child": round(child, 4),
                    f"{key}.change": round(change, 4)}
        bounds = []
        if (rise := limits.get(f"{key}_max_rise")) is not None:
            bounds.append(f"rise ≤ {rise:.0%}")
            broken += [key] if change > rise + 1e-9 else []
        if (drop := limits.get(f"{key}_max_drop")) is not None:
            bounds.append(f"fall ≤ {drop:.0%}")
            broken += [key] if change < -drop - 1e-9 else []
        lines.append(f"{key} {parent:.4g} → {child:.4g} ({change:+.1%}{'; ' + ', '.join(bounds) if bounds else ''})")
    bounded = any(limits.get(f"{key}_max_{way}") is not None for key in LOOK_KEYS for way in ("rise", "drop"))
    return {"ok": not broken, "figures": figures,
            "detail": ("" if bounded else "figures only, no bound set: ") + "; ".join(lines)
                      + (f"; broken on {', '.join(dict.fromkeys(broken))}" if broken else "")}


def _mean(images, key: str) -> float:
    """The mean of a diagnostic over images: the stored figure, else measured from the pixels."""
    from sampler.diagnostics import diagnostics

    return float(np.mean([image.diagnostics[key] if key in image.diagnostics else diagnostics(image.load())[key]
                          for image in images]))


def _describe_flags(limits: dict) -> str:
    return (f"breaks when the child's eval images draw more than {limits['margin']:g} more defect flags per judgement "
            f"than the parent's, in all or for any one flag, and a one-sided sign test over the eval pairs confirms "
            f"it (p < {limits['significance']:g}; one flag at {limits['significance']:g} ÷ flags seen)")


def _describe_look(limits: dict) -> str:
    bounds = []
    for key in LOOK_KEYS:
        if (rise := limits.get(f"{key}_max_rise")) is not None:
            bounds.append(f"{key} rises more than {rise:.0%}")
        if (drop := limits.get(f"{key}_max_drop")) is not None:
            bounds.append(f"{key} falls more than {drop:.0%}")
    return (f"breaks when the child's mean {' or '.join(bounds)} against the parent's eval images" if bounds
            else "no bound set: figures only")


_SHARE = (0.0, 1.0)
GUARD_RAILS = [
    {"name": "human_flags", "check": human_flags, "on": True,
     "summary": "the child's images may not draw more defect flags than the parent's (sign test)",
     "describe": _describe_flags,
     "limits": {"margin": (0.05, 0.0, 10.0, "margin, in flags per judgement"),
                "significance": (0.05, *_SHARE, "significance")}},
    {"name": "diversity", "check": diversity, "on": True,
     "summary": "the child's diversity across seeds may not fall far below the parent's (mode collapse)",
     "describe": lambda limits: (f"breaks when the child's diversity across seeds on the held-out prompts falls more "
                                 f"than {limits['max_drop']:.0%} below the parent's; not applicable when no prompt "
                                 f"has two seeds"),
     "limits": {"max_drop": (0.25, *_SHARE, "largest fall, as a share")}},
    {"name": "ai_look", "check": ai_look, "on": False, "always_shown": True,
     "summary": "bounds on brightness, saturation and sharpness moves (the \"AI look\"); figures always shown",
     "describe": _describe_look,
     "limits": {"brightness_max_rise": (0.10, 0.0, 10.0, "brightness: largest rise, as a share"),
                "brightness_max_drop": (None, *_SHARE, "brightness: largest fall, as a share"),
                "saturation_max_rise": (0.10, 0.0, 10.0, "saturation: largest rise, as a share"),
                "saturation_max_drop": (None, *_SHARE, "saturation: largest fall, as a share"),
                "sharpness_max_rise": (None, 0.0, 10.0, "sharpness: largest rise, as a share"),
                "sharpness_max_drop": (0.25, *_SHARE, "sharpness: largest fall, as a share")}},
]
