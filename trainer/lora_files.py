"""LoRA files as Chisel writes and reads them: diffusers/peft weights that carry their rank and alpha."""

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig
from safetensors import safe_open
from safetensors.torch import load_file

LORA_FILE = "pytorch_lora_weights.safetensors"
CONFIG_FILE = "adapter_config.json"  # the peft adapter config, beside the weights
METADATA_KEY = "lora_adapter_metadata"  # diffusers reads `<component>.<field>` entries of this JSON at load time
COMPONENTS = ("transformer", "unet")  # FLUX's denoiser, SD's


def save_lora(pipeline_class, folder: Path, weights: dict[str, torch.Tensor], config: LoraConfig) -> None:
    """Write `weights` (peft names, no prefix) with `config`'s rank and alpha in the safetensors metadata that
    diffusers' `load_lora_weights` reads, and `config` as `adapter_config.json`."""
    component = "transformer" if hasattr(pipeline_class, "transformer_name") else "unet"
    pipeline_class.save_lora_weights(
        folder, **{f"{component}_lora_layers": weights, f"{component}_lora_adapter_metadata": config.to_dict()}
    )
    config.save_pretrained(folder)


@dataclass
class LoraModule:
    """One adapted linear layer: ΔW = scale · up @ down."""

    down: torch.Tensor  # (r, in)
    up: torch.Tensor  # (out, r)
    scale: float  # alpha / r (alpha / √r with rsLoRA)

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    @property
    def alpha(self) -> float:
        return self.scale * self.rank

    def delta(self) -> torch.Tensor:
        return self.scale * self.up.float() @ self.down.float()  # (out, in)


@dataclass
class Lora:
    """A LoRA of one denoiser: `component` ('transformer' or 'unet') and its modules by peft name."""

    component: str
    modules: dict[str, LoraModule]


def lora_file(path: Path) -> Path:
    path = Path(path)
    return path / LORA_FILE if path.is_dir() else path


def read_lora(path: Path) -> Lora:
    """A Chisel LoRA folder (or its weights file), with each module's scale from the file's metadata, else the
    folder's adapter_config.json, else its training.json; a file that says nothing has alpha = rank."""
    file = lora_file(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist.")
    weights = load_file(file)
    components = {key.split(".", 1)[0] for key in weights}
    if len(components) != 1 or not components <= set(COMPONENTS):
        raise ValueError(f"{file} is not a diffusers LoRA of one denoiser (keys start with {sorted(components)}).")
    component = components.pop()
    config = _config(file, component)
    modules = {}
    for key in weights:
        if not key.endswith(".lora_A.weight"):
            continue
        name = key[len(component) + 1 : -len(".lora_A.weight")]
        down, up = weights[key], weights[key.replace(".lora_A.", ".lora_B.")]
        r = _pattern(config.get("rank_pattern"), name, config.get("r", down.shape[0]))
        alpha = _pattern(config.get("alpha_pattern"), name, config.get("lora_alpha", r))
        if r != down.shape[0]:
            raise ValueError(f"{file}: {name} has rank {down.shape[0]} but its config says {r}.")
        scale = alpha / (r ** 0.5 if config.get("use_rslora") else r)
        modules[name] = LoraModule(down, up, float(scale))
    return Lora(component, modules)


def legacy_metadata(path: Path) -> tuple[str, dict[str, torch.Tensor], dict] | None:
    """For a LoRA folder written before the files carried their alpha (None for any other): its denoiser, weights
    and the diffusers metadata (rank and alpha from training.json) that loads it at the trained strength."""
    file = lora_file(path)
    if not file.is_file() or _file_metadata(file) or not (file.parent / "training.json").is_file():
        return None
    lora = read_lora(file)
    config = peft_config(lora).to_dict()
    metadata = {f"{lora.component}.{k}": sorted(v) if isinstance(v, set) else v for k, v in config.items()}
    return lora.component, load_file(file), metadata


def _file_metadata(file: Path) -> str | None:
    with safe_open(file, "pt") as handle:
        return (handle.metadata() or {}).get(METADATA_KEY)


def _config(file: Path, component: str) -> dict:
    metadata = _file_metadata(file)
    if metadata:
        prefix = f"{component}."
        return {k.removeprefix(prefix): v for k, v in json.loads(metadata).items() if k.startswith(prefix)}
    if (file.parent / CONFIG_FILE).is_file():
        return json.loads((file.parent / CONFIG_FILE).read_text())
    if (file.parent / "training.json").is_file():  # checkpoints written before the files carried their alpha
        trained = json.loads((file.parent / "training.json").read_text())["config"]
        return {"r": trained["rank"], "lora_alpha": trained.get("alpha") or trained["rank"]}
    return {}


def _pattern(patterns: dict | None, name: str, default):
    """peft's per-module override: a pattern key matching the end of the module's name."""
    for key, value in (patterns or {}).items():
        if name == key or name.endswith(f".{key}"):
            return value
    return default


def combine(loras: list[Lora]) -> Lora:
    """One LoRA equal to the sum of `loras` (a checkpoint's chain, all active at weight 1): per module the downs are
    stacked and each up is rescaled to the first one's scale, so ranks add up and nothing is approximated."""
    if len({lora.component for lora in loras}) != 1:
        raise ValueError("The LoRAs of a chain adapt different denoisers.")
    merged: dict[str, LoraModule] = {}
    for lora in loras:
        for name, module in lora.modules.items():
            if name not in merged:
                merged[name] = module
                continue
            first = merged[name]
            merged[name] = LoraModule(
                torch.cat([first.down, module.down]),
                torch.cat([first.up, module.up * (module.scale / first.scale)], dim=1), first.scale,
            )
    return Lora(loras[0].component, merged)


def peft_config(lora: Lora) -> LoraConfig:
    """The peft config that loads `lora` as it is: the most common rank and alpha, patterns for the others."""
    pairs = [(m.rank, m.alpha) for m in lora.modules.values()]
    r, alpha = max(set(pairs), key=pairs.count)
    return LoraConfig(
        r=r, lora_alpha=alpha, target_modules=sorted(lora.modules),
        rank_pattern={n: m.rank for n, m in lora.modules.items() if m.rank != r},
        alpha_pattern={n: m.alpha for n, m in lora.modules.items() if m.alpha != alpha},
    )
