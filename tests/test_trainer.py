"""Training on tiny models: resume parity, reloading a LoRA, keeping the best adapter, the NaN guard, the CLI."""

import io
import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from safetensors.torch import load_file

from tests.conftest import REPO
from tests.models import build_tiny_flux
from trainer.carry_over import DECLINED_FOLDER, DRAWS
from trainer.config import TrainConfig
from trainer.data import heldout_indices, load_pairs
from trainer.train import TrainingDiverged, evaluate_checkpoint, train

SETTINGS = {"batch_size": 4, "learning_rate": 1e-3, "beta": 2000, "max_sequence_length": 32, "heldout_fraction": 0.25,
            "eval_every": 3}


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainer")
    rng = np.random.default_rng(0)
    rows = []
    for index in range(24):
        dark = rng.integers(20, 120, (32, 32, 3)).astype(np.uint8)
        bright = np.clip(dark.astype(np.int16) + 90, 0, 255).astype(np.uint8)
        winner_first = index % 2 == 0
        rows.append({"caption": ["a red circle", "a blue square"][index % 2],
                     "jpg_0": png(bright if winner_first else dark), "jpg_1": png(dark if winner_first else bright),
                     "label_0": 1.0 if winner_first else 0.0, "guidance": 3.5})
    pq.write_table(pa.Table.from_pylist(rows), root / "pairs.parquet")
    return {"root": root, "data": root / "pairs.parquet", "flux": build_tiny_flux(root / "flux")}


def metrics(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_resumed_run_reproduces_the_uninterrupted_losses(world, tmp_path):
    # A warm-up and a decaying rate: the schedule's position is part of the state too.
    config = TrainConfig.from_dict({**SETTINGS, "steps": 6, "checkpoint_every": 3, "warmup_steps": 2,
                                    "lr_schedule": "cosine"})
    full = train(config, data=world["data"], base=world["flux"], out=tmp_path / "full", progress=False)
    broken = train(config, data=world["data"], base=world["flux"], out=tmp_path / "broken", stop_after=4, progress=False)
    assert broken.steps == 4 and not (tmp_path / "broken" / "checkpoint").exists()
    assert [s for s in (tmp_path / "broken" / "states").iterdir()] == [tmp_path / "broken" / "states" / "step-000003"]
    resumed = train(config, data=world["data"], base=world["flux"], out=tmp_path / "broken", progress=False)
    a, b = metrics(full.metrics), metrics(resumed.metrics)
    assert [m["step"] for m in b] == [1, 2, 3, 4, 5, 6]
    for x, y in zip(a, b):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-5), x["step"]
        assert x["lr"] == pytest.approx(y["lr"]), x["step"]
    assert [round(m["lr"] / 1e-3, 3) for m in a] == [0.5, 1.0, 0.854, 0.5, 0.146, 0.0]
    assert a[0]["loss"] == pytest.approx(np.log(2), abs=1e-6)  # a fresh LoRA leaves the model unchanged


def test_a_reloaded_lora_reproduces_the_trained_model(world, tmp_path):
    config = TrainConfig.from_dict({**SETTINGS, "steps": 6})
    result = train(config, data=world["data"], base=world["flux"], out=tmp_path / "run", progress=False)
    again = evaluate_checkpoint(config, data=world["data"], base=world["flux"], lora=result.checkpoint)
    assert again["heldout_loss"] == pytest.approx(result.final["heldout_loss"], abs=1e-5)
    assert again["heldout_implicit_accuracy"] == result.final["heldout_implicit_accuracy"]


def test_a_parent_chain_is_trained_on_and_the_child_loads_on_top(world, tmp_path):
    from sampler.loading import load_pipeline
    from sampler.spec import ModelSpec

    config = TrainConfig.from_dict({**SETTINGS, "steps": 3})
    parent = train(config, data=world["data"], base=world["flux"], out=tmp_path / "parent", progress=False)
    for reference in ("parent", "base"):
        child_config = TrainConfig.from_dict({**SETTINGS, "steps": 3, "reference": reference})
        child = train(child_config, data=world["data"], base=world["flux"], out=tmp_path / reference,
                      parents=(parent.checkpoint,), progress=False)
        again = evaluate_checkpoint(child_config, data=world["data"], base=world["flux"], lora=child.checkpoint,
                                    parents=(parent.checkpoint,))
        # A fused parent is rebuilt from its file on reload; its weights round a little differently.
        assert again["heldout_loss"] == pytest.approx(child.final["heldout_loss"], abs=1e-3), reference
        pipeline = load_pipeline(ModelSpec(str(world["flux"]), (str(parent.checkpoint), str(child.checkpoint))))
        assert len(pipeline.get_list_adapters()["transformer"]) == 2


def test_a_diverging_loss_stops_with_no_checkpoint(world, tmp_path):
    config = TrainConfig.from_dict({**SETTINGS, "steps": 5, "learning_rate": 1e30})
    with pytest.raises(TrainingDiverged, match="the loss is"):
        train(config, data=world["data"], base=world["flux"], out=tmp_path / "nan", progress=False)
    assert not (tmp_path / "nan" / "checkpoint").exists()


