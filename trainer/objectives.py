"""Diffusion-DPO and the noising of each model family: flow matching, epsilon and v-prediction."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class DpoTerms:
    loss: torch.Tensor  # () mean over the batch: the DPO term plus the winner and anchor terms, if any
    dpo: torch.Tensor  # () the DPO term, winner floor included (ln 2 while the policy equals the reference)
    implicit_accuracy: torch.Tensor  # () share of pairs with `inside` > 0: the policy moved toward the winner
    margin: torch.Tensor  # () mean of `inside`: the implicit reward margin, less the winner floor's penalty if any
    inside: torch.Tensor  # (B,) each pair's `inside`


def dpo_loss(
    policy_err_w: torch.Tensor,
    policy_err_l: torch.Tensor,
    ref_err_w: torch.Tensor,
    ref_err_l: torch.Tensor,
    beta: float,
    sft_weight: float = 0.0,
    winner_floor: float = 0.0,
    anchor_weight: float = 0.0,
) -> DpoTerms:
    """Diffusion-DPO (Wallace et al., CVPR 2024), errors averaged over latent elements:

        inside = −β/2 · ((err_θ(w) − err_ref(w)) − (err_θ(l) − err_ref(l)))
                 [− β/2 · μ · max(0, err_θ(w) − err_ref(w))]
        loss   = −log σ(inside)  [+ λ · (err_θ(w) − err_ref(w))]
                 [+ γ · ((err_θ(w) − err_ref(w)) + (err_θ(l) − err_ref(l))) / 2]

    Each err is a (B,) per-pair mean squared error of a denoiser's prediction, with the same noise and
    timestep for winner w and loser l. While the policy equals the reference, inside = 0 and loss = ln 2.
    The optional λ term (`sft_weight`, 0 by default: plain Diffusion-DPO) also fits the winners, as RPO adds a
    winner NLL to DPO (Pang et al., 2024): DPO alone lowers its loss fastest by denoising losers worse, which
    under noisy labels degrades every image; the winner term holds the model to the images it is shown.
    The optional μ term (`winner_floor`, 0 by default) is DPO-Positive's (Pal et al., 2024, "Smaug"): one-sided, it
    acts only where the policy denoises a winner worse than the reference does, to close that loser-worsening
    shortcut; on the toy FLUX model (μ 5) it stopped the learning instead (docs/training.md, *Session 13*).
    The optional γ term (`anchor_weight`, 0 by default) weighs both images of a pair alike. DPO sees only the gap
    between winner and loser, so their common rise is free, and any move off the reference raises both (the
    reference sits at a minimum of its own error); when the pairs were drawn from the reference (the parent), the
    mean rise is an estimate of KL(reference ‖ policy) on its own samples, a pull back that takes no side. On the
    toy FLUX model it held the random-label control and the shapes, and slowed real rounds as much
    (docs/training.md, *Session 15*).
    """
    winner_gain = policy_err_w - ref_err_w  # (B,) below 0: the policy denoises the winner better
    loser_gain = policy_err_l - ref_err_l  # (B,)
    inside = -0.5 * beta * (winner_gain - loser_gain)  # (B,)
    if winner_floor:
        inside = inside - 0.5 * beta * winner_floor * winner_gain.clamp(min=0)
    dpo = -F.logsigmoid(inside).mean()
    loss = dpo
    if sft_weight:
        loss = loss + sft_weight * winner_gain.mean()
    if anchor_weight:
        loss = loss + anchor_weight * (winner_gain + loser_gain).mean() / 2
    return DpoTerms(
        loss=loss,
        dpo=dpo,
        implicit_accuracy=(inside > 0).float().mean(),
        margin=inside.mean(),
        inside=inside,
    )


LN2 = math.log(2.0)


def per_sample_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every dimension but the first: (B, ...) → (B,)."""
    return (prediction.float() - target.float()).pow(2).flatten(1).mean(dim=1)


def logit_normal_sigmas(batch: int, *, mean: float, std: float, generator: torch.Generator) -> torch.Tensor:
    """Rectified-flow noise levels σ ∈ (0, 1), drawn logit-normal as in SD3 and FLUX training: (B,)."""
    return torch.sigmoid(mean + std * torch.randn(batch, generator=generator))


def flow_matching_inputs(x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t = (1 − σ)·x0 + σ·ε, and the velocity target ε − x0."""
    sigma = sigmas.view(-1, *([1] * (x0.dim() - 1)))
    return (1 - sigma) * x0 + sigma * noise, noise - x0


def diffusion_inputs(scheduler, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t from the DDPM schedule, and the target the UNet was trained on (ε, or v = α_t·ε − σ_t·x0)."""
    noisy = scheduler.add_noise(x0, noise, timesteps)
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noisy, noise
    if prediction_type == "v_prediction":
        return noisy, scheduler.get_velocity(x0, noise, timesteps)
    raise ValueError(f"Unsupported prediction type {prediction_type!r}: Chisel trains epsilon and v_prediction UNets.")
