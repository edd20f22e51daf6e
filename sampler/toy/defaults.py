"""Settings the rest of Chisel uses with the toy models: how to sample them and how to train a round on each."""

from sampler.model_defaults import ModelDefaults
from sampler.toy.evaluate import DEFAULT_GUIDANCE, DEFAULT_STEPS, MAX_SEQUENCE_LENGTH
from sampler.toy.world import COLOURS, SHAPES, caption, captions

SIZE = 64
# How to sample each toy model (by family: "flux", "sd").
SAMPLING = {family: {"steps": steps, "guidance": DEFAULT_GUIDANCE, "width": SIZE, "height": SIZE,
                     "max_sequence_length": MAX_SEQUENCE_LENGTH} for family, steps in DEFAULT_STEPS.items()}
# How a round trains on each toy model, chosen with bench/loop.py (three rounds of 300 labels, `textured` oracle at
# 10% noise; same-seed / independent-seed win over the base; its docstring tables every setting tried). A rank-8 LoRA
# at β 1000, 4 pairs a step, and the carry-over test at α 0.05 (trainer/carry_over.py: a round whose labels do not
# carry over to its held-out pairs keeps the parent; since session 18, docs/training.md); the rest differs by family:
# - flux: lr 3e-3 against the parent, 450 steps, σ logit-normal with mean 1 (towards the high noise levels where the
#   sampler decides the mode): 91.7–100% / 72–91% in five runs with the control on the rebuilt toy FLUX, 96.2–99.2% /
#   80.8–85.4% in three more (docs/training.md, *Where the noise levels are drawn*, *Session 13*; mean 0 gave
#   94.6–97.5% / 77–86%; means 1.25 and 1.5, batch 8 or 600 labels a round did no better). Against the base, round 2
#   loses to its parent (the margin saturates, as on SD); a winner term (λ 2–20) with 300–1200 steps, a higher rate,
#   600 steps or feed-forward LoRA targets did no better.
# - sd: lr 3e-4 against the parent, with a winner term (λ 10): 100% / 80-90% for `textured` in three runs and 100% /
#   96.2% for `dark` (docs/training.md, *Session 14*). λ 50 reached 100% / 87-90% for `textured` but held `dark` to
#   70.8% on independent seeds (a taste it was not chosen for); λ 100-500 held more backgrounds flat (72-82%). The
#   UNet moves far more per step: without the winner term, 3e-4 covers shapes in noise within a round, and the base as
#   reference saturates once a round is promoted (its children then learn the random answers).
_COMMON = {"steps": 300, "batch_size": 4, "beta": 1000.0, "rank": 8, "max_sequence_length": MAX_SEQUENCE_LENGTH,
           "heldout_fraction": 0.1, "eval_every": 50, "carry_over_alpha": 0.05}
TRAINING = {
    "flux": {**_COMMON, "steps": 450, "learning_rate": 3e-3, "reference": "parent", "logit_mean": 1.0},
    "sd": {**_COMMON, "learning_rate": 3e-4, "reference": "parent", "sft_weight": 10.0},
}


def model_defaults(family: str) -> ModelDefaults:
    """What a toy model build writes beside its model_index.json (sampler/model_defaults.py's chisel.json)."""
    return ModelDefaults(sampling=dict(SAMPLING[family]), training=dict(TRAINING[family]))


HELDOUT_COLOURS_PER_SHAPE = 2  # 6 of the 12 captions: the promotion gate treats held-out prompts as its units


def split_captions() -> tuple[list[str], list[str]]:
    """(train, held-out) captions: two captions of each shape are kept for evaluation, each shape in other colours
    (so every shape and every colour is trained on and held out). Six held-out prompts, not three: the gate's
    interval takes Student's t on prompts − 1 degrees of freedom (4.3 on 2, 2.6 on 5), and on three prompts it
    promotes a child at a true win rate of 0.7 in a fifth of rounds (docs/evaluation.md, *Defaults of the demo
    and the loop bench*)."""
    colours = list(COLOURS)
    heldout = [caption(shape, colours[(i + k * len(SHAPES)) % len(colours)])
               for i, shape in enumerate(SHAPES) for k in range(HELDOUT_COLOURS_PER_SHAPE)]
    return [t for t in captions() if t not in heldout], heldout
