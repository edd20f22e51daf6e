"""Reading a preference file for import, Pick-a-Pic parquet or JSONL, as batches of rows; one clear error otherwise.

A row is a dict with the parquet's column names; JSONL rows (as `export_preferences --format jsonl` writes them)
have their `image_0_file` / `image_1_file` read into `jpg_0` / `jpg_1`. Each row comes with the problems met while
reading it, as (column, what) pairs (a JSONL line that is no JSON object comes as None), and every row is named
the way its file counts: "row N" (from 0) in a parquet file, "line N" (from 1) in a JSONL file.
"""

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from trainer.pickapic import REQUIRED_COLUMNS

FORMATS = ("auto", "pickapic", "jsonl")
BATCH = 256
LISTED = 5  # problems named in the one-line message; the exception keeps them all
Problem = tuple[str | None, str, str]  # (where: "row 3" / "line 4" / None for the whole file, column, what)

EXPECTED_TYPES = {
    "caption": (pa.types.is_string, pa.types.is_large_string),
    "jpg_0": (pa.types.is_binary, pa.types.is_large_binary),
    "jpg_1": (pa.types.is_binary, pa.types.is_large_binary),
    "label_0": (pa.types.is_floating, pa.types.is_integer),
    "label_1": (pa.types.is_floating, pa.types.is_integer),
}
OPTIONAL = ("label_1", "created_at", "model_0", "model_1", "seed_0", "seed_1", "params_0", "params_1", "flags_0",
            "flags_1", "duration_ms", "shown_left", "ranking_id", "user_id", "image_0_uid", "image_1_uid")


class ImportRejected(ValueError):
    """The file cannot be imported; nothing was written. The message is one line; `problems` lists them all."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        self.problems = problems or []
        listed = " | ".join(
            f"{where}: {f'{column} ' if column else ''}{what}" if where is not None else f"{column}: {what}"
            for where, column, what in self.problems[:LISTED]
        )
        more = f" | … and {len(self.problems) - LISTED} more" if len(self.problems) > LISTED else ""
        super().__init__(message + (f" {listed}{more}" if listed else ""))


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_schema(schema: pa.Schema, path: Path) -> list[str]:
    """The columns of `schema` the import reads; raises on a missing column or a wrong type."""
    names = set(schema.names)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ImportRejected(f"{path} is not a Pick-a-Pic preference file: missing column(s) {', '.join(missing)}.")
    wrong = [
        (None, column, f"has type {schema.field(column).type}; expected {'a number' if 'label' in column else 'string' if column == 'caption' else 'binary image bytes'}")
        for column, checks in EXPECTED_TYPES.items()
        if column in names and not any(check(schema.field(column).type) for check in checks)
    ]
    if wrong:
        raise ImportRejected(f"{path} has columns of the wrong type:", wrong)
    return [c for c in (*REQUIRED_COLUMNS, *OPTIONAL) if c in names]


class ParquetSource:
    """A Pick-a-Pic parquet file, read in batches of rows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.file = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise ImportRejected(f"{path} is not a readable parquet file, or it is truncated ({first_line(exc)}); "
                                 "nothing was imported.") from exc
        self.columns = check_schema(self.file.schema_arrow, path)
        self.total = self.file.metadata.num_rows

    def where(self, index: int) -> str:
        return f"row {index}"

    def batches(self) -> Iterator[list[tuple[dict, list[tuple[str, str]]]]]:
        index = 0
        try:
            for batch in self.file.iter_batches(batch_size=BATCH, columns=self.columns):
                rows = batch.to_pylist()
                index += len(rows)
                yield [(row, []) for row in rows]
        except (pa.ArrowException, OSError) as exc:
            raise ImportRejected(f"{self.path} is damaged: reading past row {index} failed ({first_line(exc)}); "
                                 "nothing was imported.") from exc


