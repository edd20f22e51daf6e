"""export_lora: a checkpoint's LoRA chain as one file in diffusers, kohya or ComfyUI layout, read back unchanged."""

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline, StableDiffusionPipeline
from django.core.management import CommandError, call_command
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load, load_file

from annotate.models import BaseModel, Checkpoint
from sampler.generate import render
from sampler.loading import load_pipeline
from sampler.spec import ModelSpec, SampleParams
from tests.models import build_tiny_flux, build_tiny_sd
from trainer.lora_export import export_lora
from trainer.lora_files import read_lora, save_lora

PROMPTS, SEEDS = ["a red circle", "a blue square"], [5, 6]
FLUX_PARAMS = SampleParams(steps=2, guidance=3.5, width=64, height=64, max_sequence_length=32)
SD_PARAMS = SampleParams(steps=2, guidance=5.0, width=64, height=64)
# Every FLUX layer that diffusers' kohya/BFL reader maps back at any width: it splits a single block's fused
# `linear1` only at FLUX.1's own widths (3072 + 12288) and drops top-level layers (x_embedder, proj_out, …).
DOUBLE = r"transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)"
READABLE = (rf"({DOUBLE}|ff\.net\.(0\.proj|2)|ff_context\.net\.(0\.proj|2)|norm1\.linear|norm1_context\.linear)"
            r"|single_transformer_blocks\.\d+\.(proj_out|norm\.linear))")
TRAINED = ["to_q", "to_k", "to_v", "to_out.0"]  # the trainer's default targets


def random_lora(pipeline_class, base, out, *, targets, rank=4, alpha=16, seed=0):
    """A LoRA with non-zero random weights, saved as the trainer saves (rank and alpha in the file)."""
    torch.manual_seed(seed)
    pipeline = pipeline_class.from_pretrained(base)
    denoiser = pipeline.transformer if pipeline_class is FluxPipeline else pipeline.unet
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=False)
    denoiser.add_adapter(config)
    with torch.no_grad():
        for name, param in denoiser.named_parameters():
            if "lora_B" in name:
                param.mul_(0.3)
    save_lora(pipeline_class, out, get_peft_model_state_dict(denoiser), config)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    flux, sd = build_tiny_flux(root / "flux"), build_tiny_sd(root / "sd")
    return {
        "root": root, "flux": flux, "sd": sd,
        "readable": random_lora(FluxPipeline, flux, root / "readable", targets=READABLE),
        "trained": random_lora(FluxPipeline, flux, root / "trained", targets=TRAINED + ["norm_out.linear"], seed=1),
        "child": random_lora(FluxPipeline, flux, root / "child", targets=TRAINED + ["add_q_proj"], rank=2, alpha=8,
                             seed=2),
        "sd_lora": random_lora(StableDiffusionPipeline, sd, root / "sd_lora", targets=TRAINED, seed=3),
    }


def images(pipeline, params) -> np.ndarray:
    pipeline.set_progress_bar_config(disable=True)
    return np.stack([np.asarray(i, dtype=np.int16) for i in render(pipeline, prompts=PROMPTS, seeds=SEEDS,
                                                                   params=params)])


def loaded(pipeline_class, base, lora):
    pipeline = pipeline_class.from_pretrained(base)
    pipeline.load_lora_weights(str(lora))
    return pipeline


@pytest.mark.parametrize("fmt", ["diffusers", "kohya", "comfyui"])
def test_a_flux_lora_round_trips_through_diffusers_in_every_format(models, tmp_path, fmt):
    original = images(loaded(FluxPipeline, models["flux"], models["readable"]), FLUX_PARAMS)
    assert np.abs(original - images(FluxPipeline.from_pretrained(models["flux"]), FLUX_PARAMS)).max() > 8
    out = export_lora([models["readable"]], tmp_path / f"lora-{fmt}.safetensors", fmt)
    keys = load_file(out)
    qkv = {"diffusers": "transformer.transformer_blocks.0.attn.to_q.lora_A.weight",
           "kohya": "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight",
           "comfyui": "diffusion_model.double_blocks.0.img_attn.qkv.lora_down.weight"}[fmt]
    assert qkv in keys
    if fmt != "diffusers":  # q, k and v fused: rank 3 × 4, alpha 3 × 16 keep the scale at 4
        assert keys[qkv].shape[0] == 12 and keys[qkv.replace("lora_down.weight", "alpha")].item() == 48
    again = loaded(FluxPipeline, models["flux"], out)
    assert np.abs(images(again, FLUX_PARAMS) - original).max() <= 1


def test_fused_flux_layers_hold_exactly_their_parts(models, tmp_path):
    """Single blocks' linear1 (q, k, v and the MLP input) and the final layer, which diffusers cannot read back on the
    tiny model, checked weight by weight: ΔW = alpha / rank · up @ down."""
    source = read_lora(models["trained"]).modules
    exported = load_file(export_lora([models["trained"]], tmp_path / "comfy.safetensors", "comfyui"))

    def delta(name):
        key = f"diffusion_model.{name}"
        down, up = exported[f"{key}.lora_down.weight"], exported[f"{key}.lora_up.weight"]
        return exported[f"{key}.alpha"].item() / down.shape[0] * up @ down

    parts = [source[f"single_transformer_blocks.1.attn.{p}"].delta() for p in ("to_q", "to_k", "to_v")]
    width = parts[0].shape[1]
    expected = torch.cat([*parts, torch.zeros(4 * width, width)])  # no LoRA on the MLP input: zero rows
    torch.testing.assert_close(delta("single_blocks.1.linear1"), expected)
    torch.testing.assert_close(delta("double_blocks.0.img_attn.proj"), source["transformer_blocks.0.attn.to_out.0"].delta())
    scale, shift = source["norm_out.linear"].delta().chunk(2)  # diffusers' (scale, shift) is BFL's (shift, scale)
    torch.testing.assert_close(delta("final_layer.adaLN_modulation.1"), torch.cat([shift, scale]))


