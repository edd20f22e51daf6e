"""What the lead's page of a taste shows, as plain data: one selector per figure, each a bounded number of queries."""

import json
import logging
from collections import defaultdict

import numpy as np
from django.db.models import Count, Q
from PIL import Image as PILImage

from annotate.evaluation import clustered_rate, win_record
from annotate.models import Checkpoint, Image, Judgement, Pair, Prompt, Round, Taste
from annotate.stats import bradley_terry, implied_win
from annotate.storage import run_file_text
from sampler.diversity import diversity

logger = logging.getLogger(__name__)

DIAGNOSTICS = ("brightness", "saturation", "rgb_entropy", "flat_share", "sharpness")
CURVES = ("loss", "implicit_accuracy", "margin")
DIVERSITY_PROMPTS = 12  # prompts, and seeds per prompt, read to measure a checkpoint's diversity
DIVERSITY_SEEDS = 8
FILMSTRIP_ROWS = 4


def round_rows(*, taste: Taste) -> list[dict]:
    """Every round of the taste in order: state, label counts, the eval win rate with its interval, the decision."""
    rounds = list(
        Round.objects.filter(taste=taste).select_related("parent_checkpoint").order_by("number").annotate(
            train_labels=Count("pairs__judgements", filter=Q(pairs__kind=Pair.Kind.TRAIN)),
            eval_labels=Count("pairs__judgements", filter=Q(pairs__kind=Pair.Kind.EVAL)),
        )
    )
    judgements = defaultdict(list)  # (round id, kind) → (prompt id, pair id, choice) of its eval or base judgements
    for round_id, kind, *row in Judgement.objects.filter(
        pair__round__taste=taste, pair__kind__in=(Pair.Kind.EVAL, Pair.Kind.BASE)
    ).order_by("id").values_list("pair__round_id", "pair__kind", "pair__prompt_id", "pair_id", "choice"):
        judgements[round_id, kind].append(row)
    rows = []
    for round_ in rounds:
        decision = round_.decision or {}
        against_base = round_.parent_checkpoint is not None and round_.parent_checkpoint.parent_id is None
        win = win_record(clustered_rate(judgements[round_.pk, Pair.Kind.EVAL]))
        rows.append({
            "number": round_.number, "id": round_.pk, "state": round_.state, "error": round_.error,
            "train_labels": round_.train_labels, "eval_labels": round_.eval_labels,
            "win": win, "threshold": round_.promotion_threshold, "promoted": decision.get("promote"),
            "parent": round_.parent_checkpoint_id, "child": round_.child_checkpoint_id, "against_base": against_base,
            # The child against the base, measured: its eval pairs when the parent is the base, else its base pairs.
            "cumulative": win if against_base else win_record(clustered_rate(judgements[round_.pk, Pair.Kind.BASE])),
        })
    return rows


def lineage(*, taste: Taste) -> list[dict]:
    """The taste's checkpoints in the order they were made, named by the round that trained them."""
    made_by = dict(Round.objects.filter(taste=taste, child_checkpoint__isnull=False)
                   .values_list("child_checkpoint_id", "number"))
    return [
        {"id": c.pk, "label": f"round {made_by[c.pk]}" if c.pk in made_by else ("base" if c.parent_id is None else f"#{c.pk}"),
         "status": c.status, "parent": c.parent_id, "lora_path": c.lora_path, "metrics": c.metrics}
        for c in Checkpoint.objects.filter(taste=taste).order_by("id")
    ]


def checkpoint_diagnostics(*, taste: Taste) -> dict[int, dict]:
    """Per checkpoint: the mean of each image diagnostic over the images sampled from it, and their count."""
    values: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for checkpoint_id, diagnostics in Image.objects.filter(checkpoint__taste=taste).values_list(
        "checkpoint_id", "diagnostics"
    ):
        for key in DIAGNOSTICS:
            if key in diagnostics:
                values[checkpoint_id][key].append(diagnostics[key])
    return {
        checkpoint_id: {"images": max(map(len, keys.values()), default=0),
                        **{key: float(np.mean(keys[key])) if keys[key] else None for key in DIAGNOSTICS}}
        for checkpoint_id, keys in values.items()
    }


