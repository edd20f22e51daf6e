"""Gold pairs: a lead's expected answer on a pair, served to every annotator once and scored, never trained on."""

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest

from annotate.errors import DomainError, NotFound
from annotate.models import Pair

GOLD_CHOICES = ("a", "b", "tie")


def pair_mark_gold(*, pair_id: int, choice: str) -> Pair:
    """Make a training pair (or a gold pair, to change its answer) gold with expected answer `choice`.

    The pair leaves training (kind gold) with the judgements it already has, which become gold answers;
    its overlap becomes Pair.GOLD_OVERLAP, so every annotator of the taste may be served it once without
    taking a place that a real pair's overlap counts.
    """
    if choice not in GOLD_CHOICES:
        raise DomainError(f"A gold answer is one of {', '.join(GOLD_CHOICES)}, not '{choice}'.")
    with transaction.atomic():
        updated = Pair.objects.filter(pk=pair_id, kind__in=[Pair.Kind.TRAIN, Pair.Kind.GOLD]).update(
            kind=Pair.Kind.GOLD, gold_choice=choice, overlap=Pair.GOLD_OVERLAP
        )
        if not updated:
            raise NotFound(f"There is no training or gold pair {pair_id}.")
    return Pair.objects.get(pk=pair_id)


def pair_unmark_gold(*, pair_id: int) -> None:
    """Make a gold pair a training pair again, needing its round's overlap (or the annotators it already has)."""
    pair = Pair.objects.filter(pk=pair_id, kind=Pair.Kind.GOLD).select_related("round").first()
    if pair is None:
        raise NotFound(f"There is no gold pair {pair_id}.")
    Pair.objects.filter(pk=pair_id, kind=Pair.Kind.GOLD).update(
        kind=Pair.Kind.TRAIN, gold_choice="", overlap=Greatest(F("assigned_count"), Value(pair.round.overlap))
    )


def gold_import(*, rows: list[tuple[str, str]]) -> int:
    """Mark every (pair id, expected answer) row gold, all or none; a bad row is refused naming its line."""
    checked = []
    for line, (pair_id, choice) in enumerate(rows, start=2):
        if not pair_id.strip().isdigit():
            raise DomainError(f"line {line}: pair_id is {pair_id[:60]!r}; expected a pair's id.")
        if choice.strip() not in GOLD_CHOICES:
            raise DomainError(f"line {line}: choice is {choice[:60]!r}; expected one of {', '.join(GOLD_CHOICES)}.")
        checked.append((int(pair_id), choice.strip()))
    with transaction.atomic():
        for line, (pair_id, choice) in enumerate(checked, start=2):
            try:
                pair_mark_gold(pair_id=pair_id, choice=choice)
            except NotFound as error:
                raise DomainError(f"line {line}: {error.message}") from error
    return len(checked)
