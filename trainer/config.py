"""The training recipe as a typed config: YAML in, a dataclass out, with defaults per model family."""

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

# Per-family defaults, errors averaged over latent elements ("mean reduction"):
# - flux: β = 2000, the value advised for FLUX LoRA DPO with mean reduction after β = 500 spiked
#   (flow_grpo issue #47); learning rate 1e-4 at β = 2000.
# - sd: β = 2500 as in diffusers' SD 1.5 Diffusion-DPO script; learning rate 1e-5 (diffusers' LoRA README).
# - sdxl: β = 5000 (Wallace et al., SDXL); learning rate 1e-5.
# The learning rate scales inversely with β (Wallace et al. use 2000/β · 2.048e-8 per sample): a config
# that sets β but no learning rate gets lr = family_lr · family_β / β.
FAMILY_DEFAULTS = {
    "flux": {"beta": 2000.0, "learning_rate": 1e-4},
    "sd": {"beta": 2500.0, "learning_rate": 1e-5},
    "sdxl": {"beta": 5000.0, "learning_rate": 1e-5},
}


@dataclass
class TrainConfig:
    beta: float | None = None  # None: the family's default
    learning_rate: float | None = None  # None: the family's, scaled by family β / β
    steps: int = 300
    batch_size: int = 4  # pairs per step (before accumulation)
    gradient_accumulation: int = 1
    rank: int = 8
    alpha: float | None = None  # None: equal to rank
    target_modules: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    # "base" (the default) or "parent" (round N−1); in bench/loop.py base did better on the toy FLUX model, parent with
    # a winner term on the toy SD model (sampler/toy/defaults.py)
    reference: str = "base"
    # "last": the adapter of the last step; "best": the one with the lowest held-out DPO loss at an evaluation
    # (every `eval_every` steps), counting the untrained adapter at ln 2 (trainer/selection.py)
    keep: str = "last"
    # The run keeps its last step's adapter only when its lean towards the held-out pairs' labelled winners (each
    # pair's DPO margin, averaged over noise draws) beats a coin at this one-sided level (Wilcoxon's signed-rank
    # test), else the untrained one, a child equal to its parent; the round then ends without an evaluation
    # (trainer/carry_over.py). None: always keep it.
    carry_over_alpha: float | None = None
    sft_weight: float = 0.0  # λ of a winner-fitting term added to the DPO loss (trainer/objectives.py)
    winner_floor: float = 0.0  # μ of DPO-Positive's penalty on a winner denoised worse than by the reference
    anchor_weight: float = 0.0  # γ of a term holding both images' errors to the reference's (trainer/objectives.py)
    resolution: int | None = None  # None: the dataset's image size
    seed: int = 0
    logit_mean: float = 0.0  # flow matching: σ ~ sigmoid(N(mean, std))
    logit_std: float = 1.0
    guidance: float = 3.5  # guidance-distilled FLUX: used where the dataset does not say
    # Flow matching: "velocity" compares velocity errors (as FLUX was trained and as Flow-DPO does); "epsilon"
    # compares the errors of the implied noise prediction, (1 − σ)² times smaller, as ε-prediction Diffusion-DPO does
    flow_errors: str = "velocity"
    max_sequence_length: int | None = None  # FLUX T5 length (None: 512)
    max_grad_norm: float = 1.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # after the warm-up: "constant", or "cosine"/"linear" decay to 0 at the last step
    mixed_precision: str = "auto"  # "auto" (bf16 on CUDA, none on CPU), "no", "bf16", "fp16"
    gradient_checkpointing: bool = False
    adam_8bit: bool = False  # needs bitsandbytes
    checkpoint_every: int = 100  # steps between resumable training states
    keep_states: int = 2
    heldout_fraction: float = 0.1
    eval_every: int = 50

    @classmethod
    def from_yaml(cls, path: Path) -> "TrainConfig":
        data = yaml.safe_load(Path(path).read_text()) or {}
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown training settings: {', '.join(unknown)}. Known: {', '.join(sorted(known))}.")
        config = cls(**data)
        config.check()
        return config

    def check(self) -> None:
        if self.reference not in ("parent", "base"):
            raise ValueError(f"reference must be 'parent' or 'base', not {self.reference!r}.")
        if self.flow_errors not in ("velocity", "epsilon"):
            raise ValueError(f"flow_errors must be 'velocity' or 'epsilon', not {self.flow_errors!r}.")
        for name in ("steps", "batch_size", "gradient_accumulation", "rank", "checkpoint_every", "keep_states"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1.")
        if self.beta is not None and self.beta <= 0:
            raise ValueError("beta must be positive.")
        if not 0 <= self.heldout_fraction < 1:
            raise ValueError("heldout_fraction must be in [0, 1).")
        if self.lr_schedule not in ("constant", "cosine", "linear"):
            raise ValueError(f"lr_schedule must be 'constant', 'cosine' or 'linear', not {self.lr_schedule!r}.")
        if self.keep not in ("last", "best"):
            raise ValueError(f"keep must be 'last' or 'best', not {self.keep!r}.")
        if self.carry_over_alpha is not None:
            if not 0 < self.carry_over_alpha < 1:
                raise ValueError("carry_over_alpha must be between 0 and 1 (or null: no test).")
            if self.heldout_fraction <= 0:
                raise ValueError("carry_over_alpha tests held-out pairs: set heldout_fraction above 0.")
            if self.keep != "last":  # the best of several looks would need a correction the test does not make
                raise ValueError("carry_over_alpha tests the last step's adapter: use it with keep: last.")
        for name in ("sft_weight", "winner_floor", "anchor_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more.")

    def resolved(self, family: str) -> "TrainConfig":
        """A copy with β and the learning rate filled in for `family` ('flux', 'sd', 'sdxl')."""
        defaults = FAMILY_DEFAULTS[family]
        beta = self.beta if self.beta is not None else defaults["beta"]
        lr = self.learning_rate
        if lr is None:
            lr = defaults["learning_rate"] * defaults["beta"] / beta
        return TrainConfig(**{**asdict(self), "beta": beta, "learning_rate": lr,
                              "alpha": self.alpha if self.alpha is not None else float(self.rank)})

    def as_dict(self) -> dict:
        return asdict(self)
