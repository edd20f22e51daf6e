"""Pretraining the tiny FLUX pipeline on the toy world: the VAE on reconstruction, then the transformer on flow matching."""

import copy
import json
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import FluxPipeline
from tqdm import tqdm

from sampler.model_defaults import ModelDefaults, write_model_defaults
from sampler.toy import defaults as toy_defaults
from sampler.toy.build import tiny_flux
from sampler.toy.evaluate import MAX_SEQUENCE_LENGTH
from sampler.toy.world import WORDS, captions, sample

# Training images come from seeds below this; evaluation uses seeds from it upwards, so they are held out.
HELD_OUT_SEEDS = 1_000_000_000


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the weights; the same recipe and seed give the same model on the same machine."""

    seed: int = 0
    images: int = 12_288
    head_dim: int = 32  # transformer: 4 heads of this width
    layers: int = 2
    # The VAE first learns on crops (a quarter of the cost per image), then on whole images.
    vae_crop: int = 32
    vae_crop_steps: int = 700
    vae_crop_batch: int = 32
    vae_steps: int = 300
    vae_batch: int = 16
    vae_lr: float = 2e-3
    latent_noise: float = 0.3
    latent_penalty: float = 1e-4
    steps: int = 4_200
    batch: int = 32
    lr: float = 3e-3
    warmup: int = 100
    ema_decay: float = 0.998
    # The toy model is not guidance-distilled: the guidance embedding sees values across the range a sampler may
    # pass, so that any of them gives the same model.
    guidance: tuple[float, float] = (1.0, 5.0)
    max_sequence_length: int = MAX_SEQUENCE_LENGTH


@dataclass
class BuildReport:
    """What a build did: where it saved, how long each phase took, and the final losses."""

    out: str
    recipe: dict
    vae_seconds: float
    vae_loss: float
    vae_steps: int
    transformer_seconds: float
    transformer_loss: float
    transformer_steps: int
    total_seconds: float
    size_bytes: int
    scaling_factor: float
    shift_factor: float
    reused_autoencoder: bool = False  # the VAE and text encoders came from an existing toy model

    @property
    def stopped_early(self) -> bool:
        recipe = self.recipe
        vae_short = not self.reused_autoencoder and self.vae_steps < recipe["vae_crop_steps"] + recipe["vae_steps"]
        return vae_short or self.transformer_steps < recipe["steps"]


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def dataset(recipe: Recipe) -> tuple[torch.Tensor, torch.Tensor]:
    """Training images as uint8 (N, 3, 64, 64) and the index of each one's caption in `captions()`."""
    index = {text: i for i, text in enumerate(captions())}
    first = recipe.seed * recipe.images
    if first + recipe.images > HELD_OUT_SEEDS:
        raise ValueError("The build seed reaches into the held-out evaluation seeds.")
    pixels = np.empty((recipe.images, 64, 64, 3), dtype=np.uint8)
    labels = np.empty(recipe.images, dtype=np.int64)
    for i in tqdm(range(recipe.images), desc="toy images", unit="img", mininterval=1.0):
        image, meta = sample(first + i)
        pixels[i] = np.asarray(image)
        labels[i] = index[meta["caption"]]
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


