"""Tiny pipelines with real architectures (FLUX.1 [dev], Stable Diffusion), built from configs offline."""

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

from sampler.model_defaults import ModelDefaults, write_model_defaults
from sampler.toy.tokenizers import clip_tokenizer, t5_tokenizer

TEXT_WIDTH = 32


def _clip_text_encoder(tokenizer, *, projection: bool = False) -> CLIPTextModel:
    # bos/eos/pad ids must match the tokenizer, or the pooled output reads the wrong position.
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TEXT_WIDTH, intermediate_size=2 * TEXT_WIDTH, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=tokenizer.model_max_length, projection_dim=TEXT_WIDTH,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def _vae(*, latent_channels: int, blocks: int = 4) -> AutoencoderKL:
    # `blocks` encoder blocks downsample 2^(blocks-1)×: 4 blocks give FLUX's 8× latents.
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels, norm_num_groups=8, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * blocks, up_block_types=("UpDecoderBlock2D",) * blocks,
        block_out_channels=(16, 32, 32, 32)[:blocks], sample_size=64, mid_block_add_attention=False,
        use_quant_conv=latent_channels == 4, use_post_quant_conv=latent_channels == 4,
        scaling_factor=1.0, shift_factor=0.0 if latent_channels == 16 else None, force_upcast=False,
    )


def tiny_flux(
    words: list[str], *, seed: int = 0, guidance_embeds: bool = True, head_dim: int = 16, layers: int = 2
) -> FluxPipeline:
    """FLUX.1 [dev] in miniature: 16-channel 8× VAE, so a 64×64 image is 16 tokens; guidance-distilled.

    The transformer is 4 heads of `head_dim` wide with `layers` double-stream and as many single-stream blocks;
    tests use the smallest, the pretrained toy model a wider one.
    """
    torch.manual_seed(seed)
    tokenizer, tokenizer_2 = clip_tokenizer(words), t5_tokenizer(words)
    t5 = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer_2), d_model=TEXT_WIDTH, d_ff=2 * TEXT_WIDTH, d_kv=16, num_layers=2, num_heads=2,
        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    ))
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=layers, num_single_layers=layers, attention_head_dim=head_dim,
        num_attention_heads=4, joint_attention_dim=TEXT_WIDTH, pooled_projection_dim=TEXT_WIDTH,
        guidance_embeds=guidance_embeds, axes_dims_rope=_rope_axes(head_dim),
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=16, max_image_seq_len=256,
    )
    return FluxPipeline(
        scheduler=scheduler, vae=_vae(latent_channels=16), text_encoder=_clip_text_encoder(tokenizer),
        tokenizer=tokenizer, text_encoder_2=t5, tokenizer_2=tokenizer_2, transformer=transformer,
    )


def _rope_axes(head_dim: int) -> tuple[int, int, int]:
    # FLUX splits each head's rotary dimensions over (text index, row, column); they must sum to the head width.
    side = (head_dim * 3 // 8) // 2 * 2
    return head_dim - 2 * side, side, side


def tiny_sd(words: list[str], *, seed: int = 0, prediction_type: str = "epsilon") -> StableDiffusionPipeline:
    """Stable Diffusion 1.x in miniature (epsilon or v-prediction UNet, 4-channel 8× VAE)."""
    torch.manual_seed(seed)
    tokenizer = clip_tokenizer(words)
    unet = tiny_unet(latent_channels=4)
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
        prediction_type=prediction_type, clip_sample=False, steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=_vae(latent_channels=4), text_encoder=_clip_text_encoder(tokenizer), tokenizer=tokenizer, unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, image_encoder=None,
        requires_safety_checker=False,
    )


def tiny_unet(*, latent_channels: int, widths: tuple[int, int] = (32, 64), layers: int = 1) -> UNet2DConditionModel:
    """SD's UNet in miniature for 64 × 64 images (8 × 8 latents): two levels, cross-attention on the outer one."""
    return UNet2DConditionModel(
        sample_size=8, in_channels=latent_channels, out_channels=latent_channels, layers_per_block=layers,
        block_out_channels=widths, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=TEXT_WIDTH, attention_head_dim=8,
        norm_num_groups=8,
    )


def save(pipeline, out: Path, defaults: ModelDefaults | None = None) -> Path:
    """Write `pipeline` in the diffusers folder layout, loadable with `from_pretrained(out)`, with the model's own
    sampling and training `defaults` beside it (chisel.json) when given."""
    out.mkdir(parents=True, exist_ok=True)
    pipeline.save_pretrained(out, safe_serialization=True)
    if defaults is not None:
        write_model_defaults(out, defaults)
    return out
