"""Importing a preference file (Pick-a-Pic parquet or JSONL): validate every row first, then write all of it in one
transaction. Any problem is one `ImportRejected` naming the file, row and column, and nothing is written."""

import hashlib
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.db import DatabaseError, transaction
from django.utils import timezone

from annotate.exports import PROVENANCE
from annotate.images import image_store
from annotate.import_sources import ImportRejected, first_line, open_source
from annotate.models import Assignment, Judgement, Pair, Prompt, Round, Taste, TasteMembership
from trainer.images import MAX_PIXELS, ImageRejected, check_image
from trainer.pickapic import LABELS

__all__ = ["ImportRejected", "ImportSummary", "import_preferences"]

IMPORT_NAMESPACE = uuid.UUID("6b1f3c56-2f3e-4b8e-9d0a-6c1c4b7e2a90")
INT64 = (-(2**63), 2**63 - 1)
DURATION_MAX = 2**31 - 1  # Judgement.duration_ms is a PositiveIntegerField
NUL = "contains a NUL byte, which the database cannot store"
Progress = Callable[[int, int], None]


@dataclass
class ImportSummary:
    rows: int = 0
    ties: int = 0
    round_number: int | None = None
    annotator: str = ""
    captions: int = 0
    problems: list = field(default_factory=list)


def import_preferences(
    *, path: Path, taste: Taste, source: str, max_pixels: int = MAX_PIXELS, progress: Progress | None = None,
    format: str = "auto",
) -> ImportSummary:
    """Validate, then store every row as a pair judged by the pseudo-annotator `import:<source>`, in a new
    round of `taste` (state done). All or nothing: any bad row, or a file imported before, writes nothing.
    `format` is auto (parquet or JSONL by content), pickapic or jsonl. The source's image uids, user_id and
    ranking_id are kept in each image's params under "imported", and come back out on export."""
    try:
        reader = open_source(path, format)
        total, keys = _validate(reader, source=source, max_pixels=max_pixels)
    except OSError as exc:
        raise ImportRejected(f"{path} cannot be read ({exc.strerror or first_line(exc)}); nothing was imported.") from exc
    refused_before = ImportRejected(
        f"{path} was imported before from source '{source}' (its judgements exist already); nothing was imported."
    )
    for start in range(0, len(keys), 500):  # under SQLite's limit of query parameters
        if Judgement.objects.filter(client_uuid__in=keys[start:start + 500]).exists():
            raise refused_before
    written: list[str] = []
    summary = ImportSummary()
    try:
        with transaction.atomic():
            _write(reader, path=path, taste=taste, source=source, total=total, written=written, progress=progress,
                   summary=summary)
    except BaseException as exc:
        for name in written:  # files this import added; content-addressed, so none is shared yet
            default_storage.delete(name)
        if isinstance(exc, DatabaseError | ValueError) and not isinstance(exc, ImportRejected):
            if "client_uuid" in str(exc):
                raise refused_before from exc
            raise ImportRejected(f"{path}: the database refused {reader.where(summary.rows)} ({first_line(exc)}); "
                                 "nothing was imported.") from exc
        raise
    return summary


def _validate(reader, *, source: str, max_pixels: int) -> tuple[int, list[uuid.UUID]]:
    """Read the whole file once and check every row; raises listing all bad rows. Returns the row count and the
    judgement UUIDs the rows will get (derived from source, row and content, so a second import is recognised)."""
    problems, keys, bad_rows, index = [], [], set(), 0
    for batch in reader.batches():
        for raw, read_problems in batch:
            row, row_problems = clean_row(raw, max_pixels=max_pixels) if raw is not None else ({}, [])
            for column, what in read_problems + row_problems:
                problems.append((reader.where(index), column, what))
                bad_rows.add(index)
            if not read_problems and not row_problems:
                keys.append(_judgement_uuid(source, index, row))
            index += 1
    if problems:
        raise ImportRejected(f"{reader.path}: {len(bad_rows)} of {index} rows are invalid; nothing was imported.",
                             problems)
    if index == 0:
        raise ImportRejected(f"{reader.path} holds no rows; nothing was imported.")
    return index, keys


