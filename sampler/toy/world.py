"""The toy world: captioned procedural images ("a red circle") whose backgrounds vary in ways no caption names."""

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 45, 45),
    "yellow": (235, 200, 35),
    "green": (45, 170, 65),
    "blue": (45, 85, 215),
}
TEXTURES: tuple[str, ...] = ("stripes", "checks", "blotches")
# Fewer flat backgrounds than textured ones: a tiny model washes some textures out, and its samples should still
# hold both modes in good measure (30–70% flat), leaving preference room to move either way.
FLAT_SHARE = 0.35
TINTS: tuple[str, ...] = ("warm", "cool")
# Every word a caption may use: the tiny tokenizers spell each as a single token.
WORDS: list[str] = ["a", "an", *COLOURS, *SHAPES]

# Geometry at the reference size of 64 px; other sizes scale. The shape sits near the centre at a similar size:
# a tiny model learns shapes there within minutes, and draws blobs when the shape may sit anywhere.
REFERENCE_SIZE = 64
HALF_EXTENT = (17.0, 20.0)
CENTRE_JITTER = 2.0
# Background: a low-chroma tint on a grey of some brightness, so the saturated shape always stands out.
BRIGHTNESS = (0.35, 0.85)
TINT_STRENGTH = (8.0, 22.0)
# Textures: bands, cells and blotches of 8 px and more, which an 8× VAE can represent, in a few fixed geometries
# laid on the 8 px latent grid, so that a tiny model learns them as modes rather than as a blur of many variants.
TEXTURE_AMPLITUDE = (30.0, 42.0)
STRIPE_PERIOD = 16.0
CHECK_CELL = 16.0
BLOTCH_GRID = (4, 5)
SUPERSAMPLE = 4


@dataclass(frozen=True)
class Spec:
    """What to draw; None fields are drawn from the seed."""

    shape: str | None = None
    colour: str | None = None
    texture: str | None = None  # "flat" or one of TEXTURES
    tint: str | None = None
    brightness: float | None = None


def caption(shape: str, colour: str) -> str:
    """The caption naming a shape and colour, e.g. "a red circle"."""
    return f"a {colour} {shape}"


def captions() -> list[str]:
    """Every caption of the world, in a fixed order."""
    return [caption(shape, colour) for shape in SHAPES for colour in COLOURS]


def parse_caption(text: str) -> Spec:
    """The shape and colour a caption names (None for any it does not)."""
    words = text.lower().replace(",", " ").split()
    shape = next((w for w in words if w in SHAPES), None)
    colour = next((w for w in words if w in COLOURS), None)
    return Spec(shape=shape, colour=colour)


def _complete(spec: Spec, rng: np.random.Generator) -> Spec:
    # Draw every field whether or not it is given, so a seed means the same background for "a red circle"
    # as for "a blue square".
    shape = SHAPES[rng.integers(len(SHAPES))]
    colour = list(COLOURS)[rng.integers(len(COLOURS))]
    flat, kind = rng.random() < FLAT_SHARE, TEXTURES[rng.integers(len(TEXTURES))]
    texture = "flat" if flat else kind
    tint = TINTS[rng.integers(len(TINTS))]
    brightness = float(rng.uniform(*BRIGHTNESS))
    return Spec(
        shape=spec.shape or shape, colour=spec.colour or colour, texture=spec.texture or texture,
        tint=spec.tint or tint, brightness=spec.brightness if spec.brightness is not None else brightness,
    )


def _texture(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A pattern in [-1, 1] of shape (size, size)."""
    scale = size / REFERENCE_SIZE
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    if kind == "stripes":
        period = STRIPE_PERIOD * scale
        angle = rng.choice([0.0, 0.5, 0.25, 0.75]) * np.pi
        phase = rng.integers(4) * np.pi / 2
        wave = np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period + phase)
        return np.tanh(3 * wave) / np.tanh(3)  # soft-edged bands
    if kind == "checks":
        cell = CHECK_CELL * scale
        ox, oy = rng.integers(2, size=2) * cell / 2
        return np.where((np.floor((x + ox) / cell) + np.floor((y + oy) / cell)) % 2 == 0, 1.0, -1.0)
    if kind == "blotches":
        grid = int(rng.integers(BLOTCH_GRID[0], BLOTCH_GRID[1] + 1))
        coarse = rng.standard_normal((grid, grid)).astype(np.float32)
        smooth = np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC))
        smooth = (smooth - smooth.mean()) / (smooth.std() + 1e-6)
        return np.clip(smooth, -1.5, 1.5) / 1.5
    raise ValueError(f"Unknown texture {kind!r}; expected one of {TEXTURES}.")


def _background(spec: Spec, size: int, rng: np.random.Generator) -> np.ndarray:
    grey = np.full((size, size), 255.0 * spec.brightness)
    if spec.texture != "flat":
        grey = grey + rng.uniform(*TEXTURE_AMPLITUDE) * _texture(spec.texture, size, rng)
    strength = rng.uniform(*TINT_STRENGTH)
    tint = np.array([1.0, 0.3, -1.0]) if spec.tint == "warm" else np.array([-1.0, 0.1, 1.0])
    return grey[..., None] + strength * tint


def _shape_mask(shape: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Anti-aliased coverage in [0, 1] of the shape, drawn near the centre, and its geometry."""
    scale = size / REFERENCE_SIZE
    half = rng.uniform(*HALF_EXTENT) * scale
    cx, cy = size / 2 + rng.uniform(-CENTRE_JITTER, CENTRE_JITTER, size=2) * scale
    big = size * SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    s, x, y = half * SUPERSAMPLE, cx * SUPERSAMPLE, cy * SUPERSAMPLE
    if shape == "circle":
        draw.ellipse((x - s, y - s, x + s, y + s), fill=255)
    elif shape == "square":
        h = 0.9 * s  # about the circle's area
        draw.rectangle((x - h, y - h, x + h, y + h), fill=255)
    elif shape == "triangle":
        w = 1.1 * s
        draw.polygon([(x, y - s), (x + w, y + s), (x - w, y + s)], fill=255)
    else:
        raise ValueError(f"Unknown shape {shape!r}; expected one of {SHAPES}.")
    coverage = np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.float64) / 255.0
    return coverage, {"centre": (float(cx), float(cy)), "half_extent": float(half)}


def draw(what: str | Spec, seed: int, size: int = REFERENCE_SIZE) -> tuple[Image.Image, dict]:
    """Deterministically draw an image for a caption or spec; returns the image and its labels."""
    spec = parse_caption(what) if isinstance(what, str) else what
    # One stream per part, so that fixing one property leaves the others of a seed unchanged.
    properties, backdrop, placement, paint = (np.random.default_rng((seed, part)) for part in range(4))
    spec = _complete(spec, properties)
    background = _background(spec, size, backdrop)
    coverage, geometry = _shape_mask(spec.shape, size, placement)
    jitter = paint.uniform(-10, 10, size=3)
    foreground = np.clip(np.array(COLOURS[spec.colour], dtype=np.float64) + jitter, 0, 255)
    pixels = background * (1 - coverage[..., None]) + foreground * coverage[..., None]
    image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="RGB")
    labels = {
        **asdict(spec),
        "caption": caption(spec.shape, spec.colour),
        "background": "flat" if spec.texture == "flat" else "textured",
        **geometry,
    }
    return image, labels


def sample(seed: int, size: int = REFERENCE_SIZE) -> tuple[Image.Image, dict]:
    """A random labelled example: every property, named or not, drawn from the seed."""
    return draw(Spec(), seed, size)

