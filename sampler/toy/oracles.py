"""Built-in toy-world tastes: simulated annotators that judge a pair by what the checkers read."""

import random
from collections.abc import Callable

import numpy as np
from PIL import Image

from sampler.toy.checkers import adherence, read
from sampler.toy.world import parse_caption

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
OFF_PROMPT = "off_prompt"  # the judgement flag "Doesn't match the prompt" (annotate.models.Judgement.Flag)


def shows_caption(image: Image.Image, caption: str) -> bool | None:
    """Whether the image shows the shape and colour its toy-world caption names; None for a caption that names no
    shape and colour (not the toy world's), which no annotator can check."""
    wanted = parse_caption(caption)
    if wanted.shape is None or wanted.colour is None:
        return None
    return adherence(image, caption)


def flags(oracle: str, image: Image.Image, prompt: str | None) -> list[str]:
    """The flags an annotator of this oracle puts on an image: "doesn't match the prompt" where a taste's annotator
    sees the caption's shape or colour missing (the careless ones flag nothing)."""
    if oracle not in SCORES or prompt is None:
        return []
    return [OFF_PROMPT] if shows_caption(image, prompt) is False else []


def judge(oracle: str, left: Image.Image, right: Image.Image, *, noise: float = 0.0, rng: random.Random,
          prompt: str | None = None) -> str:
    """'left', 'right' or 'tie' as the oracle sees it; with probability `noise` (and always for 'random')
    a coin decides between left and right instead. Given the pair's prompt, a taste's annotator first takes the
    image that shows its caption over one that does not, as a person would, and judges by the taste only between
    two that both do (or both do not)."""
    if oracle not in ORACLES:
        raise ValueError(f"Unknown oracle {oracle!r}; choose from {', '.join(ORACLES)}.")
    if oracle == "always_left":
        return "left"
    if oracle == "random" or rng.random() < noise:
        return rng.choice(("left", "right"))
    if prompt is not None:
        fits = shows_caption(left, prompt), shows_caption(right, prompt)
        if fits == (True, False):
            return "left"
        if fits == (False, True):
            return "right"
    left_score, right_score = SCORES[oracle](left), SCORES[oracle](right)
    if not NOTICEABLE[oracle](left_score, right_score):
        return "tie"
    return "left" if left_score > right_score else "right"
