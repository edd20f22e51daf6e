"""The closed loop: moving rounds through their steps, evaluating the child against its parent, promoting it.

    draft ─start─► sampling ─first pairs─► annotating ─label quota─► training ─candidate─► evaluating ─decide─► done
                                                                        │ │ job failed            │ eval quota      ▲
                                                                        │ ▼                       ▼                 │
                                                                        │ failed ─retry─► (the step that failed)    │
                                                                        └─── the labels did not carry over ─────────┘

Every transition is a compare-and-set (`annotate.rounds`), so the beat task (`rounds_advance`), a worker and a
lead's click may race: one of them wins and the others change nothing. Rounds advance by themselves when
`auto_advance` is set; otherwise the lead advances them from the admin.
"""

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from annotate import locks, rounds, services, training
from annotate.enqueue import SAMPLE_ROUND_EVAL, enqueue
from annotate.errors import DomainError
from annotate.evaluation import (
    clustered_rate, promotion_decision, round_base_counts, round_eval_counts, win_record,
)
from annotate.guard_rails import check_guard_rails
from annotate.models import Checkpoint, Judgement, Pair, Round, Taste, TrainingJob

logger = logging.getLogger(__name__)

S = Round.State
EVAL_SEED_BASE = 1_000_000_000  # eval seeds; held out from every train seed of the sampler and the toy world
# Seeds of the child-vs-base pairs: the eval prompts again, on seeds of their own. On the eval pairs' own seeds the
# child's image would appear in two pairs of the round, and an annotator who saw it twice would know it is the child.
BASE_SEED_BASE = 1_500_000_000


def round_start(*, round_id: int) -> bool:
    """Draft → sampling; the first sample task is queued when the transaction commits."""
    if not rounds.round_advance(round_id=round_id, from_state=S.DRAFT):
        return False
    transaction.on_commit(lambda: _refill(round_id))
    return True


def round_pause(*, round_id: int) -> bool:
    """Stop handing out the round's pairs and sampling new ones, until resumed."""
    return bool(Round.objects.filter(pk=round_id, state__in=rounds.ACTIVE, paused=False).update(paused=True))


def round_resume(*, round_id: int) -> bool:
    if not Round.objects.filter(pk=round_id, paused=True).update(paused=False):
        return False
    transaction.on_commit(lambda: _refill(round_id))
    return True


def round_train(*, round_id: int) -> bool:
    """Annotating → training, with the training job queued in the same transaction."""
    with transaction.atomic():
        if not rounds.round_advance(round_id=round_id, from_state=S.ANNOTATING):
            return False
        training.training_job_create(round_id=round_id)
    return True


def round_advance_now(*, round_id: int) -> bool:
    """Annotating → training on the train labels already in, without waiting for the quota: the round's
    outstanding leases are released (their labels would come too late). Refused with no label at all."""
    with transaction.atomic():
        if not Round.objects.filter(pk=round_id, state=S.ANNOTATING).exists():
            return False
        trainable = Q(pair__round_id=round_id, pair__kind=Pair.Kind.TRAIN, pair__held_back=False)
        if not Judgement.objects.filter(trainable).exists():
            raise DomainError("No train label is in yet: there is nothing to train on.")
        services.leases_release(round_id=round_id)
        return round_train(round_id=round_id)


def round_evaluate(*, round_id: int, candidate: Checkpoint) -> bool:
    """Training → evaluating once the candidate exists; the eval pairs are sampled by the `sample` queue."""
    with transaction.atomic():
        if not rounds.round_advance(round_id=round_id, from_state=S.TRAINING):
            return False
        Round.objects.filter(pk=round_id).update(child_checkpoint=candidate)
        transaction.on_commit(lambda: _sample_eval(round_id))
    return True


