"""Importing a Pick-a-Pic format parquet file: validate every row first, then write all of it in one transaction."""

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotate.images import image_store
from annotate.models import Assignment, Judgement, Pair, Prompt, Round, Taste, TasteMembership
from trainer.images import MAX_PIXELS, ImageRejected, check_image
from trainer.pickapic import LABELS, REQUIRED_COLUMNS

IMPORT_NAMESPACE = uuid.UUID("6b1f3c56-2f3e-4b8e-9d0a-6c1c4b7e2a90")
MAX_LISTED = 20
Progress = Callable[[int, int], None]

EXPECTED_TYPES = {
    "caption": (pa.types.is_string, pa.types.is_large_string),
    "jpg_0": (pa.types.is_binary, pa.types.is_large_binary),
    "jpg_1": (pa.types.is_binary, pa.types.is_large_binary),
    "label_0": (pa.types.is_floating, pa.types.is_integer),
    "label_1": (pa.types.is_floating, pa.types.is_integer),
}
OPTIONAL = ("label_1", "created_at", "model_0", "model_1", "seed_0", "seed_1", "params_0", "params_1", "flags_0",
            "flags_1", "duration_ms", "shown_left", "ranking_id", "image_0_uid", "image_1_uid")


class ImportRejected(ValueError):
    """The file cannot be imported; nothing was written. `problems` lists (row, column, what is wrong)."""

    def __init__(self, message: str, problems: list[tuple[int | None, str, str]] | None = None) -> None:
        self.problems = problems or []
        listed = "\n".join(
            f"  row {row}: {column} {what}" if row is not None else f"  {column}: {what}"
            for row, column, what in self.problems[:MAX_LISTED]
        )
        more = f"\n  … and {len(self.problems) - MAX_LISTED} more" if len(self.problems) > MAX_LISTED else ""
        super().__init__(message + (f"\n{listed}{more}" if listed else ""))


@dataclass
class ImportSummary:
    rows: int = 0
    ties: int = 0
    round_number: int | None = None
    annotator: str = ""
    captions: int = 0
    problems: list = field(default_factory=list)


def check_schema(schema: pa.Schema) -> list[str]:
    """The columns of `schema` the import reads; raises on a missing column or a wrong type."""
    names = set(schema.names)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ImportRejected(f"Not a Pick-a-Pic preference file: missing column(s) {', '.join(missing)}.")
    wrong = [
        (None, column, f"has type {schema.field(column).type}; expected {'a number' if 'label' in column else 'string' if column == 'caption' else 'binary image bytes'}")
        for column, checks in EXPECTED_TYPES.items()
        if column in names and not any(check(schema.field(column).type) for check in checks)
    ]
    if wrong:
        raise ImportRejected("Columns of the wrong type:", wrong)
    return [c for c in (*REQUIRED_COLUMNS, *OPTIONAL) if c in names]


def validate_rows(path: Path, *, max_pixels: int = MAX_PIXELS, progress: Progress | None = None) -> int:
    """Read the whole file once and check every caption, image and label; raises listing all bad rows."""
    file = pq.ParquetFile(path)
    columns = check_schema(file.schema_arrow)
    problems: list[tuple[int, str, str]] = []
    index = 0
    for batch in file.iter_batches(batch_size=256, columns=columns):
        for row in batch.to_pylist():
            problems += _row_problems(index, row, max_pixels)
            index += 1
        if progress:
            progress(index, file.metadata.num_rows)
    if problems:
        bad_rows = len({row for row, _, _ in problems})
        raise ImportRejected(f"{bad_rows} of {index} rows are invalid; nothing was imported.", problems)
    if index == 0:
        raise ImportRejected("The file holds no rows.")
    return index


def _row_problems(index: int, row: dict, max_pixels: int) -> list[tuple[int, str, str]]:
    problems = []
    if not isinstance(row["caption"], str) or not row["caption"].strip():
        problems.append((index, "caption", "is empty"))
    elif len(row["caption"].strip()) > Prompt.MAX_CHARS:
        problems.append((index, "caption", f"has {len(row['caption'].strip())} characters; at most {Prompt.MAX_CHARS}"))
    for column in ("flags_0", "flags_1"):
        if unknown := sorted(set(row.get(column) or []) - set(Judgement.Flag.values)):
            problems.append((index, column, f"has unknown flags {', '.join(map(str, unknown))}; known: "
                                            f"{', '.join(Judgement.Flag.values)}"))
    for column in ("jpg_0", "jpg_1"):
        try:
            check_image(row[column] or b"", max_pixels=max_pixels)
        except ImageRejected as exc:
            problems.append((index, column, str(exc)))
    label_0 = row["label_0"]
    if label_0 is None or float(label_0) not in LABELS:
        problems.append((index, "label_0", f"is {label_0}; expected 0, 0.5 or 1"))
    elif row.get("label_1") is not None and float(row["label_1"]) != 1 - float(label_0):
        problems.append((index, "label_1", f"is {row['label_1']} but label_0 is {label_0}; they must add up to 1"))
    return problems


