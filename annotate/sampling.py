"""Sampling use cases: which pairs a round needs next, storing what the sampler made, failing a round."""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from annotate import locks, waiting
from annotate.enqueue import SAMPLE_PAIRS, enqueue_on_commit
from annotate.images import image_store
from annotate.models import Checkpoint, Image, Pair, Prompt, Round
from sampler.spec import ModelSpec, PairRequest, SampledPair, SampleParams

logger = logging.getLogger(__name__)



def sampling_hold() -> timedelta:
    """How long a sample task holds a round before the beat takes it for dead and retries (renewed every third of it
    while the task works): CHISEL_SAMPLING_HOLD_SECONDS."""
    return settings.CHISEL_SAMPLING_HOLD
DEFAULT_LOW_WATER = 20  # open pairs kept waiting for annotators, and for each annotator who waits
DEFAULT_BATCH = 8  # pairs per sample task


@dataclass(frozen=True)
class SampleJob:
    """What one sample task makes: (prompt id, seed) requests of one round."""

    round_id: int
    requests: tuple[tuple[int, int], ...]
    hold: str = ""  # the round's sampling_until as reserved: the task's fencing token


def checkpoint_spec(checkpoint: Checkpoint) -> ModelSpec:
    """The checkpoint as local files: its base model folder and the LoRA chain from the oldest ancestor down (LoRA
    folders kept in object storage are fetched into this host's cache first)."""
    from annotate.storage import lora_local

    chain = []
    node = checkpoint
    while node is not None:
        if node.lora_path:
            chain.append(node.lora_path)
        node = node.parent
    return ModelSpec(base_path=checkpoint.base_model.path, lora_paths=tuple(lora_local(p) for p in reversed(chain)))


def round_sample_params(round_: Round) -> SampleParams:
    """The round's sampling settings, falling back to its base model's defaults."""
    config, base = round_.sampling_config, round_.parent_checkpoint.base_model
    return SampleParams(
        steps=config.get("steps", base.default_steps),
        guidance=config.get("guidance", base.default_guidance),
        width=config.get("width", base.default_width),
        height=config.get("height", base.default_height),
        max_sequence_length=config.get("max_sequence_length", base.default_max_sequence_length),
    )


def round_prompt_ids(round_: Round) -> list[int]:
    """The train prompts of the round, in a fixed order: the list it was launched with (`Prompt.split`, which
    a later launch may rewrite, has no say); a round recorded without one samples every train-split prompt."""
    ids = round_.sampling_config.get("prompt_ids")
    if ids is None:
        return list(Prompt.objects.filter(split=Prompt.Split.TRAIN).order_by("id").values_list("id", flat=True))
    return sorted(Prompt.objects.filter(pk__in=ids).values_list("id", flat=True))


def round_holdback(round_: Round) -> int:
    """How many train pairs the round keeps back for its evaluation phase: as many as it has eval pairs (at
    most its pair quota), so that half of what annotators judge while it evaluates is train pairs."""
    return min(round_.eval_pair_quota, round_.pair_quota)


def is_held_back(round_: Round, index: int) -> bool:
    """Whether the round's `index`-th train request (its seed) is held back: every other one, from the start,
    until round_holdback are (so they are sampled early, among the others, and from the same parent)."""
    return index % 2 == 1 and index < 2 * round_holdback(round_)


def round_reserve_samples(*, round_id: int, now: datetime | None = None) -> SampleJob | None:
    """If the round's buffer of open pairs is below its low-water mark, or the pairs that an annotator who
    waits for pairs may take are, and its quota is not reached, reserve the next batch of (prompt, seed)
    requests and hold the round for one sample task; else None."""
    now = now or timezone.now()
    with transaction.atomic():
        round_ = locks.lock_round(round_id=round_id).select_related("parent_checkpoint").first()
        if round_ is None or round_.paused or round_.state not in (Round.State.SAMPLING, Round.State.ANNOTATING):
            return None
        if round_.sampling_until and round_.sampling_until > now:
            return None
        config = round_.sampling_config
        pairs = Pair.objects.filter(round=round_, kind=Pair.Kind.TRAIN)
        made = pairs.count()
        low_water = config.get("low_water", DEFAULT_LOW_WATER)
        wanted = min(
            low_water - round_open_pairs_least(round_=round_, now=now),
            round_.pair_quota + round_holdback(round_) - made,
            config.get("batch", DEFAULT_BATCH),
        )
        prompt_ids = round_prompt_ids(round_)
        if wanted <= 0 or not prompt_ids:
            return None
        start = round_.sample_cursor
        requests = tuple((prompt_ids[i % len(prompt_ids)], i) for i in range(start, start + wanted))
        Round.objects.filter(pk=round_id).update(sample_cursor=start + wanted, sampling_until=now + sampling_hold())
    return SampleJob(round_id=round_id, requests=requests, hold=(now + sampling_hold()).isoformat())


