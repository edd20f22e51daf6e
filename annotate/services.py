"""Write use cases of the annotation domain: claim, submit, skip, reap; each one transaction."""

import json
import secrets
import uuid
from collections import Counter
from collections.abc import Iterable
from contextlib import nullcontext
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotate import locks, roles, scheduler, selectors
from annotate.access import access_own_assignment
from annotate.errors import AssignmentClosed, DomainError, DuplicateClientUuid, LeaseExpired, RoundClosed
from annotate.models import Assignment, Judgement, Pair, Round, Taste, TasteMembership

SCREEN_CHOICES = ("left", "right", "tie", "both_bad")  # as the annotator saw the screen
FLAGS = tuple(Judgement.Flag.values)
# A lease whose annotator has done nothing in the taste for this long is stale (a closed tab): the cockpit's
# "release stale leases" hands it back. An active judging page claims or judges every few seconds.
STALE_LEASE_IDLE = timedelta(minutes=5)


def assignment_claim(
    *, annotator: AbstractBaseUser, taste: Taste, count: int = 1, now: datetime | None = None
) -> list[Assignment]:
    """Up to `count` assignments for `annotator` in `taste`: the live leases they already hold,
    oldest first, topped up with newly claimed pairs. Asking twice never hoards leases.
    """
    now = now or timezone.now()
    count = max(1, min(count, settings.CHISEL_MAX_PREFETCH))
    held = _still_open(selectors.live_lease_ids(annotator=annotator, taste=taste, now=now, limit=count), now=now)
    claimed: list[int] = []
    if len(held) < count:
        try:
            claimed = _claim_new(annotator=annotator, taste=taste, count=count - len(held), now=now)
        except IntegrityError:
            # The same annotator claimed the same pair in a concurrent request; one retry sees it.
            claimed = _claim_new(annotator=annotator, taste=taste, count=count - len(held), now=now)
    return selectors.assignments_with_images(ids=held + claimed)


def _still_open(lease_ids: list[int], *, now: datetime) -> list[int]:
    """The leases whose round still takes their label. The others (the round moved on while a page held them) are
    handed back at once: offered again, their judgement would only be refused (409 round_closed), again and again
    until the lease ran out."""
    if not lease_ids:
        return lease_ids
    leases = Assignment.objects.filter(pk__in=lease_ids).select_related("pair__round").only(
        "pair__kind", "pair__held_back", "pair__round__state", "pair__round__failed_in")
    closed = {lease.pk for lease in leases
              if not round_takes_labels(pair=lease.pair, round_state=lease.pair.round.state,
                                        failed_in=lease.pair.round.failed_in)}
    if closed:
        with transaction.atomic():
            leases_expire(leases=list(locks.lock_leases(assignment_ids=sorted(closed)).values_list("id", "pair_id")),
                          now=now)
    return [lease_id for lease_id in lease_ids if lease_id not in closed]


# The claim's writes in one statement (run on every claim): count the leases on the chosen pairs, take up
# this annotator's own expired leases of them again, and insert fresh ones for the rest.
_CLAIM_WRITES = f"""
    WITH chosen AS (
        SELECT * FROM unnest(%(pairs)s::bigint[], %(coins)s::boolean[]) AS c(pair_id, left_is_a)
    ), counted AS (
        UPDATE {Pair._meta.db_table} SET assigned_count = assigned_count + 1 WHERE id = ANY(%(pairs)s::bigint[])
    ), again AS (
        UPDATE {Assignment._meta.db_table} a
        SET state = 'leased', left_is_a = c.left_is_a, claimed_at = %(now)s, lease_expires_at = %(until)s,
            closed_at = NULL
        FROM chosen c
        WHERE a.pair_id = c.pair_id AND a.annotator_id = %(annotator)s AND a.state = 'expired'
        RETURNING a.id, a.pair_id
    ), fresh AS (
        INSERT INTO {Assignment._meta.db_table} (pair_id, annotator_id, left_is_a, state, claimed_at, lease_expires_at)
        SELECT c.pair_id, %(annotator)s, c.left_is_a, 'leased', %(now)s, %(until)s
        FROM chosen c WHERE c.pair_id NOT IN (SELECT pair_id FROM again)
        RETURNING id, pair_id
    )
    SELECT id, pair_id FROM again UNION ALL SELECT id, pair_id FROM fresh
"""


