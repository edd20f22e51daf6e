"""Agreement, behaviour and trust figures of annotators as pure functions over arrays (no Django).

Conventions, applied everywhere in this module:
- An answer is a category: "a", "b" and "tie" are three nominal categories (a tie is its own answer, not
  half of each side). "both_bad" says neither image is acceptable and expresses no preference between
  them, so it is left out of agreement, α and gold accuracy (treated as a missing value). A skip is no
  judgement at all: it only enters the skip rate.
- Position bias counts screen sides: an answer is "left" when the annotator picked the image shown on the
  left; ties and both-bad are not sided and are left out.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from math import sqrt

import krippendorff
import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from scipy.stats import binom

CATEGORIES = ("a", "b", "tie")  # both_bad and skips are missing values
# Two groups are separate camps when, on average, their annotators agree on fewer than this share of the
# pairs both judged (average linkage cut at 1 - CAMP_AGREEMENT); a camp needs at least MIN_CAMP members.
CAMP_AGREEMENT = 0.4
MIN_CAMP = 2
# Below this many co-judged pairs two annotators' agreement is not read (treated as unknown).
MIN_SHARED = 5


def category_codes(choices: Sequence[str]) -> np.ndarray:
    """Each choice's index in CATEGORIES, or NaN for both_bad (no preference)."""
    index = {c: float(i) for i, c in enumerate(CATEGORIES)}
    return np.array([index.get(c, np.nan) for c in choices], dtype=float)


def reliability_matrix(annotator_idx: np.ndarray, unit_idx: np.ndarray, codes: np.ndarray,
                       n_annotators: int, n_units: int) -> np.ndarray:
    """(annotators, units) matrix of category codes, NaN where an annotator gave no usable answer."""
    matrix = np.full((n_annotators, n_units), np.nan)
    matrix[annotator_idx, unit_idx] = codes
    return matrix


def pairwise_agreement(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(agree, shared): for every two annotators, the pairs both answered and how many of those got the same
    answer. agree/shared is their observed agreement; the diagonal counts each annotator's own answers."""
    valid = (~np.isnan(matrix)).astype(np.float32)  # (R, U)
    shared = valid @ valid.T  # (R, R)
    agree = np.zeros_like(shared)
    for code in range(len(CATEGORIES)):
        hot = (matrix == code).astype(np.float32)  # (R, U)
        agree += hot @ hot.T
    return agree.astype(np.int64), shared.astype(np.int64)


def agreement_share(agree: np.ndarray, shared: np.ndarray, min_shared: int = MIN_SHARED) -> np.ndarray:
    """agree/shared where at least `min_shared` pairs were shared, else NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        share = agree / shared
    share[shared < min_shared] = np.nan
    return share


def agreement_with_rest(agree: np.ndarray, shared: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(agreeing, compared) per annotator against everybody else, pooled over all their co-judged pairs."""
    off = ~np.eye(len(agree), dtype=bool)
    return (agree * off).sum(axis=1), (shared * off).sum(axis=1)


def alpha(matrix: np.ndarray) -> float | None:
    """Krippendorff's α (nominal) of a reliability matrix; None when fewer than two answers fall on one
    pair anywhere, or all answers are one category (α is undefined then)."""
    if matrix.size == 0:
        return None
    pairable = (~np.isnan(matrix)).sum(axis=0) >= 2
    data = matrix[:, pairable]
    if data.shape[1] == 0 or len(np.unique(data[~np.isnan(data)])) < 2:
        return None
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float] | None:
    """Wilson score interval for a proportion (95% by default); None with no trials."""
    if trials == 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class PositionBias:
    left: int
    sided: int
    share_left: float | None
    p_value: float | None  # two-sided binomial test against 0.5


def position_bias(left: int, sided: int) -> PositionBias:
    """Share of sided answers that picked the left image, with a two-sided binomial test against 1/2."""
    if sided == 0:
        return PositionBias(left, 0, None, None)
    # The exact two-sided binomial test against 1/2 (scipy's binomtest, which costs 2 ms a call): the null is
    # symmetric, so p is twice the smaller tail.
    tail = min(binom.cdf(left, sided, 0.5), binom.sf(left - 1, sided, 0.5))
    return PositionBias(left, sided, left / sided, float(min(1.0, 2 * tail)))