def round_refill(*, round_id: int) -> int:
    """Reserve the round's next batch (if it wants one) and queue its sample task on commit; 1 if queued, else 0."""
    job = round_reserve_samples(round_id=round_id)
    if job is None:
        return 0
    enqueue_on_commit(SAMPLE_PAIRS, job.round_id, [list(r) for r in job.requests], hold=job.hold)
    return 1


def round_open_pairs_least(*, round_: Round, now: datetime) -> int:
    """The fewest open pairs anyone can be given: the round's open pairs, or, if fewer, those that an
    annotator who lately found nothing to judge may take (the rest may be pairs they judged already)."""
    counts = [Pair.objects.filter(round=round_, kind=Pair.Kind.TRAIN, held_back=False,
                                  assigned_count__lt=F("overlap")).count()]
    for annotator_id in waiting.waiting_annotator_ids(taste_id=round_.taste_id, now=now):
        counts.append(waiting.open_pairs_for(round_id=round_.pk, annotator_id=annotator_id).count())
    return min(counts)


def round_missing_requests(*, round_id: int, requests) -> list[tuple[int, int]]:
    """The requests whose pair does not exist yet (a task run twice samples nothing twice)."""
    done = set(
        Pair.objects.filter(round_id=round_id, kind=Pair.Kind.TRAIN, seed__in=[s for _, s in requests])
        .values_list("prompt_id", "seed")
    )
    return [r for r in requests if tuple(r) not in done]


def round_sampling_inputs(*, round_id: int, requests) -> tuple[ModelSpec, SampleParams, list[PairRequest]]:
    """What the sampler needs for these requests: the parent checkpoint's files, params, prompt texts."""
    round_ = Round.objects.select_related("parent_checkpoint__base_model").get(pk=round_id)
    texts = dict(Prompt.objects.filter(pk__in={p for p, _ in requests}).values_list("id", "text"))
    pair_requests = [PairRequest(prompt=texts[p], seed=s) for p, s in requests]
    return checkpoint_spec(round_.parent_checkpoint), round_sample_params(round_), pair_requests


def round_store_pairs(*, round_id: int, requests, sampled: list[SampledPair]) -> int:
    """Store sampled train pairs (images with diagnostics, then the pair), each in its own transaction;
    a pair that exists already is left alone. Returns how many were created."""
    round_ = Round.objects.select_related("parent_checkpoint").get(pk=round_id)
    prompt_by_seed = {seed: prompt_id for prompt_id, seed in requests}  # seeds are unique within a round
    created = 0
    for pair in sampled:
        prompt_id = prompt_by_seed[pair.request.seed]
        if Pair.objects.filter(round=round_, kind=Pair.Kind.TRAIN, prompt_id=prompt_id, seed=pair.request.seed).exists():
            continue
        try:
            with transaction.atomic():
                images = [
                    image_store(
                        prompt_id=prompt_id, data=image.png, checkpoint=round_.parent_checkpoint, seed=image.seed,
                        params=image.params, diagnostics=image.diagnostics,
                    )
                    for image in (pair.image_a, pair.image_b)
                ]
                Pair.objects.create(
                    round=round_, taste_id=round_.taste_id, prompt_id=prompt_id, image_a=images[0], image_b=images[1],
                    kind=Pair.Kind.TRAIN, seed=pair.request.seed, overlap=round_.overlap,
                    held_back=is_held_back(round_, pair.request.seed),
                )
            created += 1
        except IntegrityError:
            logger.info("Pair (round %s, seed %s) was stored by another task", round_id, pair.request.seed)
    if created:
        Round.objects.filter(pk=round_id, state=Round.State.SAMPLING).update(state=Round.State.ANNOTATING)
    return created


def round_release_sampling(*, round_id: int, hold: str | None = None) -> bool:
    """The sample task is done with the round: the next refill may start at once. With `hold` (the task's token),
    only while the round still carries that hold: a stale task whose hold ran out cannot clear a newer task's."""
    held = Round.objects.filter(pk=round_id)
    if hold:
        held = held.filter(sampling_until=datetime.fromisoformat(hold))
    return bool(held.update(sampling_until=None))


def round_renew_hold(*, round_id: int, hold: str, now: datetime | None = None) -> str | None:
    """Extend the task's hold on the round by the sampling hold from now; the new token, or None when the hold is no
    longer this task's (it ran out and another task took the round, or the round was failed or cancelled)."""
    renewed = (now or timezone.now()) + sampling_hold()
    if Round.objects.filter(pk=round_id, sampling_until=datetime.fromisoformat(hold)).update(sampling_until=renewed):
        return renewed.isoformat()
    return None


