"""A checkpoint's LoRA chain as one file for other tools: diffusers/peft, kohya (sd-scripts) or ComfyUI key names.

FLUX in kohya and ComfyUI layouts uses the original (BFL) module names, where a block's q, k and v (and, in a single
block, the MLP input) are one fused linear layer. LoRAs of the separate diffusers layers become one LoRA of the fused
layer: the downs stacked, the ups on a block diagonal (rank = the sum of the parts' ranks), which is exact.
"""

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from trainer.lora_files import METADATA_KEY, Lora, LoraModule, combine, peft_config, read_lora
from trainer.lora_formats import FORMATS, ExportError  # noqa: F401 - re-exported

# FLUX: diffusers module (inside a block) → BFL module, for the layers mapped one to one.
FLUX_DOUBLE = {
    "attn.to_out.0": "img_attn.proj", "attn.to_add_out": "txt_attn.proj",
    "ff.net.0.proj": "img_mlp.0", "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0", "ff_context.net.2": "txt_mlp.2",
    "norm1.linear": "img_mod.lin", "norm1_context.linear": "txt_mod.lin",
}
FLUX_SINGLE = {"proj_out": "linear2", "norm.linear": "modulation.lin"}
FLUX_TOP = {
    "x_embedder": "img_in", "context_embedder": "txt_in", "proj_out": "final_layer.linear",
    "norm_out.linear": "final_layer.adaLN_modulation.1",
    **{f"time_text_embed.{d}.linear_{i + 1}": f"{b}.{layer}"
       for d, b in (("timestep_embedder", "time_in"), ("guidance_embedder", "guidance_in"), ("text_embedder", "vector_in"))
       for i, layer in enumerate(("in_layer", "out_layer"))},
}
# BFL fused layer → the diffusers layers whose outputs it concatenates, in order.
FLUX_DOUBLE_FUSED = {"img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
                     "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")}
FLUX_SINGLE_FUSED = {"linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")}
MLP_RATIO = 4  # a FLUX single block's MLP is 4× its width (fixed in diffusers' FluxSingleTransformerBlock)


def export_lora(lora_paths: list[Path], out: Path, fmt: str) -> Path:
    """Write the LoRA chain `lora_paths` (oldest first, all at weight 1) as one safetensors file `out` in `fmt`.
    Refuses to replace an existing file."""
    if fmt not in FORMATS:
        raise ExportError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    if not lora_paths:
        raise ExportError("This checkpoint is the bare base model: it has no LoRA to export.")
    out = Path(out)
    if out.exists():
        raise ExportError(f"{out} already exists; choose another --out or remove it first.")
    lora = combine([read_lora(Path(p)) for p in lora_paths])
    tensors, metadata = convert(lora, fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, temp, metadata=metadata)
        if out.exists():
            raise ExportError(f"{out} already exists; choose another --out or remove it first.")
        os.replace(temp, out)
    finally:
        temp.unlink(missing_ok=True)
    return out


