"""KL(policy ‖ reference) on the policy's own samples: a mode-seeking pull that charges drift, not a change of mode."""

from dataclasses import dataclass

import torch

from trainer.objectives import per_sample_error


@dataclass
class SamplePool:
    """Latents the policy drew lately, with the text and guidance they were drawn for."""

    latents: torch.Tensor  # (K, C, h, w)
    text: dict[str, torch.Tensor]  # each (K, ...)
    guidance: float


def draw_pool(family, encoded, *, samples: int, steps: int, resolution: int, guidance: float,
              generator: torch.Generator) -> SamplePool:
    """`samples` of the policy's own images, as latents, for captions drawn from the training pairs."""
    index = torch.randint(0, len(encoded), (samples,), generator=generator)
    text = {k: v[index] for k, v in encoded.text.items()}
    was_training = family.denoiser.training
    family.denoiser.eval()
    try:
        latents = family.sample_latents(text, guidance, resolution=resolution, steps=steps, generator=generator)
    finally:
        family.denoiser.train(was_training)
    return SamplePool(latents, text, guidance)


def self_kl(family, denoiser, pool: SamplePool, batch: int, generator: torch.Generator, accelerator) -> torch.Tensor:
    """The mean squared gap between the policy's and the reference's predictions at the pool's latents, noised to a
    uniform level: for matched noising paths, KL(policy ‖ reference) up to a per-level weight (DPOK, Fan et al. 2023;
    Flow-GRPO's KL, Liu et al. 2025). The pool comes from the policy, so a mode the policy left costs nothing, while a
    change the reference would never draw (a worse denoiser's leftover noise) costs in full."""
    device = accelerator.device
    index = torch.randint(0, pool.latents.shape[0], (batch,), generator=generator)
    x0 = pool.latents[index]
    noise = torch.randn(x0.shape, generator=generator)
    t = family.uniform_t(batch, generator)
    noisy, _ = family.inputs(x0, noise, t)
    noisy, t = noisy.to(device), t.to(device)
    text = {k: v[index].to(device) for k, v in pool.text.items()}
    guidance = torch.full((batch,), pool.guidance, device=device)
    with accelerator.autocast():
        policy = family.predict(noisy, t, text, guidance)
        model = accelerator.unwrap_model(denoiser)
        model.disable_adapters()
        try:
            with torch.no_grad():
                reference = family.predict(noisy, t, text, guidance)
        finally:
            model.enable_adapters()
    return per_sample_error(policy, reference).mean()
