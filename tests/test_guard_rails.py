"""The adherence guard-rail: a drop beyond the limit breaks it only when the paired images say it is no accident."""

from annotate.guard_rails import adherence_verdict


def paired(*, both: int, lost: int, gained: int, neither: int) -> tuple[list[bool], list[bool]]:
    parent = [True] * both + [True] * lost + [False] * gained + [False] * neither
    child = [True] * both + [False] * lost + [True] * gained + [False] * neither
    return parent, child


def test_a_large_consistent_drop_breaks_the_rail():
    parent, child = paired(both=60, lost=20, gained=2, neither=14)  # 83.3% → 64.6%, p ≈ 0.00005
    verdict = adherence_verdict(parent, child, max_drop=0.05, significance=0.05)
    assert not verdict["ok"] and "20 images lost, 2 gained" in verdict["detail"]
    assert verdict["parent"] == 80 / 96 and verdict["child"] == 62 / 96


def test_a_drop_past_the_limit_that_chance_explains_passes():
    parent, child = paired(both=70, lost=10, gained=4, neither=12)  # 6.25 points, p ≈ 0.09
    assert adherence_verdict(parent, child, max_drop=0.05, significance=0.05)["ok"]
    # judged by the drop alone, the same images break it
    assert not adherence_verdict(parent, child, max_drop=0.05, significance=1.0)["ok"]


def test_a_significant_drop_within_the_limit_passes():
    parent, child = paired(both=900, lost=40, gained=10, neither=50)  # 3 points on 1000 images, p < 0.001
    assert adherence_verdict(parent, child, max_drop=0.05, significance=0.05)["ok"]


def test_no_changed_verdicts_pass():
    parent, child = paired(both=50, lost=0, gained=0, neither=46)
    verdict = adherence_verdict(parent, child, max_drop=0.05, significance=0.05)
    assert verdict["ok"] and "p = 1.000" in verdict["detail"]
