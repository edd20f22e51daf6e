"""bench/gpu_smoke.py on the toy FLUX model on the CPU: one pair sampled, one DPO step, time and peak memory."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def smoke(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_smoke.py"), *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def test_the_smoke_run_samples_a_pair_and_takes_a_dpo_step_with_its_time_and_memory():
    done = smoke("models/toy-flux", "--steps", "4")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("what") and "one DPO step" in lines[2]
    result = json.loads(lines[-1])
    assert result["kind"] == "flux" and result["sampling"]["width"] == 64  # the toy's own chisel.json
    assert result["sampling"]["steps"] == 4
    for key in ("sample_pair_s", "dpo_step_s", "sample_peak_mb", "dpo_peak_mb"):
        assert result[key] > 0, key
    assert abs(result["dpo_loss"] - 0.6931) < 1e-3  # one step from an untrained adapter: ln 2


def test_a_folder_that_is_no_model_is_refused_in_one_line(tmp_path):
    done = smoke(str(tmp_path))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().count("\n") == 0 and "model_index.json is missing" in done.stderr
