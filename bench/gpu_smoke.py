"""A model folder's smoke test on this machine's accelerator: one pair sampled and one DPO step, with time and peak
memory of each (CUDA's max allocated where there is a GPU, else the process's peak RSS on the CPU).

The model's own defaults (its chisel.json: size, steps, guidance, training settings) apply unless overridden, so a
toy runs in seconds on a CPU and a real model at its real settings on a GPU.

    .venv/bin/python bench/gpu_smoke.py models/toy-flux
    .venv/bin/python bench/gpu_smoke.py /models/FLUX.1-Krea-dev --train-setting gradient_checkpointing=true

Prints a table, then one JSON line.
"""

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def peak_mb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process's peak so far (Linux: KiB)


def reset_peak(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def sample_pair(model: Path, params, prompt: str):
    from sampler.loading import PipelineCache
    from sampler.pairs import sample_train_pairs
    from sampler.spec import ModelSpec, PairRequest

    cache = PipelineCache()
    pairs = sample_train_pairs(cache, ModelSpec(base_path=str(model)), [PairRequest(prompt=prompt, seed=0)], params,
                               max_attempts=1, near_duplicate_bits=-1)
    return pairs[0]  # the cache, and the pipeline with it, go when this returns


def write_dataset(pair, path: Path, guidance: float) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = {"caption": pair.request.prompt, "jpg_0": pair.image_a.png, "jpg_1": pair.image_b.png, "label_0": 1.0,
           "label_1": 0.0, "guidance": guidance}
    pq.write_table(pa.Table.from_pylist([row, {**row, "label_0": 0.0, "label_1": 1.0}]), path)
    return path


def parse_settings(items: list[str]) -> dict:
    settings = {}
    for item in items:
        key, _, value = item.partition("=")
        settings[key] = json.loads(value) if value not in ("", None) else value
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a diffusers model folder (model_index.json, maybe chisel.json)")
    parser.add_argument("--steps", type=int, help="sampling steps (default: the model's chisel.json, else 28)")
    parser.add_argument("--size", type=int, help="width and height in pixels (default: the model's, else 1024)")
    parser.add_argument("--guidance", type=float)
    parser.add_argument("--prompt", default="a red circle on a textured background")
    parser.add_argument("--train-setting", action="append", default=[], metavar="KEY=JSON",
                        help="a TrainConfig field for the DPO step, e.g. gradient_checkpointing=true, rank=16")
    args = parser.parse_args(argv)

    from sampler.model_defaults import ModelDefaultsError, read_model_defaults
    from sampler.model_index import ModelLoadError, model_kind

    try:
        kind = model_kind(args.model)
        defaults = read_model_defaults(args.model)
    except (ModelLoadError, ModelDefaultsError) as exc:
        print(f"gpu_smoke: {exc}", file=sys.stderr)
        return 1
    try:
        train_settings = parse_settings(args.train_setting)
    except ValueError as exc:
        print(f"gpu_smoke: a --train-setting value must be JSON ({exc}).", file=sys.stderr)
        return 1

    import torch

    from sampler.spec import SampleParams
    from trainer.config import TrainConfig
    from trainer.train import train

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sampling = {**defaults.sampling, **{k: v for k, v in (("steps", args.steps), ("guidance", args.guidance),
                                                           ("width", args.size), ("height", args.size)) if v}}
    params = SampleParams(**sampling)
    results = {"model": str(args.model), "kind": kind, "device": device,
               "gpu": torch.cuda.get_device_name() if device == "cuda" else None, "sampling": params.as_dict()}

    reset_peak(device)
    started = time.perf_counter()
    pair = sample_pair(args.model, params, args.prompt)
    results["sample_pair_s"] = round(time.perf_counter() - started, 3)
    results["sample_peak_mb"] = round(peak_mb(device), 1)

    try:
        config = TrainConfig.from_dict({**defaults.training, "steps": 1, "batch_size": 1, "heldout_fraction": 0,
                                        "checkpoint_every": 10, "eval_every": 10, "keep": "last",
                                        "carry_over_alpha": None,  # one step holds nothing out to test
                                        "max_sequence_length": params.max_sequence_length, **train_settings})
    except (TypeError, ValueError) as exc:
        print(f"gpu_smoke: {exc}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="chisel-gpu-smoke-") as folder:
        data = write_dataset(pair, Path(folder) / "pairs.parquet", params.guidance)
        reset_peak(device)
        started = time.perf_counter()
        result = train(config, data=data, base=args.model, out=Path(folder) / "run", progress=False)
        results["dpo_step_s"] = round(time.perf_counter() - started, 3)
        results["dpo_peak_mb"] = round(peak_mb(device), 1)
    results["dpo_loss"] = result.final.get("loss")
    results["training"] = {"rank": config.rank, "beta": config.beta, "learning_rate": config.learning_rate,
                           "gradient_checkpointing": config.gradient_checkpointing, "adam_8bit": config.adam_8bit,
                           "mixed_precision": config.mixed_precision}

    memory = "CUDA max allocated" if device == "cuda" else "process peak RSS"
    print(f"{'what':<26}{'time (s)':>10}{'peak (MiB)':>12}   ({memory}, {device})")
    print(f"{'one pair, ' + str(params.width) + ' px, ' + str(params.steps) + ' steps':<26}"
          f"{results['sample_pair_s']:>10.2f}{results['sample_peak_mb']:>12.0f}")
    print(f"{'one DPO step (load+step)':<26}{results['dpo_step_s']:>10.2f}{results['dpo_peak_mb']:>12.0f}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