def training_curves(*, rounds: list[dict], checkpoints: list[dict]) -> dict[int, list[dict]]:
    """Per round number: the trainer's metrics by step, read from `metrics.jsonl` beside the child's LoRA."""
    paths = {c["id"]: c["lora_path"] for c in checkpoints}
    curves = {}
    for row in rounds:
        lora = paths.get(row["child"])
        metrics = run_file_text(lora, "metrics.jsonl") if lora else None
        if metrics is None:
            continue
        steps = []
        for line in metrics.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            # The DPO term alone where the trainer logs it apart from a winner or anchor term (`sft_weight`,
            # `anchor_weight`).
            record["loss"] = record.get("dpo_loss", record.get("loss"))
            steps.append({"step": record["step"], **{key: record.get(key) for key in CURVES}})
        curves[row["number"]] = steps
    return curves


def annotator_activity(*, taste: Taste) -> list[dict]:
    """Judgements per annotator per round, with their median time per judgement."""
    rows = (
        Judgement.objects.filter(pair__round__taste=taste)
        .values("pair__round__number", "annotator__username")
        .annotate(labels=Count("id"))
        .order_by("pair__round__number", "annotator__username")
    )
    durations = defaultdict(list)
    for number, username, duration in Judgement.objects.filter(pair__round__taste=taste, duration_ms__isnull=False) \
            .values_list("pair__round__number", "annotator__username", "duration_ms"):
        durations[(number, username)].append(duration)
    return [
        {"round": r["pair__round__number"], "annotator": r["annotator__username"], "labels": r["labels"],
         "median_ms": float(np.median(durations[(r["pair__round__number"], r["annotator__username"])]))
         if durations[(r["pair__round__number"], r["annotator__username"])] else None}
        for r in rows
    ]


def checkpoint_diversity(*, checkpoint_id: int) -> float | None:
    """How different one checkpoint's images of a prompt are across seeds; cached in the checkpoint's metrics
    once its round is over (its images no longer change)."""
    checkpoint = Checkpoint.objects.get(pk=checkpoint_id)
    cached = checkpoint.metrics.get("diversity")
    if cached is not None:
        return cached["value"]
    by_prompt: dict[int, list[str]] = defaultdict(list)
    for prompt_id, name in Image.objects.filter(checkpoint_id=checkpoint_id, seed__isnull=False).order_by(
        "prompt_id", "seed"
    ).values_list("prompt_id", "file"):
        if len(by_prompt) < DIVERSITY_PROMPTS or prompt_id in by_prompt:
            if len(by_prompt[prompt_id]) < DIVERSITY_SEEDS:
                by_prompt[prompt_id].append(name)
    groups = []
    for names in by_prompt.values():
        images = []
        for name in names:
            field = Image._meta.get_field("file")
            with field.storage.open(name, "rb") as handle, PILImage.open(handle) as decoded:
                images.append(decoded.convert("RGB"))
        groups.append(images)
    value = diversity(groups)
    if value is not None and checkpoint.status != Checkpoint.Status.CANDIDATE:
        Checkpoint.objects.filter(pk=checkpoint_id).update(
            metrics={**checkpoint.metrics, "diversity": {"value": value, "prompts": len(groups)}}
        )
    return value


def filmstrip(*, taste: Taste, checkpoints: list[dict]) -> dict:
    """Held-out (prompt, seed) keys rendered by most checkpoints, and each checkpoint's image of each key, or why
    there is none."""
    cells: dict[tuple[int, int], dict[int, str]] = defaultdict(dict)
    prompts_of: dict[int, set[int]] = defaultdict(set)  # checkpoint id → prompts it has held-out images of
    for checkpoint_id, prompt_id, seed, name in Image.objects.filter(
        checkpoint__taste=taste, prompt__split=Prompt.Split.HELDOUT, seed__isnull=False
    ).values_list("checkpoint_id", "prompt_id", "seed", "file"):
        cells[(prompt_id, seed)][checkpoint_id] = name
        prompts_of[checkpoint_id].add(prompt_id)
    keys = sorted(cells, key=lambda key: (-len(cells[key]), key[1], key[0]))[:FILMSTRIP_ROWS]
    texts = dict(Prompt.objects.filter(pk__in={p for p, _ in keys}).values_list("id", "text"))
    storage = Image._meta.get_field("file").storage

    def cell(checkpoint: dict, prompt_id: int, seed: int) -> dict:
        name = cells[(prompt_id, seed)].get(checkpoint["id"])
        if name:
            return {"url": storage.url(name), "reason": ""}
        return {"url": None, "reason": empty_cell_reason(checkpoint, prompt_id, prompts_of[checkpoint["id"]])}

    return {
        "columns": [c["label"] for c in checkpoints],
        "rows": [
            {"prompt": texts[prompt_id], "seed": seed, "images": [cell(c, prompt_id, seed) for c in checkpoints]}
            for prompt_id, seed in keys
        ],
    }


