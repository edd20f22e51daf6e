"""Exports as background jobs: requested by a lead, run by a worker with progress, downloaded when done."""

import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from annotate import storage
from annotate.errors import TooManyExports
from annotate.enqueue import RUN_EXPORT, enqueue_on_commit
from annotate.exports import ExportOptions, export_paths, export_preferences
from annotate.locks import lock_user
from annotate.models import Export

OPTION_FIELDS = ("format", "aggregate", "ties", "image_format", "tastes", "rounds", "annotators", "kinds", "since",
                 "until")
PROGRESS_EVERY = 500  # rows between progress writes


def export_request(*, user: AbstractBaseUser, options: dict) -> Export:
    """Queue an export; the worker picks it up after commit."""
    clean = {key: _jsonable(options[key]) for key in OPTION_FIELDS if options.get(key) not in (None, [], "")}
    with transaction.atomic():
        list(lock_user(user_id=user.pk))  # two requests of one lead count one after the other
        limit = settings.CHISEL_MAX_ACTIVE_EXPORTS
        if exports_active(user=user) >= limit:
            raise TooManyExports(f"You already have {limit} exports queued or running; wait for one to finish.")
        export = Export.objects.create(requested_by=user, options=clean)
        enqueue_on_commit(RUN_EXPORT, export.pk)
    return export


def exports_active(*, user: AbstractBaseUser) -> int:
    """How many of `user`'s exports are queued or running."""
    return Export.objects.filter(requested_by=user, state__in=[Export.State.QUEUED, Export.State.RUNNING]).count()


def _jsonable(value):
    return value.isoformat() if isinstance(value, datetime) else value


def export_run(*, export_id: int) -> Export | None:
    """Run a queued export (compare-and-set to running, so a redelivered task does nothing). Each run is an attempt;
    only the attempt that holds the export may record its end (a run presumed dead may still finish late)."""
    if not Export.objects.filter(pk=export_id, state=Export.State.QUEUED).update(
        state=Export.State.RUNNING, attempt=F("attempt") + 1, heartbeat_at=timezone.now(),
    ):
        return None
    export = Export.objects.get(pk=export_id)
    mine = Export.objects.filter(pk=export_id, state=Export.State.RUNNING, attempt=export.attempt)
    options = {k: v for k, v in export.options.items() if k in OPTION_FIELDS}
    for key in ("since", "until"):
        if key in options:
            options[key] = parse_datetime(options[key])

    def progress(done: int, total: int) -> None:
        if done == total or done % PROGRESS_EVERY < 50:
            mine.update(done=done, total=total, heartbeat_at=timezone.now())

    # A dataset folder of its own, made new and empty by mkdtemp (a random suffix after the export's id): an export
    # can never overwrite anything, not even a folder left by an earlier database that reused this id.
    # With object storage the folder is written in a local scratch folder, then uploaded under the same name.
    scratch = storage.object_storage()
    root = Path(tempfile.mkdtemp(prefix="chisel-exports-")) if scratch else export_root()
    folder = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"export-{export.pk}-", dir=root))
        file_name = export_paths(folder, options.get("format", "pickapic")).data.relative_to(root).as_posix()
        # splits=False: the download is the folder's one data file, so every row goes in it.
        summary = export_preferences(ExportOptions(out=folder, splits=False, **options), progress)
        storage.export_publish(folder=folder, root=root)
    except Exception as exc:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)  # this job's own folder, created above
        if scratch:
            shutil.rmtree(root, ignore_errors=True)  # the scratch folder, created above
        mine.update(state=Export.State.FAILED, error=str(exc), finished_at=timezone.now())
        raise
    if scratch:
        shutil.rmtree(root, ignore_errors=True)
    mine.update(
        state=Export.State.DONE, file_name=file_name, summary=summary.as_dict(), finished_at=timezone.now()
    )
    return Export.objects.get(pk=export_id)


def exports_requeue_stale(*, now: datetime | None = None) -> list[int]:
    """Running exports whose worker stopped (no progress for CHISEL_EXPORT_STALE): queued again, or failed with the
    reason after CHISEL_EXPORT_MAX_ATTEMPTS attempts. Returns the ids queued again (the caller wakes a worker)."""
    now = now or timezone.now()
    stale = Export.objects.filter(state=Export.State.RUNNING, heartbeat_at__lt=now - settings.CHISEL_EXPORT_STALE)
    limit = settings.CHISEL_EXPORT_MAX_ATTEMPTS
    stale.filter(attempt__gte=limit).update(
        state=Export.State.FAILED, finished_at=now,
        error=f"The worker running this export stopped (no progress for {settings.CHISEL_EXPORT_STALE}); "
              f"gave up after {limit} attempts.",
    )
    requeued = []
    for export_id, attempt in stale.filter(attempt__lt=limit).values_list("id", "attempt"):
        if Export.objects.filter(pk=export_id, state=Export.State.RUNNING, attempt=attempt).update(
            state=Export.State.QUEUED, done=0, total=0,
        ):
            requeued.append(export_id)
            enqueue_on_commit(RUN_EXPORT, export_id)
    return requeued


def export_root() -> Path:
    return Path(settings.CHISEL_EXPORT_ROOT)


def export_file(export: Export):
    """The finished file of an export opened for reading (from this host's folder or the bucket), if it is there."""
    if export.state != Export.State.DONE or not export.file_name:
        return None
    return storage.export_open(export.file_name)