def round_decide(*, round_id: int, promote: bool | None = None, by: str = "rule") -> dict | None:
    """Evaluating → done: promote the child (it becomes the taste's current checkpoint) or reject it.

    `promote=None` applies the round's rule (the win rate's lower bound above `promotion_threshold`, every
    guard-rail holding); True or False is the lead's call, recorded with the same figures. Returns the
    decision, or None if the round was not evaluating (someone else decided first).
    """
    with transaction.atomic():
        round_ = locks.lock_round(round_id=round_id).select_related("child_checkpoint", "taste").first()
        if round_ is None or round_.state != S.EVALUATING:
            return None
        if round_.child_checkpoint is None:
            raise DomainError(f"Round {round_id} has no candidate checkpoint to decide on.")
        win = round_eval_counts(round_id=round_id)
        rails = check_guard_rails(round_id=round_id, rails=round_.guard_rails)
        decision = promotion_decision(win, threshold=round_.promotion_threshold, guard_rails=rails)
        record = {
            "promote": decision.promote if promote is None else promote, "rule_promote": decision.promote,
            "win": decision.win, "threshold": decision.threshold, "guard_rails": decision.guard_rails,
            "cumulative": round_cumulative(round_, win), "carry_over": round_carry_over(round_),
            "reason": decision.reason if promote is None else f"{'promoted' if promote else 'rejected'} by {by} "
                                                              f"(the rule said: {decision.reason})",
            "by": by, "decided_at": timezone.now().isoformat(),
        }
        child = round_.child_checkpoint
        if record["promote"]:
            checkpoint_promote(taste=round_.taste, checkpoint=child)
        else:
            Checkpoint.objects.filter(pk=child.pk).update(status=Checkpoint.Status.REJECTED)
        Round.objects.filter(pk=round_id).update(state=S.DONE, decision=record, paused=False, updated_at=timezone.now())
    return record


def round_carry_over(round_: Round) -> dict | None:
    """The trainer's carry-over test of the round's last training job (trainer/carry_over.py), if it ran one."""
    job = round_.training_jobs.order_by("-id").first()
    return ((job.metrics if job else None) or {}).get("carry_over")


def round_decline(*, round_id: int, candidate: Checkpoint, carry_over: dict) -> bool:
    """Training → done, the candidate rejected with no evaluation: its labels did not carry over to held-out pairs,
    so the trainer kept the untrained adapter (trainer/carry_over.py), a child equal to its parent that annotators
    would only see twice over."""
    with transaction.atomic():
        if not rounds.round_advance(round_id=round_id, from_state=S.TRAINING):
            return False
        threshold = Round.objects.values_list("promotion_threshold", flat=True).get(pk=round_id)
        no_judgements = win_record(clustered_rate([]))
        record = {
            "promote": False, "rule_promote": False, "win": no_judgements, "threshold": threshold,
            "guard_rails": {}, "cumulative": {"source": "none", "win": no_judgements}, "carry_over": carry_over,
            "reason": (f"the labels did not carry over to held-out pairs ({carry_over['correct']} of "
                       f"{carry_over['pairs']} ranked as labelled, signed-rank p = {carry_over['p_value']:.3f} > "
                       f"α {carry_over['alpha']:g}): the child equals its parent and was not evaluated"),
            "by": "rule", "decided_at": timezone.now().isoformat(),
        }
        Checkpoint.objects.filter(pk=candidate.pk).update(status=Checkpoint.Status.REJECTED)
        Round.objects.filter(pk=round_id).update(state=S.DONE, child_checkpoint=candidate, decision=record,
                                                 paused=False, updated_at=timezone.now())
    return True


def round_cumulative(round_: Round, win=None) -> dict:
    """The child's measured win rate against its lineage's root (the base), with its clustered interval: from the
    round's base pairs, or from its eval pairs when the parent is the root. Recorded with the decision; never
    part of the gate."""
    if is_root_parent(round_):
        win = win if win is not None else round_eval_counts(round_id=round_.pk)
        return {"source": "eval", "win": win_record(win)}
    return {"source": "base", "win": win_record(round_base_counts(round_id=round_.pk))}


