"""Win rates whose intervals respect how eval judgements cluster (pairs within prompts), and Bradley–Terry strengths.

Pure numpy/scipy/choix, no Django: the gate's calibration (`annotate.gate_calibration`) runs these very functions.
"""

import math
from dataclasses import dataclass

import choix
import numpy as np
from scipy.stats import norm, t

RESAMPLES = 2000  # bootstrap resamples of a round's eval judgements
SEED = 0  # the same judgements always give the same interval
BT_RESAMPLES = 200  # resamples behind the Bradley–Terry intervals (a chart, not the gate)
BT_ALPHA = 0.1  # choix's regularisation (ILSR's initial rates): keeps an all-won round's strength finite


@dataclass(frozen=True)
class Interval:
    rate: float
    low: float
    high: float
    method: str
    clusters: str  # what the bootstrap resampled first: "prompts", "pairs", or "" (none)
    prompts: int
    pairs: int
    se: float  # the bootstrap's standard error of the rate


def wilson(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for `successes` of `n` independent trials (a tie counted as half a success)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z = norm.ppf(0.5 + confidence / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _groups(prompt_ids, pair_ids, scores):
    """Per pair: score sum and judgement count; pairs grouped by prompt as a padded (prompts × pairs) table."""
    pair_keys, pair_index = np.unique(np.asarray(pair_ids), return_inverse=True)
    sums = np.bincount(pair_index, weights=np.asarray(scores, dtype=float))
    counts = np.bincount(pair_index).astype(float)
    pair_prompt = np.empty(len(pair_keys), dtype=np.asarray(prompt_ids).dtype)
    pair_prompt[pair_index] = np.asarray(prompt_ids)
    _, prompt_index = np.unique(pair_prompt, return_inverse=True)
    sizes = np.bincount(prompt_index)
    order = np.argsort(prompt_index, kind="stable")
    table = np.zeros((len(sizes), sizes.max()), dtype=int)
    start = 0
    for g, size in enumerate(sizes):
        table[g, :size] = order[start:start + size]
        start += size
    return sums, counts, table, sizes


def cluster_bootstrap(prompt_ids, pair_ids, scores, *, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """The win rate over `resamples` two-level bootstrap samples: prompts drawn with replacement, then each
    drawn prompt's pairs drawn with replacement (every judgement of a drawn pair kept together)."""
    sums, counts, table, sizes = _groups(prompt_ids, pair_ids, scores)
    rng = np.random.default_rng(seed)
    groups, width = table.shape
    chosen = rng.integers(0, groups, (resamples, groups))
    n = sizes[chosen]
    slots = np.floor(rng.random((resamples, groups, width)) * n[..., None]).astype(int)
    drawn = table[chosen[..., None], slots]
    kept = np.arange(width)[None, None, :] < n[..., None]
    return (sums[drawn] * kept).sum(axis=(1, 2)) / (counts[drawn] * kept).sum(axis=(1, 2))


def clustered_win_rate(prompt_ids, pair_ids, scores, *, confidence: float = 0.95, resamples: int = RESAMPLES,
                       seed: int = SEED) -> Interval:
    """The mean score (1 won, ½ tie, 0 lost) with an interval that treats prompts, not judgements, as the
    independent units.

    The standard error comes from a two-level bootstrap (prompts, then pairs within them); the interval is the
    rate ± Student's t on (prompts − 1) degrees of freedom times that error, widened where needed to the Wilson
    interval over judgements (so it is never narrower than if every judgement were independent, e.g. when every
    resample gives the same rate). With one prompt the pairs are the units; with a single unit, [0, 1].
    """
    scores = np.asarray(scores, dtype=float)
    n = len(scores)
    if n == 0:
        return Interval(math.nan, 0.0, 1.0, "none", "", 0, 0, math.nan)
    prompts, pairs = len(set(prompt_ids)), len(set(pair_ids))
    rate = float(scores.mean())
    if prompts >= 2:
        clusters, units, keys = "prompts", prompts, prompt_ids
    else:  # one prompt: nothing to learn about other prompts; the pairs are the units
        clusters, units, keys = "pairs", pairs, pair_ids
    if units < 2:
        return Interval(rate, 0.0, 1.0, "too few units", clusters, prompts, pairs, math.nan)
    samples = cluster_bootstrap(keys, pair_ids, scores, resamples=resamples, seed=seed)
    se = float(samples.std(ddof=1))
    quantile = t.ppf(0.5 + confidence / 2, units - 1)
    floor_low, floor_high = wilson(scores.sum(), n, confidence)
    low, high = min(rate - quantile * se, floor_low), max(rate + quantile * se, floor_high)
    method = f"cluster bootstrap SE × t({units - 1})"
    return Interval(rate, max(0.0, float(low)), min(1.0, float(high)), method, clusters, prompts, pairs, se)


def bradley_terry(edges, *, items: list, roots: list | None = None, resamples: int = BT_RESAMPLES,
                  seed: int = SEED, confidence: float = 0.95) -> dict:
    """Bradley–Terry strengths of `items` from comparisons (choix's ILSR), with cluster-bootstrap intervals.

    `edges` are (prompt id, pair id, item, other item, score) rows, score 1 when the first item won, ½ a tie,
    0 a loss. Strengths are on the log-odds scale, each relative to its root (`roots`, an item per item; default
    `items[0]`); the bootstrap resamples prompts, then pairs within them, as the gate does.
    """
    index = {item: i for i, item in enumerate(items)}
    reference = np.array([index[root] for root in roots] if roots else [0] * len(items))
    rows = [(p, q, index[a], index[b], float(s)) for p, q, a, b, s in edges if a in index and b in index]
    if not rows or len(items) < 2:
        zeros = [0.0] * len(items)
        return {"strength": zeros, "low": zeros, "high": zeros, "judgements": len(rows)}
    prompt_ids, pair_ids, first, second, scores = (np.array(column) for column in zip(*rows))
    pair_keys, pair_index = np.unique(pair_ids, return_inverse=True)
    pair_prompt = np.empty(len(pair_keys), dtype=prompt_ids.dtype)
    pair_prompt[pair_index] = prompt_ids
    prompt_keys, prompt_index = np.unique(pair_prompt, return_inverse=True)
    members = [np.flatnonzero(prompt_index == g) for g in range(len(prompt_keys))]

    def fit(pair_weights: np.ndarray) -> np.ndarray:
        weights = pair_weights[pair_index]
        matrix = np.zeros((len(items), len(items)))
        np.add.at(matrix, (first, second), scores * weights)
        np.add.at(matrix, (second, first), (1 - scores) * weights)
        params = choix.ilsr_pairwise_dense(matrix, alpha=BT_ALPHA)
        return params - params[reference]

    strength = fit(np.ones(len(pair_keys)))
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(resamples):
        pair_weights = np.zeros(len(pair_keys))
        for g in rng.integers(0, len(members), len(members)):
            np.add.at(pair_weights, rng.choice(members[g], len(members[g])), 1)
        samples.append(fit(pair_weights))
    samples = np.array(samples)
    tail = (1 - confidence) / 2 * 100
    return {"strength": strength.tolist(), "low": np.percentile(samples, tail, axis=0).tolist(),
            "high": np.percentile(samples, 100 - tail, axis=0).tolist(), "judgements": len(rows)}


def implied_win(strength_difference: float) -> float:
    """The Bradley–Terry probability that the stronger-by-`strength_difference` side wins."""
    return 1 / (1 + math.exp(-strength_difference))
