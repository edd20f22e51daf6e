"""What a round's settings fall back to and how far they may go: model defaults, hard bounds, usual ranges."""

import math
from dataclasses import dataclass, field
from pathlib import Path

from annotate.models import BaseModel
from sampler.model_defaults import ModelDefaults, ModelDefaultsError, read_model_defaults
from trainer.config import FAMILY_DEFAULTS, TrainConfig

FAMILY_NAMES = {"flux": "FLUX", "sd": "Stable Diffusion", "sdxl": "SDXL"}
# Quotas a launch starts from when the taste has no round yet; the demo's first round uses the same (annotate/demo.py).
QUOTAS = {"pair_quota": 60, "label_quota": 120, "overlap": 2, "eval_pair_quota": 48, "heldout_share": 0.2,
          "promotion_threshold": 0.5}


@dataclass(frozen=True)
class Limit:
    """Values outside [low, high] are refused; outside the family's usual range they launch with a warning."""

    label: str
    low: float
    high: float
    usual: dict[str, tuple[float, float]] = field(default_factory=dict)  # family → (low, high)


_ANY = ("flux", "sd", "sdxl")
# Keys: LaunchSettings fields, "sampling.<key>" and "training.<TrainConfig field>". Usual ranges: FLUX.1 [dev]
# samples at 1024 px, 28–50 steps, guidance 3–4.5; SD 1.5/2.x at 512–768 px, 20–50 steps, guidance 5–9;
# Diffusion-DPO LoRAs use β 500–5000 at learning rates 1e-6–1e-3 (trainer/config.py), ranks 4–64, a few hundred to
# a few thousand steps.
LIMITS = {
    "pair_quota": Limit("pair quota", 1, 100_000),
    "label_quota": Limit("label quota", 1, 1_000_000),
    "overlap": Limit("overlap", 1, 20, {f: (1, 5) for f in _ANY}),
    "eval_pair_quota": Limit("eval pair quota", 1, 10_000, {f: (16, 400) for f in _ANY}),
    "heldout_share": Limit("held-out share", 0.01, 0.9, {f: (0.05, 0.5) for f in _ANY}),
    "promotion_threshold": Limit("promotion threshold", 0, 1, {f: (0.4, 0.7) for f in _ANY}),
    "sampling.steps": Limit("sampling steps", 1, 500, {"flux": (20, 50), "sd": (20, 50), "sdxl": (20, 60)}),
    "sampling.guidance": Limit("guidance", 0, 30, {"flux": (2.5, 5), "sd": (5, 9), "sdxl": (4, 9)}),
    "sampling.width": Limit("width", 64, 4096, {"flux": (512, 1536), "sd": (512, 768), "sdxl": (768, 1536)}),
    "sampling.height": Limit("height", 64, 4096, {"flux": (512, 1536), "sd": (512, 768), "sdxl": (768, 1536)}),
    "sampling.max_sequence_length": Limit("T5 sequence length", 1, 512),
    "sampling.low_water": Limit("pairs kept ready", 1, 10_000),
    "sampling.batch": Limit("pairs per sampling task", 1, 1_024),
    "training.learning_rate": Limit("learning rate", 1e-8, 0.1,
                                    {"flux": (1e-5, 1e-3), "sd": (1e-6, 1e-4), "sdxl": (1e-6, 1e-4)}),
    "training.beta": Limit("DPO β", 1, 100_000, {"flux": (500, 5_000), "sd": (1_000, 5_000), "sdxl": (2_000, 10_000)}),
    "training.steps": Limit("training steps", 1, 50_000, {f: (100, 5_000) for f in _ANY}),
    "training.rank": Limit("LoRA rank", 1, 256, {f: (4, 64) for f in _ANY}),
    "training.batch_size": Limit("training batch size", 1, 1_024),
    "training.gradient_accumulation": Limit("gradient accumulation", 1, 1_024),
    "training.sft_weight": Limit("winner term weight", 0, 10_000),
    "training.winner_floor": Limit("winner floor weight", 0, 10_000),
    "training.anchor_weight": Limit("anchor weight", 0, 10_000),
    "training.warmup_steps": Limit("warm-up steps", 0, 50_000),
    "training.carry_over_alpha": Limit("carry-over test's level α", 0, 0.5),
}