def _judgement_uuid(source: str, index: int, row: dict) -> uuid.UUID:
    shas = [hashlib.sha256(row[f"jpg_{side}"]).hexdigest() for side in ("0", "1")]
    return uuid.uuid5(IMPORT_NAMESPACE, f"{source}:{index}:{shas[0]}:{shas[1]}:{row['label_0']}")


def clean_row(row: dict, *, max_pixels: int = MAX_PIXELS, check_images: bool = True) -> tuple[dict, list]:
    """The row's values as the import stores them, and its problems as (column, what) pairs."""
    problems: list[tuple[str, str]] = []
    clean: dict = {}

    def check(column: str, value, test, expected: str, convert=lambda v: v) -> None:
        try:
            ok = test(value)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            problems.append((column, f"is {_show(value)}; expected {expected}"))
            return
        try:
            clean[column] = convert(value)
        except ValueError as exc:
            problems.append((column, str(exc)))

    caption = row.get("caption")
    if caption is None:
        problems.append(("caption", "is missing"))
    elif not isinstance(caption, str) or not caption.strip():
        problems.append(("caption", "is empty" if isinstance(caption, str) else f"is {_show(caption)}, not text"))
    elif "\x00" in caption:
        problems.append(("caption", NUL))
    elif len(caption.strip()) > Prompt.MAX_CHARS:
        problems.append(("caption", f"has {len(caption.strip())} characters; at most {Prompt.MAX_CHARS}"))
    else:
        clean["caption"] = caption.strip()
    for side in ("0", "1"):
        column = f"jpg_{side}"
        if column not in row:
            continue  # a JSONL row whose image file could not be read: its problem is listed already
        clean[column] = row[column]
        if check_images:
            try:
                check_image(row[column] or b"", max_pixels=max_pixels)
            except ImageRejected as exc:
                problems.append((column, str(exc)))
    label_0 = row.get("label_0")
    if label_0 is None:
        problems.append(("label_0", "is missing"))
    elif not _number(label_0) or float(label_0) not in LABELS:
        problems.append(("label_0", f"is {_show(label_0)}; expected 0, 0.5 or 1"))
    else:
        clean["label_0"] = float(label_0)
        label_1 = row.get("label_1")
        if label_1 is not None and (not _number(label_1) or float(label_1) != 1 - float(label_0)):
            problems.append(("label_1", f"is {_show(label_1)} but label_0 is {_show(label_0)}; they must add up to 1"))
    provenance = {}
    for key, column in (("user_id", "user_id"), ("ranking_id", "ranking_id")):
        check(column, row.get(column), _optional(_whole), "a whole number")
        if clean.get(column) is not None:
            provenance[key] = clean[column]
    for side in ("0", "1"):
        check(f"params_{side}", row.get(f"params_{side}"), lambda v: True, "", _params)
        check(f"seed_{side}", row.get(f"seed_{side}"), _optional(_whole), "a whole number")
        check(f"model_{side}", row.get(f"model_{side}"), _optional(_text(300)), "text of at most 300 characters")
        check(f"flags_{side}", row.get(f"flags_{side}"),
              lambda v: v is None or isinstance(v, list) and all(_text(200)(f) for f in v), "a list of flag names")
        if unknown := sorted(set(clean.get(f"flags_{side}") or []) - set(Judgement.Flag.values)):
            problems.append((f"flags_{side}", f"has unknown flags {', '.join(map(str, unknown))}; known: "
                                              f"{', '.join(Judgement.Flag.values)}"))
        check(f"image_{side}_uid", row.get(f"image_{side}_uid"), _optional(_text(300)), "text")
        uid = clean.get(f"image_{side}_uid")
        if isinstance(clean.get(f"params_{side}"), dict):
            clean[f"params_{side}"].pop(PROVENANCE, None)
            if provenance or uid:
                clean[f"params_{side}"][PROVENANCE] = {**({"image_uid": uid} if uid else {}), **provenance}
    check("duration_ms", row.get("duration_ms"), lambda v: v is None or _whole(v) and 0 <= v <= DURATION_MAX,
          f"a whole number of milliseconds from 0 to {DURATION_MAX}")
    check("shown_left", row.get("shown_left"), lambda v: v is None or _whole(v) and v in (0, 1), "0, 1 or empty")
    check("created_at", row.get("created_at"), lambda v: v is None or isinstance(v, datetime | str),
          "a date-time", _moment)
    return clean, problems


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value) -> bool:
    return _number(value) and float(value).is_integer() and INT64[0] <= value <= INT64[1]