def _claim_new(*, annotator: AbstractBaseUser, taste: Taste, count: int, now: datetime) -> list[int]:
    with transaction.atomic():
        pair_ids = scheduler.choose_pairs(scheduler.ClaimRequest(taste.pk, annotator.pk, taste.gold_share), count)
        if not pair_ids:
            return []
        if connection.vendor != "postgresql":
            return _claim_writes_portable(annotator=annotator, pair_ids=pair_ids, now=now)
        with connection.cursor() as cursor:
            cursor.execute(
                _CLAIM_WRITES,
                {
                    "pairs": pair_ids,
                    "coins": [_coin() for _ in pair_ids],
                    "annotator": annotator.pk,
                    "now": now,
                    "until": now + settings.CHISEL_LEASE,
                },
            )
            by_pair = {pair_id: assignment_id for assignment_id, pair_id in cursor.fetchall()}
    return [by_pair[pair_id] for pair_id in pair_ids]


def _claim_writes_portable(*, annotator: AbstractBaseUser, pair_ids: list[int], now: datetime) -> list[int]:
    """_CLAIM_WRITES with the ORM, for SQLite (the embedded demo)."""
    lease_expires_at = now + settings.CHISEL_LEASE
    Pair.objects.filter(pk__in=pair_ids).update(assigned_count=F("assigned_count") + 1)
    expired = dict(
        Assignment.objects.filter(
            pair_id__in=pair_ids, annotator=annotator, state=Assignment.State.EXPIRED
        ).values_list("pair_id", "id")
    )
    for assignment_id in expired.values():
        Assignment.objects.filter(pk=assignment_id).update(
            state=Assignment.State.LEASED, left_is_a=_coin(), claimed_at=now, lease_expires_at=lease_expires_at,
            closed_at=None,
        )  # fmt: skip
    fresh = Assignment.objects.bulk_create(
        Assignment(pair_id=pair_id, annotator=annotator, left_is_a=_coin(), claimed_at=now, lease_expires_at=lease_expires_at)
        for pair_id in pair_ids
        if pair_id not in expired
    )
    by_pair = {**expired, **{a.pair_id: a.pk for a in fresh}}
    return [by_pair[pair_id] for pair_id in pair_ids]


def _coin() -> bool:
    return secrets.randbits(1) == 1


def judgement_submit(
    *,
    annotator: AbstractBaseUser,
    assignment_id: int,
    choice: str,
    client_uuid: uuid.UUID,
    flags_left: Iterable[str] = (),
    flags_right: Iterable[str] = (),
    duration_ms: int | None = None,
    now: datetime | None = None,
) -> tuple[Judgement, bool]:
    """Record the annotator's verdict on a leased pair; returns (judgement, created).

    `choice` and the flags are as the annotator saw the screen; they are stored relative to images
    A and B. Replaying the same `client_uuid` returns the first judgement and writes nothing.
    """
    _check_choice(choice)
    flags_left, flags_right = _check_flags(flags_left), _check_flags(flags_right)
    now = now or timezone.now()

    # On PostgreSQL the happy path is one guarded statement: close the lease if it is this annotator's and still
    # runs, record the judgement, count it. Anything else (a replay, a closed or expired lease, someone else's
    # assignment) is rare and takes the path under a row lock below, which is also the whole story on SQLite.
    try:
        if connection.vendor == "postgresql":
            judgement = _submit_guarded(
                annotator=annotator, assignment_id=assignment_id, choice=choice, client_uuid=client_uuid,
                flags_left=flags_left, flags_right=flags_right, duration_ms=duration_ms, now=now,
            )  # fmt: skip
            if judgement is not None:
                return judgement, True
        with transaction.atomic():
            assignment = locks.lock_assignment(assignment_id=assignment_id).first()
            if assignment is None or assignment.annotator_id != annotator.pk or assignment.state != Assignment.State.LEASED:
                return _replay_or_refuse(
                    client_uuid=client_uuid, annotator=annotator, assignment=assignment, assignment_id=assignment_id
                ), False
            if Judgement.objects.filter(client_uuid=client_uuid).exists():
                return _replay_or_refuse(
                    client_uuid=client_uuid, annotator=annotator, assignment=assignment, assignment_id=assignment_id
                ), False
            _check_round_takes_labels(assignment)
            if assignment.lease_expires_at <= now:
                expired = LeaseExpired(
                    f"The lease on assignment {assignment_id} expired at {assignment.lease_expires_at.isoformat()}; "
                    "the pair went back to the pool."
                )
                return _replay_or_refuse(
                    client_uuid=client_uuid, annotator=annotator, assignment=assignment, assignment_id=assignment_id,
                    error=expired,
                ), False
            flags_a, flags_b = (flags_left, flags_right) if assignment.left_is_a else (flags_right, flags_left)
            judgement = Judgement.objects.create(
                assignment=assignment,
                pair_id=assignment.pair_id,
                annotator=annotator,
                client_uuid=client_uuid,
                choice=_to_ab(choice, left_is_a=assignment.left_is_a),
                flags_a=flags_a,
                flags_b=flags_b,
                duration_ms=duration_ms,
            )
            Assignment.objects.filter(pk=assignment.pk).update(state=Assignment.State.JUDGED, closed_at=now)
            Pair.objects.filter(pk=assignment.pair_id).update(judged_count=F("judged_count") + 1)
    except IntegrityError:
        # A client_uuid used before (the unique constraint catches a concurrent reuse too).
        replay = Judgement.objects.filter(client_uuid=client_uuid).first()
        if replay is None:
            raise
        return _replayed(replay, annotator=annotator, assignment_id=assignment_id), False
    return judgement, True


