"""Settings the rest of Chisel uses with the toy model: how to sample it and how to train a round on it."""

from sampler.toy.evaluate import DEFAULT_GUIDANCE, DEFAULT_STEPS, MAX_SEQUENCE_LENGTH
from sampler.toy.world import captions

SIZE = 64
SAMPLING = {"steps": DEFAULT_STEPS, "guidance": DEFAULT_GUIDANCE, "width": SIZE, "height": SIZE,
            "max_sequence_length": MAX_SEQUENCE_LENGTH}
# Measured with bench/loop.py (see its docstring): a rank-8 LoRA at lr 1e-3 moves the toy model within one round
# of a few hundred labels; β between 500 and 2000 behaves alike there.
TRAINING = {"steps": 150, "batch_size": 4, "learning_rate": 1e-3, "beta": 1000.0, "rank": 8, "reference": "parent",
            "max_sequence_length": MAX_SEQUENCE_LENGTH, "heldout_fraction": 0.1, "eval_every": 25}


def split_captions() -> tuple[list[str], list[str]]:
    """(train, held-out) captions: every fourth caption is kept for evaluation, so each shape has one."""
    texts = captions()
    heldout = texts[::4]
    return [t for t in texts if t not in heldout], heldout
