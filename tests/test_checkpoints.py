"""Leftovers of killed training runs: stale `.<name>.tmp-<pid>` folders are cleaned, live ones kept."""

import os
import subprocess
import sys
import time

from trainer.checkpoints import clean_stale_temps


def a_dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_temps_of_dead_or_old_runs_are_removed_and_live_ones_kept(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        dead = tmp_path / f".checkpoint.tmp-{a_dead_pid()}"
        old = tmp_path / f".step-000100.tmp-{live.pid}"
        running = tmp_path / f".checkpoint.tmp-{live.pid}"
        replaced = tmp_path / f".checkpoint.old-{a_dead_pid()}"
        mine = tmp_path / f".checkpoint.tmp-{os.getpid()}"
        keep = [tmp_path / "checkpoint", tmp_path / "states", tmp_path / ".hidden"]
        for folder in (dead, old, running, replaced, mine, *keep):
            folder.mkdir()
            (folder / "weights.bin").write_bytes(b"x")
        day_ago = time.time() - 25 * 3600
        os.utime(old, (day_ago, day_ago))
        removed = clean_stale_temps(tmp_path, max_age_hours=24)
        assert sorted(removed) == sorted([dead, old, replaced])
        assert sorted(p for p in tmp_path.iterdir()) == sorted([running, mine, *keep])
    finally:
        live.kill()
        live.wait()


def test_a_missing_folder_is_nothing_to_clean(tmp_path):
    assert clean_stale_temps(tmp_path / "absent") == []