def import_preferences(
    *, path: Path, taste: Taste, source: str, max_pixels: int = MAX_PIXELS, progress: Progress | None = None
) -> ImportSummary:
    """Validate, then store every row as a pair judged by the pseudo-annotator `import:<source>`, in a new
    round of `taste` (state done). All or nothing: any bad row, or a file imported before, writes nothing."""
    total = validate_rows(path, max_pixels=max_pixels)
    file = pq.ParquetFile(path)
    columns = check_schema(file.schema_arrow)
    written: list[str] = []
    try:
        with transaction.atomic():
            summary = _write(file, columns, path=path, taste=taste, source=source, total=total, written=written,
                             progress=progress)
    except IntegrityError as exc:
        for name in written:
            default_storage.delete(name)
        raise ImportRejected(
            f"{path} was imported before from source '{source}' (its judgements exist already); nothing was written."
        ) from exc
    except BaseException:
        for name in written:  # files this import added; content-addressed, so none is shared yet
            default_storage.delete(name)
        raise
    return summary


def _write(file, columns, *, path, taste, source, total, written, progress) -> ImportSummary:
    User = get_user_model()
    username = f"import:{source}"
    annotator, created = User.objects.get_or_create(username=username, defaults={"is_active": False})
    if created:
        annotator.set_unusable_password()
        annotator.save(update_fields=["password"])
    TasteMembership.objects.get_or_create(taste=taste, annotator=annotator)
    number = (taste.rounds.order_by("-number").values_list("number", flat=True).first() or 0) + 1
    round_ = Round.objects.create(
        taste=taste, number=number, state=Round.State.DONE, pair_quota=total, label_quota=total, overlap=1,
        sampling_config={"imported_from": str(path), "source": source},
    )
    summary = ImportSummary(round_number=number, annotator=username)
    prompts: dict[str, Prompt] = {}
    index = 0
    now = timezone.now()
    for batch in file.iter_batches(batch_size=256, columns=columns):
        for row in batch.to_pylist():
            _store_row(index, row, round_=round_, annotator=annotator, source=source, prompts=prompts,
                       written=written, now=now, summary=summary)
            index += 1
        if progress:
            progress(index, total)
    summary.rows, summary.captions = index, len(prompts)
    return summary


def _store_row(index, row, *, round_, annotator, source, prompts, written, now, summary) -> None:
    caption = row["caption"].strip()
    prompt = prompts.get(caption) or prompts.setdefault(caption, Prompt.objects.create(text=caption, tags=[f"import:{source}"]))
    images = []
    for side in ("0", "1"):
        data = row[f"jpg_{side}"]
        params = json.loads(row.get(f"params_{side}") or "{}")
        images.append(image_store(prompt=prompt, data=data, seed=row.get(f"seed_{side}"), params=params,
                                  model_name=row.get(f"model_{side}") or source, on_write=written.append))
    label_0 = float(row["label_0"])
    choice = {1.0: Judgement.Choice.A, 0.0: Judgement.Choice.B, 0.5: Judgement.Choice.TIE}[label_0]
    summary.ties += choice == Judgement.Choice.TIE
    pair = Pair.objects.create(
        round=round_, taste_id=round_.taste_id, prompt=prompt, image_a=images[0], image_b=images[1],
        kind=Pair.Kind.TRAIN, overlap=1, assigned_count=1, judged_count=1,
    )
    shown_left = row.get("shown_left")
    assignment = Assignment.objects.create(
        pair=pair, annotator=annotator, left_is_a=shown_left != 1, state=Assignment.State.JUDGED,
        claimed_at=now, lease_expires_at=now + timedelta(seconds=1), closed_at=now,
    )
    key = f"{source}:{index}:{images[0].sha256}:{images[1].sha256}:{label_0}"
    judgement = Judgement.objects.create(
        assignment=assignment, pair=pair, annotator=annotator, client_uuid=uuid.uuid5(IMPORT_NAMESPACE, key),
        choice=choice, flags_a=row.get("flags_0") or [], flags_b=row.get("flags_1") or [],
        duration_ms=row.get("duration_ms"),
    )
    if row.get("created_at"):
        Judgement.objects.filter(pk=judgement.pk).update(created_at=row["created_at"])