class HoldKeeper:
    """Renews a sample task's hold from a thread while the task works (every third of its hold), so a long
    batch on a slow GPU is not taken for a dead one; `hold` is the current token, for the fenced release. A task
    queued without a token (before holds were fenced) releases the round unconditionally, as it used to."""

    def __init__(self, round_id: int, hold: str | None, every: float | None = None) -> None:
        import threading

        self.round_id, self.hold, self.fenced = round_id, hold or "", bool(hold)
        self.every = every or sampling_hold().total_seconds() / 3
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"hold-round-{round_id}")

    def __enter__(self) -> "HoldKeeper":
        if self.hold:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        if not self.fenced:
            round_release_sampling(round_id=self.round_id)
        elif self.hold:  # still this task's
            round_release_sampling(round_id=self.round_id, hold=self.hold)

    def _run(self) -> None:
        from django.db import connection

        try:
            while self.hold and not self.stopped.wait(self.every):
                self.renew()
        finally:
            connection.close()

    def renew(self) -> bool:
        """One renewal; False once the hold is lost (then the task's release changes nothing)."""
        try:
            renewed = round_renew_hold(round_id=self.round_id, hold=self.hold)
        except Exception:  # noqa: BLE001 - a failed renewal is retried at the next tick
            logger.warning("Round %s: renewing the sample hold failed", self.round_id, exc_info=True)
            return True
        if renewed is None:
            logger.warning("Round %s: the sample task lost its hold", self.round_id)
            self.hold = ""
            return False
        self.hold = renewed
        return True


def round_fail_sampling(*, round_id: int, reason: str) -> bool:
    """A sampling round (or one topping up its buffer while annotating) stops with the reason."""
    from annotate.rounds import round_fail

    state = Round.objects.filter(pk=round_id).values_list("state", flat=True).first()
    if state not in (Round.State.SAMPLING, Round.State.ANNOTATING):
        return False
    return round_fail(round_id=round_id, from_state=state, reason=reason)


def rounds_wanting_samples() -> list[int]:
    """Rounds that are sampling or annotating and are not held by a sample task."""
    now = timezone.now()
    return list(
        Round.objects.filter(state__in=(Round.State.SAMPLING, Round.State.ANNOTATING), paused=False)
        .exclude(sampling_until__gt=now)
        .values_list("id", flat=True)
    )


def round_reserve_eval(*, round_id: int, now: datetime | None = None) -> str | None:
    """Hold an evaluating round for one eval-sampling task, if it lacks eval or child-vs-base pairs and no task holds
    it; the hold's token, else None."""
    from annotate.loop import round_base_requests, round_eval_requests

    now = now or timezone.now()
    with transaction.atomic():
        round_ = locks.lock_round(round_id=round_id).select_related("parent_checkpoint").first()
        if round_ is None or round_.state != Round.State.EVALUATING or round_.paused:
            return None
        if round_.sampling_until and round_.sampling_until > now:
            return None
        base = round_missing_eval_requests(round_=round_, wanted=round_base_requests(round_), kind=Pair.Kind.BASE)
        if not (round_missing_eval_requests(round_=round_, wanted=round_eval_requests(round_)) or base):
            return None
        Round.objects.filter(pk=round_id).update(sampling_until=now + sampling_hold())
    return (now + sampling_hold()).isoformat()


def round_missing_eval_requests(*, round_: Round, wanted: list[tuple[int, int]],
                                kind: str = Pair.Kind.EVAL) -> list[tuple[int, int]]:
    """The wanted (prompt, seed) keys that have no pair of `kind` (eval, or base) in the round yet."""
    done = set(Pair.objects.filter(round=round_, kind=kind).values_list("prompt_id", "seed"))
    return [r for r in wanted if r not in done]


def round_eval_inputs(*, round_id: int, requests) -> tuple[ModelSpec, ModelSpec, SampleParams, list[PairRequest]]:
    """Parent and child as files, the round's sampling settings and the prompt texts of these eval requests."""
    round_ = Round.objects.select_related("parent_checkpoint__base_model", "child_checkpoint__base_model").get(
        pk=round_id
    )
    texts = dict(Prompt.objects.filter(pk__in={p for p, _ in requests}).values_list("id", "text"))
    pair_requests = [PairRequest(prompt=texts[p], seed=s) for p, s in requests]
    return (
        checkpoint_spec(round_.parent_checkpoint), checkpoint_spec(round_.child_checkpoint),
        round_sample_params(round_), pair_requests,
    )


