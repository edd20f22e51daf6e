"""Atomic checkpoint folders: written in a temporary folder, fsynced, renamed, then marked complete."""

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

COMPLETE = "COMPLETE"


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def write_atomically(target: Path, write: Callable[[Path], None], *, meta: dict | None = None) -> Path:
    """Call `write(temp_folder)`, then make the folder appear at `target` whole, or not at all.

    A reader trusts only folders holding the COMPLETE marker, which is the last thing written.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    try:
        write(temp)
        _fsync_tree(temp)
        if target.exists():
            stale = target.parent / f".{target.name}.old-{os.getpid()}"
            target.rename(stale)
            shutil.rmtree(stale)
        temp.rename(target)
        (target / COMPLETE).write_text(json.dumps(meta or {}))
        _fsync_tree(target)
        _fsync_dir(target.parent)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return target


_TEMP = re.compile(r"^\..+\.(tmp|old)-(\d+)$")  # write_atomically's folders: `.<name>.tmp-<pid>`, `.<name>.old-<pid>`


def clean_stale_temps(folder: Path, *, max_age_hours: float = 24.0) -> list[Path]:
    """Delete write_atomically's leftovers in `folder` from killed runs: those whose process is gone,
    or older than `max_age_hours` (the pid may have been reused since). Returns what was deleted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.iterdir():
        match = _TEMP.match(path.name)
        if not match or not path.is_dir():
            continue
        pid = int(match.group(2))
        old = time.time() - path.stat().st_mtime > max_age_hours * 3600
        if pid != os.getpid() and (old or not _alive(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def is_complete(folder: Path) -> bool:
    return (Path(folder) / COMPLETE).is_file()


def complete_states(states: Path) -> list[tuple[int, Path]]:
    """Resumable training states (`step-000100/`) that were written whole, oldest first."""
    if not states.is_dir():
        return []
    found = []
    for folder in states.iterdir():
        if folder.name.startswith("step-") and is_complete(folder):
            found.append((int(folder.name.removeprefix("step-")), folder))
    return sorted(found)


def prune_states(states: Path, keep: int) -> None:
    """Delete all but the newest `keep` complete states (only after a newer one is safely written), and
    any half-written leftovers."""
    complete = complete_states(states)
    for _, folder in complete[:-keep]:
        shutil.rmtree(folder)
    for folder in states.iterdir():
        if folder.name.startswith(".") or (folder.is_dir() and not is_complete(folder)):
            shutil.rmtree(folder, ignore_errors=True)
