"""Where exports and training runs are kept (this host's folders, or the S3 bucket of CHISEL_STORAGE=s3), and the
staging that lets the ML side (`sampler/`, `trainer/`: local folders only) read and publish LoRA checkpoints.

With CHISEL_STORAGE=local a checkpoint's `lora_path` is the folder on this host, as it always was. With s3 it is a
key under the bucket's checkpoints/ prefix: a worker uploads the folder's files and then MANIFEST.json, last, so a
folder without its manifest is never taken for a checkpoint; a host that needs the checkpoint downloads it once
into its cache (CHISEL_CACHE_ROOT) and reads it from there. A training run's resumable states go the same way
(RunSync), so that a job's next attempt resumes on any host.
"""

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage

logger = logging.getLogger(__name__)

MANIFEST = "MANIFEST.json"  # written last: the folder is a checkpoint once it is there


class StorageError(RuntimeError):
    """A file the loop needs is missing or incomplete in storage."""


def object_storage() -> bool:
    """True when files live in the S3 bucket (CHISEL_STORAGE=s3), shared by every host."""
    return settings.CHISEL_STORAGE == "s3"


def _bucket(prefix: str) -> Storage:
    from storages.backends.s3 import S3Storage

    return S3Storage(**settings.CHISEL_S3, location="/".join(filter(None, [settings.CHISEL_S3_PREFIX, prefix])))


def export_storage() -> Storage:
    """Finished exports (read by the download API on any web host)."""
    return _bucket("exports") if object_storage() else FileSystemStorage(location=settings.CHISEL_EXPORT_ROOT)


def checkpoint_storage() -> Storage:
    """Training runs: their datasets, metrics and LoRA checkpoint folders."""
    return _bucket("checkpoints") if object_storage() else FileSystemStorage(location=settings.CHISEL_CHECKPOINT_ROOT)


def folder_upload(storage: Storage, folder: Path, prefix: str, *, manifest: bool = False) -> list[str]:
    """Copy every file under `folder` to `prefix/…` in `storage` (names relative to the folder); with `manifest`,
    then MANIFEST.json (each file's size and sha256), last. Returns the names written."""
    written = []
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name != MANIFEST)
    listing = {}
    for path in files:
        relative = path.relative_to(folder).as_posix()
        with path.open("rb") as handle:
            written.append(storage.save(f"{prefix}/{relative}", File(handle, name=path.name)))
        listing[relative] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    if manifest:
        written.append(storage.save(f"{prefix}/{MANIFEST}", ContentFile(json.dumps({"files": listing}).encode())))
    return written


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_publish(*, run_dir: Path, lora: Path, name: str | None = None) -> str:
    """The `lora_path` to record for a LoRA folder a training run wrote at `lora` inside `run_dir`: the folder
    itself with local storage; with object storage, the run's dataset and metrics and then the LoRA folder
    (manifest last) are uploaded under the run's key (the folder as `name`, default its own), and its key is
    returned."""
    if not object_storage():
        return str(lora)
    run_key = Path(run_dir).resolve().relative_to(Path(settings.CHISEL_CHECKPOINT_ROOT).resolve()).as_posix()
    storage = checkpoint_storage()
    name = name or lora.name
    if storage.exists(f"{run_key}/{name}/{MANIFEST}"):
        raise StorageError(f"{run_key}/{name} is already a checkpoint in storage; not overwritten.")
    for extra in ("data", "metrics.jsonl"):
        path = Path(run_dir) / extra
        if path.is_dir():
            folder_upload(storage, path, f"{run_key}/{extra}")
        elif path.is_file():
            with path.open("rb") as handle:
                storage.save(f"{run_key}/{extra}", File(handle, name=extra))
    folder_upload(storage, lora, f"{run_key}/{name}", manifest=True)
    return f"{run_key}/{name}"


def lora_local(lora_path: str) -> str:
    """A local folder holding the LoRA checkpoint `lora_path` names: a host path as it is; a storage key from this
    host's cache, downloaded first if the cache lacks it (verified against its manifest, moved into place whole)."""
    if Path(lora_path).is_absolute():
        return lora_path
    key = PurePosixPath(lora_path)
    if ".." in key.parts:
        raise StorageError(f"{lora_path} is not a checkpoint key.")
    if not object_storage():
        return str(Path(settings.CHISEL_CHECKPOINT_ROOT) / key)
    target = Path(settings.CHISEL_CACHE_ROOT) / "checkpoints" / key
    if (target / MANIFEST).is_file():
        return str(target)
    folder_download(checkpoint_storage(), str(key), target)
    return str(target)


