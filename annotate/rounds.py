"""The round state machine: every transition is a compare-and-set, so a double click or two workers
cannot advance a round twice.

    draft → sampling → annotating → training → evaluating → done
      any of these → failed (reason kept) → retry: back to the step that failed
      any of these → cancelled
"""


from django.utils import timezone

from annotate.errors import DomainError
from annotate.models import Round

S = Round.State
FORWARD = {
    S.DRAFT: S.SAMPLING,
    S.SAMPLING: S.ANNOTATING,
    S.ANNOTATING: S.TRAINING,
    S.TRAINING: S.EVALUATING,
    S.EVALUATING: S.DONE,
}
ACTIVE = tuple(FORWARD)


def round_advance(*, round_id: int, from_state: str) -> bool:
    """Move the round one step forward if it is still in `from_state`; False if someone else moved it."""
    if from_state not in FORWARD:
        raise DomainError(f"A round in state '{from_state}' has no next step.")
    return _swap(round_id, from_state, state=FORWARD[from_state], error="")


def round_fail(*, round_id: int, from_state: str, reason: str) -> bool:
    """Stop the round in `from_state` with a readable reason; retry can later resume that step."""
    if from_state not in ACTIVE:
        raise DomainError(f"A round in state '{from_state}' cannot fail.")
    return _swap(round_id, from_state, state=S.FAILED, error=reason, failed_in=from_state, sampling_until=None)


def round_retry(*, round_id: int) -> bool:
    """Resume a failed round at the step that failed."""
    failed_in = Round.objects.filter(pk=round_id, state=S.FAILED).values_list("failed_in", flat=True).first()
    if not failed_in:
        return False
    return _swap(round_id, S.FAILED, state=failed_in, error="", failed_in="")


def round_cancel(*, round_id: int, reason: str = "cancelled by the lead") -> bool:
    """Cancel a round that has not finished."""
    current = Round.objects.filter(pk=round_id).values_list("state", flat=True).first()
    if current not in (*ACTIVE, S.FAILED):
        return False
    return _swap(round_id, current, state=S.CANCELLED, error=reason, sampling_until=None)


def _swap(round_id: int, expected: str, **changes) -> bool:
    return bool(Round.objects.filter(pk=round_id, state=expected).update(updated_at=timezone.now(), **changes))


def rounds_in(state: str) -> list[int]:
    return list(Round.objects.filter(state=state).order_by("id").values_list("id", flat=True))


