"""Settings the rest of Chisel uses with the toy model: how to sample it and how to train a round on it."""

from sampler.toy.evaluate import DEFAULT_GUIDANCE, DEFAULT_STEPS, MAX_SEQUENCE_LENGTH
from sampler.toy.world import COLOURS, SHAPES, captions

SIZE = 64
SAMPLING = {"steps": DEFAULT_STEPS, "guidance": DEFAULT_GUIDANCE, "width": SIZE, "height": SIZE,
            "max_sequence_length": MAX_SEQUENCE_LENGTH}
# Chosen with bench/loop.py (three rounds of 300 labels, `textured` oracle at 10% noise; same-seed / independent-seed
# win rates over the base): lr 1e-3 × 150 steps 90% / 57%; lr 1e-3 × 400 steps at β 500 91% / 60%; lr 3e-3 × 300 steps
# 92% / 67% with the parent as reference and 97% / 74% with the base. A rank-8 LoRA; β matters less than the rate.
# With 96 eval pairs and the sign-tested adherence rail: base 92% / 67%, parent 88% / 56%; β 200 or 500, 600 steps at
# batch 8, a cosine rate, feed-forward LoRA targets, `keep: best` or a winner term did no better (bench/loop.py docstring).
TRAINING = {"steps": 300, "batch_size": 4, "learning_rate": 3e-3, "beta": 1000.0, "rank": 8, "reference": "base",
            "max_sequence_length": MAX_SEQUENCE_LENGTH, "heldout_fraction": 0.1, "eval_every": 50}


def split_captions() -> tuple[list[str], list[str]]:
    """(train, held-out) captions: one caption of each shape is kept for evaluation, each in another colour."""
    texts = captions()  # shape-major: every len(COLOURS) + 1-th caption moves on one shape and one colour
    heldout = texts[:: len(COLOURS) + 1][: len(SHAPES)]
    return [t for t in texts if t not in heldout], heldout
