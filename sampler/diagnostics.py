"""Cheap CPU image diagnostics after Krea's data filters: light, colour, entropy, sharpness, flat background."""

import numpy as np
from PIL import Image
from scipy import ndimage

FLAT_TILE = 8  # pixels per side of the tiles judged flat or not
FLAT_STD = 3.0  # luma standard deviation (0–255) below which a tile counts as flat


def diagnostics(image: Image.Image) -> dict[str, float]:
    """Figures that chart the drift toward (or away from) the "AI look": bright, soft, flat, saturated."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    luma = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (H, W)
    hsv = np.asarray(image.convert("HSV"), dtype=np.float32)
    return {
        "brightness": round(float(luma.mean() / 255), 4),
        "saturation": round(float(hsv[..., 1].mean() / 255), 4),
        "rgb_entropy": round(rgb_entropy(rgb), 4),
        "white_ratio": round(float((rgb >= 250).all(axis=-1).mean()), 4),
        "black_ratio": round(float((rgb <= 5).all(axis=-1).mean()), 4),
        "sharpness": round(float(ndimage.laplace(luma).var()), 2),
        "flat_share": round(flat_share(luma), 4),
    }


def rgb_entropy(rgb: np.ndarray, bins: int = 16) -> float:
    """Shannon entropy in bits of the colour histogram (`bins` levels per channel)."""
    levels = (rgb * (bins / 256)).astype(np.int32).clip(0, bins - 1)
    codes = (levels[..., 0] * bins + levels[..., 1]) * bins + levels[..., 2]
    counts = np.bincount(codes.ravel(), minlength=bins**3)
    p = counts[counts > 0] / codes.size
    return float(-(p * np.log2(p)).sum())


def flat_share(luma: np.ndarray) -> float:
    """Share of the image in tiles with almost no texture: flat fills, blurred-away backgrounds."""
    h, w = (luma.shape[0] // FLAT_TILE) * FLAT_TILE, (luma.shape[1] // FLAT_TILE) * FLAT_TILE
    if not h or not w:
        return float(luma.std() < FLAT_STD)
    tiles = luma[:h, :w].reshape(h // FLAT_TILE, FLAT_TILE, w // FLAT_TILE, FLAT_TILE)
    return float((tiles.std(axis=(1, 3)) < FLAT_STD).mean())
