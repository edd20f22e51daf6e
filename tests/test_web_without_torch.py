"""The web tier never imports torch, diffusers, transformers or peft: pages, API calls, exports and launches."""

import json
import subprocess
import sys
from pathlib import Path

WALK = Path(__file__).with_name("web_tier_walk.py")


def test_serving_every_page_queueing_an_export_and_launching_a_round_imports_no_ml_package(tmp_path):
    done = subprocess.run([sys.executable, str(WALK), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report["statuses"]) > 50  # the walk went through
    assert report["imported"] == {}, "\n\n".join(f"{name} imported from:\n{stack}"
                                                 for name, stack in report["imported"].items())
