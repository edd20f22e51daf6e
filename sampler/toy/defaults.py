"""Settings the rest of Chisel uses with the toy models: how to sample them and how to train a round on each."""

from sampler.toy.evaluate import DEFAULT_GUIDANCE, DEFAULT_STEPS, MAX_SEQUENCE_LENGTH
from sampler.toy.world import COLOURS, SHAPES, captions

SIZE = 64
SAMPLING = {"steps": DEFAULT_STEPS, "guidance": DEFAULT_GUIDANCE, "width": SIZE, "height": SIZE,
            "max_sequence_length": MAX_SEQUENCE_LENGTH}
# How a round trains on each toy model, chosen with bench/loop.py (three rounds of 300 labels, `textured` oracle at
# 10% noise; same-seed / independent-seed win over the base, its docstring tables every setting tried). A rank-8 LoRA
# against the base, β 1000; what differs is the rate, and it is everything:
# - flux: lr 3e-3 for 300 steps, 86–94% / 58–68%. Gentler rates keep every round but gain less, β, more steps, a
#   cosine rate, feed-forward targets, `keep: best` or a winner term did no better.
# - sd: lr 1.5e-4. The UNet moves far more per step: at 3e-4 a single round covers shapes and background alike in
#   latent-sized noise (win 0.93–0.98, adherence 98 → 54–89%), at 1e-4 it keeps its shapes but 25% flat backgrounds.
_COMMON = {"steps": 300, "batch_size": 4, "beta": 1000.0, "rank": 8, "reference": "base",
           "max_sequence_length": MAX_SEQUENCE_LENGTH, "heldout_fraction": 0.1, "eval_every": 50}
TRAINING = {
    "flux": {**_COMMON, "learning_rate": 3e-3},
    "sd": {**_COMMON, "learning_rate": 1.5e-4},
}


def split_captions() -> tuple[list[str], list[str]]:
    """(train, held-out) captions: one caption of each shape is kept for evaluation, each in another colour."""
    texts = captions()  # shape-major: every len(COLOURS) + 1-th caption moves on one shape and one colour
    heldout = texts[:: len(COLOURS) + 1][: len(SHAPES)]
    return [t for t in texts if t not in heldout], heldout
