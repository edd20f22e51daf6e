"""Deterministic, batched image generation: (prompt, seed, params) in, PNG bytes with their record out."""

import hashlib
import io
import json

import torch
from PIL import Image, PngImagePlugin

from sampler.diagnostics import diagnostics
from sampler.spec import GeneratedImage, SampleParams


def pipeline_kwargs(pipeline, params: SampleParams) -> dict:
    """The call arguments for `params`, whatever the model family."""
    kwargs = {
        "height": params.height,
        "width": params.width,
        "num_inference_steps": params.steps,
        "guidance_scale": params.guidance,
    }
    if type(pipeline).__name__ == "FluxPipeline" and params.max_sequence_length:
        kwargs["max_sequence_length"] = params.max_sequence_length
    return kwargs


def render(pipeline, *, prompts: list[str], seeds: list[int], params: SampleParams) -> list[Image.Image]:
    """One batched pipeline call; image i depends only on (prompts[i], seeds[i], params) and the weights.

    Noise comes from one CPU generator per image, so it is the same on any device and in any batch.
    """
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
    with torch.inference_mode():
        return pipeline(prompt=prompts, generator=generators, output_type="pil", **pipeline_kwargs(pipeline, params)).images


def encode_png(image: Image.Image, record: dict) -> bytes:
    """Lossless PNG carrying its own sampling record in a text chunk (readable with `Image.open(...).text`)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("chisel", json.dumps(record, sort_keys=True))
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def generate(pipeline, *, prompts: list[str], seeds: list[int], params: SampleParams, model: dict) -> list[GeneratedImage]:
    """Render, encode and diagnose; `model` (base path, LoRA chain) goes into each image's record."""
    images = render(pipeline, prompts=prompts, seeds=seeds, params=params)
    results = []
    for prompt, seed, image in zip(prompts, seeds, images, strict=True):
        record = {"prompt": prompt, "seed": seed, **params.as_dict(), "model": model}
        results.append(GeneratedImage(
            prompt=prompt, seed=seed, params=record, png=encode_png(image, record), width=image.width,
            height=image.height, diagnostics=diagnostics(image),
        ))
    return results


def derived_seed(seed: int, *parts: int) -> int:
    """A seed derived from `seed` and `parts`, stable across machines (for partner images and retries)."""
    digest = hashlib.sha256(json.dumps([seed, *parts]).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
