"""Trainer kill benchmark: SIGKILL `python -m trainer train` at random moments, resume it, compare with a run never killed.

1. builds a tiny FLUX pipeline and a small preference dataset in a temporary folder (no download, CPU);
2. trains once without interruption (the reference);
3. trains the same settings into another folder, SIGKILLing the process at a random moment of its run (anywhere:
   start-up, a step, writing a state or the final checkpoint) and starting it again, until it ends by itself; a run
   resumed near its end often finishes before the next kill, so this repeats in fresh folders until `--kills`
   kills have landed;
4. compares each run's final checkpoint with the reference's byte for byte and its per-step losses exactly, and
   counts the temporary folders that killed runs left behind;
5. prints a table and, as the last line of stdout, one JSON object with the same figures.

Target: identical checkpoint files and losses. Runs on CPU; stops by itself after `--kills` kills and one last run.

    .venv/bin/python bench/trainer_kill.py --kills 5
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG = """\
steps: {steps}
batch_size: 4
learning_rate: 0.001
beta: 2000
max_sequence_length: 32
heldout_fraction: 0.25
eval_every: 3
checkpoint_every: 2
keep_states: 2
warmup_steps: 2
lr_schedule: cosine
"""


def world_build(root: Path) -> tuple[Path, Path]:
    """A tiny FLUX pipeline and 24 pairs where the brighter image wins; returns (data, base)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from tests.models import build_tiny_flux

    def png(array) -> bytes:
        out = io.BytesIO()
        Image.fromarray(array).save(out, format="PNG")
        return out.getvalue()

    rng = np.random.default_rng(0)
    rows = []
    for index in range(24):
        dark = rng.integers(20, 120, (32, 32, 3)).astype(np.uint8)
        bright = np.clip(dark.astype(np.int16) + 90, 0, 255).astype(np.uint8)
        first = index % 2 == 0
        rows.append({"caption": ["a red circle", "a blue square"][index % 2], "jpg_0": png(bright if first else dark),
                     "jpg_1": png(dark if first else bright), "label_0": 1.0 if first else 0.0, "guidance": 3.5})  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), root / "pairs.parquet")
    return root / "pairs.parquet", build_tiny_flux(root / "flux")


def command(*, config: Path, data: Path, base: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "trainer", "train", "--config", str(config), "--data", str(data), "--base", str(base),
            "--out", str(out)]  # fmt: skip


def steps_logged(out: Path) -> int:
    try:
        return sum(1 for line in (out / "metrics.jsonl").read_text().splitlines() if line.endswith("}"))
    except OSError:
        return 0


def run_to_end(cmd: list[str], log: Path) -> float:
    started = time.monotonic()
    with log.open("a") as out:
        done = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"The trainer failed (exit status {done.returncode}); see {log}.")
    return time.monotonic() - started


def run_with_kills(
    cmd: list[str], *, out_dir: Path, steps: int, kills: int, step_s: float, startup_s: float, rng: random.Random,
    log: Path,
) -> list[str]:
    """Start, SIGKILL at a random moment, start again, until a run ends by itself or `kills` kills; then run to the
    end. A moment is a random step still to come (0: during start-up) plus a random part of a step's time, so kills
    land in start-up, in steps, in writing states (every 2 steps) and in writing the final checkpoint. Returns where
    each kill landed, as "step N + x s"."""
    moments: list[str] = []
    with log.open("a") as out:
        while len(moments) < kills:
            process = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            target = rng.randint(0, steps - steps_logged(out_dir))
            delay = rng.uniform(0.0, startup_s if target == 0 else step_s)
            reached = steps_logged(out_dir) + target if target else 0
            while process.poll() is None and target and steps_logged(out_dir) < reached:
                time.sleep(0.005)
            try:
                process.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                moments.append(f"step {reached} + {delay:.2f} s" if target else f"start-up + {delay:.2f} s")
                continue
            if process.returncode != 0:
                sys.exit(f"The trainer failed (exit status {process.returncode}); see {log}.")
            return moments  # it finished before the kill
    run_to_end(cmd, log)
    return moments


def reference_run(cmd: list[str], *, out_dir: Path, log: Path) -> tuple[float, float, float]:
    """The uninterrupted run; returns (its seconds, start-up seconds before the first step, seconds per step)."""
    started = time.monotonic()
    with log.open("a") as out:
        process = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        while process.poll() is None and steps_logged(out_dir) == 0:
            time.sleep(0.005)
        first = time.monotonic()
        if process.wait() != 0:
            sys.exit(f"The trainer failed (exit status {process.returncode}); see {log}.")
    ended = time.monotonic()
    steps = max(1, steps_logged(out_dir) - 1)
    return ended - started, first - started, (ended - first) / steps


