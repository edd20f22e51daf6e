"""Building the toy models: a few steps of each recipe save a folder that loads and samples like a real checkpoint."""

import dataclasses
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from annotate.demo import TOY_MODEL
from sampler.generate import render
from sampler.loading import load_pipeline, model_kind
from sampler.model_defaults import read_model_defaults
from sampler.spec import ModelSpec, SampleParams
from sampler.toy import defaults as toy
from sampler.toy import pretrain, pretrain_sd


def samples(folder) -> list:
    pipeline = load_pipeline(ModelSpec(str(folder)))
    params = SampleParams(steps=2, guidance=3.5, width=64, height=64, max_sequence_length=32)
    return render(pipeline, prompts=["a red circle", "a blue square"], seeds=[1, 2], params=params)


def test_a_short_flux_build_saves_a_loadable_pipeline(tmp_path):
    recipe = pretrain.Recipe(images=64, steps=4, vae_crop_steps=2, vae_steps=2, head_dim=16, warmup=2)
    report = pretrain.build(tmp_path / "flux", recipe, minutes=2)
    assert not report.stopped_early and report.size_bytes > 0
    assert model_kind(tmp_path / "flux") == "flux"
    assert read_model_defaults(tmp_path / "flux") == toy.model_defaults("flux")  # its chisel.json
    assert json.loads((tmp_path / "flux" / pretrain.BUILD_RECORD).read_text())["recipe"]["steps"] == 4
    assert [image.size for image in samples(tmp_path / "flux")] == [(64, 64)] * 2
    pretrain.build(tmp_path / "flux", dataclasses.replace(recipe, steps=5), minutes=2)  # its own folder: replaced
    assert json.loads((tmp_path / "flux" / pretrain.BUILD_RECORD).read_text())["recipe"]["steps"] == 5
    assert [image.size for image in samples(tmp_path / "flux")] == [(64, 64)] * 2


@pytest.mark.parametrize("family", ["flux", "sd"])
def test_a_build_refuses_to_replace_a_folder_no_build_wrote(tmp_path, family):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the lead's")
    with pytest.raises(CommandError, match=r"exists and no toy model build wrote it") as refused:
        call_command("toy_model", "build", "--family", family, "--out", str(out), "--minutes", "1")
    assert "\n" not in str(refused.value)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and (out / "notes.txt").read_text() == "the lead's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no staging folder left beside it


KEPT_PARTS = ("vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
              "text_encoder_2/model.safetensors", "tokenizer/tokenizer.json", "tokenizer_2/tokenizer.json")


def test_a_transformer_only_flux_build_keeps_the_vae_and_text_encoders_byte_for_byte(tmp_path):
    recipe = pretrain.Recipe(images=64, steps=4, head_dim=16, warmup=2)
    report = pretrain.build(tmp_path / "flux", recipe, minutes=2, autoencoder_from=TOY_MODEL)
    assert report.transformer_steps == 4 and report.vae_steps == 0 and not report.stopped_early
    for part in KEPT_PARTS:
        assert (tmp_path / "flux" / part).read_bytes() == (TOY_MODEL / part).read_bytes(), part
    transformer = "transformer/diffusion_pytorch_model.safetensors"
    assert (tmp_path / "flux" / transformer).read_bytes() != (TOY_MODEL / transformer).read_bytes()
    assert [image.size for image in samples(tmp_path / "flux")] == [(64, 64)] * 2


@pytest.mark.parametrize("source, says", [("missing", "is not a diffusers model folder"),
                                          ("models/toy-sd", "is a sd model")])
def test_a_transformer_only_build_needs_a_flux_model_to_keep_from(tmp_path, source, says):
    folder = tmp_path / source if source == "missing" else source
    with pytest.raises(CommandError, match=says):
        call_command("toy_model", "build", "--transformer-only", "--flux-model", str(folder),
                     "--out", str(tmp_path / "flux"))
    assert not (tmp_path / "flux").exists()


def test_a_short_sd_build_reuses_the_flux_models_vae_and_text_encoder(tmp_path):
    recipe = pretrain_sd.SdRecipe(images=64, steps=4, widths=(32, 64), warmup=2)
    report = pretrain_sd.build_sd(tmp_path / "sd", TOY_MODEL, recipe, minutes=2)
    assert report.steps == 4 and not report.stopped_early
    assert model_kind(tmp_path / "sd") == "sd"
    assert read_model_defaults(tmp_path / "sd") == toy.model_defaults("sd")
    for part in ("vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        assert (tmp_path / "sd" / part).read_bytes() == (TOY_MODEL / part).read_bytes()
    assert [image.size for image in samples(tmp_path / "sd")] == [(64, 64)] * 2


def test_the_sd_build_needs_the_flux_model_first(tmp_path):
    with pytest.raises(CommandError, match="build the FLUX toy model first"):
        call_command("toy_model", "build", "--family", "sd", "--flux-model", str(tmp_path / "missing"),
                     "--out", str(tmp_path / "sd"))


@pytest.mark.parametrize("family, folder", [("flux", "models/toy-flux"), ("sd", "models/toy-sd")])
def test_the_committed_toy_models_carry_what_their_build_writes(family, folder):
    assert read_model_defaults(folder) == toy.model_defaults(family)
    assert json.loads((Path(folder) / pretrain.BUILD_RECORD).read_text())["family"] == family
