"""Whether a run's labels carried over to pairs it never trained on: an exact one-sided test of held-out margins."""

from dataclasses import asdict, dataclass

import torch
from scipy.stats import wilcoxon

# Noise draws per held-out pair: the policy's choice on a pair is the sign of its DPO margin averaged over these
# (one draw alone flips many a pair the policy does prefer, and the test loses power; docs/training.md, *Session 18*).
DRAWS = 8
DECLINED_FOLDER = "declined-adapter"  # where a run that failed the test leaves the adapter it trained, for the record


@dataclass(frozen=True)
class CarryOver:
    """How many held-out pairs the trained policy ranks as their labels do, and whether its lean beats a coin."""

    correct: int
    pairs: int
    draws: int  # noise draws averaged per pair
    p_value: float  # Wilcoxon's signed-rank test, one-sided: P(a rank sum this large | labels are coin flips)
    alpha: float
    carried: bool

    def as_dict(self) -> dict:
        return asdict(self)

    def sentence(self) -> str:
        side = "≤" if self.carried else ">"
        return (f"{self.correct} of {self.pairs} held-out pairs ranked as labelled, "
                f"signed-rank p = {self.p_value:.3f} {side} α {self.alpha:g}")


def carry_over_test(*, margins: torch.Tensor, alpha: float) -> CarryOver:
    """Wilcoxon's signed-rank test, one-sided, that the held-out pairs' mean DPO margins (`margins`, (pairs, draws),
    each the `inside` of a draw) lean towards the labelled winners.

    Swapping a pair's winner and loser negates its margin exactly (both images share the draw's noise). So under
    labels that carry no information about the images (the random-label control, a pool without a common taste),
    each label gives its pair's margin a fair coin's sign, independent of its size and of every other pair's,
    whatever the pairs and prompts share: every sign pattern of the ranks is equally likely, and the exact test's
    false-positive rate is at most α. Unlike a count of signs, it weighs the pairs the policy leans on most, which
    are those whose labels are surest (docs/training.md, *Session 19*). scipy computes it exactly up to 50 pairs
    without tied sizes, by the normal approximation beyond.
    """
    pairs, draws = margins.shape
    mean = margins.double().mean(dim=1)
    correct = int((mean > 0).sum())
    p_value = float(wilcoxon(mean.numpy(), alternative="greater").pvalue) if mean.any() else 1.0
    return CarryOver(correct, pairs, draws, p_value, alpha, p_value <= alpha)


def untrained(lora: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapter with every lora_B zeroed, as peft initialises it: its change to the model is exactly nothing."""
    return {name: torch.zeros_like(tensor) if "lora_B" in name else tensor for name, tensor in lora.items()}