def compare(reference: Path, resumed: Path) -> dict:
    ref_files = {p.relative_to(reference): p.read_bytes() for p in (reference / "checkpoint").rglob("*") if p.is_file()}
    new_files = {p.relative_to(resumed): p.read_bytes() for p in (resumed / "checkpoint").rglob("*") if p.is_file()}
    weights = [name for name in ref_files if name.suffix == ".safetensors"]
    ref_losses = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    new_losses = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    pairs = list(zip(ref_losses, new_losses))
    return {
        "checkpoint_files": len(ref_files),
        "weights_identical": bool(weights) and all(ref_files[n] == new_files.get(n) for n in weights),
        "checkpoint_identical": ref_files.keys() == new_files.keys()
        and all(ref_files[n] == new_files[n] for n in ref_files),
        "losses_identical": len(ref_losses) == len(new_losses) and all(a["loss"] == b["loss"] for a, b in pairs),
        "max_loss_difference": max((abs(a["loss"] - b["loss"]) for a, b in pairs), default=0.0),
        "leftover_temp_folders": sum(1 for p in resumed.rglob("*") if ".tmp-" in p.name),
    }


def table(result: dict) -> str:
    rows = [
        ("kills", f"{len(result['kills_at'])}"),
        *((f"  kill {i + 1}", where) for i, where in enumerate(result["kills_at"])),
        ("killed runs", f"{result['runs']}  (kills each: {result['kills_per_run']}; each resumed to its end)"),
        ("reference run s", f"{result['reference_s']:.1f}"),
        ("weights identical", str(result["weights_identical"])),
        ("checkpoint identical", f"{result['checkpoint_identical']}  ({result['checkpoint_files']} files, byte for byte)"),
        ("losses identical", f"{result['losses_identical']}  (max difference {result['max_loss_difference']:.3g})"),
        ("leftover temp folders", str(result["leftover_temp_folders"])),
        ("steps", str(result["steps"])),
    ]
    rows += [(f"target {name}", "PASS" if ok else "FAIL") for name, ok in result["targets"].items()]
    width = max(len(name) for name, _ in rows)
    return "\n".join(["== trainer kill ==", *(f"{name:<{width}}  {value}" for name, value in rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=5, help="SIGKILLs in all [5]")
    parser.add_argument("--steps", type=int, default=12, help="training steps (a state every 2) [12]")
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill moments [random]")
    args = parser.parse_args()
    if not 1 <= args.kills <= 50 or not 2 <= args.steps <= 200:
        sys.exit("--kills must be between 1 and 50 and --steps between 2 and 200.")
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="chisel-bench-trainer-kill-"))
    try:
        print("Building the tiny model and dataset…", file=sys.stderr)
        data, base = world_build(root)
        config = root / "config.yaml"
        config.write_text(CONFIG.format(steps=args.steps))
        log = root / "trainer.log"
        print("Training the reference run…", file=sys.stderr)
        reference_s, startup_s, step_s = reference_run(
            command(config=config, data=data, base=base, out=root / "reference"), out_dir=root / "reference", log=log
        )
        print(f"…{reference_s:.1f} s ({startup_s:.1f} s start-up, {step_s:.2f} s a step). Training again with "
              f"{args.kills} kills…", file=sys.stderr)  # fmt: skip
        # Runs killed and resumed until they end; a run resumed near its end finishes before the next kill, so
        # several runs (each in its own folder, each compared with the reference) share the kills.
        moments: list[float] = []
        runs: list[dict] = []
        while len(moments) < args.kills and len(runs) < 3 * args.kills:
            out = root / f"killed-{len(runs)}"
            got = run_with_kills(
                command(config=config, data=data, base=base, out=out), out_dir=out, steps=args.steps,
                kills=args.kills - len(moments), step_s=step_s, startup_s=startup_s, rng=rng, log=log,
            )  # fmt: skip
            moments += got
            runs.append({"kills": len(got), **compare(root / "reference", out)})
        result = {
            name: all(run[name] for run in runs)
            for name in ("weights_identical", "checkpoint_identical", "losses_identical")
        }
        result |= {
            "runs": len(runs),
            "kills_per_run": [run["kills"] for run in runs],
            "checkpoint_files": runs[0]["checkpoint_files"],
            "max_loss_difference": max(run["max_loss_difference"] for run in runs),
            "leftover_temp_folders": sum(run["leftover_temp_folders"] for run in runs),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result |= {"kills_at": moments, "reference_s": round(reference_s, 1), "steps": args.steps}
    result["targets"] = {
        "weights identical": result["weights_identical"],
        "losses identical": result["losses_identical"],
    }
    print(table(result) + "\n", flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
