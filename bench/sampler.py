"""Pairs per second through Chisel's sampler versus bare pipeline calls on the same model and batches."""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sampler.generate import pipeline_kwargs  # noqa: E402
from sampler.loading import PipelineCache, default_device  # noqa: E402
from sampler.pairs import PairRequest, sample_train_pairs, train_seeds  # noqa: E402
from sampler.spec import ModelSpec, SampleParams  # noqa: E402

PROMPTS = ["a red circle", "a blue square", "a green triangle", "a yellow circle"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="a diffusers folder (default: models/toy-flux, else a tiny random FLUX)")
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8, help="pairs per call (2× images)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each path; the best counts")
    args = parser.parse_args()

    model = args.model or Path(__file__).resolve().parent.parent / "models" / "toy-flux"
    if not (model / "model_index.json").exists():
        from sampler.toy.build import save, tiny_flux

        model = save(tiny_flux(PROMPTS[0].split() + "blue square green triangle yellow".split()),
                     Path(tempfile.mkdtemp()) / "tiny-flux")
    spec = ModelSpec(str(model))
    params = SampleParams(steps=args.steps, guidance=3.5, width=args.size, height=args.size, max_sequence_length=32)
    cache = PipelineCache()
    pipeline = cache.get(spec)
    batches = [
        [PairRequest(PROMPTS[i % len(PROMPTS)], i) for i in range(start, min(start + args.batch, args.pairs))]
        for start in range(0, args.pairs, args.batch)
    ]

    def through_sampler() -> int:
        # near_duplicate_bits=-1: no resampling, so both paths render exactly the same images.
        return sum(len(sample_train_pairs(cache, spec, batch, params, near_duplicate_bits=-1)) for batch in batches)

    def bare() -> int:
        for batch in batches:
            seeds = [s for r in batch for s in train_seeds(r.seed, 0)]
            generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
            with torch.inference_mode():
                pipeline(prompt=[r.prompt for r in batch for _ in range(2)], generator=generators, output_type="pil",
                         **pipeline_kwargs(pipeline, params))
        return args.pairs

    through_sampler(), bare()  # warm-up
    best = {"sampler": float("inf"), "bare": float("inf")}
    for _ in range(args.repeats):  # interleaved, so a busy moment on the machine hits both paths alike
        for name, run in (("sampler", through_sampler), ("bare", bare)):
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    timings = {name: args.pairs / seconds for name, seconds in best.items()}
    device, dtype = default_device()
    figures = {
        "model": str(model), "device": str(device), "dtype": str(dtype).replace("torch.", ""),
        "pairs": args.pairs, "batch_pairs": args.batch, "steps": args.steps, "size": args.size,
        "sampler_pairs_per_s": round(timings["sampler"], 3), "bare_pairs_per_s": round(timings["bare"], 3),
        "ratio": round(timings["sampler"] / timings["bare"], 3), "target_ratio": 0.9,
    }
    print(f"Sampler vs bare pipeline ({figures['device']}, {figures['dtype']}, {args.size}px, {args.steps} steps, "
          f"{args.batch} pairs per call)")
    print(f"  {'path':<10} {'pairs/s':>10}")
    print(f"  {'sampler':<10} {figures['sampler_pairs_per_s']:>10}")
    print(f"  {'bare':<10} {figures['bare_pairs_per_s']:>10}")
    print(f"  ratio {figures['ratio']} (target ≥ 0.9: {'PASS' if figures['ratio'] >= 0.9 else 'FAIL'})")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