def test_an_sd_lora_round_trips_as_kohya_which_comfyui_reads_too(models, tmp_path):
    original = images(loaded(StableDiffusionPipeline, models["sd"], models["sd_lora"]), SD_PARAMS)
    assert np.abs(original - images(StableDiffusionPipeline.from_pretrained(models["sd"]), SD_PARAMS)).max() > 8
    kohya = export_lora([models["sd_lora"]], tmp_path / "kohya.safetensors", "kohya")
    tensors = load_file(kohya)
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    assert tensors[f"{key}.alpha"].item() == 16 and tensors[f"{key}.lora_down.weight"].shape[0] == 4
    assert np.abs(images(loaded(StableDiffusionPipeline, models["sd"], kohya), SD_PARAMS) - original).max() <= 1
    comfy = load_file(export_lora([models["sd_lora"]], tmp_path / "comfy.safetensors", "comfyui"))
    assert comfy.keys() == tensors.keys() and all(torch.equal(comfy[k], tensors[k]) for k in comfy)


def test_a_chain_exports_as_one_lora_that_draws_what_the_chain_draws(models, tmp_path):
    chain = (str(models["trained"]), str(models["child"]))
    sampler = load_pipeline(ModelSpec(str(models["flux"]), chain), device=torch.device("cpu"), dtype=torch.float32)
    expected = images(sampler, FLUX_PARAMS)
    assert np.abs(expected - images(loaded(FluxPipeline, models["flux"], chain[0]), FLUX_PARAMS)).max() > 8
    merged = export_lora([models["trained"], models["child"]], tmp_path / "merged.safetensors", "diffusers")
    assert np.abs(images(loaded(FluxPipeline, models["flux"], merged), FLUX_PARAMS) - expected).max() <= 1


def test_export_refuses_to_overwrite(models, tmp_path):
    out = tmp_path / "taken.safetensors"
    out.write_bytes(b"someone else's")
    with pytest.raises(ValueError, match="already exists"):
        export_lora([models["trained"]], out, "kohya")
    assert out.read_bytes() == b"someone else's"


@pytest.fixture
def checkpoint(db, taste, models):
    base = BaseModel.objects.create(name="tiny flux", kind="flux", path=str(models["flux"]))
    parent = Checkpoint.objects.create(taste=taste, base_model=base, lora_path=str(models["trained"]))
    return Checkpoint.objects.create(taste=taste, base_model=base, parent=parent, lora_path=str(models["child"]))


def test_the_command_exports_a_checkpoints_chain_and_refuses_in_one_line(checkpoint, models, tmp_path):
    out = tmp_path / "exported" / "lora.safetensors"
    call_command("export_lora", str(checkpoint.pk), "--format", "comfyui", "--out", str(out))
    tensors = load_file(out)
    assert tensors["diffusion_model.double_blocks.0.txt_attn.qkv.lora_down.weight"].shape[0] == 2  # the child's
    assert tensors["diffusion_model.double_blocks.0.img_attn.qkv.lora_down.weight"].shape[0] == 3 * (4 + 2)
    with pytest.raises(CommandError, match=r"already exists; choose another --out") as refused:
        call_command("export_lora", str(checkpoint.pk), "--format", "kohya", "--out", str(out))
    assert "\n" not in str(refused.value)
    call_command("export_lora", str(models["trained"]), "--out", str(tmp_path / "folder.safetensors"))
    assert "transformer.transformer_blocks.0.attn.to_q.lora_A.weight" in load_file(tmp_path / "folder.safetensors")
    with pytest.raises(CommandError, match="There is no checkpoint 999999"):
        call_command("export_lora", "999999", "--out", str(tmp_path / "none.safetensors"))


def test_the_admin_page_offers_each_format_as_a_download(checkpoint, lead_browser, annotator):
    page = lead_browser.get(f"/admin/annotate/checkpoint/{checkpoint.pk}/change/")
    url = f"/admin/annotate/checkpoint/{checkpoint.pk}/lora/kohya/"
    assert page.status_code == 200 and url in page.content.decode()
    response = lead_browser.get(url)
    assert response.status_code == 200
    assert f'filename="portraits-checkpoint-{checkpoint.pk}-kohya.safetensors"' in response["Content-Disposition"]
    tensors = load(b"".join(response.streaming_content))
    assert tensors["lora_unet_double_blocks_0_img_attn_qkv.alpha"].item() == pytest.approx(4 * 3 * (4 + 2))  # scale 4, rank 18
    assert lead_browser.get(f"/admin/annotate/checkpoint/{checkpoint.pk}/lora/zip/").status_code == 404
    from django.test import Client

    outsider = Client()
    outsider.force_login(annotator)
    assert outsider.get(url).status_code == 302  # to the admin login