def _submit_guarded(
    *, annotator: AbstractBaseUser, assignment_id: int, choice: str, client_uuid: uuid.UUID, flags_left: list[str],
    flags_right: list[str], duration_ms: int | None, now: datetime,
) -> Judgement | None:
    """The judgement, written by _SUBMIT; None when the assignment is not this annotator's live lease."""
    with _atomic_if_nested(), connection.cursor() as cursor:
        cursor.execute(
            _SUBMIT,
            {
                "assignment": assignment_id,
                "annotator": annotator.pk,
                "now": now,
                "client_uuid": client_uuid,
                "choice_left_a": _to_ab(choice, left_is_a=True),
                "choice_left_b": _to_ab(choice, left_is_a=False),
                "flags_left": json.dumps(flags_left),
                "flags_right": json.dumps(flags_right),
                "duration_ms": duration_ms,
            },
        )
        row = cursor.fetchone()
    if row is None:
        return None
    judgement_id, pair_id, stored_choice, left_is_a = row
    flags_a, flags_b = (flags_left, flags_right) if left_is_a else (flags_right, flags_left)
    judgement = Judgement(
        id=judgement_id, assignment=Assignment(pk=assignment_id, left_is_a=left_is_a), pair_id=pair_id,
        annotator_id=annotator.pk, client_uuid=client_uuid, choice=stored_choice, flags_a=flags_a, flags_b=flags_b,
        duration_ms=duration_ms, created_at=now, amended_at=None, amendments=0,
    )  # fmt: skip
    judgement._state.adding, judgement._state.db = False, connection.alias
    return judgement