def model_defaults(base: BaseModel) -> ModelDefaults:
    """The base model folder's own defaults (chisel.json); none when it has none or cannot be read."""
    try:
        return read_model_defaults(Path(base.path))
    except ModelDefaultsError:
        return ModelDefaults()


def base_model_fields(folder: Path) -> dict:
    """BaseModel default_* fields from the folder's chisel.json (those it sets); raises ModelDefaultsError."""
    sampling = read_model_defaults(folder).sampling
    return {f"default_{key}": sampling[key] for key in ("steps", "guidance", "width", "height", "max_sequence_length")
            if key in sampling}


def base_sampling(base: BaseModel) -> dict:
    """How the base model samples when a round sets nothing (its stored default_* fields)."""
    values = {"steps": base.default_steps, "guidance": base.default_guidance, "width": base.default_width,
              "height": base.default_height, "max_sequence_length": base.default_max_sequence_length}
    return {key: value for key, value in values.items() if value is not None}


def base_training(base: BaseModel) -> dict:
    """How a round trains on the base model when it sets nothing: the folder's chisel.json, then the family's β and
    learning rate, then TrainConfig's defaults."""
    try:
        config = TrainConfig.from_dict(model_defaults(base).training)
    except (TypeError, ValueError):
        config = TrainConfig()
    return config.resolved(base.kind).as_dict()


def training_config(*, base: BaseModel, chosen: dict) -> dict:
    """The training settings a round records: the base model's own defaults (chisel.json) under the lead's choices.

    A lead who sets β but no learning rate gets the default rate scaled by default β / β (as trainer/config.py does
    with family defaults); without chisel.json the trainer fills β and the learning rate from the family. A
    carry-over level of 0 turns the test off (recorded as none), even where the model's own defaults run it.
    """
    own = model_defaults(base).training
    config = {**own, **chosen}
    if config.get("carry_over_alpha") == 0:
        config["carry_over_alpha"] = None
    if "beta" in chosen and "learning_rate" not in chosen and "learning_rate" in own:
        own_beta = own.get("beta", FAMILY_DEFAULTS[base.kind]["beta"])
        config["learning_rate"] = own["learning_rate"] * own_beta / chosen["beta"]
    return config


def check_bounds(values: dict[str, object]) -> None:
    """Raise ValueError naming the first value (keys of LIMITS) that cannot work."""
    for key, value in values.items():
        limit = LIMITS.get(key)
        if limit is None or value is None or isinstance(value, bool):
            continue
        if not isinstance(value, (int, float)) or not (limit.low <= value <= limit.high):  # NaN fails too
            raise ValueError(f"The {limit.label} {value!r} is out of bounds: it must be between {_n(limit.low)} and "
                             f"{_n(limit.high)}.")


def usual_range(key: str, family: str, default: float | None = None) -> tuple[float, float] | None:
    """The family's usual range for a setting, widened to take in the base model's own default."""
    limit = LIMITS.get(key)
    if limit is None or family not in limit.usual:
        return None
    low, high = limit.usual[family]
    if isinstance(default, (int, float)) and not isinstance(default, bool) and math.isfinite(default):
        low, high = min(low, default), max(high, default)
    return low, high


def unusual(values: dict[str, object], *, family: str, defaults: dict[str, object]) -> list[str]:
    """One warning per value outside its usual range (keys of LIMITS; `defaults` the base model's, same keys)."""
    warnings = []
    for key, value in values.items():
        span = usual_range(key, family, defaults.get(key))
        if span is None or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if not span[0] <= value <= span[1]:
            model = f" for this {FAMILY_NAMES.get(family, family)} model" if "." in key else ""
            warnings.append(f"The {LIMITS[key].label} {_n(value)} is unusual{model} "
                            f"(usually {_n(span[0])}–{_n(span[1])}).")
    return warnings


def _n(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
