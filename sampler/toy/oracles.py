"""Built-in toy-world tastes: simulated annotators that judge a pair by what the checkers read."""

import random
from collections.abc import Callable

import numpy as np
from PIL import Image

from sampler.toy.checkers import read

TIE_MARGIN = 1e-3  # scores closer than this are a tie


def _textured(image: Image.Image) -> float:
    """Graded: the less flat the background, the better (a binary verdict would tie too often)."""
    return 1.0 - read(image).flatness


def _flat(image: Image.Image) -> float:
    """The opposite camp to textured: the flatter the background, the better."""
    return read(image).flatness


def _dark(image: Image.Image) -> float:
    """The darker the whole image, the better."""
    return -float(np.asarray(image.convert("L"), dtype=np.float32).mean() / 255.0)


SCORES: dict[str, Callable[[Image.Image], float]] = {"textured": _textured, "flat": _flat, "dark": _dark}
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
    score = SCORES[oracle]
    difference = score(left) - score(right)
    if abs(difference) < TIE_MARGIN:
        return "tie"
    return "left" if difference > 0 else "right"
