"""Built-in toy-world tastes: simulated annotators that judge a pair by what the checkers read."""

import random
from collections.abc import Callable

import numpy as np
from PIL import Image

from sampler.toy.checkers import read

TIE_MARGIN = 1e-3  # graded scores closer than this are a tie
# The dark annotator, like a person, cannot rank two images whose mean luminance differs by less than Weber's
# fraction for luminance (about 2% of the brighter one): without it the oracle read a random-label child's drift of
# a percent or two as a preference on nearly every seed (docs/training.md, *The control for a continuous taste*).
WEBER_FRACTION = 0.02


def _textured(image: Image.Image) -> float:
    """Graded: the less flat the background, the better (a binary verdict would tie too often)."""
    return 1.0 - read(image).flatness


def _flat(image: Image.Image) -> float:
    """The opposite camp to textured: the flatter the background, the better."""
    return read(image).flatness


def _dark(image: Image.Image) -> float:
    """The darker the whole image, the better: minus its mean luminance in [0, 1]."""
    return -float(np.asarray(image.convert("L"), dtype=np.float32).mean() / 255.0)


def _beyond_margin(left: float, right: float) -> bool:
    return abs(left - right) >= TIE_MARGIN


def _beyond_weber_fraction(left: float, right: float) -> bool:
    return abs(left - right) >= WEBER_FRACTION * max(abs(left), abs(right))


SCORES: dict[str, Callable[[Image.Image], float]] = {"textured": _textured, "flat": _flat, "dark": _dark}
# Whether each taste's annotator can tell two scores apart at all; a pair it cannot is a tie.
NOTICEABLE: dict[str, Callable[[float, float], bool]] = {
    "textured": _beyond_margin, "flat": _beyond_margin, "dark": _beyond_weber_fraction,
}
# Careless annotators to test the lead's figures with: a coin, and one who always takes the left image.
ORACLES = (*SCORES, "random", "always_left")


def judge(oracle: str, left: Image.Image, right: Image.Image, *, noise: float = 0.0, rng: random.Random) -> str:
    """'left', 'right' or 'tie' as the oracle sees it; with probability `noise` (and always for 'random')
    a coin decides between left and right instead."""
    if oracle not in ORACLES:
        raise ValueError(f"Unknown oracle {oracle!r}; choose from {', '.join(ORACLES)}.")
    if oracle == "always_left":
        return "left"
    if oracle == "random" or rng.random() < noise:
        return rng.choice(("left", "right"))
    left_score, right_score = SCORES[oracle](left), SCORES[oracle](right)
    if not NOTICEABLE[oracle](left_score, right_score):
        return "tie"
    return "left" if left_score > right_score else "right"
