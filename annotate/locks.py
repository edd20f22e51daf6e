"""Every row lock of the app, in one place, each in primary-key order so lock order is fixed."""

from django.db import connection
from django.db.models import BigIntegerField, Case, Exists, ExpressionWrapper, F, OuterRef, Q, QuerySet, When

from annotate.models import Assignment, Pair, Round, Taste, TrainingJob


_OPEN_PAIRS_SQL = """
    SELECT p.id FROM {pair} p JOIN {round} r ON r.id = p.round_id
    WHERE p.taste_id = %(taste)s AND r.state = ANY(%(open_states)s) AND NOT r.paused
      AND p.assigned_count < p.overlap AND p.kind <> 'gold' AND {started}
      AND CASE WHEN r.state = 'evaluating' THEN (p.kind <> 'train' OR p.held_back) ELSE NOT p.held_back END
      AND NOT EXISTS (
        SELECT 1 FROM {assignment} a WHERE a.pair_id = p.id AND a.annotator_id = %(annotator)s AND a.state <> 'expired'
      )
    ORDER BY CASE WHEN r.state = 'evaluating' THEN (p.id * {mix_factor}) %% {mix_modulus} ELSE p.id END, p.id
    LIMIT %(limit)s
    FOR UPDATE OF p SKIP LOCKED
"""
_OPEN_STATES = [str(state) for state in Round.OPEN_STATES]
# An evaluating round hands out its eval pairs and held-back train pairs in a scrambled but fixed order (a
# multiplicative hash of the id), so neither kind comes first: creation order would tell them apart.
MIX_FACTOR, MIX_MODULUS = 2654435761, 4294967311
_OPEN_PAIRS = {
    started: _OPEN_PAIRS_SQL.format(
        pair=Pair._meta.db_table, round=Round._meta.db_table, assignment=Assignment._meta.db_table,
        started="p.assigned_count > 0" if started else "p.assigned_count = 0", mix_factor=MIX_FACTOR,
        mix_modulus=MIX_MODULUS,
    )
    for started in (True, False)
}


def lock_open_pairs(*, taste_id: int, annotator_id: int, started: bool, limit: int) -> list[int]:
    """Ids of up to `limit` pairs of a taste's open, unpaused rounds that still need annotators and that this
    annotator may take, oldest first, locked FOR UPDATE SKIP LOCKED so concurrent claims pass over each other
    instead of waiting.

    An evaluating round offers its eval pairs and its held-back train pairs, mixed (MIX_FACTOR); the other
    open states offer train pairs that are not held back.

    `started` picks pairs that someone already holds or judged (True) or untouched ones (False). An expired
    lease of this annotator's own may be taken up again; anything else they hold or held may not. Plain SQL:
    this runs on every claim, and building it with the ORM cost more CPU than PostgreSQL spends on it.
    """
    if connection.vendor != "postgresql":
        return list(_open_pairs_portable(taste_id=taste_id, annotator_id=annotator_id, started=started)[:limit])
    with connection.cursor() as cursor:
        cursor.execute(
            _OPEN_PAIRS[started],
            {"taste": taste_id, "annotator": annotator_id, "limit": limit, "open_states": _OPEN_STATES},
        )
        return [pair_id for (pair_id,) in cursor.fetchall()]


def _open_pairs_portable(*, taste_id: int, annotator_id: int, started: bool) -> QuerySet[Pair]:
    """_OPEN_PAIRS with the ORM, for SQLite (the embedded demo)."""
    pairs = (
        Pair.objects.filter(
            taste_id=taste_id, round__state__in=Round.OPEN_STATES, round__paused=False, assigned_count__lt=F("overlap")
        )
        .exclude(kind=Pair.Kind.GOLD)
        .exclude(
            Exists(
                Assignment.objects.filter(pair=OuterRef("pk"), annotator_id=annotator_id).exclude(
                    state=Assignment.State.EXPIRED
                )
            )
        )
        .filter(
            (Q(round__state=Round.State.EVALUATING) & (~Q(kind=Pair.Kind.TRAIN) | Q(held_back=True)))
            | (~Q(round__state=Round.State.EVALUATING) & Q(held_back=False))
        )
        .select_for_update(skip_locked=True, of=("self",))
        .annotate(mixed=Case(
            When(round__state=Round.State.EVALUATING,
                 then=ExpressionWrapper(F("id") * MIX_FACTOR % MIX_MODULUS, output_field=BigIntegerField())),
            default=F("id"), output_field=BigIntegerField(),
        ))
        .order_by("mixed", "id")
        .values_list("id", flat=True)
    )
    return pairs.filter(assigned_count__gt=0) if started else pairs.filter(assigned_count=0)


