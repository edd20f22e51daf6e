"""Pretraining a tiny Stable Diffusion UNet on the toy world, over the toy FLUX model's VAE and CLIP text encoder."""

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffusers import DDIMScheduler, FluxPipeline, StableDiffusionPipeline
from tqdm import tqdm

from sampler.toy import defaults as toy_defaults
from sampler.toy.build import tiny_unet
from sampler.toy.pretrain import (
    Phase, _seed_everything, _to_unit, dataset, refuse_to_replace, save_atomically, step_with_ema,
)
from sampler.toy.world import captions


@dataclass(frozen=True)
class SdRecipe:
    """Everything that decides the UNet's weights (the VAE and text encoder are the FLUX toy model's, frozen)."""

    seed: int = 0
    images: int = 12_288
    widths: tuple[int, int] = (64, 128)
    layers: int = 1
    prediction_type: str = "epsilon"
    steps: int = 2_400
    batch: int = 32
    lr: float = 2e-3
    warmup: int = 100
    ema_decay: float = 0.998
    # Captions dropped to "" this often, so that classifier-free guidance has an unconditional model to push from.
    caption_dropout: float = 0.1


@dataclass
class SdBuildReport:
    """What an SD build did: where it saved, how long it took, the final loss."""

    out: str
    recipe: dict
    steps: int
    loss: float
    seconds: float
    size_bytes: int

    @property
    def stopped_early(self) -> bool:
        return self.steps < self.recipe["steps"]


def scheduler_for(prediction_type: str) -> DDIMScheduler:
    """SD 1.x's scaled-linear noise schedule, sampled with DDIM (deterministic given the initial noise)."""
    return DDIMScheduler(
        num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
        prediction_type=prediction_type, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )


def assemble(flux_model: Path, recipe: SdRecipe) -> StableDiffusionPipeline:
    """A Stable Diffusion pipeline with a fresh UNet on the FLUX toy model's (16-channel) VAE and CLIP encoder."""
    flux = FluxPipeline.from_pretrained(flux_model)
    torch.manual_seed(recipe.seed)
    unet = tiny_unet(latent_channels=flux.vae.config.latent_channels, widths=recipe.widths, layers=recipe.layers)
    return StableDiffusionPipeline(
        vae=flux.vae, text_encoder=flux.text_encoder, tokenizer=flux.tokenizer, unet=unet,
        scheduler=scheduler_for(recipe.prediction_type), safety_checker=None, feature_extractor=None,
        image_encoder=None, requires_safety_checker=False,
    )


@torch.no_grad()
def encode(pipeline: StableDiffusionPipeline, pixels: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Latents as the SD pipeline and Chisel's trainer see them: posterior mean × scaling factor (no shift)."""
    vae = pipeline.vae
    chunks = [vae.encode(_to_unit(pixels[i:i + batch])).latent_dist.mean
              for i in tqdm(range(0, len(pixels), batch), desc="encode", unit="batch", mininterval=1.0)]
    return torch.cat(chunks) * vae.config.scaling_factor


def train_unet(pipeline, latents, labels, recipe: SdRecipe, deadline: float) -> tuple[int, float]:
    """The DDPM objective (ε or v) at uniform timesteps with caption dropout; keeps an EMA of the weights."""
    unet = pipeline.unet.train()
    ema = copy.deepcopy(unet).requires_grad_(False)
    optimiser = torch.optim.AdamW(unet.parameters(), lr=recipe.lr, weight_decay=0.0)
    with torch.no_grad():
        texts = pipeline.encode_prompt(captions(), torch.device("cpu"), 1, False)[0]  # (captions, 77, D)
        empty = pipeline.encode_prompt([""], torch.device("cpu"), 1, False)[0]  # (1, 77, D)
    scheduler = pipeline.scheduler
    generator = torch.Generator().manual_seed(recipe.seed + 1)
    phase = Phase("UNet", recipe.steps, optimiser, peak=recipe.lr, warmup=recipe.warmup, deadline=deadline,
                  smoothing=0.98)
    for step in phase:
        pick = torch.randint(len(latents), (recipe.batch,), generator=generator)
        x0 = latents[pick]
        noise = torch.randn(x0.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (recipe.batch,), generator=generator)
        dropped = torch.rand(recipe.batch, generator=generator) < recipe.caption_dropout
        text = torch.where(dropped[:, None, None], empty, texts[labels[pick]])
        target = noise if recipe.prediction_type == "epsilon" else scheduler.get_velocity(x0, noise, timesteps)
        prediction = unet(scheduler.add_noise(x0, noise, timesteps), timesteps, encoder_hidden_states=text).sample
        loss = (prediction - target).pow(2).mean()
        step_with_ema(unet, ema, optimiser, loss, step=step, ema_decay=recipe.ema_decay)
        phase.record(loss.item())
    unet.load_state_dict(ema.state_dict())
    unet.eval().requires_grad_(False)
    return phase.done, phase.smoothed


def build_sd(out: Path, flux_model: Path, recipe: SdRecipe = SdRecipe(), minutes: float = 8.0) -> SdBuildReport:
    """Pretrain the UNet and save the pipeline to `out` atomically; it loads with `from_pretrained(out)`."""
    torch.set_num_threads(2)
    _seed_everything(recipe.seed)
    refuse_to_replace(out)
    start = time.monotonic()
    pipeline = assemble(flux_model, recipe)
    pipeline.vae.requires_grad_(False)
    pipeline.text_encoder.requires_grad_(False)
    pixels, labels = dataset(recipe)
    latents = encode(pipeline, pixels)
    steps, loss = train_unet(pipeline, latents, labels, recipe, deadline=start + minutes * 60 - 20)
    record = {"family": "sd", "recipe": asdict(recipe), "kept_from": str(flux_model)}
    size = save_atomically(pipeline, out, toy_defaults.model_defaults("sd"), record)
    return SdBuildReport(out=str(out), recipe=asdict(recipe), steps=steps, loss=loss,
                         seconds=time.monotonic() - start, size_bytes=size)
