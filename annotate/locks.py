"""Every row lock of the app, in one place, each in primary-key order so lock order is fixed."""

from django.db.models import Exists, F, OuterRef, QuerySet

from annotate.models import Assignment, Pair, Round, Taste, TrainingJob


def lock_open_pairs(*, taste_id: int, annotator_id: int, started: bool) -> QuerySet[Pair]:
    """Pairs of a taste's open rounds that still need annotators and that this annotator may take,
    locked FOR UPDATE SKIP LOCKED so concurrent claims pass over each other instead of waiting.

    `started` picks pairs that someone already holds or judged (True) or untouched ones (False). On PostgreSQL
    the claim runs the same lock as SQL inside its single statement: `open_pairs_sql`.
    """
    pairs = (
        Pair.objects.filter(
            taste_id=taste_id, round__state__in=Round.OPEN_STATES, round__paused=False, assigned_count__lt=F("overlap")
        )
        .exclude(
            # An expired lease of this annotator's own may be taken up again; anything else may not.
            Exists(
                Assignment.objects.filter(pair=OuterRef("pk"), annotator_id=annotator_id).exclude(
                    state=Assignment.State.EXPIRED
                )
            )
        )
        .select_for_update(skip_locked=True, of=("self",))
        .order_by("id")
    )
    return pairs.filter(assigned_count__gt=0) if started else pairs.filter(assigned_count=0)


OPEN_STATES = [str(state) for state in Round.OPEN_STATES]  # the %(open_states)s parameter of open_pairs_sql


def open_pairs_sql(*, started: bool, limit: str) -> str:
    """lock_open_pairs as PostgreSQL text, ids only, at most `limit` (an SQL expression), for a larger statement.

    Parameters: %(taste)s, %(annotator)s, %(open_states)s (OPEN_STATES).
    """
    return f"""
        SELECT p.id FROM {Pair._meta.db_table} p JOIN {Round._meta.db_table} r ON r.id = p.round_id
        WHERE p.taste_id = %(taste)s AND r.state = ANY(%(open_states)s) AND NOT r.paused
          AND p.assigned_count < p.overlap AND {"p.assigned_count > 0" if started else "p.assigned_count = 0"}
          AND NOT EXISTS (
            SELECT 1 FROM {Assignment._meta.db_table} a
            WHERE a.pair_id = p.id AND a.annotator_id = %(annotator)s AND a.state <> 'expired'
          )
        ORDER BY p.id LIMIT {limit}
        FOR UPDATE OF p SKIP LOCKED
    """


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


def lock_round(*, round_id: int) -> QuerySet[Round]:
    """One round, locked for a state change or a sampling reservation."""
    return Round.objects.select_for_update(of=("self",)).filter(pk=round_id)


def lock_training_job(*, job_id: int) -> QuerySet[TrainingJob]:
    """One training job, locked while its result is recorded."""
    return TrainingJob.objects.select_for_update(of=("self",)).filter(pk=job_id)


def lock_taste(*, taste_id: int) -> QuerySet[Taste]:
    """One taste, locked while a round is launched for it (two launches cannot both find no running round)."""
    return Taste.objects.select_for_update(of=("self",)).filter(pk=taste_id)
