"""The promotion gate's false-promotion rate and power, by simulating rounds' eval judgements (statistics only).

A simulated round draws its eval pairs as `annotate.loop.round_eval_requests` does (the quota cycled over the
held-out prompts, a new seed each cycle), each pair judged by `overlap` annotators. Annotators agree more than
chance on a pair and a prompt: the child's chance of winning a judgement is logistic in (location + prompt effect
+ pair effect), both effects normal, every annotator of a pair sharing them; a share of answers are ties. The
location is set so that the mean win share (a tie counting half) is the true win rate. The gate then applies
`annotate.stats.clustered_win_rate` (the rule today) and, for comparison, Wilson's interval over judgements (the
rule before it).
"""

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.stats import binomtest

from annotate.stats import RESAMPLES, clustered_win_rate, wilson

# Defaults of a launched round (annotate.launch.LaunchSettings) and of the simulated annotators.
EVAL_PAIRS = 48
OVERLAP = 2
PROMPTS = 12  # held-out prompts: 60 prompts at the default held-out share of 0.2
PROMPT_SD = 0.75  # log-odds spread of the child's advantage across prompts
PAIR_SD = 2.0  # and across pairs of one prompt: two annotators of a pair agree about 2/3 of the time
TIE_SHARE = 0.1


@dataclass(frozen=True)
class Scenario:
    true_rate: float = 0.5
    eval_pairs: int = EVAL_PAIRS
    overlap: int = OVERLAP
    prompts: int = PROMPTS
    prompt_sd: float = PROMPT_SD
    pair_sd: float = PAIR_SD
    tie_share: float = TIE_SHARE
    threshold: float = 0.5


def _location(scenario: Scenario) -> float:
    """The log-odds location whose mean win share, over prompt and pair effects and ties, is the true rate."""
    if scenario.true_rate == 0.5:
        return 0.0  # effects symmetric about 0: exactly one half
    z = np.random.default_rng(12345).standard_normal(200_000) * math.hypot(scenario.prompt_sd, scenario.pair_sd)
    decisive = (scenario.true_rate - scenario.tie_share / 2) / (1 - scenario.tie_share)
    return brentq(lambda mu: float(np.mean(1 / (1 + np.exp(-(mu + z))))) - decisive, -20, 20)


def simulate_round(rng: np.random.Generator, scenario: Scenario, location: float):
    """(prompt ids, pair ids, scores) of one round's eval judgements."""
    pairs = np.arange(scenario.eval_pairs)
    prompt_of_pair = pairs % scenario.prompts  # the quota cycles over the held-out prompts
    prompt_effect = rng.standard_normal(scenario.prompts) * scenario.prompt_sd
    chance = 1 / (1 + np.exp(-(location + prompt_effect[prompt_of_pair]
                                + rng.standard_normal(len(pairs)) * scenario.pair_sd)))
    chance = np.repeat(chance, scenario.overlap)
    tie = rng.random(len(chance)) < scenario.tie_share
    won = rng.random(len(chance)) < chance
    scores = np.where(tie, 0.5, won.astype(float))
    return np.repeat(prompt_of_pair, scenario.overlap), np.repeat(pairs, scenario.overlap), scores


def promotion_rates(scenario: Scenario, *, rounds: int = 2000, seed: int = 0, resamples: int = RESAMPLES) -> dict:
    """The share of `rounds` simulated rounds each rule promotes, with 95% Clopper–Pearson intervals."""
    rng = np.random.default_rng(seed)
    location = _location(scenario)
    clustered = wilson_promoted = 0
    for number in range(rounds):
        prompts, pairs, scores = simulate_round(rng, scenario, location)
        interval = clustered_win_rate(prompts, pairs, scores, resamples=resamples, seed=number)
        clustered += interval.low > scenario.threshold
        wilson_promoted += wilson(scores.sum(), len(scores))[0] > scenario.threshold

    def share(count: int) -> dict:
        ci = binomtest(count, rounds).proportion_ci(confidence_level=0.95, method="exact")
        return {"promoted": int(count), "share": count / rounds, "low": float(ci.low), "high": float(ci.high)}

    return {**asdict(scenario), "rounds": rounds, "clustered": share(clustered), "wilson": share(wilson_promoted)}
