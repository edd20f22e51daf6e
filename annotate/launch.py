"""Launching a round: checking the lead's settings, splitting off held-out prompts, creating and starting it."""

import random
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from django.db import connection

from annotate import launch_settings, locks, loop, rounds
from annotate.errors import DomainError
from annotate.guard_rails import default_guard_rails, guard_rails_checked
from annotate.models import Prompt, Round, Taste
from sampler.model_defaults import ModelDefaultsError
from trainer.config import TrainConfig

SAMPLING_KEYS = ("steps", "guidance", "width", "height", "max_sequence_length", "low_water", "batch")


@dataclass
class LaunchSettings:
    """Everything a lead chooses for a round; prompts come as stored rows (`prompt_ids`, `tags`) or new texts."""

    prompt_ids: list[int] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    prompt_texts: list[str] = field(default_factory=list)
    heldout_share: float = launch_settings.QUOTAS["heldout_share"]
    pair_quota: int = launch_settings.QUOTAS["pair_quota"]
    label_quota: int = launch_settings.QUOTAS["label_quota"]
    overlap: int = launch_settings.QUOTAS["overlap"]
    eval_pair_quota: int = launch_settings.QUOTAS["eval_pair_quota"]
    sampling: dict = field(default_factory=dict)  # SAMPLING_KEYS; missing ones fall back to the base model's
    training: dict = field(default_factory=dict)  # TrainConfig fields; missing ones: the base model's (chisel.json)
    promotion_threshold: float = launch_settings.QUOTAS["promotion_threshold"]
    guard_rails: dict = field(default_factory=default_guard_rails)  # rail name → limits (annotate/guard_rails.py)
    auto_advance: bool = True
    trust_mode: str = "off"  # annotator trust in training: off, exclude (below trust_threshold) or weight
    trust_threshold: float = 0.4
    seed: int = 0  # which prompts are held out


def round_launch(*, taste: Taste, settings: LaunchSettings, start: bool = True) -> Round:
    """Check the settings, create the round (prompts split into train and held-out) and start it.

    Raises `DomainError` with a readable message, creating nothing, when the settings cannot work.
    """
    with transaction.atomic():
        taste = locks.lock_taste(taste_id=taste.pk).select_related("current_checkpoint__base_model").get()
        _check(taste, settings)
        sampling, training = _resolved(taste, settings)
        train_ids, heldout_ids = _prompts(settings, taste=taste)
        round_ = Round.objects.create(
            taste=taste, number=(taste.rounds.order_by("-number").values_list("number", flat=True).first() or 0) + 1,
            parent_checkpoint=taste.current_checkpoint, pair_quota=settings.pair_quota,
            label_quota=settings.label_quota, overlap=settings.overlap, eval_pair_quota=settings.eval_pair_quota,
            promotion_threshold=settings.promotion_threshold, guard_rails=guard_rails_checked(settings.guard_rails),
            auto_advance=settings.auto_advance, training_config=training,
            trust_mode=settings.trust_mode, trust_threshold=settings.trust_threshold,
            sampling_config={**sampling, "prompt_ids": train_ids, "eval_prompt_ids": heldout_ids},
        )
        if start:
            loop.round_start(round_id=round_.pk)
    return Round.objects.get(pk=round_.pk)


