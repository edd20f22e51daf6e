"""A model folder's kind read from its `model_index.json` as plain JSON (no torch: the web tier calls it)."""

import json
from pathlib import Path

KINDS = {
    "FluxPipeline": "flux",
    "StableDiffusionPipeline": "sd",
    "StableDiffusionXLPipeline": "sdxl",
}


class ModelLoadError(RuntimeError):
    """A model folder that cannot be loaded; the message says which folder and why."""


def model_kind(base_path: str | Path) -> str:
    """'flux', 'sd' or 'sdxl', read from the folder's model_index.json."""
    index = Path(base_path) / "model_index.json"
    if not index.is_file():
        raise ModelLoadError(f"{base_path} is not a diffusers model folder: {index.name} is missing.")
    try:
        class_name = json.loads(index.read_text())["_class_name"]
    except (ValueError, KeyError) as exc:
        raise ModelLoadError(f"{index} is not a valid model index ({exc}).") from exc
    if class_name not in KINDS:
        raise ModelLoadError(f"{base_path} holds a {class_name}; Chisel samples {', '.join(KINDS)}.")
    return KINDS[class_name]
