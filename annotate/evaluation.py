"""Judging a candidate: the child's win rate over its parent with a 95% interval, and the promotion rule."""

import math
from dataclasses import asdict, dataclass, field

from annotate.models import Judgement, Pair
from annotate.stats import clustered_win_rate, wilson

SCORES = {Judgement.Choice.B: 1.0, Judgement.Choice.TIE: 0.5, Judgement.Choice.A: 0.0}  # the child is image B


@dataclass(frozen=True)
class WinRate:
    wins: int
    losses: int
    ties: int
    rate: float  # (wins + ties/2) / n
    low: float
    high: float
    method: str = "wilson"  # how low and high were found
    clusters: str = ""  # the bootstrap's independent units: "prompts" (or "pairs" with one prompt)
    pairs: int = 0
    prompts: int = 0

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties


def win_rate(*, wins: int, losses: int, ties: int, confidence: float = 0.95) -> WinRate:
    """The share of comparisons won, a tie counting half, with a Wilson score interval over comparisons.

    Right only for independent comparisons: eval judgements share pairs and prompts, so the gate uses
    `clustered_rate` instead; this stays for counts without their pairs and as the comparison in
    docs/evaluation.md.
    """
    n = wins + losses + ties
    if n == 0:
        return WinRate(wins, losses, ties, math.nan, 0.0, 1.0)
    low, high = wilson(wins + ties / 2, n, confidence)
    return WinRate(wins, losses, ties, (wins + ties / 2) / n, low, high)


def clustered_rate(rows, *, confidence: float = 0.95) -> WinRate:
    """The child's record from (prompt id, pair id, choice) judgement rows, with an interval that treats the
    prompts as the independent units (`annotate.stats.clustered_win_rate`; see docs/evaluation.md)."""
    rows = [(prompt, pair, SCORES[choice]) for prompt, pair, choice in rows if choice in SCORES]
    wins = sum(score == 1.0 for *_, score in rows)
    ties = sum(score == 0.5 for *_, score in rows)
    if not rows:
        return WinRate(0, 0, 0, math.nan, 0.0, 1.0, "none")
    prompts, pairs, scores = zip(*rows)
    interval = clustered_win_rate(prompts, pairs, scores, confidence=confidence)
    return WinRate(wins, len(rows) - wins - ties, ties, interval.rate, interval.low, interval.high,
                   interval.method, interval.clusters, interval.pairs, interval.prompts)


def round_eval_counts(*, round_id: int) -> WinRate:
    """The child's record in a round's eval pairs (image A is the parent's, image B the child's)."""
    return clustered_rate(
        Judgement.objects.filter(pair__round_id=round_id, pair__kind=Pair.Kind.EVAL)
        .order_by("id").values_list("pair__prompt_id", "pair_id", "choice")
    )


def round_base_counts(*, round_id: int) -> WinRate:
    """The child's record against the lineage's root in a round's base pairs (image A the root's, B the child's):
    the measured cumulative figure, with the same clustered interval; the gate never reads it."""
    return clustered_rate(
        Judgement.objects.filter(pair__round_id=round_id, pair__kind=Pair.Kind.BASE)
        .order_by("id").values_list("pair__prompt_id", "pair_id", "choice")
    )


@dataclass
class Decision:
    promote: bool
    win: dict
    threshold: float
    guard_rails: dict = field(default_factory=dict)  # name → {"ok", "on", "detail", "figures"}
    reason: str = ""


def promotion_decision(win: WinRate, *, threshold: float = 0.5, guard_rails: dict | None = None) -> Decision:
    """Promote when the interval's lower bound clears `threshold` and every guard-rail the round runs holds (a rail
    shown off, `"on": False`, only reports its figures)."""
    guard_rails = guard_rails or {}
    broken = [name for name, check in guard_rails.items() if check.get("on", True) and not check["ok"]]
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
