"""Checkers that read a toy-world image: foreground shape and colour, background flatness and warmth."""

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from sampler.toy.world import COLOURS, REFERENCE_SIZE, SHAPES, parse_caption

# The shape is saturated and the background a low-chroma tint: chroma (max − min channel) separates them.
FOREGROUND_CHROMA = 90.0
MIN_FOREGROUND_PIXELS = 40
# Background pixels this far from the shape are read; nearer ones carry its anti-aliased or blurred edge.
EDGE_MARGIN = 3
# Residual spread of the background (0–255 units) at which the flatness score is 0.5: the flat/textured line.
FLAT_SPREAD = 8.0


@dataclass(frozen=True)
class Reading:
    """What the checkers read in one image."""

    shape: str | None
    colour: str | None
    shape_scores: dict[str, float]
    flatness: float  # 1 for a perfectly flat background, towards 0 as it gets textured
    spread: float  # the background's residual spread (0–255 units) the flatness is graded from
    background: str  # "flat" or "textured"
    warmth: float  # mean (R − B) / 255 of the background: > 0 warm, < 0 cool
    tint: str  # "warm" or "cool"
    brightness: float  # mean luminance of the background in [0, 1]
    foreground_fraction: float


def as_pixels(image: Image.Image | np.ndarray) -> np.ndarray:
    """Float RGB pixels in 0–255 at the reference size, from a PIL image or a uint8/float array."""
    if isinstance(image, np.ndarray):
        array = image.astype(np.float64)
        if array.max(initial=0) <= 1.0 and image.dtype.kind == "f":
            array = array * 255.0
        image = Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8)[..., :3], mode="RGB")
    image = image.convert("RGB")
    if image.size != (REFERENCE_SIZE, REFERENCE_SIZE):
        image = image.resize((REFERENCE_SIZE, REFERENCE_SIZE), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float64)


def foreground_mask(pixels: np.ndarray) -> np.ndarray:
    """The largest connected region of saturated pixels."""
    chroma = pixels.max(axis=-1) - pixels.min(axis=-1)
    labels, count = ndimage.label(chroma > FOREGROUND_CHROMA)
    if count == 0:
        return np.zeros(chroma.shape, dtype=bool)
    sizes = ndimage.sum_labels(np.ones_like(chroma), labels, index=np.arange(1, count + 1))
    region = labels == 1 + int(np.argmax(sizes))
    return ndimage.binary_fill_holes(region)


def _template(shape: str, height: int, width: int) -> np.ndarray:
    """The shape as drawn by the generator, filling a height × width box."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = (x + 0.5) / width, (y + 0.5) / height  # 0–1 across the box
    if shape == "circle":
        return (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    if shape == "square":
        return np.ones((height, width), dtype=bool)
    if shape == "triangle":
        return np.abs(u - 0.5) <= 0.5 * v
    raise ValueError(shape)


def shape_scores(mask: np.ndarray) -> dict[str, float]:
    """Intersection over union of the mask with each shape fitted to its bounding box."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return {shape: 0.0 for shape in SHAPES}
    box = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    scores = {}
    for shape in SHAPES:
        template = _template(shape, *box.shape)
        scores[shape] = float((box & template).sum() / (box | template).sum())
    return scores


def colour_of(rgb: np.ndarray) -> str:
    """The palette colour whose hue is nearest to that of `rgb`."""
    def hue(colour) -> float:
        r, g, b = (float(c) for c in colour)
        return np.degrees(np.arctan2(np.sqrt(3) * (g - b), 2 * r - g - b))

    def gap(a: float, b: float) -> float:
        return abs((a - b + 180) % 360 - 180)

    h = hue(rgb)
    return min(COLOURS, key=lambda name: gap(h, hue(COLOURS[name])))


def flatness_score(spread: float) -> float:
    """A graded score in [0, 1] from the background's residual spread: 0.5 at the flat/textured line."""
    return float(1.0 / (1.0 + (spread / FLAT_SPREAD) ** 2))


def read(image: Image.Image | np.ndarray) -> Reading:
    """Everything the checkers read in an image (any size; read at 64 × 64)."""
    pixels = as_pixels(image)
    mask = foreground_mask(pixels)
    found = mask.sum() >= MIN_FOREGROUND_PIXELS
    scores = shape_scores(mask) if found else {shape: 0.0 for shape in SHAPES}
    shape = max(scores, key=scores.get) if found else None
    colour = colour_of(np.median(pixels[mask], axis=0)) if found else None

    background = ~ndimage.binary_dilation(mask, iterations=EDGE_MARGIN)
    if background.sum() < 0.2 * background.size:  # a shape that fills the frame: read what there is
        background = ~mask if (~mask).any() else np.ones_like(mask)
    back = pixels[background]
    spread = float(np.sqrt(back.var(axis=0).mean()))
    flatness = flatness_score(spread)
    warmth = float((back[:, 0] - back[:, 2]).mean() / 255.0)
    brightness = float((back @ np.array([0.299, 0.587, 0.114])).mean() / 255.0)
    return Reading(
        shape=shape, colour=colour, shape_scores=scores, flatness=flatness, spread=spread,
        background="flat" if flatness >= 0.5 else "textured", warmth=warmth, tint="warm" if warmth > 0 else "cool",
        brightness=brightness, foreground_fraction=float(mask.mean()),
    )


def adherence(image: Image.Image | np.ndarray, caption: str) -> bool:
    """Whether the image shows the shape and the colour its caption names."""
    wanted, seen = parse_caption(caption), read(image)
    return seen.shape == wanted.shape and seen.colour == wanted.colour