def is_root_parent(round_: Round) -> bool:
    """Whether the round's parent is its lineage's root (then its eval pairs already compare with the base)."""
    parent = round_.parent_checkpoint
    return parent is None or parent.parent_id is None


def checkpoint_promote(*, taste: Taste, checkpoint: Checkpoint) -> None:
    """Make `checkpoint` the taste's current one; the previous current one retires (in the caller's transaction)."""
    Checkpoint.objects.filter(taste=taste, status=Checkpoint.Status.CURRENT).update(status=Checkpoint.Status.RETIRED)
    Checkpoint.objects.filter(pk=checkpoint.pk).update(status=Checkpoint.Status.CURRENT)
    Taste.objects.filter(pk=taste.pk).update(current_checkpoint=checkpoint)


def round_retry_step(*, round_id: int) -> bool:
    """Failed → the step that failed, with that step's work queued again."""
    with transaction.atomic():
        failed_in = Round.objects.filter(pk=round_id, state=S.FAILED).values_list("failed_in", flat=True).first()
        if not failed_in or not rounds.round_retry(round_id=round_id):
            return False
        if failed_in == S.TRAINING:
            training.training_job_create(round_id=round_id)
        elif failed_in == S.EVALUATING:
            transaction.on_commit(lambda: _sample_eval(round_id))
        else:
            transaction.on_commit(lambda: _refill(round_id))
    return True


def rounds_advance(*, now: datetime | None = None) -> list[tuple[int, str]]:
    """One pass of the beat: move every round whose step is finished; returns (round id, new state) moves."""
    moves = []
    for round_ in Round.objects.filter(state__in=(S.ANNOTATING, S.TRAINING, S.EVALUATING)).order_by("id"):
        moved = _advance_one(round_)
        if moved:
            moves.append((round_.pk, Round.objects.values_list("state", flat=True).get(pk=round_.pk)))
    return moves


def _advance_one(round_: Round) -> bool:
    if round_.state == S.TRAINING:  # a finished or failed job moves the round whatever auto_advance says
        job = round_.training_jobs.order_by("-id").first()
        if job is None:
            return False
        if job.state == TrainingJob.State.DONE and job.candidate_id:
            carry_over = (job.metrics or {}).get("carry_over")
            if carry_over and not carry_over["carried"]:
                return round_decline(round_id=round_.pk, candidate=job.candidate, carry_over=carry_over)
            return round_evaluate(round_id=round_.pk, candidate=job.candidate)
        if job.state == TrainingJob.State.FAILED:
            return rounds.round_fail(round_id=round_.pk, from_state=S.TRAINING, reason=f"Training failed: {job.error}")
        return False
    if not round_.auto_advance or round_.paused:
        return False
    progress = round_progress(round_id=round_.pk)
    if round_.state == S.ANNOTATING:
        annotation, sampling = progress["annotation"], progress["sampling"]
        exhausted = sampling["done"] >= sampling["total"] and progress["open_train_pairs"] == 0
        if annotation["done"] >= annotation["total"] or exhausted:
            return round_train(round_id=round_.pk)
        return False
    evaluation, base = progress["evaluation"], progress["base"]
    if (evaluation["pairs"] >= round_.eval_pair_quota and evaluation["done"] >= evaluation["total"]
            and base["pairs"] >= base["wanted"] and base["done"] >= base["total"]):
        return round_decide(round_id=round_.pk) is not None
    return False