def _optional(test):
    return lambda value: value is None or test(value)


def _text(limit: int):
    return lambda value: isinstance(value, str) and len(value) <= limit and "\x00" not in value


def _params(value) -> dict:
    """A params cell (JSON text, or an object in JSONL) as a dict the database can store."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value, parse_constant=_no_constant)
        except ValueError as exc:
            raise ValueError(f"is not valid JSON ({first_line(exc)})") from exc
    if not isinstance(value, dict):
        raise ValueError(f"is a JSON {type(value).__name__}; expected an object of sampling parameters")
    if "\\u0000" in json.dumps(value):
        raise ValueError(NUL)
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _moment(value) -> datetime | None:
    """A created_at cell as an aware date-time; one without a timezone is taken as UTC (as Chisel's exports write)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"is {_show(value)}; expected an ISO date-time") from exc
    if hasattr(value, "to_pydatetime"):  # a pandas Timestamp, as pyarrow gives for timestamp[ns]
        value = value.to_pydatetime(warn=False)  # v2's nanoseconds: the database keeps microseconds
    return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)


def _write(reader, *, path, taste, source, total, written, progress, summary: ImportSummary) -> None:
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
    summary.round_number, summary.annotator = number, username
    prompts: dict[str, Prompt] = {}
    now = timezone.now()
    for batch in reader.batches():
        for raw, read_problems in batch:
            row, problems = clean_row(raw, check_images=False) if raw is not None else ({}, [])
            problems = read_problems + problems
            if problems:  # the file changed since it was validated
                where, (column, what) = reader.where(summary.rows), problems[0]
                raise ImportRejected(f"{path} changed while importing: {where}: {column} {what}; nothing was imported.")
            _store_row(summary.rows, row, round_=round_, annotator=annotator, source=source, prompts=prompts,
                       written=written, now=now, summary=summary)
            summary.rows += 1
        if progress:
            progress(summary.rows, total)
    summary.captions = len(prompts)


def _store_row(index, row, *, round_, annotator, source, prompts, written, now, summary) -> None:
    caption = row["caption"]
    prompt = prompts.get(caption) or prompts.setdefault(caption, Prompt.objects.create(text=caption, tags=[f"import:{source}"]))
    images = []
    for side in ("0", "1"):
        images.append(image_store(prompt=prompt, data=row[f"jpg_{side}"], seed=row.get(f"seed_{side}"),
                                  params=row[f"params_{side}"], model_name=row.get(f"model_{side}") or source,
                                  on_write=written.append))
    choice = {1.0: Judgement.Choice.A, 0.0: Judgement.Choice.B, 0.5: Judgement.Choice.TIE}[row["label_0"]]
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
    judgement = Judgement.objects.create(
        assignment=assignment, pair=pair, annotator=annotator, client_uuid=_judgement_uuid(source, index, row),
        choice=choice, flags_a=row.get("flags_0") or [], flags_b=row.get("flags_1") or [],
        duration_ms=row.get("duration_ms"),
    )
    if row.get("created_at"):
        Judgement.objects.filter(pk=judgement.pk).update(created_at=row["created_at"])