def _to_unit(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float() / 127.5 - 1.0


def _lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class Phase:
    """The steps of one pretraining phase: a progress bar, the warm-up + cosine rate set before each step, a
    deadline that ends the phase early (saying so), and the smoothed loss; `done` counts the finished steps."""

    def __init__(self, name: str, total: int, optimiser, *, peak: float, warmup: int, deadline: float,
                 smoothing: float) -> None:
        self.name, self.total, self.optimiser = name, total, optimiser
        self.peak, self.warmup, self.deadline, self.smoothing = peak, warmup, deadline, smoothing
        self.done, self.smoothed = 0, float("nan")
        self.bar = tqdm(range(total), desc=name, unit="step", mininterval=1.0)

    def __iter__(self):
        for step in self.bar:
            if time.monotonic() > self.deadline:
                self.bar.write(f"{self.name}: time is up after {step} steps")
                return
            for group in self.optimiser.param_groups:
                group["lr"] = _lr_at(step, self.total, self.peak, self.warmup)
            yield step
            self.done = step + 1

    def record(self, loss: float) -> None:
        keep = self.smoothing
        self.smoothed = loss if math.isnan(self.smoothed) else keep * self.smoothed + (1 - keep) * loss
        self.bar.set_postfix(loss=f"{self.smoothed:.4f}", refresh=False)


def train_vae(pipeline: FluxPipeline, pixels: torch.Tensor, recipe: Recipe, deadline: float) -> tuple[int, float]:
    """Reconstruction (L1 + MSE) from lightly noised posterior means; returns the steps taken and the smoothed loss.

    A deterministic autoencoder with a little latent noise and a small penalty on the latents' size, rather than
    sampling the posterior: its initial unit variance drowns the signal and costs minutes to unlearn on a CPU.
    The noise keeps the decoder tolerant of the slightly-off latents a diffusion model produces.
    """
    vae = pipeline.vae.train()
    optimiser = torch.optim.AdamW(vae.parameters(), lr=recipe.vae_lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(recipe.seed)
    phase = Phase("VAE", recipe.vae_crop_steps + recipe.vae_steps, optimiser, peak=recipe.vae_lr,
                  warmup=recipe.warmup, deadline=deadline, smoothing=0.95)
    for step in phase:
        cropping = step < recipe.vae_crop_steps
        pick = torch.randint(len(pixels), (recipe.vae_crop_batch if cropping else recipe.vae_batch,), generator=generator)
        batch = _to_unit(pixels[pick])
        if cropping:  # on the latent grid, so that crops see edges where whole images do
            top, left = (8 * torch.randint((64 - recipe.vae_crop) // 8 + 1, (2,), generator=generator)).tolist()
            batch = batch[:, :, top:top + recipe.vae_crop, left:left + recipe.vae_crop]
        mean = vae.encode(batch).latent_dist.mean
        scale = mean.detach().std()
        latents = mean + recipe.latent_noise * scale * torch.randn(mean.shape, generator=generator)
        error = vae.decode(latents).sample - batch
        loss = error.abs().mean() + error.pow(2).mean() + recipe.latent_penalty * mean.pow(2).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimiser.step()
        phase.record(loss.item())
    vae.eval().requires_grad_(False)
    return phase.done, phase.smoothed


@torch.no_grad()
def encode_latents(
    pipeline: FluxPipeline, pixels: torch.Tensor, batch: int = 256, *, normalise: bool = True
) -> torch.Tensor:
    """Posterior means of all images, unit-scaled: `normalise` sets the VAE's scaling and shift factors from them
    (a new VAE), else the VAE's own factors apply (a trained model's)."""
    chunks = [
        pipeline.vae.encode(_to_unit(pixels[i:i + batch])).latent_dist.mean
        for i in tqdm(range(0, len(pixels), batch), desc="encode", unit="batch", mininterval=1.0)
    ]
    latents = torch.cat(chunks)
    if normalise:
        # The pipeline decodes with latents / scaling_factor + shift_factor, so these make the latents unit-scale.
        pipeline.vae.register_to_config(
            scaling_factor=1.0 / latents.std().item(), shift_factor=latents.mean().item()
        )
    return (latents - pipeline.vae.config.shift_factor) * pipeline.vae.config.scaling_factor


@torch.no_grad()
def caption_embeddings(pipeline: FluxPipeline, recipe: Recipe) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """T5 sequence embeddings, pooled CLIP embeddings and text ids of every caption (the encoders stay frozen)."""
    prompt_embeds, pooled, text_ids = pipeline.encode_prompt(
        captions(), prompt_2=None, device=torch.device("cpu"), max_sequence_length=recipe.max_sequence_length,
    )
    return prompt_embeds, pooled, text_ids


def train_transformer(
    pipeline: FluxPipeline, latents: torch.Tensor, labels: torch.Tensor, recipe: Recipe, deadline: float,
) -> tuple[int, float]:
    """Rectified flow: x_t = (1 − σ) x0 + σ ε with logit-normal σ, regressing ε − x0; keeps an EMA of the weights."""
    transformer = pipeline.transformer.train()
    ema = copy.deepcopy(transformer).requires_grad_(False)
    optimiser = torch.optim.AdamW(transformer.parameters(), lr=recipe.lr, weight_decay=0.0)
    prompt_embeds, pooled, text_ids = caption_embeddings(pipeline, recipe)
    channels, height, width = latents.shape[1:]
    image_ids = FluxPipeline._prepare_latent_image_ids(recipe.batch, height // 2, width // 2, "cpu", torch.float32)
    generator = torch.Generator().manual_seed(recipe.seed + 1)
    low, high = recipe.guidance
    phase = Phase("transformer", recipe.steps, optimiser, peak=recipe.lr, warmup=recipe.warmup, deadline=deadline,
                  smoothing=0.98)
    for step in phase:
        pick = torch.randint(len(latents), (recipe.batch,), generator=generator)
        x0 = FluxPipeline._pack_latents(latents[pick], recipe.batch, channels, height, width)
        noise = torch.randn(x0.shape, generator=generator)
        sigma = torch.sigmoid(torch.randn(recipe.batch, generator=generator))
        noisy = (1 - sigma[:, None, None]) * x0 + sigma[:, None, None] * noise
        guidance = low + (high - low) * torch.rand(recipe.batch, generator=generator)
        prediction = transformer(
            hidden_states=noisy, timestep=sigma, guidance=guidance, pooled_projections=pooled[labels[pick]],
            encoder_hidden_states=prompt_embeds[labels[pick]], txt_ids=text_ids, img_ids=image_ids, return_dict=False,
        )[0]
        loss = (prediction - (noise - x0)).pow(2).mean()
        step_with_ema(transformer, ema, optimiser, loss, step=step, ema_decay=recipe.ema_decay)
        phase.record(loss.item())
    transformer.load_state_dict(ema.state_dict())
    transformer.eval().requires_grad_(False)
    return phase.done, phase.smoothed


def step_with_ema(model, ema, optimiser, loss: torch.Tensor, *, step: int, ema_decay: float) -> None:
    """One optimiser step on `loss` (gradients clipped to norm 1), then the EMA of the weights."""
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimiser.step()
    decay = min(ema_decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for kept, live in zip(ema.parameters(), model.parameters()):
            kept.lerp_(live, 1 - decay)


# Written into every folder a build saves: a build replaces only a folder that holds it (or none at all).
BUILD_RECORD = "toy_build.json"


def refuse_to_replace(out: Path) -> None:
    """Raise FileExistsError, in one line, where `out` holds files that no toy build wrote."""
    out = Path(out)
    if out.is_dir() and not any(out.iterdir()):
        return
    if out.exists() and not (out / BUILD_RECORD).is_file():
        raise FileExistsError(
            f"{out} exists and no toy model build wrote it (it has no {BUILD_RECORD}): choose another --out, "
            "or move it away first."
        )


def save_atomically(pipeline: FluxPipeline, out: Path, defaults: ModelDefaults, record: dict) -> int:
    """`save_pretrained` (the model's own `defaults`, chisel.json, and the build's `record`, toy_build.json) into a
    temporary folder beside `out`, then swap it in; returns the size in bytes. Refuses to replace a folder that no
    build wrote (checked again here: a build checks before it trains, and a folder may appear while it does)."""
    out = Path(out).resolve()
    refuse_to_replace(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        pipeline.save_pretrained(staging, safe_serialization=True)
        write_model_defaults(staging, defaults)
        (staging / BUILD_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        size = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file())
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{time.time_ns()}")
            out.rename(old)
        staging.rename(out)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return size


def pretrain(
    recipe: Recipe = Recipe(), minutes: float = 20.0, autoencoder_from: Path | None = None
) -> tuple[FluxPipeline, dict]:
    """A tiny FLUX pipeline trained on the toy world; stops early (and says so) if `minutes` run out.

    With `autoencoder_from` (a toy FLUX folder), only the transformer is trained, over that folder's VAE and text
    encoders, which stay byte for byte as they were (the toy SD model shares them).
    """
    torch.set_num_threads(2)
    _seed_everything(recipe.seed)
    start = time.monotonic()
    budget = minutes * 60
    pipeline = tiny_flux(WORDS, seed=recipe.seed, head_dim=recipe.head_dim, layers=recipe.layers)
    if autoencoder_from is not None:
        kept = FluxPipeline.from_pretrained(autoencoder_from)
        kept.transformer = pipeline.transformer
        pipeline = kept
    pipeline.text_encoder.requires_grad_(False)
    pipeline.text_encoder_2.requires_grad_(False)
    pixels, labels = dataset(recipe)

    vae_start = time.monotonic()
    if autoencoder_from is None:
        vae_steps, vae_loss = train_vae(pipeline, pixels, recipe, deadline=start + 0.35 * budget)
    else:
        pipeline.vae.requires_grad_(False)
        vae_steps, vae_loss = 0, float("nan")
    latents = encode_latents(pipeline, pixels, normalise=autoencoder_from is None)
    transformer_start = time.monotonic()
    steps, loss = train_transformer(pipeline, latents, labels, recipe, deadline=start + budget - 20)
    done = time.monotonic()
    stats = {
        "vae_seconds": transformer_start - vae_start, "vae_loss": vae_loss, "vae_steps": vae_steps,
        "transformer_seconds": done - transformer_start, "transformer_loss": loss, "transformer_steps": steps,
        "data_seconds": vae_start - start,
    }
    return pipeline, stats


def build(
    out: Path, recipe: Recipe = Recipe(), minutes: float = 20.0, autoencoder_from: Path | None = None
) -> BuildReport:
    """Pretrain and save to `out` (atomically); the folder loads with `FluxPipeline.from_pretrained(out)`."""
    start = time.monotonic()
    refuse_to_replace(out)
    pipeline, stats = pretrain(recipe, minutes, autoencoder_from)
    kept_from = str(autoencoder_from) if autoencoder_from is not None else None
    record = {"family": "flux", "recipe": asdict(recipe), "kept_from": kept_from}
    size = save_atomically(pipeline, out, toy_defaults.model_defaults("flux"), record)
    return BuildReport(
        out=str(out), recipe=asdict(recipe), vae_seconds=stats["vae_seconds"], vae_loss=stats["vae_loss"],
        vae_steps=stats["vae_steps"], transformer_seconds=stats["transformer_seconds"],
        transformer_loss=stats["transformer_loss"], transformer_steps=stats["transformer_steps"],
        total_seconds=time.monotonic() - start, size_bytes=size,
        scaling_factor=pipeline.vae.config.scaling_factor, shift_factor=pipeline.vae.config.shift_factor,
        reused_autoencoder=autoencoder_from is not None,
    )
