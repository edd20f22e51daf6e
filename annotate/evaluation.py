"""Judging a candidate: the child's win rate over its parent with a 95% interval, and the promotion rule."""

import math
from dataclasses import asdict, dataclass, field

from django.db.models import Count, Q
from scipy.stats import norm

from annotate.models import Judgement, Pair


@dataclass(frozen=True)
class WinRate:
    wins: int
    losses: int
    ties: int
    rate: float  # (wins + ties/2) / n
    low: float  # Wilson score interval
    high: float

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties


def win_rate(*, wins: int, losses: int, ties: int, confidence: float = 0.95) -> WinRate:
    """The share of comparisons won, a tie counting half, with a Wilson score interval.

    Wilson's interval stays inside [0, 1] and behaves at small n and at rates near 0 or 1, where the
    normal approximation does not; a tie enters as half a success.
    """
    n = wins + losses + ties
    if n == 0:
        return WinRate(wins, losses, ties, math.nan, 0.0, 1.0)
    p = (wins + ties / 2) / n
    z = norm.ppf(0.5 + confidence / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return WinRate(wins, losses, ties, p, max(0.0, centre - half), min(1.0, centre + half))


def round_eval_counts(*, round_id: int) -> WinRate:
    """The child's record in a round's eval pairs (image A is the parent's, image B the child's)."""
    counts = Judgement.objects.filter(pair__round_id=round_id, pair__kind=Pair.Kind.EVAL).aggregate(
        wins=Count("id", filter=Q(choice=Judgement.Choice.B)),
        losses=Count("id", filter=Q(choice=Judgement.Choice.A)),
        ties=Count("id", filter=Q(choice=Judgement.Choice.TIE)),
    )
    return win_rate(**counts)


@dataclass
class Decision:
    promote: bool
    win: dict
    threshold: float
    guard_rails: dict = field(default_factory=dict)  # name → {"ok": bool, "detail": str}
    reason: str = ""


def promotion_decision(win: WinRate, *, threshold: float = 0.5, guard_rails: dict | None = None) -> Decision:
    """Promote when the interval's lower bound clears `threshold` and every guard-rail holds."""
    guard_rails = guard_rails or {}
    broken = [name for name, check in guard_rails.items() if not check["ok"]]
    if win.n == 0:
        promote, reason = False, "no evaluation judgements"
    elif win.low <= threshold:
        promote, reason = False, f"win rate {win.rate:.3f}, lower bound {win.low:.3f} ≤ {threshold}"
    elif broken:
        promote, reason = False, f"guard-rail(s) broken: {', '.join(broken)}"
    else:
        promote, reason = True, f"win rate {win.rate:.3f}, lower bound {win.low:.3f} > {threshold}"
    return Decision(promote, win_record(win), threshold, guard_rails, reason)


def win_record(win: WinRate) -> dict:
    """The win rate as JSON-safe figures (no rate yet is null, not NaN)."""
    record = {**asdict(win), "n": win.n}
    if math.isnan(record["rate"]):
        record["rate"] = None
    return record
