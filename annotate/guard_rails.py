"""Guard-rails of promotion: a registry of small pure checks of a round's eval pairs that the child may not fail,
whatever its win rate.

A rail module lists its rails in `GUARD_RAILS`, each a dict: `name`; `check(sides, limits)` → `{"ok", "detail",
"figures"}` on plain data (`EvalSides`, below); `limits` → {key: (default, low, high, label)} (a None default: no
bound unless set); `on` (chosen by default at launch); `summary` (one line for the launch form); `describe(limits)`
(what exactly is checked, in words, for the cockpit); `always_shown` (figures computed, and shown in the decision,
even when the round runs it off). The registry reads `annotate/rails.py` (rails for any model) and the modules
named in `settings.CHISEL_GUARD_RAIL_MODULES` (the toy world's caption adherence, `sampler/toy/guard_rail.py`).

A round owns its rails from launch: `Round.guard_rails` maps each rail it runs to its limits, e.g.
`{"human_flags": {"margin": 0.05, "significance": 0.05}, "diversity": {"max_drop": 0.25}}`; the decision records
every rail's result, figures included (`Round.decision["guard_rails"]`).
"""

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import import_module

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from annotate.models import Checkpoint, Image, Judgement, Pair, Round

BUILT_IN = "annotate.rails"


@dataclass(frozen=True)
class EvalImage:
    """One image of an eval pair, as plain data: its seed, stored diagnostics, the defect flags annotators put on
    it (flag → judgements of its pair that flagged it) and `load()`, its decoded RGB pixels."""

    seed: int | None
    diagnostics: dict
    flags: Counter
    load: Callable


@dataclass(frozen=True)
class EvalSides:
    """A round's eval pairs, pair i on index i: the prompt, the parent's image (image A), the child's (image B),
    the judgements the pair got, and the lineage root's image of its (prompt, seed) where one exists (None where
    not, or when the parent is the root)."""

    prompts: list[str]
    parent: list[EvalImage]
    child: list[EvalImage]
    judgements: list[int]
    root: list[EvalImage | None] = field(default_factory=list)


@dataclass(frozen=True)
class Limit:
    default: float | None
    low: float
    high: float
    label: str


@dataclass(frozen=True)
class Rail:
    name: str
    check: Callable[[EvalSides, dict], dict]
    summary: str
    describe: Callable[[dict], str]
    limits: dict[str, Limit]
    on: bool = True
    always_shown: bool = False

    def limits_with(self, chosen: dict | None = None) -> dict:
        """The rail's default limits under `chosen` (a None value: no bound), without the unset ones."""
        values = {key: limit.default for key, limit in self.limits.items()} | dict(chosen or {})
        return {key: value for key, value in values.items() if value is not None}


def registry() -> dict[str, Rail]:
    """Every registered rail by name, the built-in ones first."""
    return _registry(tuple(getattr(settings, "CHISEL_GUARD_RAIL_MODULES", ())))


@cache
def _registry(modules: tuple[str, ...]) -> dict[str, Rail]:
    rails: dict[str, Rail] = {}
    for module_name in (BUILT_IN, *modules):
        try:
            specs = import_module(module_name).GUARD_RAILS
        except (ImportError, AttributeError) as exc:
            raise ImproperlyConfigured(f"Guard-rail module {module_name} cannot be read: {exc}") from exc
        for spec in specs:
            if spec["name"] in rails:
                raise ImproperlyConfigured(f"Guard-rail '{spec['name']}' is registered twice ({module_name}).")
            rails[spec["name"]] = Rail(
                name=spec["name"], check=spec["check"], summary=spec["summary"], describe=spec["describe"],
                limits={key: Limit(*value) for key, value in spec.get("limits", {}).items()},
                on=spec.get("on", True), always_shown=spec.get("always_shown", False),
            )
    return rails


def default_guard_rails() -> dict:
    """The rails a round runs unless its lead chooses otherwise, with their default limits."""
    return {name: rail.limits_with() for name, rail in registry().items() if rail.on}


def guard_rails_checked(chosen: dict) -> dict:
    """The rails as a round stores them (each one's limits over its defaults); ValueError naming the first
    unknown rail, unknown limit or limit out of bounds."""
    if not isinstance(chosen, dict):
        raise ValueError("Guard-rails are a mapping of rail names to their limits.")
    rails = registry()
    stored = {}
    for name, limits in chosen.items():
        rail = rails.get(name)
        if rail is None:
            raise ValueError(f"Unknown guard-rail '{name}'; known: {', '.join(rails)}.")
        limits = limits or {}
        if not isinstance(limits, dict):
            raise ValueError(f"The limits of guard-rail '{name}' are a mapping of names to numbers.")
        for key, value in limits.items():
            limit = rail.limits.get(key)
            if limit is None:
                raise ValueError(f"Guard-rail '{name}' has no limit '{key}'; its limits: {', '.join(rail.limits)}.")
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not limit.low <= value <= limit.high:
                raise ValueError(f"The {name} guard-rail's {key} ({limit.label}) {value!r} is out of bounds: "
                                 f"it must be between {limit.low:g} and {limit.high:g}.")
        stored[name] = rail.limits_with(limits)
    return stored