def _check(taste: Taste, settings: LaunchSettings) -> None:
    checkpoint = taste.current_checkpoint
    if checkpoint is None:
        raise DomainError(f"Taste '{taste.slug}' has no current checkpoint to sample from.")
    folder = Path(checkpoint.base_model.path)
    if not (folder / "model_index.json").is_file():
        raise DomainError(f"The base model folder {folder} has no model_index.json.")
    active = taste.rounds.filter(state__in=rounds.ACTIVE).exclude(state=Round.State.DRAFT).first()
    if active is not None:
        raise DomainError(f"Round {active.number} of '{taste.slug}' is still {active.state}; finish or cancel it first.")
    if settings.overlap < 1:
        raise DomainError("Overlap must be at least 1.")
    if settings.pair_quota < 1:
        raise DomainError("The pair quota must be at least 1.")
    if settings.label_quota < settings.overlap:
        raise DomainError(f"The label quota ({settings.label_quota}) is below the overlap ({settings.overlap}).")
    if settings.label_quota > settings.pair_quota * settings.overlap:
        raise DomainError(
            f"The label quota ({settings.label_quota}) is more than {settings.pair_quota} pairs × overlap "
            f"{settings.overlap} can give."
        )
    if settings.eval_pair_quota < 1:
        raise DomainError("The round needs at least one eval pair to decide on its child.")
    if not 0 <= settings.promotion_threshold <= 1:
        raise DomainError("The promotion threshold is a win rate between 0 and 1.")
    if not 0 < settings.heldout_share < 1:
        raise DomainError("The held-out share must be between 0 and 1.")
    try:
        guard_rails_checked(settings.guard_rails)
    except ValueError as exc:
        raise DomainError(str(exc)) from exc
    unknown = sorted(set(settings.sampling) - set(SAMPLING_KEYS))
    if unknown:
        raise DomainError(f"Unknown sampling settings: {', '.join(unknown)}.")
    sampling, training = _resolved(taste, settings)
    try:
        TrainConfig.from_dict(training)
    except (TypeError, ValueError) as exc:
        raise DomainError(f"Training settings: {exc}") from exc
    try:
        launch_settings.check_bounds(_bounded_values(settings, sampling, training))
    except ValueError as exc:
        raise DomainError(str(exc)) from exc


def _resolved(taste: Taste, settings: LaunchSettings) -> tuple[dict, dict]:
    """(sampling, training) as the round records them: the lead's choices over the base model's defaults."""
    base = taste.current_checkpoint.base_model
    sampling = {**launch_settings.base_sampling(base), **settings.sampling}
    return sampling, launch_settings.training_config(base=base, chosen=settings.training)


def _bounded_values(settings: LaunchSettings, sampling: dict, training: dict) -> dict:
    return {**{key: getattr(settings, key) for key in launch_settings.QUOTAS},
            **{f"sampling.{key}": value for key, value in sampling.items()},
            **{f"training.{key}": value for key, value in training.items()}}


def launch_warnings(*, taste: Taste, settings: LaunchSettings) -> list[str]:
    """One line per setting outside the usual range of the base model's family (the launch goes ahead)."""
    checkpoint = taste.current_checkpoint
    if checkpoint is None:
        return []
    base = checkpoint.base_model
    sampling, training = _resolved(taste, settings)
    defaults = {**{f"sampling.{k}": v for k, v in launch_settings.base_sampling(base).items()},
                **{f"training.{k}": v for k, v in launch_settings.base_training(base).items()}}
    return launch_settings.unusual(_bounded_values(settings, sampling, training), family=base.kind, defaults=defaults)


def taste_prompt_history(*, taste: Taste) -> tuple[set[int], set[int]]:
    """(trained, held out): the prompts earlier rounds of the taste sampled train pairs on, and those they
    evaluated on. Any round that got past its draft counts (its child, or a later one, may descend from it)."""
    trained: set[int] = set()
    held: set[int] = set()
    for config in taste.rounds.exclude(state=Round.State.DRAFT).values_list("sampling_config", flat=True):
        trained |= set((config or {}).get("prompt_ids") or [])
        held |= set((config or {}).get("eval_prompt_ids") or [])
    return trained, held