def empty_cell_reason(checkpoint: dict, prompt_id: int, sampled_prompts: set[int]) -> str:
    """Why a checkpoint has no image of a held-out (prompt, seed): a checkpoint gets its held-out images when it is
    evaluated, as a round's child and again as the next round's parent."""
    if not sampled_prompts:
        if checkpoint["status"] == Checkpoint.Status.REJECTED:
            return "rejected checkpoint, never sampled"
        if checkpoint["status"] == Checkpoint.Status.RETIRED:
            return "no held-out images"
        return "not sampled yet"
    if prompt_id not in sampled_prompts:
        return "prompt not in its evaluation"
    return "no image for this seed"


def taste_page(*, taste: Taste) -> dict:
    """Everything the page shows, gathered in one place."""
    rounds = round_rows(taste=taste)
    checkpoints = lineage(taste=taste)
    diagnostics = checkpoint_diagnostics(taste=taste)
    for checkpoint in checkpoints:
        checkpoint["diagnostics"] = diagnostics.get(checkpoint["id"])
        try:
            checkpoint["diversity"] = checkpoint_diversity(checkpoint_id=checkpoint["id"])
        except OSError:
            logger.warning("Images of checkpoint %s are missing; no diversity", checkpoint["id"])
            checkpoint["diversity"] = None
    return {
        "rounds": rounds, "checkpoints": checkpoints, "curves": training_curves(rounds=rounds, checkpoints=checkpoints),
        "activity": annotator_activity(taste=taste), "filmstrip": filmstrip(taste=taste, checkpoints=checkpoints),
    }


def checkpoint_strengths(*, taste: Taste, checkpoints: list[dict]) -> list[dict]:
    """A Bradley–Terry strength per checkpoint over every eval and child-vs-base judgement of the taste, relative
    to its lineage's root (the base), with a 95% cluster-bootstrap interval, and the win rate against the base it
    implies. The measured head-to-head against the base is `round_rows`' `cumulative`; see docs/evaluation.md.
    """
    edges = [
        (prompt_id, pair_id, child, parent, {"b": 1.0, "tie": 0.5, "a": 0.0}[choice])
        for prompt_id, pair_id, parent, child, choice in Judgement.objects.filter(
            pair__taste=taste, pair__kind__in=(Pair.Kind.EVAL, Pair.Kind.BASE), choice__in=("a", "b", "tie")
        ).order_by("id").values_list("pair__prompt_id", "pair_id", "pair__image_a__checkpoint_id",
                                     "pair__image_b__checkpoint_id", "choice")
    ]
    parents = {c["id"]: c["parent"] for c in checkpoints}
    compared = {item for edge in edges for item in edge[2:4]}

    def root(checkpoint_id: int) -> int:
        while parents.get(checkpoint_id) is not None:
            checkpoint_id = parents[checkpoint_id]
        return checkpoint_id

    items = [c["id"] for c in checkpoints if c["id"] in compared or c["id"] in {root(i) for i in compared}]
    if len(items) < 2:
        return []
    fit = bradley_terry(edges, items=items, roots=[root(i) for i in items])
    named = {c["id"]: c for c in checkpoints}
    return [
        {"id": item, "label": named[item]["label"], "status": named[item]["status"], "is_root": root(item) == item,
         "strength": fit["strength"][i], "low": fit["low"][i], "high": fit["high"][i],
         "vs_base": implied_win(fit["strength"][i]), "vs_base_low": implied_win(fit["low"][i]),
         "vs_base_high": implied_win(fit["high"][i])}
        for i, item in enumerate(items)
    ]