def test_the_cli_trains_and_refuses_a_dataset_of_ties(world, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("steps: 2\nbatch_size: 2\nmax_sequence_length: 32\nlearning_rate: 0.001\n")
    run = subprocess.run(
        [sys.executable, "-m", "trainer", "train", "--config", str(config), "--data", str(world["data"]),
         "--base", str(world["flux"]), "--out", str(tmp_path / "cli"), "--set", "beta=1000"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 2 and (tmp_path / "cli" / "checkpoint" / "pytorch_lora_weights.safetensors").exists()
    table = pq.read_table(world["data"]).to_pylist()
    pq.write_table(pa.Table.from_pylist([{**row, "label_0": 0.5} for row in table]), tmp_path / "ties.parquet")
    refused = subprocess.run(
        [sys.executable, "-m", "trainer", "train", "--data", str(tmp_path / "ties.parquet"), "--base",
         str(world["flux"]), "--out", str(tmp_path / "ties")],
        cwd=REPO, capture_output=True, text=True,
    )
    assert refused.returncode == 2 and "only ties" in refused.stderr
    assert not (tmp_path / "ties" / "checkpoint").exists()


def test_keep_best_saves_the_adapter_with_the_lowest_heldout_loss(world, tmp_path):
    config = TrainConfig.from_dict({**SETTINGS, "steps": 9, "keep": "best"})
    result = train(config, data=world["data"], base=world["flux"], out=tmp_path / "best", progress=False)
    evaluated = {0: np.log(2), **{m["step"]: m["heldout_loss"] for m in metrics(result.metrics) if "heldout_loss" in m}}
    kept = min(evaluated, key=evaluated.get)
    assert kept > 0, "brighter wins on held-out pairs too: training should beat the untrained adapter"
    assert result.final["kept_step"] == kept and result.final["kept_heldout_loss"] == pytest.approx(evaluated[kept])
    reloaded = evaluate_checkpoint(config, data=world["data"], base=world["flux"], lora=result.checkpoint)
    assert reloaded["heldout_loss"] == pytest.approx(evaluated[kept], abs=1e-5)


def contrary_data(world, folder):
    """The world's pairs with the held-out ones' labels swapped: every training step makes them worse."""
    rows = pq.read_table(world["data"]).to_pylist()
    pairs, ties = load_pairs(world["data"])
    assert ties == 0  # so pair i is row i
    for index in heldout_indices(pairs, SETTINGS["heldout_fraction"], seed=0):
        rows[index]["label_0"] = 1.0 - rows[index]["label_0"]
    data = folder / "contrary.parquet"
    pq.write_table(pa.Table.from_pylist(rows), data)
    return data


def test_keep_best_keeps_the_untrained_adapter_when_nothing_carries_over_even_across_a_resume(world, tmp_path):
    data = contrary_data(world, tmp_path)
    config = TrainConfig.from_dict({**SETTINGS, "steps": 9, "checkpoint_every": 3, "keep": "best"})
    train(config, data=data, base=world["flux"], out=tmp_path / "run", stop_after=7, progress=False)
    result = train(config, data=data, base=world["flux"], out=tmp_path / "run", progress=False)  # resumes at 6
    assert all(m["heldout_loss"] > np.log(2) for m in metrics(result.metrics) if "heldout_loss" in m)
    assert result.final["kept_step"] == 0
    reloaded = evaluate_checkpoint(config, data=data, base=world["flux"], lora=result.checkpoint)
    assert reloaded["heldout_loss"] == pytest.approx(np.log(2), abs=1e-6)  # the child is its parent
    lora = load_file(result.checkpoint / "pytorch_lora_weights.safetensors")
    assert all(not tensor.any() for name, tensor in lora.items() if "lora_B" in name)


def test_the_carry_over_test_keeps_the_trained_adapter_only_when_held_out_labels_agree_with_it(world, tmp_path):
    # Six held-out pairs: at most 64 sign patterns, so p is a multiple of 1/64; this α leaves room for a model this
    # small, this soon, to lean the wrong way on a pair it is unsure of.
    config = TrainConfig.from_dict({**SETTINGS, "steps": 12, "learning_rate": 3e-3, "carry_over_alpha": 0.15})
    carried = train(config, data=world["data"], base=world["flux"], out=tmp_path / "carried", progress=False)
    test = carried.final["carry_over"]
    assert test["carried"] and test["correct"] >= 5 and test["pairs"] == 6 and test["alpha"] == 0.15
    assert test["p_value"] <= 0.15 and (test["p_value"] * 64) == pytest.approx(round(test["p_value"] * 64))
    assert any(t.any() for n, t in load_file(carried.checkpoint / "pytorch_lora_weights.safetensors").items()
               if "lora_B" in n)

    data = contrary_data(world, tmp_path)
    declined = train(config, data=data, base=world["flux"], out=tmp_path / "declined", progress=False)
    test = declined.final["carry_over"]
    assert not test["carried"] and test["p_value"] > 0.15
    assert test["draws"] == DRAWS
    lora = load_file(declined.checkpoint / "pytorch_lora_weights.safetensors")
    assert all(not tensor.any() for name, tensor in lora.items() if "lora_B" in name)
    # The adapter it trained stays beside the run for the record, whole; a run that kept its adapter leaves none.
    trained = load_file(tmp_path / "declined" / DECLINED_FOLDER / "pytorch_lora_weights.safetensors")
    assert trained.keys() == lora.keys() and any(t.any() for n, t in trained.items() if "lora_B" in n)
    assert not (tmp_path / "carried" / DECLINED_FOLDER).exists()
    reloaded = evaluate_checkpoint(config, data=data, base=world["flux"], lora=declined.checkpoint)
    assert reloaded["heldout_loss"] == pytest.approx(np.log(2), abs=1e-6)  # the child is its parent
