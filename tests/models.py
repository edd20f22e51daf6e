"""Tiny diffusers models and LoRAs for tests, built from configs (never downloaded)."""

from pathlib import Path

import torch

WORDS = "a an red blue green yellow circle square triangle".split()


def build_tiny_flux(out: Path, seed: int = 0) -> Path:
    from sampler.toy.build import save, tiny_flux

    return save(tiny_flux(WORDS, seed=seed), out)


def build_tiny_sd(out: Path, seed: int = 0) -> Path:
    from sampler.toy.build import save, tiny_sd

    return save(tiny_sd(WORDS, seed=seed), out)


def build_random_lora(base: Path, out: Path, *, seed: int, rank: int = 4, scale: float = 3.0) -> Path:
    """A LoRA on the FLUX transformer's attention with random (non-zero) weights, saved like the trainer saves."""
    from diffusers import FluxPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    pipeline = FluxPipeline.from_pretrained(base)
    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                        target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    pipeline.transformer.add_adapter(config)
    with torch.no_grad():
        for name, param in pipeline.transformer.named_parameters():
            if "lora_B" in name:
                param.mul_(scale)
    FluxPipeline.save_lora_weights(out, transformer_lora_layers=get_peft_model_state_dict(pipeline.transformer))
    return out
