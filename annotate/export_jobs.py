"""Exports as background jobs: requested by a lead, run by a worker with progress, downloaded when done."""

import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from annotate.enqueue import RUN_EXPORT, enqueue_on_commit
from annotate.exports import ExportOptions, export_paths, export_preferences
from annotate.models import Export

OPTION_FIELDS = ("format", "aggregate", "ties", "image_format", "tastes", "rounds", "annotators", "kinds", "since",
                 "until")
PROGRESS_EVERY = 500  # rows between progress writes


def export_request(*, user: AbstractBaseUser, options: dict) -> Export:
    """Queue an export; the worker picks it up after commit."""
    clean = {key: _jsonable(options[key]) for key in OPTION_FIELDS if options.get(key) not in (None, [], "")}
    export = Export.objects.create(requested_by=user, options=clean)
    enqueue_on_commit(RUN_EXPORT, export.pk)
    return export


def _jsonable(value):
    return value.isoformat() if isinstance(value, datetime) else value


def export_run(*, export_id: int) -> Export | None:
    """Run a queued export (compare-and-set to running, so a redelivered task does nothing)."""
    if not Export.objects.filter(pk=export_id, state=Export.State.QUEUED).update(state=Export.State.RUNNING):
        return None
    export = Export.objects.get(pk=export_id)
    options = {k: v for k, v in export.options.items() if k in OPTION_FIELDS}
    for key in ("since", "until"):
        if key in options:
            options[key] = parse_datetime(options[key])

    def progress(done: int, total: int) -> None:
        if done == total or done % PROGRESS_EVERY < 50:
            Export.objects.filter(pk=export_id).update(done=done, total=total)

    # A dataset folder of its own, made new and empty by mkdtemp (a random suffix after the export's id): an export
    # can never overwrite anything, not even a folder left by an earlier database that reused this id.
    root = export_root()
    folder = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"export-{export.pk}-", dir=root))
        file_name = export_paths(folder, options.get("format", "pickapic")).data.relative_to(root).as_posix()
        summary = export_preferences(ExportOptions(out=folder, **options), progress)
    except Exception as exc:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)  # this job's own folder, created above
        Export.objects.filter(pk=export_id).update(state=Export.State.FAILED, error=str(exc), finished_at=timezone.now())
        raise
    Export.objects.filter(pk=export_id).update(
        state=Export.State.DONE, file_name=file_name, summary=summary.as_dict(), finished_at=timezone.now()
    )
    return Export.objects.get(pk=export_id)


def export_root() -> Path:
    return Path(settings.CHISEL_EXPORT_ROOT)


def export_file(export: Export) -> Path | None:
    """The finished file of an export, if it is there."""
    if export.state != Export.State.DONE or not export.file_name:
        return None
    path = export_root() / export.file_name
    return path if path.is_file() else None