_SUBMIT = f"""
    WITH closed AS (
        UPDATE {Assignment._meta.db_table} SET state = 'judged', closed_at = %(now)s
        WHERE id = %(assignment)s AND annotator_id = %(annotator)s AND state = 'leased' AND lease_expires_at > %(now)s
          AND EXISTS (
            SELECT 1 FROM {Pair._meta.db_table} p JOIN {Round._meta.db_table} r ON r.id = p.round_id
            WHERE p.id = {Assignment._meta.db_table}.pair_id AND {{takes_labels}}
          )
        RETURNING id, pair_id, left_is_a
    ), judged AS (
        INSERT INTO {Judgement._meta.db_table}
            (assignment_id, pair_id, annotator_id, client_uuid, choice, flags_a, flags_b, duration_ms, created_at,
             amendments)
        SELECT id, pair_id, %(annotator)s, %(client_uuid)s,
            CASE WHEN left_is_a THEN %(choice_left_a)s ELSE %(choice_left_b)s END,
            CASE WHEN left_is_a THEN %(flags_left)s::jsonb ELSE %(flags_right)s::jsonb END,
            CASE WHEN left_is_a THEN %(flags_right)s::jsonb ELSE %(flags_left)s::jsonb END,
            %(duration_ms)s, %(now)s, 0
        FROM closed
        RETURNING id, pair_id, choice
    ), counted AS (
        UPDATE {Pair._meta.db_table} SET judged_count = judged_count + 1 WHERE id = (SELECT pair_id FROM judged)
    )
    SELECT judged.id, judged.pair_id, judged.choice, closed.left_is_a FROM judged, closed
"""
# When a round takes labels for a pair (round_takes_labels in SQL, over pair p and round r).
_TAKES_LABELS = """CASE
    WHEN p.kind = 'gold' THEN TRUE
    WHEN p.kind = 'train' AND NOT p.held_back
        THEN (CASE WHEN r.state = 'failed' THEN r.failed_in ELSE r.state END) IN ('sampling', 'annotating')
    WHEN p.kind IN ('eval', 'base') OR p.held_back
        THEN (CASE WHEN r.state = 'failed' THEN r.failed_in ELSE r.state END) = 'evaluating'
    ELSE r.state IN ('sampling', 'annotating', 'evaluating') END"""
_SUBMIT = _SUBMIT.replace("{takes_labels}", _TAKES_LABELS)


def round_takes_labels(*, pair: Pair, round_state: str, failed_in: str = "") -> bool:
    """Whether a judgement of `pair` may still be recorded: train pairs until the round's dataset freezes (it
    leaves annotating), eval, child-vs-base and held-back train pairs while it evaluates (until its decision), also
    while the round is failed in that step (a retry resumes it); gold pairs always (they score annotators, whatever
    round they came from, and are never trained on); other kinds while it is open. Later ones would change figures
    already used, so they are refused (`RoundClosed`)."""
    if pair.kind == Pair.Kind.GOLD:
        return True
    step = failed_in if round_state == Round.State.FAILED else round_state
    if pair.kind == Pair.Kind.TRAIN and not pair.held_back:
        return step in (Round.State.SAMPLING, Round.State.ANNOTATING)
    if pair.kind in (Pair.Kind.EVAL, Pair.Kind.BASE) or pair.held_back:
        return step == Round.State.EVALUATING
    return round_state in Round.OPEN_STATES


def _check_round_takes_labels(assignment: Assignment) -> None:
    pair = Pair.objects.select_related("round").only(
        "kind", "held_back", "round__state", "round__failed_in", "round__number"
    ).get(pk=assignment.pair_id)
    if not round_takes_labels(pair=pair, round_state=pair.round.state, failed_in=pair.round.failed_in):
        raise RoundClosed(
            f"Round {pair.round.number} no longer takes this judgement (it is {pair.round.state}: its figures are "
            "fixed); nothing was recorded. On to the next pair."
        )


def _atomic_if_nested():
    """A savepoint inside a transaction, so a failed statement does not spoil it; outside one, a single
    statement is atomic by itself and BEGIN/COMMIT would only cost two round trips."""
    return transaction.atomic() if connection.in_atomic_block else nullcontext()


def _replay_or_refuse(
    *, client_uuid: uuid.UUID, annotator: AbstractBaseUser, assignment: Assignment | None, assignment_id: int,
    error: DomainError | None = None,
) -> Judgement:
    """An earlier judgement with this client_uuid (a replay), or the reason the submission is refused."""
    replay = Judgement.objects.filter(client_uuid=client_uuid).first()
    if replay is not None:
        return _replayed(replay, annotator=annotator, assignment_id=assignment_id)
    if error is not None:
        raise error
    access_own_assignment(user=annotator, assignment=assignment, assignment_id=assignment_id)
    if assignment.state == Assignment.State.JUDGED:
        raise AssignmentClosed(f"Assignment {assignment_id} was already judged.")
    raise AssignmentClosed(f"Assignment {assignment_id} was {assignment.state}; claim a new pair.")