def lock_gold_pairs(*, taste_id: int, annotator_id: int, limit: int) -> list[int]:
    """Ids of up to `limit` gold pairs of a taste that this annotator never held (an expired lease of their own
    aside), oldest first, locked FOR UPDATE SKIP LOCKED, while the taste has an open, unpaused round: a gold pair
    may come from any round, past ones included (a lead picks them among judged pairs). Gold pairs never fill up
    (their overlap is Pair.GOLD_OVERLAP): each annotator of the taste may get each one once."""
    if not Round.objects.filter(taste_id=taste_id, state__in=Round.OPEN_STATES, paused=False).exists():
        return []
    ids = (
        Pair.objects.filter(taste_id=taste_id, kind=Pair.Kind.GOLD, assigned_count__lt=F("overlap"))
        .exclude(
            Exists(
                Assignment.objects.filter(pair=OuterRef("pk"), annotator_id=annotator_id).exclude(
                    state=Assignment.State.EXPIRED
                )
            )
        )
        .select_for_update(skip_locked=True, of=("self",))
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    return list(ids)


def lock_assignment(*, assignment_id: int) -> QuerySet[Assignment]:
    """One assignment, locked until the end of the transaction (submit, skip, undo)."""
    return Assignment.objects.select_for_update(of=("self",)).filter(pk=assignment_id)


def lock_expired_leases(*, now) -> QuerySet[Assignment]:
    """Leases past their expiry, skipping any a submission holds right now."""
    return (
        Assignment.objects.select_for_update(skip_locked=True)
        .filter(state=Assignment.State.LEASED, lease_expires_at__lte=now)
        .order_by("id")
    )


def lock_round_leases(*, round_id: int) -> QuerySet[Assignment]:
    """The live leases of a round's pairs, skipping any a submission holds right now (released by the lead)."""
    return (
        Assignment.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(state=Assignment.State.LEASED, pair__round_id=round_id)
        .order_by("id")
    )


def lock_taste_leases_of(*, taste_id: int, annotator_ids: list[int]) -> QuerySet[Assignment]:
    """The live leases some annotators hold in a taste (they leave its cohort), skipping any a submission holds."""
    return (
        Assignment.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(state=Assignment.State.LEASED, pair__taste_id=taste_id, annotator_id__in=annotator_ids)
        .order_by("id")
    )


def lock_leases(*, assignment_ids: list[int]) -> QuerySet[Assignment]:
    """Some leases, still live, skipping any a submission holds right now."""
    return (
        Assignment.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(state=Assignment.State.LEASED, pk__in=assignment_ids)
        .order_by("id")
    )


def lock_leases_of(*, annotator_id: int) -> QuerySet[Assignment]:
    """Every live lease an annotator holds (they log out), skipping any a submission holds right now."""
    return (
        Assignment.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(state=Assignment.State.LEASED, annotator_id=annotator_id)
        .order_by("id")
    )


def lock_round(*, round_id: int) -> QuerySet[Round]:
    """One round, locked for a state change or a sampling reservation."""
    return Round.objects.select_for_update(of=("self",)).filter(pk=round_id)


def lock_training_job(*, job_id: int) -> QuerySet[TrainingJob]:
    """One training job, locked while its result is recorded."""
    return TrainingJob.objects.select_for_update(of=("self",)).filter(pk=job_id)


def lock_taste(*, taste_id: int) -> QuerySet[Taste]:
    """One taste, locked while a round is launched for it (two launches cannot both find no running round)."""
    return Taste.objects.select_for_update(of=("self",)).filter(pk=taste_id)


def lock_user(*, user_id: int):
    """A user row, to serialise their requests that count what they already have (e.g. running exports)."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.select_for_update().filter(pk=user_id)