def folder_download(storage: Storage, prefix: str, target: Path) -> Path:
    """Copy the folder `prefix` of `storage`, as its MANIFEST.json lists it, to `target` whole: the files are
    downloaded into a temporary folder beside it, checked against the manifest, then renamed into place (a copy
    another process put there first is kept). StorageError when there is no manifest or a file does not match."""
    try:
        with storage.open(f"{prefix}/{MANIFEST}", "rb") as handle:
            listing = json.loads(handle.read())["files"]
    except (FileNotFoundError, OSError, ValueError, KeyError) as exc:
        raise StorageError(f"The checkpoint {prefix} has no readable {MANIFEST} in storage: it is not a complete "
                           f"checkpoint ({type(exc).__name__}).") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        for relative, expected in listing.items():
            local = temp / relative
            local.parent.mkdir(parents=True, exist_ok=True)
            with storage.open(f"{prefix}/{relative}", "rb") as source, local.open("wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            if local.stat().st_size != expected["size"] or _sha256(local) != expected["sha256"]:
                raise StorageError(f"{prefix}/{relative} in storage does not match its manifest.")
        (temp / MANIFEST).write_text(json.dumps({"files": listing}))
        try:
            os.rename(temp, target)
        except OSError:
            if not (target / MANIFEST).is_file():  # not another process's complete copy: a real failure
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return target


class RunSync:
    """A training run's resumable states kept in object storage, so that the next attempt of a job resumes where the
    last one saved, on whichever host it runs. `push()` (after every step) uploads a state the trainer completed,
    manifest last, with the run's metrics.jsonl, and deletes the older states; `fetch()` (before training) brings
    the newest one into the local run folder when it is newer than what the folder holds. With local storage both
    do nothing: the attempts of a job share the run folder itself."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = object_storage()
        self.pushed: set[str] = set()

    def _key(self) -> str:
        return self.run_dir.resolve().relative_to(Path(settings.CHISEL_CHECKPOINT_ROOT).resolve()).as_posix()

    def _remote_states(self, storage: Storage) -> list[str]:
        """Names of the complete states in storage (`step-000100`), oldest first."""
        folders, _ = storage.listdir(f"{self._key()}/states")
        return sorted(name for name in folders
                      if name.startswith("step-") and storage.exists(f"{self._key()}/states/{name}/{MANIFEST}"))

    def fetch(self) -> int | None:
        """Download the newest complete state from storage if it is newer than the local ones; its step, or None."""
        if not self.enabled:
            return None
        from trainer.checkpoints import complete_states

        storage = checkpoint_storage()
        remote = self._remote_states(storage)
        local = complete_states(self.run_dir / "states")
        if not remote or (local and local[-1][0] >= int(remote[-1].removeprefix("step-"))):
            return None
        name = remote[-1]
        shutil.rmtree(self.run_dir / "states" / name, ignore_errors=True)  # an incomplete local copy
        folder_download(storage, f"{self._key()}/states/{name}", self.run_dir / "states" / name)
        metrics = f"{self._key()}/metrics.jsonl"
        if storage.exists(metrics):
            with storage.open(metrics, "rb") as source, (self.run_dir / "metrics.jsonl").open("wb") as out:
                shutil.copyfileobj(source, out)
        self.pushed.add(name)
        return int(name.removeprefix("step-"))

    def push(self) -> None:
        """Upload the newest complete local state if it is not in storage yet. A failure (the store unreachable, a
        state pruned while it was read) is logged and tried again at the next call: training goes on."""
        if not self.enabled:
            return
        try:
            self._push()
        except Exception as exc:  # noqa: BLE001 - a state not uploaded costs a longer resume, never the run
            logger.warning("Run %s: a training state was not uploaded (%s); retrying after the next step",
                           self.run_dir, " ".join(f"{type(exc).__name__}: {exc}".split())[:300])

    def _push(self) -> None:
        from trainer.checkpoints import complete_states

        local = complete_states(self.run_dir / "states")
        if not local or local[-1][1].name in self.pushed:
            return
        folder, storage = local[-1][1], checkpoint_storage()
        folder_upload(storage, folder, f"{self._key()}/states/{folder.name}", manifest=True)
        metrics = self.run_dir / "metrics.jsonl"
        if metrics.is_file():
            with metrics.open("rb") as handle:
                storage.save(f"{self._key()}/metrics.jsonl", File(handle, name="metrics.jsonl"))
        self.pushed.add(folder.name)
        for name in self._remote_states(storage):
            if name < folder.name:
                self._delete_state(storage, f"{self._key()}/states/{name}")

    @staticmethod
    def _delete_state(storage: Storage, prefix: str) -> None:
        with storage.open(f"{prefix}/{MANIFEST}", "rb") as handle:
            listing = json.loads(handle.read())["files"]
        storage.delete(f"{prefix}/{MANIFEST}")  # first: from here on it is no state
        for relative in listing:
            storage.delete(f"{prefix}/{relative}")


def export_publish(*, folder: Path, root: Path) -> None:
    """With object storage, upload an export folder written under the local `root` to the same names in storage,
    then remove the local copy (the export is marked done only afterwards, so no download sees half of it)."""
    if not object_storage():
        return
    storage, prefix = export_storage(), Path(folder).relative_to(root).as_posix()
    if storage.listdir(prefix) != ([], []):
        raise StorageError(f"exports/{prefix} already exists in storage; not overwritten.")
    folder_upload(storage, folder, prefix)
    shutil.rmtree(folder)


def export_open(name: str):
    """The stored export file `name` opened for reading, or None if it is not there."""
    storage = export_storage()
    try:
        return storage.open(name, "rb") if storage.exists(name) else None
    except (FileNotFoundError, OSError):
        return None


def run_file_text(lora_path: str, name: str) -> str | None:
    """The text of file `name` of the training run that wrote the LoRA `lora_path` (e.g. its metrics.jsonl), from
    this host's folder or from storage; None when there is none."""
    if Path(lora_path).is_absolute():
        path = Path(lora_path).parent / name
        return path.read_text() if path.is_file() else None
    key = f"{PurePosixPath(lora_path).parent}/{name}"
    storage = checkpoint_storage()
    try:
        if not storage.exists(key):
            return None
        with storage.open(key, "rb") as handle:
            return handle.read().decode()
    except (OSError, SuspiciousOperation):
        return None
