"""What differs between model families while training: encoding, noising, and calling the denoiser."""

import numpy as np
import torch
from PIL import Image

from trainer.objectives import diffusion_inputs, flow_matching_inputs, logit_normal_sigmas


def to_pixels(images: list[Image.Image], resolution: int) -> torch.Tensor:
    """Centre-cropped, resized images as a (N, 3, H, W) tensor in [-1, 1]."""
    tensors = []
    for image in images:
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        square = image.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.BICUBIC)
        tensors.append(torch.from_numpy(np.asarray(square, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1))
    return torch.stack(tensors)


class FluxFamily:
    """FLUX.1 (rectified flow, packed 2×2 latents, guidance-distilled or not)."""

    kind = "flux"

    def __init__(self, pipeline, *, max_sequence_length: int | None, logit_mean: float, logit_std: float,
                 flow_errors: str = "velocity") -> None:
        self.pipeline = pipeline
        self.denoiser = pipeline.transformer
        self.max_sequence_length = max_sequence_length or 512
        self.logit_mean, self.logit_std = logit_mean, logit_std
        self.flow_errors = flow_errors
        self.uses_guidance = bool(self.denoiser.config.guidance_embeds)

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        vae = self.pipeline.vae
        latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode()  # (N, C, h, w)
        return ((latents - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor).float().cpu()

    @torch.no_grad()
    def encode_text(self, captions: list[str]) -> dict[str, torch.Tensor]:
        prompt_embeds, pooled, _ = self.pipeline.encode_prompt(
            prompt=captions, prompt_2=None, device=self.pipeline.text_encoder.device,
            max_sequence_length=self.max_sequence_length,
        )
        return {"prompt_embeds": prompt_embeds.float().cpu(), "pooled": pooled.float().cpu()}  # (N, L, D), (N, P)

    def sample_t(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Noise levels σ for `batch` pairs: (B,)."""
        return logit_normal_sigmas(batch, mean=self.logit_mean, std=self.logit_std, generator=generator)

    def inputs(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The noisy latents and the training target."""
        return flow_matching_inputs(x0, noise, t)

    def error_weights(self, sigmas: torch.Tensor) -> torch.Tensor | None:
        """What each pair's velocity errors are multiplied by before DPO compares them: None (velocity errors), or
        (1 − σ)², which turns them into errors of the implied noise prediction ε̂ = x_t + (1 − σ)·v̂."""
        return (1 - sigmas).pow(2) if self.flow_errors == "epsilon" else None

    def predict(self, noisy: torch.Tensor, sigmas: torch.Tensor, text: dict, guidance: torch.Tensor) -> torch.Tensor:
        """The velocity prediction, unpacked back to (B, C, h, w) so it compares with the target directly."""
        batch, channels, height, width = noisy.shape
        packed = self.pipeline._pack_latents(noisy, batch, channels, height, width)  # (B, h/2·w/2, 4C)
        device, dtype = noisy.device, self.denoiser.dtype
        image_ids = self.pipeline._prepare_latent_image_ids(batch, height // 2, width // 2, device, dtype)
        text_ids = torch.zeros(text["prompt_embeds"].shape[1], 3, device=device, dtype=dtype)
        prediction = self.denoiser(
            hidden_states=packed.to(dtype),
            timestep=sigmas.to(device, dtype),  # the transformer scales σ ∈ [0, 1] by 1000 itself
            guidance=guidance.to(device, dtype) if self.uses_guidance else None,
            pooled_projections=text["pooled"].to(device, dtype),
            encoder_hidden_states=text["prompt_embeds"].to(device, dtype),
            txt_ids=text_ids,
            img_ids=image_ids,
            return_dict=False,
        )[0]  # (B, h/2·w/2, 4C)
        scale = self.pipeline.vae_scale_factor
        return self.pipeline._unpack_latents(prediction, height * scale, width * scale, scale)  # (B, C, h, w)


class StableDiffusionFamily:
    """Stable Diffusion 1.x/2.x UNets (epsilon or v-prediction, DDPM schedule)."""

    kind = "sd"

    def __init__(self, pipeline, **_ignored) -> None:
        self.pipeline = pipeline
        self.denoiser = pipeline.unet
        self.scheduler = pipeline.scheduler

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        vae = self.pipeline.vae
        latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode()
        return (latents * vae.config.scaling_factor).float().cpu()  # (N, 4, h, w)

    @torch.no_grad()
    def encode_text(self, captions: list[str]) -> dict[str, torch.Tensor]:
        prompt_embeds, _ = self.pipeline.encode_prompt(captions, self.pipeline.text_encoder.device, 1, False)
        return {"prompt_embeds": prompt_embeds.float().cpu()}  # (N, 77, D)

    def sample_t(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Integer DDPM timesteps for `batch` pairs, uniform over the schedule: (B,)."""
        return torch.randint(0, self.scheduler.config.num_train_timesteps, (batch,), generator=generator)

    def inputs(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return diffusion_inputs(self.scheduler, x0, noise, t)

    def error_weights(self, timesteps: torch.Tensor) -> None:
        """The UNet's own errors (ε or v) are compared as they are."""
        return None

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, text: dict, guidance: torch.Tensor) -> torch.Tensor:
        dtype = self.denoiser.dtype
        return self.denoiser(
            noisy.to(dtype), timesteps, encoder_hidden_states=text["prompt_embeds"].to(noisy.device, dtype)
        ).sample


FAMILIES = {"flux": FluxFamily, "sd": StableDiffusionFamily}
