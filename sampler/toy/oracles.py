"""Built-in toy-world tastes: simulated annotators that judge a pair by what the checkers read."""

import random
from collections.abc import Callable

import numpy as np
from PIL import Image

from sampler.toy.checkers import read

# The textured and flat annotators, like a person, cannot rank two backgrounds whose residual spread (RMS contrast)
# differs by less than 10% of the larger (Weber's law for contrast above threshold: Legge 1981) or by less than one
# 8-bit grey level. With a fixed margin on the graded score they told spreads of 4.0 and 4.3 grey levels apart, a
# fraction of a grey level, and read any move of the weights, its reverse included, as a preference on most flat
# backgrounds (docs/training.md, *Session 17*).
CONTRAST_FRACTION = 0.10
CONTRAST_FLOOR = 1.0  # grey levels of background spread
# The dark annotator, like a person, cannot rank two images whose mean luminance differs by less than Weber's
# fraction for luminance (about 2% of the brighter one): without it the oracle read a random-label child's drift of
# a percent or two as a preference on nearly every seed (docs/training.md, *The control for a continuous taste*).
WEBER_FRACTION = 0.02


def _textured(image: Image.Image) -> float:
    """Graded: the more the background spreads about its mean (the less flat), the better."""
    return read(image).spread


def _flat(image: Image.Image) -> float:
    """The opposite camp to textured: the flatter the background, the better."""
    return -read(image).spread


def _dark(image: Image.Image) -> float:
    """The darker the whole image, the better: minus its mean luminance in [0, 1]."""
    return -float(np.asarray(image.convert("L"), dtype=np.float32).mean() / 255.0)


def _beyond_contrast_threshold(left: float, right: float) -> bool:
    return abs(left - right) >= max(CONTRAST_FRACTION * max(abs(left), abs(right)), CONTRAST_FLOOR)


def _beyond_weber_fraction(left: float, right: float) -> bool:
    return abs(left - right) >= WEBER_FRACTION * max(abs(left), abs(right))


SCORES: dict[str, Callable[[Image.Image], float]] = {"textured": _textured, "flat": _flat, "dark": _dark}
# Whether each taste's annotator can tell two scores apart at all; a pair it cannot is a tie.
NOTICEABLE: dict[str, Callable[[float, float], bool]] = {
    "textured": _beyond_contrast_threshold, "flat": _beyond_contrast_threshold, "dark": _beyond_weber_fraction,
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
