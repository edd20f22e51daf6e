"""Drift bench: how one child's same-seed oracle score answers to the size, the sign and the direction of its move.

The loop bench judges the random-label control by the oracle's same-seed score of its last trained child against the
base (docs/training.md). This bench takes one such child, a LoRA folder (`bench/loop.py` leaves its run folder,
/tmp/chisel-loop-*/checkpoints/loop-random/round-N/job-M/checkpoint-attempt-1), and judges against the base, on the
loop bench's 120 held-out (prompt, seed) pairs:

- the LoRA scaled by each of `--scales`, and reversed (x -1);
- random moves of the same size (`--random-moves`: each lora_B redrawn from a Gaussian with the same norm, lora_A kept);
- the child with the base taking over its last k of the sampling steps, for each k of `--handover`.

Each line gives the same-seed score (a tie counts half), the score on the seeds whose base background is flat and on
the others, and the median relative change of the background spread on each. Prints a table and, as its last line,
one JSON object with the same figures.

Session 17, `--lora` a random-label child of `--lr 1.5e-3 --train-steps 900 --only-control` (docs/training.md,
*Session 17*; under a minute on 2 cores):

    variant     same    flat seeds  spread   textured seeds  spread
    x 0.125     54.2%
    x 0.25      56.2%
    x 0.5       58.3%
    x 1         62.1%   79.4%       +9.8%    43.0%           -2.5%
    x -1        58.3%
    random 1-3  48.8%, 39.2%, 50.8%

For a random-label child scoring 82.1% (`--scales 1 --random-moves 0 --handover 1,3,6,10`), the base taking over the
last 1, 3, 6 and 10 of 20 steps: 78.8%, 75.8%, 72.5% and 65.0%, its flat backgrounds' spread rise falling from +31% to
+26%, +18%, +11% and +5.6%; reversed, 35.4%. For a real `textured` round-1 child (93.3%): 93.3%, 92.1% and 91.2% with
the base taking the last 3, 6 and 10 steps, its flat backgrounds' spread rise from +133% to +124%, +101% and +70%.
"""

import argparse
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sampler.generate import pipeline_kwargs  # noqa: E402
from sampler.loading import ModelLoadError, pipelines  # noqa: E402
from sampler.model_defaults import ModelDefaultsError, read_model_defaults  # noqa: E402
from sampler.spec import ModelSpec, SampleParams  # noqa: E402
from sampler.toy import defaults  # noqa: E402
from sampler.toy.checkers import read  # noqa: E402
from sampler.toy.oracles import SCORES, judge  # noqa: E402

SAME_SEEDS = 2_000_000_000  # bench/loop.py's held-out seeds
WEIGHTS = "pytorch_lora_weights.safetensors"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "toy-flux")
    parser.add_argument("--lora", type=Path, required=True, help="the child's LoRA folder")
    parser.add_argument("--oracle", default="textured", choices=tuple(SCORES))
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--scales", default="0.125,0.25,0.5,1", help="comma-separated LoRA weights")
    parser.add_argument("--random-moves", type=int, default=3)
    parser.add_argument("--handover", default="", help="comma-separated step counts the base takes over, e.g. 1,3,6,10")
    return parser.parse_args(argv)


def variant_folders(lora: Path, out: Path, random_moves: int) -> dict[str, Path]:
    """The LoRA reversed and redrawn at random with the same per-matrix norms, each a folder under `out`."""
    weights = load_file(lora / WEIGHTS)

    def write(name: str, change) -> Path:
        folder = out / name
        shutil.copytree(lora, folder)
        save_file({k: (change(v) if "lora_B" in k else v).contiguous() for k, v in weights.items()}, folder / WEIGHTS)
        return folder

    folders = {"x -1": write("reversed", lambda v: -v)}
    for draw in range(1, random_moves + 1):
        generator = torch.Generator().manual_seed(draw)
        folders[f"random {draw}"] = write(
            f"random-{draw}", lambda v, g=generator: torch.randn(v.shape, generator=g) * v.norm() / v.numel() ** 0.5)
    return folders


