"""Write use cases of the annotation domain: claim, submit, skip, reap; each one transaction."""

import secrets
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotate import locks, scheduler, selectors
from annotate.access import access_own_assignment
from annotate.errors import AssignmentClosed, DomainError, DuplicateClientUuid, LeaseExpired
from annotate.models import Assignment, Judgement, Pair, Taste, TasteMembership

SCREEN_CHOICES = ("left", "right", "tie", "both_bad")  # as the annotator saw the screen
FLAGS = tuple(Judgement.Flag.values)


def assignment_claim(
    *, annotator: AbstractBaseUser, taste: Taste, count: int = 1, now: datetime | None = None
) -> list[Assignment]:
    """Up to `count` assignments for `annotator` in `taste`: the live leases they already hold,
    oldest first, topped up with newly claimed pairs. Asking twice never hoards leases.
    """
    now = now or timezone.now()
    count = max(1, min(count, settings.CHISEL_MAX_PREFETCH))
    held = selectors.live_lease_ids(annotator=annotator, taste=taste, now=now, limit=count)
    claimed: list[int] = []
    if len(held) < count:
        try:
            claimed = _claim_new(annotator=annotator, taste=taste, count=count - len(held), now=now)
        except IntegrityError:
            # The same annotator claimed the same pair in a concurrent request; one retry sees it.
            claimed = _claim_new(annotator=annotator, taste=taste, count=count - len(held), now=now)
    return selectors.assignments_with_images(ids=held + claimed)


def _claim_new(*, annotator: AbstractBaseUser, taste: Taste, count: int, now: datetime) -> list[int]:
    lease_expires_at = now + settings.CHISEL_LEASE
    with transaction.atomic():
        pair_ids = scheduler.choose_pairs(scheduler.ClaimRequest(taste.pk, annotator.pk), count)
        if not pair_ids:
            return []
        Pair.objects.filter(pk__in=pair_ids).update(assigned_count=F("assigned_count") + 1)
        expired = dict(
            Assignment.objects.filter(
                pair_id__in=pair_ids, annotator=annotator, state=Assignment.State.EXPIRED
            ).values_list("pair_id", "id")
        )
        for assignment_id in expired.values():
            Assignment.objects.filter(pk=assignment_id).update(
                state=Assignment.State.LEASED,
                left_is_a=_coin(),
                claimed_at=now,
                lease_expires_at=lease_expires_at,
                closed_at=None,
            )
        fresh = Assignment.objects.bulk_create(
            Assignment(
                pair_id=pair_id,
                annotator=annotator,
                left_is_a=_coin(),
                claimed_at=now,
                lease_expires_at=lease_expires_at,
            )
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

    # The happy path is one locked read and three writes; a replayed or reused client_uuid is rare, so it is
    # looked up only when something is off (and the unique constraint catches a concurrent reuse).
    try:
        with transaction.atomic():
            assignment = locks.lock_assignment(assignment_id=assignment_id).first()
            if assignment is None or assignment.annotator_id != annotator.pk or assignment.state != Assignment.State.LEASED:
                return _replay_or_refuse(
                    client_uuid=client_uuid, annotator=annotator, assignment=assignment, assignment_id=assignment_id
                ), False
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
        replay = Judgement.objects.filter(client_uuid=client_uuid).first()
        if replay is None:
            raise
        return _replayed(replay, annotator=annotator, assignment_id=assignment_id), False
    return judgement, True


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
        judgement = Judgement.objects.get(assignment=assignment)
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


def taste_create(*, slug: str, name: str = "", description: str = "") -> Taste:
    """A new taste with an empty cohort."""
    return Taste.objects.create(slug=slug, name=name or slug.replace("-", " ").title(), description=description)


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


def lead_create(*, username: str, password: str | None = None) -> tuple[AbstractBaseUser, str]:
    """A research lead (staff and superuser: admin and lead endpoints); returns the user and a token."""
    with transaction.atomic():
        user = _user_create(username=username, password=password, is_staff=True)
        return user, Token.objects.create(user=user).key


def _user_create(*, username: str, password: str | None, is_staff: bool) -> AbstractBaseUser:
    User = get_user_model()
    if User.objects.filter(username=username).exists():
        raise DomainError(f"A user named '{username}' already exists.")
    user = User(username=username, is_staff=is_staff, is_superuser=is_staff)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.save()
    return user
