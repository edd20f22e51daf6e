"""Annotators waiting for pairs: why `next` has nothing for them, and who the refill should sample for."""

from datetime import datetime, timedelta

from django.db.models import Exists, F, OuterRef, QuerySet
from django.utils import timezone

from annotate.models import Assignment, Judgement, Pair, Prompt, Round, Taste, TasteMembership

DECISIVE = (Judgement.Choice.A, Judgement.Choice.B)  # the labels training uses (ties and both-bad are dropped)

# An annotator counts as waiting this long after `next` last came back empty (the page asks every 4 s).
WAITING_TTL = timedelta(seconds=90)


class Reason:
    """Why `next` answered nothing (the `X-Chisel-Waiting` header), most hopeful first."""

    SAMPLING = "sampling"  # the worker is sampling pairs this annotator may take
    TRAINING = "training"  # the round is training; its evaluation pairs come next
    PAUSED = "paused"  # the lead paused the round
    QUOTA_REACHED = "quota_reached"  # the round has its labels and waits to train
    NOTHING_LEFT = "nothing_left"  # no open round, or the round's last pairs are all with others

    ORDER = (SAMPLING, TRAINING, PAUSED, QUOTA_REACHED, NOTHING_LEFT)


def annotator_wait(*, annotator, taste: Taste, now: datetime | None = None) -> str:
    """`next` came back empty for this annotator: the refill counts them among the waiting for a while
    (WAITING_TTL). Returns why they wait."""
    TasteMembership.objects.filter(annotator=annotator, taste=taste).update(waiting_since=now or timezone.now())
    return annotator_wait_reason(annotator=annotator, taste=taste)


def waiting_annotator_ids(*, taste_id: int, now: datetime | None = None) -> list[int]:
    """Annotators of the taste whose `next` came back empty lately."""
    since = (now or timezone.now()) - WAITING_TTL
    return list(
        TasteMembership.objects.filter(taste_id=taste_id, waiting_since__gte=since)
        .order_by("annotator_id")
        .values_list("annotator_id", flat=True)
    )


def open_pairs_for(*, round_id: int, annotator_id: int, kind: str = Pair.Kind.TRAIN) -> QuerySet[Pair]:
    """The round's pairs that still need annotators and that this annotator may take (the claim's rule:
    their own expired lease may be taken up again, nothing else they hold or held)."""
    return Pair.objects.filter(round_id=round_id, kind=kind, held_back=False, assigned_count__lt=F("overlap")).exclude(
        Exists(
            Assignment.objects.filter(pair=OuterRef("pk"), annotator_id=annotator_id).exclude(
                state=Assignment.State.EXPIRED
            )
        )
    )


def annotator_wait_reason(*, annotator, taste: Taste) -> str:
    """Why the annotator has nothing to judge in the taste right now (one of Reason.ORDER)."""
    rounds = Round.objects.filter(taste=taste, state__in=(*Round.OPEN_STATES, Round.State.TRAINING))
    reasons = {_round_reason(round_, annotator) for round_ in rounds}
    return next((reason for reason in Reason.ORDER if reason in reasons), Reason.NOTHING_LEFT)


def _round_reason(round_: Round, annotator) -> str:
    if round_.state == Round.State.TRAINING:
        return Reason.TRAINING
    if round_.paused:
        return Reason.PAUSED
    if round_.state == Round.State.EVALUATING:
        from annotate.loop import round_base_requests

        made = Pair.objects.filter(round=round_, kind__in=(Pair.Kind.EVAL, Pair.Kind.BASE)).count()
        wanted = round_.eval_pair_quota + len(round_base_requests(round_))
        return Reason.SAMPLING if made < wanted else Reason.NOTHING_LEFT
    labels = Judgement.objects.filter(
        pair__round=round_, pair__kind=Pair.Kind.TRAIN, choice__in=DECISIVE, pair__held_back=False
    ).count()
    if labels >= round_.label_quota:
        return Reason.QUOTA_REACHED
    made = Pair.objects.filter(round=round_, kind=Pair.Kind.TRAIN, held_back=False).count()
    if made < round_.pair_quota and _has_prompts(round_):
        return Reason.SAMPLING
    return Reason.NOTHING_LEFT


def _has_prompts(round_: Round) -> bool:
    """The round has train prompts to sample from (sampling.round_prompt_ids, as a yes or no)."""
    ids = round_.sampling_config.get("prompt_ids")
    if ids is None:
        return Prompt.objects.filter(split=Prompt.Split.TRAIN).exists()
    return bool(ids)