class JsonlSource:
    """A JSONL file as `export_preferences --format jsonl` writes it: one JSON object a line, images as files that
    `image_0_file` / `image_1_file` name relative to the file's folder (and never outside it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.folder = path.parent.resolve()
        self.lines: list[int] = []  # the line number of each row (blank lines are skipped)
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    self.lines.append(number)
        self.total = len(self.lines)

    def where(self, index: int) -> str:
        return f"line {self.lines[index]}" if index < len(self.lines) else f"line {index + 1}"

    def batches(self) -> Iterator[list[tuple[dict, list[tuple[str, str]]]]]:
        batch = []
        with self.path.open("rb") as handle:
            for line in handle:
                if not line.strip():
                    continue
                batch.append(self._row(line))
                if len(batch) >= BATCH:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def _row(self, line: bytes) -> tuple[dict | None, list[tuple[str, str]]]:
        """The line as a row (None when it is no JSON object), and the problems met reading it and its images."""
        try:
            row = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return None, [("", f"is not JSON ({first_line(exc)})")]
        if not isinstance(row, dict):
            return None, [("", f"is a JSON {type(row).__name__}, not an object")]
        problems = []
        for side in ("0", "1"):
            if row.pop(f"jpg_{side}", None) is not None:
                problems.append((f"jpg_{side}", f"is inline; in JSONL name the image file in image_{side}_file"))
                continue
            data, problem = self._image(row.get(f"image_{side}_file"))
            if problem:
                problems.append((f"image_{side}_file", problem))
            else:
                row[f"jpg_{side}"] = data
        return row, problems

    def _image(self, name) -> tuple[bytes | None, str | None]:
        if not isinstance(name, str) or not name:
            return None, "is missing (the image's file, relative to the JSONL file)"
        path = (self.folder / name).resolve()
        if not path.is_relative_to(self.folder):
            return None, f"'{name}' points outside the JSONL file's folder"
        if not path.is_file():
            return None, f"'{name}' names no file in {self.folder}"
        try:
            return path.read_bytes(), None
        except OSError as exc:
            return None, f"'{name}' cannot be read ({exc.strerror})"


SPLITS = ("train", "validation")


def split_files(folder: Path) -> list[Path]:
    """A dataset folder's data files as `export_preferences --out FOLDER/` writes them (train first), or []."""
    for extension in (".parquet", ".jsonl"):
        files = [folder / "data" / f"{split}{extension}" for split in SPLITS]
        if files[0].is_file():
            return [file for file in files if file.is_file()]
    return []


class SplitsSource:
    """A dataset folder's split files read one after the other as one source; rows are named by file."""

    def __init__(self, folder: Path, sources: list) -> None:
        self.path = folder
        self.sources = sources
        self.total = sum(source.total for source in sources)

    def where(self, index: int) -> str:
        for source in self.sources:
            if index < source.total:
                return f"{source.path.name} {source.where(index)}"
            index -= source.total
        return f"row {index + self.total}"

    def batches(self) -> Iterator[list[tuple[dict, list[tuple[str, str]]]]]:
        for source in self.sources:
            yield from source.batches()


def open_source(path: Path, format: str = "auto") -> ParquetSource | JsonlSource | SplitsSource:
    """The file as a source of rows; `auto` tells parquet from JSONL by content (parquet starts with PAR1). A dataset
    folder is read split by split (`split_files`)."""
    if path.is_dir():
        files = split_files(path)
        if not files:
            raise ImportRejected(f"{path} is a folder without data/train.parquet or data/train.jsonl; "
                                 "nothing was imported.")
        return SplitsSource(path, [open_source(file, format) for file in files])
    if format == "auto":
        format = _sniff(path)
    return ParquetSource(path) if format == "pickapic" else JsonlSource(path)


def _sniff(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(4096)
    if head.startswith(b"PAR1"):
        return "pickapic"
    if head.lstrip().startswith(b"{"):
        return "jsonl"
    if not head:
        raise ImportRejected(f"{path} is empty; nothing was imported.")
    shown = head.lstrip().splitlines()[0][:40].decode("utf-8", errors="replace")
    raise ImportRejected(f"{path} is neither a Pick-a-Pic parquet file nor JSONL (it starts with {shown!r}); "
                         "nothing was imported.")
