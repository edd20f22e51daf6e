"""A model folder's own defaults: `chisel.json` beside `model_index.json` (how to sample it, how to train on it).

The file is optional; without it, a model is sampled and trained with its family's defaults. Its keys:

    {
      "sampling": {"steps": 20, "guidance": 3.5, "width": 64, "height": 64, "max_sequence_length": 32},
      "training": {"learning_rate": 0.003, "beta": 1000.0, "steps": 300, "rank": 8, "reference": "base", ...}
    }

`sampling` holds any of SAMPLING_KEYS; `training` holds `trainer.config.TrainConfig` fields (checked where a round is
launched). Either section may be missing.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

FILE = "chisel.json"
SAMPLING_KEYS = ("steps", "guidance", "width", "height", "max_sequence_length")
_INTEGERS = ("steps", "width", "height", "max_sequence_length")


class ModelDefaultsError(ValueError):
    """The folder's chisel.json cannot be read or holds values that cannot work."""


@dataclass(frozen=True)
class ModelDefaults:
    sampling: dict = field(default_factory=dict)  # SAMPLING_KEYS
    training: dict = field(default_factory=dict)  # TrainConfig fields


def read_model_defaults(folder: str | Path) -> ModelDefaults:
    """The defaults a model folder carries; empty ones when it has no chisel.json."""
    path = Path(folder) / FILE
    if not path.is_file():
        return ModelDefaults()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelDefaultsError(f"{path} is not valid JSON ({exc}).") from exc
    if not isinstance(data, dict) or set(data) - {"sampling", "training"}:
        raise ModelDefaultsError(f"{path} must be an object with 'sampling' and/or 'training'.")
    sampling, training = data.get("sampling") or {}, data.get("training") or {}
    if not isinstance(sampling, dict) or not isinstance(training, dict):
        raise ModelDefaultsError(f"{path}: 'sampling' and 'training' must be objects.")
    if unknown := sorted(set(sampling) - set(SAMPLING_KEYS)):
        raise ModelDefaultsError(
            f"{path}: unknown sampling settings {', '.join(unknown)}; known: {', '.join(SAMPLING_KEYS)}."
        )
    for key, value in sampling.items():
        if not _positive(value, integer=key in _INTEGERS) and not (key == "guidance" and value == 0):
            kind = "whole number" if key in _INTEGERS else "number"
            raise ModelDefaultsError(f"{path}: sampling {key} must be a positive {kind}, not {value!r}.")
    return ModelDefaults(sampling=dict(sampling), training=dict(training))


def write_model_defaults(folder: str | Path, defaults: ModelDefaults) -> Path:
    """Write `defaults` as the folder's chisel.json (what a model build does after saving the pipeline)."""
    path = Path(folder) / FILE
    path.write_text(json.dumps({"sampling": defaults.sampling, "training": defaults.training}, indent=2) + "\n")
    return path


def _positive(value, *, integer: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if integer and not isinstance(value, int):
        return False
    return math.isfinite(value) and value > 0