def round_store_eval_pairs(*, round_id: int, requests, sampled: list[SampledPair]) -> int:
    """Store eval pairs: image A from the parent, image B from the child; existing pairs are left alone."""
    round_ = Round.objects.select_related("parent_checkpoint", "child_checkpoint").get(pk=round_id)
    created = 0
    for (prompt_id, seed), pair in zip(requests, sampled, strict=True):
        try:
            with transaction.atomic():
                images = [
                    image_store(
                        prompt_id=prompt_id, data=image.png, checkpoint=checkpoint, seed=image.seed,
                        params=image.params, diagnostics=image.diagnostics,
                    )
                    for image, checkpoint in (
                        (pair.image_a, round_.parent_checkpoint), (pair.image_b, round_.child_checkpoint)
                    )
                ]
                Pair.objects.create(
                    round=round_, taste_id=round_.taste_id, prompt_id=prompt_id, image_a=images[0], image_b=images[1],
                    kind=Pair.Kind.EVAL, seed=seed, overlap=round_.overlap,
                )
            created += 1
        except IntegrityError:
            logger.info("Eval pair (round %s, prompt %s, seed %s) exists already", round_id, prompt_id, seed)
    return created


def lineage_root(checkpoint: Checkpoint) -> Checkpoint:
    """The base of the checkpoint's lineage (the ancestor without a parent), with its base model."""
    while checkpoint.parent_id is not None:
        checkpoint = Checkpoint.objects.select_related("base_model").get(pk=checkpoint.parent_id)
    return checkpoint


def root_images(*, root: Checkpoint, keys, params: SampleParams) -> dict[tuple[int, int], object]:
    """The root checkpoint's stored image of each (prompt id, seed) key made with these sampling settings (an
    earlier round's base pairs made them): reused, so the base is sampled once per key and lineage."""
    wanted = set(map(tuple, keys))
    found = {}
    for image in Image.objects.filter(checkpoint=root, prompt_id__in={p for p, _ in wanted},
                                      seed__in={s for _, s in wanted}).order_by("id"):
        key = (image.prompt_id, image.seed)
        if key in wanted and key not in found and _made_with(image.params, params):
            found[key] = image
    return found


def _made_with(record: dict, params: SampleParams) -> bool:
    """Whether an image's sampling record names these settings (records hold them beside prompt, seed, model)."""
    settings = {k: v for k, v in record.items() if k not in ("model", "prompt", "seed")}
    return settings == params.as_dict()


def round_base_inputs(*, round_id: int, requests) -> tuple[ModelSpec, ModelSpec, SampleParams, list[PairRequest],
                                                             dict]:
    """The lineage's root and the child as files, the round's sampling settings, the prompt texts of these base
    requests, and the root images already stored for them (only the missing ones need sampling)."""
    round_ = Round.objects.select_related("parent_checkpoint__base_model", "child_checkpoint__base_model").get(
        pk=round_id
    )
    root = lineage_root(round_.parent_checkpoint)
    params = round_sample_params(round_)
    texts = dict(Prompt.objects.filter(pk__in={p for p, _ in requests}).values_list("id", "text"))
    pair_requests = [PairRequest(prompt=texts[p], seed=s) for p, s in requests]
    return (checkpoint_spec(root), checkpoint_spec(round_.child_checkpoint), params, pair_requests,
            root_images(root=root, keys=requests, params=params))


def round_store_base_pairs(*, round_id: int, requests, root_made: dict, root_sampled: dict, child_sampled: list) -> int:
    """Store child-vs-base pairs: image A the root's (stored earlier, `root_made`, or just sampled, `root_sampled`
    by key), image B the child's; existing pairs are left alone."""
    round_ = Round.objects.select_related("parent_checkpoint", "child_checkpoint").get(pk=round_id)
    root = lineage_root(round_.parent_checkpoint)
    created = 0
    for (prompt_id, seed), child_image in zip(requests, child_sampled, strict=True):
        key = (prompt_id, seed)
        try:
            with transaction.atomic():
                base = root_made.get(key)
                if base is None:
                    made = root_sampled[key]
                    base = image_store(prompt_id=prompt_id, data=made.png, checkpoint=root, seed=made.seed,
                                       params=made.params, diagnostics=made.diagnostics)
                child = image_store(prompt_id=prompt_id, data=child_image.png, checkpoint=round_.child_checkpoint,
                                    seed=child_image.seed, params=child_image.params,
                                    diagnostics=child_image.diagnostics)
                Pair.objects.create(
                    round=round_, taste_id=round_.taste_id, prompt_id=prompt_id, image_a=base, image_b=child,
                    kind=Pair.Kind.BASE, seed=seed, overlap=round_.overlap,
                )
            created += 1
        except IntegrityError:
            logger.info("Base pair (round %s, prompt %s, seed %s) exists already", round_id, prompt_id, seed)
    return created


def round_fail_eval(*, round_id: int, reason: str) -> bool:
    from annotate.rounds import round_fail

    return round_fail(round_id=round_id, from_state=Round.State.EVALUATING, reason=reason)