def judgement_amend(
    *,
    annotator: AbstractBaseUser,
    assignment_id: int,
    choice: str,
    flags_left: Iterable[str] = (),
    flags_right: Iterable[str] = (),
    duration_ms: int | None = None,
    now: datetime | None = None,
) -> Judgement:
    """Replace the verdict on an assignment the annotator judged, while its lease still runs (undo, redo).

    Sending the same amendment twice leaves the same judgement.
    """
    _check_choice(choice)
    flags_left, flags_right = _check_flags(flags_left), _check_flags(flags_right)
    now = now or timezone.now()
    with transaction.atomic():
        assignment = locks.lock_assignment(assignment_id=assignment_id).first()
        access_own_assignment(user=annotator, assignment=assignment, assignment_id=assignment_id)
        if assignment.state != Assignment.State.JUDGED:
            raise AssignmentClosed(f"Assignment {assignment_id} has no judgement to change ({assignment.state}).")
        if assignment.lease_expires_at <= now:
            raise LeaseExpired(
                f"The judgement of assignment {assignment_id} can no longer be changed: its lease ended at "
                f"{assignment.lease_expires_at.isoformat()}."
            )
        _check_round_takes_labels(assignment)
        judgement = Judgement.objects.get(assignment=assignment)
        judgement.assignment = assignment
        flags_a, flags_b = (flags_left, flags_right) if assignment.left_is_a else (flags_right, flags_left)
        new = {
            "choice": _to_ab(choice, left_is_a=assignment.left_is_a),
            "flags_a": flags_a,
            "flags_b": flags_b,
            "duration_ms": duration_ms,
        }
        if any(getattr(judgement, field) != value for field, value in new.items()):
            for field, value in new.items():
                setattr(judgement, field, value)
            judgement.amended_at = now
            judgement.amendments += 1
            judgement.save(update_fields=[*new, "amended_at", "amendments"])
    return judgement


def _replayed(judgement: Judgement, *, annotator: AbstractBaseUser, assignment_id: int) -> Judgement:
    if judgement.annotator_id != annotator.pk or judgement.assignment_id != assignment_id:
        raise DuplicateClientUuid(
            f"client_uuid {judgement.client_uuid} was already used for another submission; send a fresh UUID."
        )
    return judgement


def _check_choice(choice: str) -> None:
    if choice not in SCREEN_CHOICES:
        raise DomainError(f"Unknown choice '{choice}'; expected one of {', '.join(SCREEN_CHOICES)}.")


def _check_flags(flags: Iterable[str]) -> list[str]:
    flags = list(flags)
    unknown = sorted(set(flags) - set(FLAGS))
    if unknown:
        raise DomainError(f"Unknown flags {unknown}; expected some of {', '.join(FLAGS)}.")
    return sorted(set(flags))


def _to_ab(choice: str, *, left_is_a: bool) -> str:
    if choice == "left":
        return Judgement.Choice.A if left_is_a else Judgement.Choice.B
    if choice == "right":
        return Judgement.Choice.B if left_is_a else Judgement.Choice.A
    return choice


def to_screen(choice: str, *, left_is_a: bool) -> str:
    """A stored choice (relative to images A and B) as the annotator saw it: left, right, tie or both_bad."""
    if choice == Judgement.Choice.A:
        return "left" if left_is_a else "right"
    if choice == Judgement.Choice.B:
        return "right" if left_is_a else "left"
    return choice


def assignment_skip(*, annotator: AbstractBaseUser, assignment_id: int, now: datetime | None = None) -> None:
    """Hand a leased pair back to the pool; it is not offered to this annotator again. Idempotent."""
    now = now or timezone.now()
    with transaction.atomic():
        assignment = locks.lock_assignment(assignment_id=assignment_id).first()
        access_own_assignment(user=annotator, assignment=assignment, assignment_id=assignment_id)
        if assignment.state == Assignment.State.SKIPPED:
            return
        if assignment.state != Assignment.State.LEASED:
            raise AssignmentClosed(f"Assignment {assignment_id} was {assignment.state}; there is nothing to skip.")
        Assignment.objects.filter(pk=assignment.pk).update(state=Assignment.State.SKIPPED, closed_at=now)
        Pair.objects.filter(pk=assignment.pair_id).update(assigned_count=F("assigned_count") - 1)