def convert(lora: Lora, fmt: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the safetensors metadata of `lora` in `fmt`."""
    if fmt == "diffusers":
        return _diffusers(lora)
    if lora.component == "unet":  # SD: kohya names, which ComfyUI reads as they are
        return _kohya_sd(lora)
    return _bfl(lora, prefix="lora_unet_" if fmt == "kohya" else "diffusion_model.", dots=fmt == "comfyui")


def _diffusers(lora: Lora) -> tuple[dict, dict]:
    tensors = {}
    for name, module in lora.modules.items():
        tensors[f"{lora.component}.{name}.lora_A.weight"] = module.down
        tensors[f"{lora.component}.{name}.lora_B.weight"] = module.up
    config = peft_config(lora).to_dict()
    config = {f"{lora.component}.{k}": sorted(v) if isinstance(v, set) else v for k, v in config.items()}
    return tensors, {"format": "pt", METADATA_KEY: json.dumps(config, sort_keys=True, default=str)}


def _kohya_metadata(lora: Lora) -> dict[str, str]:
    ranks = sorted({m.rank for m in lora.modules.values()})
    alphas = sorted({m.alpha for m in lora.modules.values()})
    return {"format": "pt", "ss_network_module": "networks.lora",
            "ss_network_dim": str(ranks[0]) if len(ranks) == 1 else "dynamic",
            "ss_network_alpha": f"{alphas[0]:g}" if len(alphas) == 1 else "dynamic"}


def _kohya_sd(lora: Lora) -> tuple[dict, dict]:
    """diffusers' own converter (`convert_state_dict_to_kohya`), with each module's real alpha (it writes rank)."""
    from diffusers.utils import convert_state_dict_to_kohya

    peft = {f"unet.{n}.lora_{part}.weight": getattr(m, attr) for n, m in lora.modules.items()
            for part, attr in (("A", "down"), ("B", "up"))}
    tensors = convert_state_dict_to_kohya(peft)
    for name, module in lora.modules.items():
        key = "lora_unet_" + name.replace(".", "_")
        if f"{key}.alpha" not in tensors:
            raise ExportError(f"diffusers' kohya converter did not name {name} as {key}.")
        tensors[f"{key}.alpha"] = torch.tensor(module.alpha)
    return tensors, _kohya_metadata(lora)


def _bfl(lora: Lora, *, prefix: str, dots: bool) -> tuple[dict, dict]:
    """FLUX in the original layout: `<prefix>double_blocks.N.img_attn.qkv.lora_down.weight` (ComfyUI, with dots) or
    `lora_unet_double_blocks_N_img_attn_qkv.lora_down.weight` (kohya), plus a scalar `.alpha` per module."""
    remaining = dict(lora.modules)
    bfl: dict[str, LoraModule] = {}
    blocks = {int(n.split(".")[1]) for n in remaining if n.startswith("transformer_blocks.")}
    singles = {int(n.split(".")[1]) for n in remaining if n.startswith("single_transformer_blocks.")}
    for i in sorted(blocks):
        _take(remaining, bfl, f"transformer_blocks.{i}.", f"double_blocks.{i}.", FLUX_DOUBLE, FLUX_DOUBLE_FUSED)
    for i in sorted(singles):
        _take(remaining, bfl, f"single_transformer_blocks.{i}.", f"single_blocks.{i}.", FLUX_SINGLE, FLUX_SINGLE_FUSED)
    _take(remaining, bfl, "", "", FLUX_TOP, {})
    if remaining:
        raise ExportError(f"No FLUX (BFL) name for the LoRA modules {', '.join(sorted(remaining))}.")
    if "final_layer.adaLN_modulation.1" in bfl:  # diffusers' norm_out emits (scale, shift), BFL's (shift, scale)
        module = bfl["final_layer.adaLN_modulation.1"]
        scale, shift = module.up.chunk(2, dim=0)
        bfl["final_layer.adaLN_modulation.1"] = LoraModule(module.down, torch.cat([shift, scale]), module.scale)
    tensors = {}
    for name, module in bfl.items():
        key = prefix + (name if dots else name.replace(".", "_"))
        tensors[f"{key}.lora_down.weight"] = module.down
        tensors[f"{key}.lora_up.weight"] = module.up
        tensors[f"{key}.alpha"] = torch.tensor(module.alpha)
    return tensors, _kohya_metadata(Lora(lora.component, bfl))


def _take(remaining: dict, bfl: dict, source: str, target: str, single: dict, fused: dict) -> None:
    for diffusers_name, bfl_name in single.items():
        if (module := remaining.pop(source + diffusers_name, None)) is not None:
            bfl[target + bfl_name] = module
    for bfl_name, parts in fused.items():
        present = {part: remaining.pop(source + part) for part in parts if source + part in remaining}
        if present:
            bfl[target + bfl_name] = _fuse(parts, present)


def _fuse(parts: tuple[str, ...], present: dict[str, LoraModule]) -> LoraModule:
    """One LoRA for a layer whose output concatenates `parts`' outputs: downs stacked, ups block-diagonal, each
    rescaled to the first part's scale. A part without a LoRA gets zero rows (its width: q's, or 4× for the MLP)."""
    first = next(iter(present.values()))
    width = first.down.shape[1]  # FLUX's q, k, v (and the single block's MLP input) all read the block's width
    rank = sum(m.rank for m in present.values())
    down = torch.cat([m.down for m in present.values()])  # (R, in)
    rows = []
    column = 0
    for part in parts:
        module = present.get(part)
        out = module.up.shape[0] if module else (MLP_RATIO * width if part == "proj_mlp" else width)
        block = torch.zeros(out, rank, dtype=first.up.dtype)
        if module is not None:
            block[:, column : column + module.rank] = module.up * (module.scale / first.scale)
            column += module.rank
        rows.append(block)
    return LoraModule(down, torch.cat(rows), first.scale)  # up: (Σ out, R)