def round_progress(*, round_id: int) -> dict:
    """Where the round stands, step by step, as counts against quotas (the cockpit polls this)."""
    round_ = Round.objects.select_related("parent_checkpoint").get(pk=round_id)
    trainable = Q(kind=Pair.Kind.TRAIN, held_back=False)
    pairs = Pair.objects.filter(round_id=round_id).aggregate(
        train=Count("id", filter=trainable),
        kept_back=Count("id", filter=Q(kind=Pair.Kind.TRAIN, held_back=True)),
        eval=Count("id", filter=Q(kind=Pair.Kind.EVAL)),
        base=Count("id", filter=Q(kind=Pair.Kind.BASE)),
        open_train=Count("id", filter=trainable & Q(judged_count__lt=F("overlap"))),
    )
    train_label = Q(pair__kind=Pair.Kind.TRAIN, pair__held_back=False)
    labels = Judgement.objects.filter(pair__round_id=round_id).aggregate(
        train=Count("id", filter=train_label),
        decisive=Count("id", filter=train_label & Q(choice__in=(Judgement.Choice.A, Judgement.Choice.B))),
        kept_back=Count("id", filter=Q(pair__kind=Pair.Kind.TRAIN, pair__held_back=True)),
        eval=Count("id", filter=Q(pair__kind=Pair.Kind.EVAL)),
        base=Count("id", filter=Q(pair__kind=Pair.Kind.BASE)),
    )
    job = round_.training_jobs.order_by("-id").first()
    win = round_eval_counts(round_id=round_id) if labels["eval"] else None
    base_wanted = len(round_base_requests(round_))
    base_win = round_base_counts(round_id=round_id) if labels["base"] else None
    return {
        "id": round_.pk, "state": round_.state, "paused": round_.paused, "error": round_.error,
        "failed_in": round_.failed_in, "auto_advance": round_.auto_advance,
        "sampling": {"done": pairs["train"], "total": round_.pair_quota},
        # The quota counts decisive labels (training drops ties and both-bad); `all` counts every answer.
        "annotation": {"done": labels["decisive"], "all": labels["train"], "total": round_.label_quota},
        # Train pairs kept back for the evaluation phase (offered mixed with the eval pairs, blind); their labels
        # come after the dataset froze and are counted here only.
        "held_back": {"pairs": pairs["kept_back"], "labels": labels["kept_back"]},
        "open_train_pairs": pairs["open_train"],
        "training": {
            "done": job.step if job else 0, "total": job.steps if job else 0, "state": job.state if job else "",
            "attempt": job.attempt if job else 0, "error": job.error if job else "",
        },
        "evaluation": {
            "pairs": pairs["eval"], "done": labels["eval"], "total": round_.eval_pair_quota * round_.overlap,
            "win": win_record(win) if win else None,
        },
        # Child-vs-base pairs (a parent that is not the root): judged in the same phase, not by the gate.
        "base": {
            "pairs": pairs["base"], "wanted": base_wanted, "done": labels["base"],
            "total": base_wanted * round_.overlap, "win": win_record(base_win) if base_win else None,
        },
        "decision": round_.decision,
    }


def round_eval_requests(round_: Round) -> list[tuple[int, int]]:
    """(held-out prompt id, seed) of every eval pair the round wants, in a fixed order."""
    prompt_ids = round_.sampling_config.get("eval_prompt_ids") or []
    if not prompt_ids:
        return []
    return [(prompt_ids[i % len(prompt_ids)], EVAL_SEED_BASE + i // len(prompt_ids)) for i in range(round_.eval_pair_quota)]


def round_base_requests(round_: Round) -> list[tuple[int, int]]:
    """(held-out prompt id, seed) of every child-vs-base pair the round wants: as many as its eval pairs, on the
    same prompts in the same order, on seeds of their own (BASE_SEED_BASE); none when the parent is the root.
    Every round of a lineage asks for the same keys, so the root's images of them are sampled once and reused."""
    if is_root_parent(round_):
        return []
    return [(prompt_id, BASE_SEED_BASE + seed - EVAL_SEED_BASE) for prompt_id, seed in round_eval_requests(round_)]


def _refill(round_id: int) -> None:
    from annotate.sampling import round_refill

    with transaction.atomic():
        round_refill(round_id=round_id)


def _sample_eval(round_id: int) -> None:
    from annotate.sampling import round_reserve_eval

    if hold := round_reserve_eval(round_id=round_id):
        enqueue(SAMPLE_ROUND_EVAL, round_id, hold=hold)
