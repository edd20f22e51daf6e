"""Evaluating a toy pipeline (FLUX or SD) on held-out seeds: caption adherence and the background modes."""

from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from sampler.generate import render
from sampler.loading import KINDS
from sampler.spec import SampleParams
from sampler.toy.checkers import Reading, read
from sampler.toy.world import captions, parse_caption

# Pipeline seeds for evaluation; training images use seeds below this (see pretrain.HELD_OUT_SEEDS).
EVAL_SEEDS = 1_000_000_000
# What the sampler should default to for each toy model. FLUX: its scheduler shifts 64 × 64 images (16 tokens) little,
# and the tiny transformer's paths are straight enough that more steps change nothing measurable. SD samples with
# DDIM, where 10 steps keep every caption (adherence 98.4% against 97.4% at 20 steps, 192 images) and leave a few
# more backgrounds flat (69% against 62%) in half the time: the loop benchmark samples some 2,800 images a loop.
DEFAULT_STEPS = {"flux": 20, "sd": 10}
DEFAULT_GUIDANCE = 3.5
# The T5 length the toy model is trained and sampled with: its captions are a few words, and FLUX's default of 512
# would pad them far out of what it was trained on (and cost time in every attention).
MAX_SEQUENCE_LENGTH = 32


@dataclass
class Evaluation:
    """Figures over `n` generated images (captions in turn, one held-out seed each)."""

    n: int
    steps: int
    guidance: float
    adherence: float
    shape_accuracy: float
    colour_accuracy: float
    flat_share: float
    warm_share: float
    mean_brightness: float
    readings: list[Reading] = field(default_factory=list, repr=False)

    def summary(self) -> str:
        return (
            f"{self.n} images, {self.steps} steps, guidance {self.guidance}: adherence {self.adherence:.1%} "
            f"(shape {self.shape_accuracy:.1%}, colour {self.colour_accuracy:.1%}); flat backgrounds "
            f"{self.flat_share:.1%}, warm {self.warm_share:.1%}, mean brightness {self.mean_brightness:.2f}"
        )


def generate(
    pipeline, prompts: list[str], seeds: list[int], *, steps: int,
    guidance: float = DEFAULT_GUIDANCE, batch: int = 32,
) -> list:
    """Images for `prompts`, one seed each, 64 × 64, through the pipeline's own `__call__` (FLUX or SD)."""
    params = SampleParams(steps=steps, guidance=guidance, width=64, height=64, max_sequence_length=MAX_SEQUENCE_LENGTH)
    images = []
    for start in tqdm(range(0, len(prompts), batch), desc="sample", unit="batch", disable=len(prompts) <= batch):
        chunk = slice(start, start + batch)
        images.extend(render(pipeline, prompts=prompts[chunk], seeds=seeds[chunk], params=params))
    return images


def evaluate(
    pipeline, n: int = 96, *, steps: int | None = None, guidance: float = DEFAULT_GUIDANCE,
    first_seed: int = EVAL_SEEDS,
) -> Evaluation:
    """Generate `n` images on held-out seeds (`steps`: the toy default of the pipeline's family) and read them."""
    steps = steps or DEFAULT_STEPS[KINDS[type(pipeline).__name__]]
    texts = captions()
    prompts = [texts[i % len(texts)] for i in range(n)]
    pipeline.set_progress_bar_config(disable=True)
    images = generate(pipeline, prompts, [first_seed + i for i in range(n)], steps=steps, guidance=guidance)
    readings = [read(image) for image in images]
    wanted = [parse_caption(prompt) for prompt in prompts]
    shape_ok = np.array([r.shape == w.shape for r, w in zip(readings, wanted)])
    colour_ok = np.array([r.colour == w.colour for r, w in zip(readings, wanted)])
    return Evaluation(
        n=n, steps=steps, guidance=guidance, adherence=float((shape_ok & colour_ok).mean()),
        shape_accuracy=float(shape_ok.mean()), colour_accuracy=float(colour_ok.mean()),
        flat_share=float(np.mean([r.background == "flat" for r in readings])),
        warm_share=float(np.mean([r.tint == "warm" for r in readings])),
        mean_brightness=float(np.mean([r.brightness for r in readings])), readings=readings,
    )
