"""Win rates with intervals and the promotion rule (annotate/evaluation.py)."""

import math

import pytest

from annotate.evaluation import promotion_decision, win_rate


def test_win_rate_counts_a_tie_as_half_and_brackets_it():
    rate = win_rate(wins=60, losses=30, ties=10)
    assert rate.n == 100 and rate.rate == pytest.approx(0.65)
    # Wilson score interval for p = 0.65, n = 100, z = 1.959964 (computed by hand)
    assert rate.low == pytest.approx(0.5525, abs=1e-3) and rate.high == pytest.approx(0.7364, abs=1e-3)


def test_the_interval_stays_within_bounds_at_the_extremes():
    perfect = win_rate(wins=10, losses=0, ties=0)
    assert perfect.rate == 1.0 and perfect.high == pytest.approx(1.0) and 0.6 < perfect.low < 0.8
    assert win_rate(wins=0, losses=5, ties=0).low == 0.0
    empty = win_rate(wins=0, losses=0, ties=0)
    assert math.isnan(empty.rate) and (empty.low, empty.high) == (0.0, 1.0)


def test_promotion_needs_the_lower_bound_above_the_threshold_and_the_guard_rails():
    assert promotion_decision(win_rate(wins=80, losses=20, ties=0)).promote
    assert not promotion_decision(win_rate(wins=55, losses=45, ties=0)).promote  # 0.55, but the bound is below ½
    assert not promotion_decision(win_rate(wins=0, losses=0, ties=0)).promote
    broken = promotion_decision(win_rate(wins=90, losses=10, ties=0),
                                guard_rails={"adherence": {"ok": False, "detail": "−9 points"}})
    assert not broken.promote and "adherence" in broken.reason
    stricter = promotion_decision(win_rate(wins=70, losses=30, ties=0), threshold=0.65)
    assert not stricter.promote and stricter.win["n"] == 100
