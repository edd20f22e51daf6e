"""The drift bench's LoRA variants: the reverse and random moves of the same size, and its refusal of a missing LoRA."""

import importlib.util

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import REPO

# Loaded by path: with bench/ on sys.path, bench/sampler.py would shadow the sampler package.
_spec = importlib.util.spec_from_file_location("drift_bench", REPO / "bench" / "drift.py")
drift = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(drift)


def test_variants_reverse_the_move_and_redraw_it_at_random_with_the_same_norms(tmp_path):
    lora = tmp_path / "child"
    lora.mkdir()
    (lora / "adapter_config.json").write_text("{}")
    weights = {"t.to_q.lora_A.weight": torch.randn(8, 16), "t.to_q.lora_B.weight": torch.randn(16, 8) * 0.01,
               "t.to_k.lora_A.weight": torch.randn(8, 16), "t.to_k.lora_B.weight": torch.randn(16, 8) * 3.0}
    save_file(weights, lora / drift.WEIGHTS)
    folders = drift.variant_folders(lora, tmp_path / "variants", random_moves=2)
    assert list(folders) == ["x -1", "random 1", "random 2"]
    reversed_, first, second = (load_file(folder / drift.WEIGHTS) for folder in folders.values())
    assert (folders["x -1"] / "adapter_config.json").read_text() == "{}"
    for key, value in weights.items():
        if "lora_A" in key:  # the down projections stay: only the move's output side is redrawn
            assert torch.equal(reversed_[key], value) and torch.equal(first[key], value)
            continue
        assert torch.equal(reversed_[key], -value)
        assert first[key].norm().item() == pytest.approx(value.norm().item(), rel=0.2)
        assert not torch.allclose(first[key], second[key])
        assert torch.nn.functional.cosine_similarity(first[key].flatten(), value.flatten(), dim=0).abs().item() < 0.5


def test_a_missing_lora_or_model_is_refused_in_one_line(tmp_path):
    with pytest.raises(SystemExit, match=f"No LoRA at {tmp_path}"):
        drift.main(["--lora", str(tmp_path)])
    save_file({"t.to_q.lora_B.weight": torch.zeros(4, 2)}, tmp_path / drift.WEIGHTS)
    with pytest.raises(SystemExit, match="is not a diffusers model folder") as refusal:
        drift.main(["--lora", str(tmp_path), "--model", str(tmp_path)])
    assert "\n" not in str(refusal.value.code)
    model = tmp_path / "model"
    model.mkdir()
    (model / "chisel.json").write_text('{"sampling": {"steps": 20}}')
    with pytest.raises(SystemExit, match="--handover takes step counts from 1 to 19"):
        drift.main(["--lora", str(tmp_path), "--model", str(model), "--handover", "20"])
