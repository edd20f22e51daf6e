"""Chisel's DPO step (reference = the same network, adapter off) against a naive one (a frozen copy as reference).

On a FLUX-architecture transformer of ~200M random parameters (so that weights dominate memory), each
variant runs in a fresh process: build the model, add a LoRA, run warm-up and timed steps on the same
batch. Memory is the peak above the process's baseline after imports (CUDA: max allocated; CPU: max RSS).

    .venv/bin/python bench/dpo_step.py            # CPU here; on a GPU machine it uses CUDA in bf16
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent


def peak_mb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(variant: str, steps: int, tokens_side: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import copy

    import torch
    from accelerate import Accelerator
    from diffusers import FluxPipeline, FluxTransformer2DModel
    from peft import LoraConfig

    from trainer.config import TrainConfig
    from trainer.families import FluxFamily
    from trainer.train import Encoded, _dpo_terms

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(max(1, torch.get_num_threads()))
    baseline = peak_mb(device) if device == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=4, num_single_layers=4, attention_head_dim=128, num_attention_heads=8,
        joint_attention_dim=1024, pooled_projection_dim=256, guidance_embeds=True, axes_dims_rope=(16, 56, 56),
    ).to(device, dtype)
    parameters = sum(p.numel() for p in transformer.parameters())
    reference = copy.deepcopy(transformer).requires_grad_(False) if variant == "naive" else None
    transformer.requires_grad_(False)
    transformer.add_adapter(LoraConfig(r=16, lora_alpha=16, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                       init_lora_weights="gaussian"), adapter_name="chisel")
    # FluxFamily needs only the denoiser and FLUX's packing helpers from a pipeline.
    pipeline = SimpleNamespace(transformer=transformer, vae_scale_factor=8, _pack_latents=FluxPipeline._pack_latents,
                               _unpack_latents=FluxPipeline._unpack_latents,
                               _prepare_latent_image_ids=FluxPipeline._prepare_latent_image_ids)
    family = FluxFamily(pipeline, max_sequence_length=32, logit_mean=0.0, logit_std=1.0)
    config = TrainConfig(beta=2000.0, learning_rate=1e-4, batch_size=1).resolved("flux")
    accelerator = Accelerator(mixed_precision="bf16" if device == "cuda" else "no")
    optimizer = torch.optim.AdamW([p for p in transformer.parameters() if p.requires_grad], lr=1e-4)
    batch = Encoded(
        winners=torch.randn(1, 16, tokens_side, tokens_side), losers=torch.randn(1, 16, tokens_side, tokens_side),
        text={"prompt_embeds": torch.randn(1, 32, 1024), "pooled": torch.randn(1, 256)}, guidance=torch.tensor([3.5]),
    )

    def step(index: int) -> None:
        generator = torch.Generator().manual_seed(index)
        if variant == "chisel":
            terms, _ = _dpo_terms(family, transformer, batch, config, generator, accelerator)
        else:
            terms = naive_terms(family, reference, batch, config, generator, accelerator)
        terms.loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step(0)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for index in range(1, steps + 1):
        step(index)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / steps
    return {"variant": variant, "device": device, "parameters": parameters, "seconds_per_step": seconds,
            "peak_above_baseline_mb": peak_mb(device) - baseline}


def naive_terms(family, reference, batch, config, generator, accelerator):
    """The textbook step: the same inputs, but the reference prediction comes from a second, frozen network."""
    import torch

    from trainer.objectives import dpo_loss, per_sample_error

    device = accelerator.device
    x0 = torch.cat([batch.winners, batch.losers]).to(device)
    noise = torch.randn(batch.winners.shape, generator=generator).repeat(2, 1, 1, 1).to(device)
    t = family.sample_t(batch.winners.shape[0], generator).repeat(2).to(device)
    noisy, target = family.inputs(x0, noise, t)
    text = {k: torch.cat([v, v]).to(device) for k, v in batch.text.items()}
    guidance = torch.cat([batch.guidance, batch.guidance]).to(device)
    policy = family.predict(noisy, t, text, guidance)
    frozen = FluxFamilyView(family, reference)
    with torch.no_grad():
        ref = frozen.predict(noisy, t, text, guidance)
    policy_err, ref_err = per_sample_error(policy, target), per_sample_error(ref, target)
    half = batch.winners.shape[0]
    return dpo_loss(policy_err[:half], policy_err[half:], ref_err[:half], ref_err[half:], config.beta)


def FluxFamilyView(family, denoiser):  # noqa: N802 - a FluxFamily whose denoiser is another network
    from trainer.families import FluxFamily

    view = FluxFamily.__new__(FluxFamily)
    view.__dict__.update(family.__dict__)
    view.denoiser = denoiser
    return view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--latent", type=int, default=16, help="latent side (16 → 128 px, 64 image tokens)")
    parser.add_argument("--variant", choices=["chisel", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.steps, args.latent)))
        return
    results = {}
    for variant in ("chisel", "naive"):
        print(f"Running the {variant} step…", file=sys.stderr)
        out = subprocess.run([sys.executable, __file__, "--variant", variant, "--steps", str(args.steps), "--latent",
                              str(args.latent)], capture_output=True, text=True, check=True)
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    chisel, naive = results["chisel"], results["naive"]
    figures = {
        "device": chisel["device"],
        "parameters_m": round(chisel["parameters"] / 1e6, 1),
        "chisel_s_per_step": round(chisel["seconds_per_step"], 3),
        "naive_s_per_step": round(naive["seconds_per_step"], 3),
        "chisel_peak_mb": round(chisel["peak_above_baseline_mb"], 1),
        "naive_peak_mb": round(naive["peak_above_baseline_mb"], 1),
        "memory_ratio": round(chisel["peak_above_baseline_mb"] / naive["peak_above_baseline_mb"], 3),
        "time_ratio": round(chisel["seconds_per_step"] / naive["seconds_per_step"], 3),
    }
    print(f"DPO step on a FLUX-architecture transformer, {figures['parameters_m']}M parameters ({figures['device']})")
    print(f"  {'':<8} {'s/step':>8} {'peak MB':>9}")
    print(f"  {'chisel':<8} {figures['chisel_s_per_step']:>8} {figures['chisel_peak_mb']:>9}")
    print(f"  {'naive':<8} {figures['naive_s_per_step']:>8} {figures['naive_peak_mb']:>9}")
    print(f"  memory ratio {figures['memory_ratio']} (target ≤ 0.6), time ratio {figures['time_ratio']} (target ≤ 1.05)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