def check_guard_rails(*, round_id: int, rails: dict) -> dict:
    """{name: {"ok", "on", "detail", "figures"}} for every rail the round runs, and figures only ("on": False,
    never breaking) for the rails always shown that it runs off."""
    registered = registry()
    shown = [name for name, rail in registered.items() if rail.always_shown and name not in rails]
    if not rails and not shown:
        return {}
    sides = round_eval_sides(round_id=round_id)
    if not sides.prompts:
        return {name: _result(False, "no eval images to check") for name in rails}
    results = {}
    for name, limits in rails.items():
        rail = registered.get(name)
        if rail is None:
            results[name] = _result(False, f"unknown guard-rail '{name}': no module in CHISEL_GUARD_RAIL_MODULES "
                                           "registers it")
            continue
        results[name] = _run(rail, sides, rail.limits_with(limits))
    for name in shown:  # off: measured without bounds
        unbounded = registered[name].limits_with({key: None for key in registered[name].limits})
        results[name] = {**_run(registered[name], sides, unbounded), "ok": True, "on": False}
    return results


def _run(rail: Rail, sides: EvalSides, limits: dict) -> dict:
    try:
        checked = rail.check(sides, limits)
    except OSError as exc:  # an image file gone or unreadable: the rail cannot vouch for the child
        return _result(False, f"the eval images could not be read: {exc}")
    return {"ok": bool(checked["ok"]), "on": True, "detail": checked["detail"], "figures": checked.get("figures", {}),
            **{key: checked[key] for key in ("parent", "child") if key in checked}}


def describe_guard_rails(rails: dict) -> list[tuple[str, str]]:
    """(name, what exactly is checked) for each of a round's guard-rails, in words for the cockpit; the rails
    always shown that the round runs off are listed as figures only."""
    registered = registry()
    described = []
    for name, limits in rails.items():
        rail = registered.get(name)
        described.append((name, rail.describe(rail.limits_with(limits)) if rail else
                                "unknown here: no module in CHISEL_GUARD_RAIL_MODULES registers it, so it breaks"))
    described += [(name, f"off: figures only ({rail.summary})") for name, rail in registered.items()
                  if rail.always_shown and name not in rails]
    return described


def round_eval_sides(*, round_id: int) -> EvalSides:
    pairs = list(
        Pair.objects.filter(round_id=round_id, kind=Pair.Kind.EVAL)
        .select_related("prompt", "image_a", "image_b")
        .order_by("id")
    )
    counts: dict[int, int] = Counter()
    flags: dict[int, tuple[Counter, Counter]] = {pair.pk: (Counter(), Counter()) for pair in pairs}
    for pair_id, flags_a, flags_b in Judgement.objects.filter(pair__in=pairs).values_list("pair_id", "flags_a",
                                                                                           "flags_b"):
        counts[pair_id] += 1
        flags[pair_id][0].update(set(flags_a or []))
        flags[pair_id][1].update(set(flags_b or []))
    return EvalSides(
        prompts=[p.prompt.text for p in pairs],
        parent=[eval_image(p.image_a, flags[p.pk][0]) for p in pairs],
        child=[eval_image(p.image_b, flags[p.pk][1]) for p in pairs],
        judgements=[counts[p.pk] for p in pairs],
        root=[None if image is None else eval_image(image) for image in _root_images(round_id=round_id, pairs=pairs)],
    )


def eval_image(image: Image, flags: Counter | None = None) -> EvalImage:
    """An Image row as plain data; its pixels are read on each `load()` (not kept: a round's eval images at
    1024 px would hold gigabytes)."""

    def load():
        from PIL import Image as PILImage

        with image.file.open("rb") as handle, PILImage.open(handle) as decoded:
            return decoded.convert("RGB")

    return EvalImage(seed=image.seed, diagnostics=dict(image.diagnostics or {}), flags=flags or Counter(), load=load)


def _root_images(*, round_id: int, pairs: list[Pair]) -> list:
    """The root checkpoint's image of each pair's (prompt, seed) under the same sampling settings."""
    parent = Round.objects.select_related("parent_checkpoint").get(pk=round_id).parent_checkpoint
    if parent is None or parent.parent_id is None or not pairs:  # the parent is the root: its check is the one
        return [None] * len(pairs)
    root = parent
    while root.parent_id is not None:
        root = Checkpoint.objects.only("id", "parent_id").get(pk=root.parent_id)

    def key(image) -> tuple:
        settings_ = {k: v for k, v in image.params.items() if k not in ("model", "prompt", "seed")}
        return image.prompt_id, image.seed, json.dumps(settings_, sort_keys=True)

    found = Image.objects.filter(
        checkpoint=root, prompt_id__in={p.prompt_id for p in pairs}, seed__in={p.seed for p in pairs}
    )
    by_key = {key(image): image for image in found}
    return [by_key.get(key(p.image_b)) for p in pairs]


def _result(ok: bool, detail: str) -> dict:
    return {"ok": bool(ok), "on": True, "detail": detail, "figures": {}}
