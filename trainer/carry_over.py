"""Whether a run's labels carried over to pairs it never trained on: an exact one-sided test of held-out accuracy."""

from dataclasses import asdict, dataclass

import torch
from scipy.stats import binomtest

# Noise draws per held-out pair: the policy's choice on a pair is the sign of its DPO margin averaged over these
# (one draw alone flips many a pair the policy does prefer, and the test loses power; docs/training.md, *Session 18*).
DRAWS = 8
DECLINED_FOLDER = "declined-adapter"  # where a run that failed the test leaves the adapter it trained, for the record


@dataclass(frozen=True)
class CarryOver:
    """How many held-out pairs the trained policy ranks as their labels do, and whether that beats a coin."""

    correct: int
    pairs: int
    draws: int  # noise draws averaged per pair
    p_value: float  # P(at least `correct` of `pairs` by coin flips)
    alpha: float
    carried: bool

    def as_dict(self) -> dict:
        return asdict(self)

    def sentence(self) -> str:
        side = "≤" if self.carried else ">"
        return (f"{self.correct} of {self.pairs} held-out pairs ranked as labelled, "
                f"one-sided p = {self.p_value:.3f} {side} α {self.alpha:g}")


def carry_over_test(*, margins: torch.Tensor, alpha: float) -> CarryOver:
    """The exact binomial test against ½ of the share of held-out pairs whose mean DPO margin (`margins`, (pairs,
    draws), each the `inside` of a draw) leans towards the labelled winner.

    Under labels that carry no information about the images (the random-label control, a pool without a common
    taste), each held-out label agrees with the policy's choice by a fair coin, whatever the pairs and prompts
    share, so the test's false-positive rate is at most α exactly.
    """
    pairs, draws = margins.shape
    correct = int((margins.mean(dim=1) > 0).sum())
    p_value = float(binomtest(correct, pairs, 0.5, alternative="greater").pvalue)
    return CarryOver(correct, pairs, draws, p_value, alpha, p_value <= alpha)


def untrained(lora: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapter with every lora_B zeroed, as peft initialises it: its change to the model is exactly nothing."""
    return {name: torch.zeros_like(tensor) if "lora_B" in name else tensor for name, tensor in lora.items()}