def _prompts(settings: LaunchSettings, *, taste: Taste) -> tuple[list[int], list[int]]:
    """(train, held-out) prompt ids, which the round keeps from launch on (sampling reads its own lists).

    A prompt that an earlier round of the taste held out stays held out, and one it trained on is never held
    out: the lineage is never evaluated on a prompt any ancestor trained on. The other prompts are split by
    `heldout_share`. `Prompt.split` is set for information only (the last launch's view); nothing reads it
    back for a launched round."""
    ids = set(settings.prompt_ids)
    if settings.tags:
        tagged = set(prompt_ids_tagged(settings.tags))
        if not tagged:
            raise DomainError(f"No prompt carries all of the tags {', '.join(settings.tags)}: tag prompts in the "
                              "admin's Prompts, choose other tags, or give the prompts themselves (--prompts).")
        ids |= tagged
    texts = [text.strip() for text in settings.prompt_texts if text.strip()]
    if too_long := [text for text in texts if len(text) > Prompt.MAX_CHARS]:
        raise DomainError(f"{len(too_long)} prompts are longer than {Prompt.MAX_CHARS} characters, e.g. "
                          f"'{too_long[0][:60]}…'.")
    ids |= {Prompt.objects.create(text=text).pk for text in dict.fromkeys(texts)}
    known = set(Prompt.objects.filter(pk__in=ids).values_list("id", flat=True))
    if missing := sorted(ids - known):
        raise DomainError(f"Unknown prompt ids: {', '.join(map(str, missing))}.")
    if len(known) < 2:
        raise DomainError("A round needs at least two prompts: one to train on and one held out to evaluate.")
    trained_before, held_before = taste_prompt_history(taste=taste)
    fixed_held, fixed_train = known & held_before, (known & trained_before) - held_before
    ordered = sorted(known - fixed_held - fixed_train)
    random.Random(settings.seed).shuffle(ordered)
    held = max(0 if fixed_held else 1, round(len(known) * settings.heldout_share) - len(fixed_held))
    held = min(held, len(ordered) - (0 if fixed_train else 1)) if ordered else 0
    heldout, train = sorted(fixed_held | set(ordered[:held])), sorted(fixed_train | set(ordered[held:]))
    if not heldout:
        raise DomainError(
            f"Every prompt of this round was trained on by an earlier round of '{taste.slug}': add prompts it "
            "never trained on, to hold out and evaluate on."
        )
    if not train:
        raise DomainError(
            f"Every prompt of this round is held out by earlier rounds of '{taste.slug}' (they evaluate its "
            "lineage and are never trained on): add prompts to train on."
        )
    Prompt.objects.filter(pk__in=heldout).update(split=Prompt.Split.HELDOUT)
    Prompt.objects.filter(pk__in=train).update(split=Prompt.Split.TRAIN)
    return train, heldout


def prompt_ids_tagged(tags: list[str]) -> list[int]:
    """Ids of the prompts carrying every one of `tags`, on any database (SQLite has no JSON containment)."""
    if connection.features.supports_json_field_contains:
        return list(Prompt.objects.filter(tags__contains=list(tags)).values_list("id", flat=True))
    wanted = set(tags)
    rows = Prompt.objects.values_list("id", "tags").iterator(chunk_size=2000)
    return [pk for pk, carried in rows if isinstance(carried, list) and wanted <= set(carried)]


def taste_base_checkpoint(*, taste: Taste, model_path: Path, name: str = "", **defaults) -> "Checkpoint":
    """Start (or restart) a taste from a base model folder: its bare base becomes the current checkpoint."""
    from annotate.models import BaseModel, Checkpoint
    from sampler.model_index import ModelLoadError, model_kind

    path = Path(model_path).resolve()
    try:
        kind = model_kind(path)
        own = launch_settings.base_model_fields(path)  # the folder's chisel.json: a 64 px toy is not sampled at 1024
    except (ModelLoadError, ModelDefaultsError) as exc:
        raise DomainError(str(exc)) from exc
    with transaction.atomic():
        base, _ = BaseModel.objects.get_or_create(path=str(path), defaults={"name": name or path.name, "kind": kind,
                                                                            **own, **defaults})
        checkpoint = Checkpoint.objects.create(taste=taste, base_model=base, status=Checkpoint.Status.CANDIDATE)
        loop.checkpoint_promote(taste=taste, checkpoint=checkpoint)
    checkpoint.refresh_from_db()
    return checkpoint
