"""The trainer learns: DPO on pairs whose winners are lighter (darker) makes a toy model's samples lighter (darker).

Both pretrained toy models, FLUX (flow matching) and Stable Diffusion (epsilon), through the same `train()`.
"""

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from annotate.demo import TOY_MODEL
from sampler.generate import render
from sampler.loading import load_pipeline
from sampler.spec import ModelSpec, SampleParams
from sampler.toy.evaluate import DEFAULT_GUIDANCE, MAX_SEQUENCE_LENGTH
from sampler.toy.world import captions, sample
from trainer.config import TrainConfig
from trainer.train import train

TOY_SD = TOY_MODEL.with_name("toy-sd")  # manage.py toy_model build --family sd
MODELS = {"flux": TOY_MODEL, "sd": TOY_SD}
SHIFT = 40  # grey levels between the winner and the loser of a training pair
MARGIN = 0.015  # how far the samples' mean luminance (in [0, 1]) must move toward the winners (measured: ~0.02)


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def preference_file(path, *, lighter_wins: bool):
    """Pairs of one toy image made lighter and darker; the lighter (or the darker) one wins, on either side."""
    rows = []
    for index in range(48):
        image, meta = sample(index)
        pixels = np.asarray(image).astype(np.int16)
        lighter, darker = (Image.fromarray(np.clip(pixels + d, 0, 255).astype(np.uint8)) for d in (SHIFT, -SHIFT))
        winner, loser = (lighter, darker) if lighter_wins else (darker, lighter)
        first = index % 2 == 0
        rows.append({"caption": meta["caption"], "jpg_0": png(winner if first else loser),
                     "jpg_1": png(loser if first else winner), "label_0": 1.0 if first else 0.0,
                     "guidance": DEFAULT_GUIDANCE})
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def mean_luminance(spec: ModelSpec, params: SampleParams) -> float:
    prompts = captions() * 2
    seeds = [7_000_000_000 + i for i in range(len(prompts))]  # held out from training and from the pairs' seeds
    pipeline = load_pipeline(spec)
    pipeline.set_progress_bar_config(disable=True)
    images = render(pipeline, prompts=prompts, seeds=seeds, params=params)
    return float(np.mean([np.asarray(image.convert("L")).mean() / 255 for image in images]))


@pytest.mark.integration
@pytest.mark.parametrize("family", ["flux", "sd"])
@pytest.mark.parametrize("lighter_wins", [True, False], ids=["lighter-wins", "darker-wins"])
def test_dpo_on_a_toy_model_moves_samples_toward_the_winners(family, lighter_wins, tmp_path):
    model = MODELS[family]
    assert (model / "model_index.json").exists(), f"the pretrained toy models are committed under {model.parent}"
    data = preference_file(tmp_path / "pairs.parquet", lighter_wins=lighter_wins)
    config = TrainConfig.from_dict({"steps": 60, "batch_size": 4, "learning_rate": 1e-3, "beta": 1000, "rank": 8,
                                    "max_sequence_length": MAX_SEQUENCE_LENGTH, "heldout_fraction": 0.25,
                                    "eval_every": 20})
    result = train(config, data=data, base=model, out=tmp_path / "run", progress=False)
    steps = [json.loads(line) for line in result.metrics.read_text().splitlines()]
    late = steps[-10:]
    assert np.mean([s["loss"] for s in late]) < np.log(2)
    assert np.mean([s["implicit_accuracy"] for s in late]) > 0.5
    assert result.final["heldout_implicit_accuracy"] > 0.5

    params = SampleParams(steps=12, guidance=DEFAULT_GUIDANCE, width=64, height=64,
                          max_sequence_length=MAX_SEQUENCE_LENGTH)
    before = mean_luminance(ModelSpec(str(model)), params)
    after = mean_luminance(ModelSpec(str(model), (str(result.checkpoint),)), params)
    print(f"toy {family}: late loss {np.mean([s['loss'] for s in late]):.3f}, implicit accuracy "
          f"{np.mean([s['implicit_accuracy'] for s in late]):.2f}, mean luminance {before:.3f} → {after:.3f}")
    moved = after - before if lighter_wins else before - after
    assert moved >= MARGIN, f"mean luminance {before:.3f} → {after:.3f}"
