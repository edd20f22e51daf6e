"""LoRA files carry their rank and alpha: diffusers and the sampler load a trained LoRA at its trained strength."""

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from diffusers import FluxPipeline
from peft import LoraConfig
from peft.utils import set_peft_model_state_dict
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from sampler.generate import render
from sampler.loading import load_pipeline
from sampler.spec import ModelSpec, SampleParams
from tests.models import build_tiny_flux
from trainer.config import TrainConfig
from trainer.lora_files import LORA_FILE
from trainer.train import train

PARAMS = SampleParams(steps=2, guidance=3.5, width=64, height=64, max_sequence_length=32)
PROMPTS, SEEDS = ["a red circle", "a blue square"], [3, 4]


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LoRA of rank 4 and alpha 16 (scale 4) trained a few steps on the tiny FLUX model."""
    root = tmp_path_factory.mktemp("alpha")
    rng = np.random.default_rng(0)
    rows = []
    for index in range(8):
        dark = rng.integers(20, 120, (32, 32, 3)).astype(np.uint8)
        bright = np.clip(dark.astype(np.int16) + 90, 0, 255).astype(np.uint8)
        rows.append({"caption": PROMPTS[index % 2], "jpg_0": png(bright), "jpg_1": png(dark), "label_0": 1.0})
    pq.write_table(pa.Table.from_pylist(rows), root / "pairs.parquet")
    base = build_tiny_flux(root / "flux")
    config = TrainConfig.from_dict({"steps": 3, "batch_size": 4, "rank": 4, "alpha": 16, "learning_rate": 1e-2,
                                    "beta": 2000, "max_sequence_length": 32, "heldout_fraction": 0})
    result = train(config, data=root / "pairs.parquet", base=base, out=root / "run", progress=False)
    return {"base": base, "checkpoint": result.checkpoint, "config": config}


def in_memory(trained, weight: float = 1.0):
    """The trained adapter set up as training sets it up (rank 4, alpha 16), holding the trained weights."""
    pipeline = FluxPipeline.from_pretrained(trained["base"])
    config = trained["config"]
    pipeline.transformer.add_adapter(LoraConfig(r=4, lora_alpha=16, target_modules=config.target_modules), "mem")
    weights = {k.removeprefix("transformer."): v for k, v in load_file(trained["checkpoint"] / LORA_FILE).items()}
    set_peft_model_state_dict(pipeline.transformer, weights, adapter_name="mem")
    pipeline.transformer.set_adapters(["mem"], weights=[weight])
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def images(pipeline) -> np.ndarray:
    return np.stack([np.asarray(i, dtype=np.int16) for i in render(pipeline, prompts=PROMPTS, seeds=SEEDS,
                                                                   params=PARAMS)])


def scalings(pipeline) -> set[float]:
    return {s for m in pipeline.transformer.modules() if hasattr(m, "scaling") for s in m.scaling.values()}


def test_the_checkpoint_carries_rank_and_alpha(trained):
    folder = trained["checkpoint"]
    adapter = json.loads((folder / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], adapter["peft_type"]) == (4, 16, "LORA")
    with safe_open(folder / LORA_FILE, "pt") as handle:
        metadata = json.loads(handle.metadata()["lora_adapter_metadata"])
    assert (metadata["transformer.r"], metadata["transformer.lora_alpha"]) == (4, 16)


def test_diffusers_and_the_sampler_load_it_at_the_trained_strength(trained):
    reference = images(in_memory(trained))
    weak = images(in_memory(trained, weight=0.25))  # what a loader that ignores alpha (scale 1 = 4 × ¼) draws
    assert np.abs(reference - weak).max() > 8, "the trained LoRA should change the images visibly"

    sampler = load_pipeline(ModelSpec(str(trained["base"]), (str(trained["checkpoint"]),)),
                            device=torch.device("cpu"), dtype=torch.float32)
    plain = FluxPipeline.from_pretrained(trained["base"])
    plain.load_lora_weights(str(trained["checkpoint"]))
    plain.set_progress_bar_config(disable=True)
    for pipeline in (sampler, plain):
        assert scalings(pipeline) == {4.0}
        assert np.abs(images(pipeline) - reference).max() <= 1


def test_a_folder_written_before_files_carried_alpha_loads_at_its_trained_strength(trained, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    weights = load_file(trained["checkpoint"] / LORA_FILE)
    FluxPipeline.save_lora_weights(old, transformer_lora_layers={k.removeprefix("transformer."): v
                                                                 for k, v in weights.items()})
    (old / "training.json").write_text((trained["checkpoint"] / "training.json").read_text())
    plain = FluxPipeline.from_pretrained(trained["base"])
    plain.load_lora_weights(str(old))
    assert scalings(plain) == {1.0}  # diffusers alone cannot know
    sampler = load_pipeline(ModelSpec(str(trained["base"]), (str(old),)), device=torch.device("cpu"),
                            dtype=torch.float32)
    assert scalings(sampler) == {4.0}