def render(pipeline, prompts, seeds, params: SampleParams, handover: int = 0) -> list:
    """Images, the LoRA switched off for the last `handover` steps (the base finishing the child's trajectory)."""
    def switch(pipe, step, timestep, kwargs):
        if handover and step + 1 == params.steps - handover:
            pipe.disable_lora()
        return kwargs

    images = []
    for start in range(0, len(prompts), 40):
        chunk = slice(start, start + 40)
        if handover:
            pipeline.enable_lora()
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds[chunk]]
        with torch.inference_mode():
            images += pipeline(prompt=prompts[chunk], generator=generators, output_type="pil",
                               callback_on_step_end=switch if handover else None,
                               **pipeline_kwargs(pipeline, params)).images
    if handover:
        pipeline.enable_lora()
    return images


def figures(oracle: str, child: list, base: list, flat: np.ndarray) -> dict:
    rng = random.Random(0)
    verdicts = [judge(oracle, c, b, rng=rng) for c, b in zip(child, base, strict=True)]
    scores = np.array([{"left": 1.0, "tie": 0.5, "right": 0.0}[v] for v in verdicts])
    change = np.array([read(c).spread for c in child]) / np.array([read(b).spread for b in base]) - 1
    return {"same_seed": float(scores.mean()),
            "flat_seeds": float(scores[flat].mean()) if flat.any() else None,
            "textured_seeds": float(scores[~flat].mean()) if (~flat).any() else None,
            "flat_spread_change": float(np.median(change[flat])) if flat.any() else None,
            "textured_spread_change": float(np.median(change[~flat])) if (~flat).any() else None}


def main(argv=None) -> dict:
    args = parse_args(argv)
    if not (args.lora / WEIGHTS).is_file():
        sys.exit(f"No LoRA at {args.lora} (expected {WEIGHTS} there).")
    try:
        return run(args)
    except (ModelLoadError, ModelDefaultsError) as exc:
        sys.exit(str(exc).splitlines()[0])


def run(args: argparse.Namespace) -> dict:
    params = SampleParams(**read_model_defaults(args.model).sampling)
    handovers = [int(s) for s in args.handover.split(",") if s]
    if any(not 0 < steps < params.steps for steps in handovers):
        sys.exit(f"--handover takes step counts from 1 to {params.steps - 1} (the model samples {params.steps} steps).")
    _, heldout = defaults.split_captions()
    prompts = [heldout[i % len(heldout)] for i in range(args.images)]
    seeds = [SAME_SEEDS + i for i in range(args.images)]
    base_images = render(pipelines.get(ModelSpec(str(args.model))), prompts, seeds, params)
    flat = np.array([read(image).background == "flat" for image in base_images])
    rows = {}
    with tempfile.TemporaryDirectory(prefix="chisel-drift-") as tmp:
        pipeline = pipelines.get(ModelSpec(str(args.model), (str(args.lora),)))
        for scale in [float(s) for s in args.scales.split(",") if s]:
            pipeline.set_adapters(["chisel_0"], adapter_weights=[scale])
            rows[f"x {scale:g}"] = figures(args.oracle, render(pipeline, prompts, seeds, params), base_images, flat)
        pipeline.set_adapters(["chisel_0"], adapter_weights=[1.0])
        for steps in handovers:
            rows[f"base last {steps}"] = figures(
                args.oracle, render(pipeline, prompts, seeds, params, handover=steps), base_images, flat)
        for name, folder in variant_folders(args.lora, Path(tmp), args.random_moves).items():
            child = render(pipelines.get(ModelSpec(str(args.model), (str(folder),))), prompts, seeds, params)
            rows[name] = figures(args.oracle, child, base_images, flat)
    report(rows, int(flat.sum()), len(flat))
    return rows


def report(rows: dict, flat: int, total: int) -> None:
    def share(x):
        return "—" if x is None else f"{x:.1%}"

    def change(x):
        return "—" if x is None else f"{x:+.1%}"

    print(f"{total} held-out (prompt, seed) pairs, {flat} with a flat background in the base's image")
    print(f"{'variant':<14}{'same':>8}{'flat seeds':>12}{'spread':>9}{'textured seeds':>16}{'spread':>9}")
    for name, row in rows.items():
        print(f"{name:<14}{share(row['same_seed']):>8}{share(row['flat_seeds']):>12}"
              f"{change(row['flat_spread_change']):>9}{share(row['textured_seeds']):>16}"
              f"{change(row['textured_spread_change']):>9}")
    print(json.dumps({"flat_seeds": flat, "images": total, "variants": rows}))


if __name__ == "__main__":
    main()
