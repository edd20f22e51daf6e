"""How different the images of one prompt are across seeds, from features that need no downloaded model."""

from itertools import combinations

import numpy as np
from PIL import Image

THUMBNAIL = 16
HISTOGRAM_BINS = 8


def features(image: Image.Image) -> np.ndarray:
    """A 16 × 16 greyscale thumbnail (layout) and an 8-bin histogram per RGB channel (palette), each in [0, 1]."""
    rgb = image.convert("RGB")
    layout = np.asarray(rgb.convert("L").resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BOX), dtype=np.float64) / 255
    pixels = np.asarray(rgb, dtype=np.int64).reshape(-1, 3)
    palette = np.concatenate([
        np.bincount(pixels[:, c] * HISTOGRAM_BINS // 256, minlength=HISTOGRAM_BINS) / len(pixels) for c in range(3)
    ])
    return np.concatenate([layout.ravel(), palette])


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square difference of the layouts plus half the L1 distance of the palettes (each 0 to 1)."""
    split = THUMBNAIL * THUMBNAIL
    layout = float(np.sqrt(np.mean((a[:split] - b[:split]) ** 2)))
    palette = float(np.abs(a[split:] - b[split:]).sum() / 6)  # three histograms, each at most 2 apart
    return (layout + palette) / 2


def mean_pairwise_distance(images: list[Image.Image]) -> float | None:
    """Mean distance over all pairs of `images` (one prompt, different seeds); None for fewer than two."""
    if len(images) < 2:
        return None
    vectors = [features(image) for image in images]
    return float(np.mean([distance(a, b) for a, b in combinations(vectors, 2)]))


def diversity(groups: list[list[Image.Image]]) -> float | None:
    """The mean over prompts of the pairwise distance between their seeds' images."""
    scores = [score for score in map(mean_pairwise_distance, groups) if score is not None]
    return float(np.mean(scores)) if scores else None