def leases_reap_expired(*, now: datetime | None = None) -> int:
    """Return pairs whose lease ran out to the pool; returns how many leases were reaped."""
    now = now or timezone.now()
    with transaction.atomic():
        expired = list(locks.lock_expired_leases(now=now).values_list("id", "pair_id"))
        if not expired:
            return 0
        Assignment.objects.filter(pk__in=[a for a, _ in expired]).update(state=Assignment.State.EXPIRED, closed_at=now)
        for pair_id, released in sorted(Counter(p for _, p in expired).items()):
            Pair.objects.filter(pk=pair_id).update(assigned_count=F("assigned_count") - released)
    return len(expired)


def leases_release(*, round_id: int, idle: timedelta | None = None, now: datetime | None = None) -> int:
    """Hand a round's live leases back to the pool: all of them, or with `idle` only those whose annotator has
    done nothing in the taste (claim, judgement, skip, amendment) for that long — a closed tab. The pairs go to
    whoever asks next (their holder too: the same row is revived). Idempotent; returns how many were released."""
    now = now or timezone.now()
    with transaction.atomic():
        leases = list(locks.lock_round_leases(round_id=round_id).values_list("id", "pair_id", "annotator_id",
                                                                             "pair__taste_id"))
        if idle is not None and leases:
            active = selectors.annotators_last_active(taste_id=leases[0][3], annotator_ids={a for _, _, a, _ in leases})
            leases = [lease for lease in leases if now - active[lease[2]] >= idle]
        leases_expire(leases=[(a, p) for a, p, *_ in leases], now=now)
    return len(leases)


def annotator_leases_release(*, annotator_id: int) -> int:
    """Hand back every lease an annotator holds (they logged out: nobody will judge those pairs on that screen), so
    a round need not wait for the leases to run out. Idempotent; returns how many were released."""
    with transaction.atomic():
        leases = list(locks.lock_leases_of(annotator_id=annotator_id).values_list("id", "pair_id"))
        leases_expire(leases=leases, now=timezone.now())
    return len(leases)


def leases_expire(*, leases: list[tuple[int, int]], now: datetime) -> None:
    """Expire locked leases, given as (assignment id, pair id), and give their slots back to their pairs."""
    Assignment.objects.filter(pk__in=[a for a, _ in leases]).update(state=Assignment.State.EXPIRED, closed_at=now)
    for pair_id, released in sorted(Counter(p for _, p in leases).items()):
        Pair.objects.filter(pk=pair_id).update(assigned_count=F("assigned_count") - released)


def taste_create(*, slug: str, name: str = "", description: str = "", guidelines: str = "") -> Taste:
    """A new taste with an empty cohort."""
    return Taste.objects.create(slug=slug, name=name or slug.replace("-", " ").title(), description=description,
                                guidelines=guidelines)


def annotator_create(
    *, username: str, tastes: Iterable[Taste], password: str | None = None
) -> tuple[AbstractBaseUser, str]:
    """An annotator (not staff) in the cohorts of `tastes`; returns the user and an API token."""
    with transaction.atomic():
        user = _user_create(username=username, password=password, is_staff=False)
        TasteMembership.objects.bulk_create(TasteMembership(taste=t, annotator=user) for t in tastes)
        return user, Token.objects.create(user=user).key


def annotator_join(*, annotator: AbstractBaseUser, taste: Taste) -> None:
    """Add an existing annotator to a taste's cohort (no-op if already a member)."""
    TasteMembership.objects.get_or_create(taste=taste, annotator=annotator)


def lead_create(
    *, username: str, password: str | None = None, superuser: bool = False
) -> tuple[AbstractBaseUser, str]:
    """A research lead (staff in the Lead group: admin and lead endpoints); returns the user and a token.

    `superuser` also grants every permission, user and group management included: keep it for one or two people.
    """
    with transaction.atomic():
        user = _user_create(username=username, password=password, is_staff=True, is_superuser=superuser)
        user.groups.add(roles.lead_group())
        return user, Token.objects.create(user=user).key


def _user_create(
    *, username: str, password: str | None, is_staff: bool, is_superuser: bool = False
) -> AbstractBaseUser:
    User = get_user_model()
    if User.objects.filter(username=username).exists():
        raise DomainError(f"A user named '{username}' already exists.")
    user = User(username=username, is_staff=is_staff, is_superuser=is_superuser)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.save()
    return user
