"""The sampler without Django: loading, LoRA chains, determinism, pairs, diagnostics (sampler/)."""

import hashlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sampler.diagnostics import diagnostics
from sampler.generate import generate
from sampler.loading import ModelLoadError, PipelineCache, load_pipeline, model_kind
from sampler.pairs import PairRequest, sample_train_pairs
from sampler.spec import ModelSpec, SampleParams
from tests.conftest import REPO
from tests.models import build_random_lora, build_tiny_flux, build_tiny_sd

PARAMS = SampleParams(steps=4, guidance=3.5, width=64, height=64, max_sequence_length=32)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    flux = build_tiny_flux(root / "flux")
    return {
        "flux": flux,
        "sd": build_tiny_sd(root / "sd"),
        "lora1": build_random_lora(flux, root / "lora1", seed=1),
        "lora2": build_random_lora(flux, root / "lora2", seed=2),
    }


def pixels(pipeline, prompts=("a red circle",), seeds=(0,), params=PARAMS) -> list[np.ndarray]:
    images = generate(pipeline, prompts=list(prompts), seeds=list(seeds), params=params, model={})
    return [np.asarray(Image.open(io.BytesIO(image.png)), dtype=np.int16) for image in images]


def test_the_model_family_comes_from_model_index(world, tmp_path):
    assert model_kind(world["flux"]) == "flux" and model_kind(world["sd"]) == "sd"
    with pytest.raises(ModelLoadError, match="model_index.json is missing"):
        model_kind(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyPipeline"}))
    with pytest.raises(ModelLoadError, match="holds a KandinskyPipeline"):
        model_kind(tmp_path)


def test_a_broken_model_folder_says_what_is_wrong(world, tmp_path):
    (tmp_path / "model_index.json").write_text((world["flux"] / "model_index.json").read_text())
    with pytest.raises(ModelLoadError, match=f"Could not load the model at {tmp_path}"):
        load_pipeline(ModelSpec(str(tmp_path)))


def test_a_lora_that_matches_nothing_is_refused(world):
    with pytest.raises(ModelLoadError):
        load_pipeline(ModelSpec(str(world["sd"]), (str(world["lora1"]),)))


def test_same_inputs_give_the_same_pixels_in_another_process(world):
    script = (
        "import hashlib, sys; sys.path.insert(0, '.');"
        "from sampler.loading import load_pipeline; from sampler.generate import generate;"
        "from sampler.spec import ModelSpec, SampleParams;"
        f"p = load_pipeline(ModelSpec({str(world['flux'])!r}, ({str(world['lora1'])!r},)));"
        "imgs = generate(p, prompts=['a red circle', 'a blue square'], seeds=[3, 4],"
        " params=SampleParams(steps=4, guidance=3.5, width=64, height=64, max_sequence_length=32), model={});"
        "print(' '.join(hashlib.sha256(i.png).hexdigest() for i in imgs))"
    )
    runs = [
        subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1] and len(runs[0].split()) == 2
    here = load_pipeline(ModelSpec(str(world["flux"]), (str(world["lora1"]),)))
    images = generate(here, prompts=["a red circle", "a blue square"], seeds=[3, 4], params=PARAMS, model={})
    assert " ".join(hashlib.sha256(i.png).hexdigest() for i in images) == runs[0].strip()


def test_seeds_and_prompts_change_the_image_and_the_batch_does_not(world):
    pipeline = load_pipeline(ModelSpec(str(world["flux"])))
    alone = pixels(pipeline, seeds=(5,))[0]
    in_batch = pixels(pipeline, prompts=("a blue square", "a red circle"), seeds=(9, 5))[1]
    assert np.abs(alone - in_batch).max() <= 1  # same noise per seed whatever else is in the batch
    assert np.abs(alone - pixels(pipeline, seeds=(6,))[0]).mean() > 1
    assert np.abs(alone - pixels(pipeline, prompts=("a green triangle",), seeds=(5,))[0]).mean() > 0.5


def test_a_lora_chain_changes_pixels_and_the_cache_switches_adapters(world):
    base = ModelSpec(str(world["flux"]))
    one = ModelSpec(base.base_path, (str(world["lora1"]),))
    two = ModelSpec(base.base_path, (str(world["lora1"]), str(world["lora2"])))
    fresh = {spec: pixels(load_pipeline(spec))[0] for spec in (base, one, two)}
    assert np.abs(fresh[base] - fresh[one]).mean() > 1
    assert np.abs(fresh[one] - fresh[two]).mean() > 1
    cache = PipelineCache()
    first = cache.get(two)
    for spec in (two, one, base, two):  # the parent chains are served by the loaded child
        assert cache.get(spec) is first
        assert np.abs(pixels(first)[0] - fresh[spec]).max() <= 1, spec
    assert cache.get(ModelSpec(str(world["sd"]))) is not first


def test_train_pairs_come_in_request_order_with_records(world):
    cache = PipelineCache()
    requests = [PairRequest("a red circle", 1), PairRequest("a blue square", 2)]
    pairs = sample_train_pairs(cache, ModelSpec(str(world["flux"])), requests, PARAMS)
    assert [p.request for p in pairs] == requests
    image = pairs[0].image_a
    assert image.params["prompt"] == "a red circle" and image.params["steps"] == 4
    assert json.loads(Image.open(io.BytesIO(image.png)).text["chisel"])["seed"] == image.seed
    assert set(image.diagnostics) == {"brightness", "saturation", "rgb_entropy", "white_ratio", "black_ratio",
                                      "sharpness", "flat_share"}
    assert pairs[0].image_a.seed != pairs[0].image_b.seed


def test_near_identical_pairs_are_resampled_then_dropped(world):
    cache = PipelineCache()
    spec = ModelSpec(str(world["flux"]))
    # A threshold every pair meets: each is tried max_attempts times, then dropped.
    assert sample_train_pairs(cache, spec, [PairRequest("a red circle", 1)], PARAMS,
                              near_duplicate_bits=64, max_attempts=2) == []
    (kept,) = sample_train_pairs(cache, spec, [PairRequest("a red circle", 1)], PARAMS, near_duplicate_bits=-1)
    assert kept.attempts == 1


def test_diagnostics_read_light_colour_and_flatness():
    flat_white = diagnostics(Image.new("RGB", (64, 64), (255, 255, 255)))
    assert flat_white["brightness"] == 1.0 and flat_white["white_ratio"] == 1.0 and flat_white["flat_share"] == 1.0
    assert flat_white["rgb_entropy"] == 0.0 and flat_white["sharpness"] == 0.0
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    noisy = diagnostics(noise)
    assert noisy["flat_share"] == 0.0 and noisy["rgb_entropy"] > 11 and noisy["sharpness"] > 1000
    red = diagnostics(Image.new("RGB", (64, 64), (255, 0, 0)))
    assert red["saturation"] == 1.0 and red["black_ratio"] == 0.0
