"""annotate/agreement.py: the pure figures against hand-computed values."""

import math

import numpy as np
import pytest

from annotate import agreement as ag

nan = np.nan


def test_categories_keep_ties_and_leave_both_bad_out():
    codes = ag.category_codes(["a", "b", "tie", "both_bad"])
    assert codes[:3].tolist() == [0, 1, 2] and math.isnan(codes[3])


def test_pairwise_agreement_counts_shared_and_equal_answers():
    #            unit: 0    1    2    3
    matrix = np.array([[0, 1, 2, nan],
                       [0, 0, 2, 1],
                       [nan, 1, nan, 0]])  # fmt: skip
    agree, shared = ag.pairwise_agreement(matrix)
    assert shared.tolist() == [[3, 3, 1], [3, 4, 2], [1, 2, 2]]
    assert agree.tolist() == [[3, 2, 1], [2, 4, 0], [1, 0, 2]]
    agreeing, compared = ag.agreement_with_rest(agree, shared)
    assert agreeing.tolist() == [3, 2, 1] and compared.tolist() == [4, 5, 3]
    share = ag.agreement_share(agree, shared, min_shared=2)
    assert share[0, 1] == pytest.approx(2 / 3) and math.isnan(share[0, 2])


def test_alpha_matches_krippendorffs_worked_example_and_is_none_without_pairable_units():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", nominal example: α = 0.743.
    data = np.array([
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ])  # fmt: skip
    assert ag.alpha(data) == pytest.approx(0.743, abs=0.001)
    assert ag.alpha(np.array([[0, nan], [nan, 1]])) is None
    assert ag.alpha(np.array([[0, 0], [0, 0]])) is None  # one category only: undefined
    assert ag.alpha(np.array([[0, 1, 0, 1], [0, 1, 0, 1]])) == pytest.approx(1.0)


def test_wilson_interval():
    low, high = ag.wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert ag.wilson_interval(0, 0) is None
    assert ag.wilson_interval(10, 10)[1] == 1.0


def test_position_bias_binomial_test():
    fair = ag.position_bias(52, 100)
    biased = ag.position_bias(95, 100)
    assert fair.share_left == 0.52 and fair.p_value > 0.5
    assert biased.p_value < 1e-10
    assert ag.position_bias(0, 0).p_value is None


def test_speed_streak_and_trust():
    assert ag.speed([100, 300, None, 2000, 5000], floor_ms=500) == (1150.0, 0.5)
    assert ag.speed([None], floor_ms=500) == (None, None)
    assert ag.longest_streak(["left", "left", "right", "left", "left", "left"]) == 3
    assert ag.longest_streak([]) == 0
    assert ag.trust_score(0, 0, 0, 0) == 0.25
    assert ag.trust_score(18, 18, 98, 98) == pytest.approx(19 / 20 * 99 / 100)
    assert ag.trust_score(9, 18, 50, 100) < 0.3


def test_camps_separate_two_opposed_groups_and_keep_a_coherent_cohort_whole():
    # Two groups of three that agree within (0.9) and disagree across (0.1), and a loner at chance.
    share = np.full((7, 7), 0.1)
    share[:3, :3] = share[3:6, 3:6] = 0.9
    share[6, :] = share[:, 6] = 0.5
    np.fill_diagonal(share, 1.0)
    found = ag.camps(share)
    assert found.camps == 2
    assert len(set(found.labels[:3])) == 1 and len(set(found.labels[3:6])) == 1
    assert found.labels[0] != found.labels[3]
    coherent = ag.camps(np.where(np.eye(5, dtype=bool), 1.0, 0.8))
    assert coherent.camps == 1 and coherent.across is None


def test_adjusted_rand_index():
    assert ag.adjusted_rand_index([0, 0, 1, 1], ["x", "x", "y", "y"]) == 1.0
    assert ag.adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]) < 0