def speed(durations_ms: Sequence[int | None], floor_ms: int) -> tuple[float | None, float | None]:
    """(median time to answer in ms, share of answers faster than `floor_ms`), over answers with a duration."""
    known = np.array([d for d in durations_ms if d is not None], dtype=float)
    if known.size == 0:
        return None, None
    return float(np.median(known)), float((known < floor_ms).mean())


def longest_streak(answers: Sequence[str]) -> int:
    """The longest run of identical consecutive answers (in the order given)."""
    best = run = 0
    previous = object()
    for answer in answers:
        run = run + 1 if answer == previous else 1
        best, previous = max(best, run), answer
    return best


def trust_score(gold_correct: int, gold_answered: int, agreeing: int, compared: int) -> float:
    """trust = ĝ · â, with ĝ = (gold_correct + 1) / (gold_answered + 2) and â = (agreeing + 1) / (compared + 2):
    the product of gold accuracy and agreement with the rest, each Laplace-smoothed so that an annotator with
    no evidence scores 0.5 · 0.5 = 0.25 and one answer moves it little. A careful annotator in a coherent
    cohort approaches 1; a coin-flipper scores about 0.25 (0.5 · 0.5) as evidence accumulates."""
    return (gold_correct + 1) / (gold_answered + 2) * (agreeing + 1) / (compared + 2)


@dataclass(frozen=True)
class Camps:
    labels: list[int]  # a camp number (1..) per annotator, in the order given
    camps: int  # camps with at least MIN_CAMP members
    within: float | None  # mean agreement of two annotators of the same camp
    across: float | None  # mean agreement of two annotators of different camps


def camps(share: np.ndarray) -> Camps:
    """Hierarchical clustering (average linkage) of annotators on 1 − agreement, cut at 1 − CAMP_AGREEMENT.

    `share` is the annotator×annotator agreement matrix (NaN where too few pairs were shared, read as
    chance, 0.5). The rule for the number of clusters: groups whose members agree, on average, with the
    other group's on fewer than CAMP_AGREEMENT of shared pairs are separate; the camps are the clusters with
    at least MIN_CAMP annotators (a lone annotator is an outlier, not a camp).
    """
    n = len(share)
    if n < 2:
        return Camps([1] * n, 1 if n else 0, None, None)
    distance = 1 - np.where(np.isnan(share), 0.5, share)
    distance = (distance + distance.T) / 2
    np.fill_diagonal(distance, 0)
    tree = linkage(squareform(np.clip(distance, 0, 1), checks=False), method="average")
    labels = fcluster(tree, t=1 - CAMP_AGREEMENT, criterion="distance").tolist()
    sizes = {label: labels.count(label) for label in set(labels)}
    same = np.equal.outer(labels, labels) & ~np.eye(n, dtype=bool)
    different = ~np.equal.outer(labels, labels)
    known = ~np.isnan(share)
    within = share[same & known]
    across = share[different & known]
    return Camps(
        labels=labels,
        camps=sum(1 for size in sizes.values() if size >= MIN_CAMP),
        within=float(within.mean()) if within.size else None,
        across=float(across.mean()) if across.size else None,
    )


def adjusted_rand_index(truth: Sequence, found: Sequence) -> float:
    """The adjusted Rand index of two labellings of the same items (1.0: identical up to renaming)."""
    from scipy.special import comb

    truth_ids = {t: i for i, t in enumerate(dict.fromkeys(truth))}
    found_ids = {f: i for i, f in enumerate(dict.fromkeys(found))}
    table = np.zeros((len(truth_ids), len(found_ids)), dtype=np.int64)
    for t, f in zip(truth, found, strict=True):
        table[truth_ids[t], found_ids[f]] += 1
    index = comb(table, 2).sum()
    rows, cols = comb(table.sum(axis=1), 2).sum(), comb(table.sum(axis=0), 2).sum()
    expected = rows * cols / comb(len(truth), 2)
    maximum = (rows + cols) / 2
    return 1.0 if maximum == expected else float((index - expected) / (maximum - expected))
