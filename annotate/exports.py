"""Exporting judgements as a preference dataset: Pick-a-Pic v2 parquet or JSONL, streamed in row groups.

Where an export writes (`export_paths`): `--out NAME.parquet` / `NAME.jsonl` is one file (every row, the train
split), with its card beside it as `NAME.parquet.README.md`; any other `--out` is a dataset folder that
`datasets.load_dataset(FOLDER)` reads: `FOLDER/README.md` (the card, with the Hub's YAML block) and
`FOLDER/data/train.parquet` + `validation.parquet` (or `.jsonl` with `data/images/`), split as `_splitter` says.
An export never overwrites a file it did not write: an existing data file is replaced only with `overwrite`, and an
existing card only when it is Chisel's own (it carries `CARD_MARK`) and `overwrite` is given.
"""

import hashlib
import io
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from PIL import Image as PILImage

from annotate.model_licences import card_licence
from annotate.models import Judgement, Pair, Prompt
from trainer.pickapic import INDEX_COLUMN, JSONL_SCHEMA, SCHEMA, card_features, labels_for

ROW_GROUP = 256  # rows per parquet row group: memory stays flat whatever the export's size
Progress = Callable[[int, int], None]
EXTENSIONS = {"pickapic": ".parquet", "jsonl": ".jsonl"}
CARD_MARK = ("<!-- chisel-export-card: written by Chisel's export_preferences; "
             "only an export with --overwrite replaces it -->")
PROVENANCE = "imported"  # Image.params key where an import keeps the source's image uid, user_id and ranking_id


class ExportRefused(ValueError):
    """The export would overwrite a file it may not; nothing was written. The message says which and why."""


@dataclass(frozen=True)
class ExportPaths:
    data: Path  # the parquet or JSONL file
    card: Path  # the dataset card
    images: Path | None  # JSONL only: the folder of image files the rows name
    folder: bool  # a dataset folder (card README.md) rather than a single file
    validation: Path | None = None  # a dataset folder's validation split

    @property
    def splits(self) -> dict[str, Path]:
        return {"train": self.data, **({"validation": self.validation} if self.validation else {})}


def export_paths(out: Path, format: str = "pickapic") -> ExportPaths:
    """The files an export to `out` writes (see the module docstring); refuses an `--out` that cannot be one."""
    extension = EXTENSIONS[format]
    if out.suffix in EXTENSIONS.values():
        if out.suffix != extension:
            raise ExportRefused(f"--out {out} ends in {out.suffix} but the format is {format}: name it *{extension}.")
        return ExportPaths(data=out, card=out.with_name(out.name + ".README.md"),
                           images=out.parent / "images" if format == "jsonl" else None, folder=False)
    if out.exists() and not out.is_dir():
        raise ExportRefused(f"--out {out} is an existing file: give a new NAME{extension}, "
                            "or a folder for a dataset folder.")
    data = out / "data" / f"train{extension}"
    return ExportPaths(data=data, card=out / "README.md", images=data.parent / "images" if format == "jsonl" else None,
                       folder=True, validation=data.with_name(f"validation{extension}"))


def check_targets(paths: ExportPaths, *, overwrite: bool) -> None:
    """Refuse before writing anything: a card Chisel did not write is never replaced, an earlier export only with
    `overwrite`."""
    if paths.card.exists() and not _is_our_card(paths.card):
        raise ExportRefused(f"{paths.card} exists and was not written by Chisel; it is never overwritten: "
                            "choose another --out.")
    for path in paths.splits.values():
        if path.is_dir():
            raise ExportRefused(f"{path} is a folder; choose another --out.")
    for path in (*paths.splits.values(), paths.card):
        if path.exists() and not overwrite:
            raise ExportRefused(f"{path} exists (an earlier export?); pass --overwrite to replace it, "
                                "or choose another --out.")


def _is_our_card(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return CARD_MARK in handle.read(64 * 1024)
    except OSError:
        return False


@dataclass
class ExportOptions:
    out: Path
    format: str = "pickapic"  # or "jsonl"
    aggregate: str = "none"  # or "majority": one row per pair
    ties: str = "drop"  # or "keep" (label 0.5)
    image_format: str = "original"  # the stored lossless files, or "jpeg"
    tastes: list[str] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)
    annotators: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    since: datetime | None = None
    until: datetime | None = None
    overwrite: bool = False  # replace an earlier export's data file and card (never a card Chisel did not write)
    splits: bool = True  # a dataset folder gets a validation split (`_splitter`); False: every row in train
    validation_share: float = 0.1  # of the prompts, held out when the export has no eval pairs
    weights: dict[str, float] = field(default_factory=dict)  # annotator → the row's weight (trust); else 1.0


@dataclass
class ExportSummary:
    path: str
    card: str = ""
    rows: int = 0
    judgements: int = 0
    ties_dropped: int = 0
    ties_kept: int = 0
    both_bad_skipped: int = 0
    tastes: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    first: str | None = None
    last: str | None = None
    split_rows: dict[str, int] = field(default_factory=dict)
    split_bytes: dict[str, int] = field(default_factory=dict)  # Arrow bytes (parquet) or file bytes (JSONL)
    validation: str = ""  # what the validation split holds, in words (for the card)
    base_models: dict[str, str] = field(default_factory=dict)  # name → folder of the base models behind the images
    other_models: bool = False  # some images came from no base model (imported, or made elsewhere)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def judgements_for(options: ExportOptions) -> QuerySet[Judgement]:
    """The judgements an export covers, ordered by pair so a pair's images are read once."""
    query = Q()
    if options.tastes:
        query &= Q(pair__taste__slug__in=options.tastes)
    if options.rounds:
        query &= Q(pair__round_id__in=options.rounds)
    if options.annotators:
        query &= Q(annotator__username__in=options.annotators)
    if options.kinds:
        query &= Q(pair__kind__in=options.kinds)
    if options.since:
        query &= Q(created_at__gte=options.since)
    if options.until:
        query &= Q(created_at__lt=options.until)
    return Judgement.objects.filter(query).order_by("pair_id", "id")


def export_preferences(options: ExportOptions, progress: Progress | None = None) -> ExportSummary:
    """Write the dataset file (atomically: a temporary file renamed into place) and its card; refuses, before
    writing anything, to overwrite what it may not (`check_targets`)."""
    paths = export_paths(options.out, options.format)
    check_targets(paths, overwrite=options.overwrite)
    try:
        paths.data.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportRefused(f"Cannot create the folder {paths.data.parent}: {exc.strerror}.") from exc
    judgements = judgements_for(options)
    total = judgements.count()
    summary = ExportSummary(path=str(paths.data), card=str(paths.card), split_rows=dict.fromkeys(paths.splits, 0))
    split, summary.validation = _splitter(judgements, paths, options)
    rows = _rows(judgements, options, summary, total, progress or (lambda done, total: None), split)
    summary.split_bytes = dict.fromkeys(paths.splits, 0)
    if options.format == "pickapic":
        _write_parquet(rows, paths, options, summary.split_bytes)
    else:
        _write_jsonl(rows, paths, options, summary.split_bytes)
    _write_card(paths, options, summary)
    return summary


def _splitter(judgements, paths: ExportPaths, options: ExportOptions) -> tuple[Callable[[Pair], str], str]:
    """Which split a pair's rows go to, and what the validation split holds, in words. A dataset folder's
    validation split is the held-out eval pairs when the export has any; else every row of a share of the prompts
    (at least one of two or more), chosen by a hash of the prompt's text so that it is the same in every export."""
    if not paths.folder or not options.splits:
        return (lambda pair: "train"), ""
    held_out = (Pair.Kind.EVAL, Pair.Kind.BASE)
    if judgements.filter(pair__kind__in=held_out).exists():
        return (lambda pair: "validation" if pair.kind in held_out else "train"), (
            "the held-out eval pairs (child vs parent, and child vs base: pairs of prompts the rounds never sampled "
            "for training); train holds the rest")
    decisive = judgements.exclude(choice=Judgement.Choice.BOTH_BAD)
    if options.ties == "drop":
        decisive = decisive.exclude(choice=Judgement.Choice.TIE)
    prompts = sorted(Prompt.objects.filter(pairs__judgements__in=decisive).distinct().values_list("text", "pk"),
                     key=lambda prompt: hashlib.sha256(prompt[0].encode()).hexdigest())
    held = max(1, round(len(prompts) * options.validation_share)) if len(prompts) > 1 else 0
    validation = {pk for _, pk in prompts[:held]}
    return (lambda pair: "validation" if pair.prompt_id in validation else "train"), (
        f"{held} of {len(prompts)} prompts held out by prompt ({options.validation_share:.0%}, chosen by a hash of "
        "the prompt's text): every row of those prompts, none of them in train (the export has no eval pairs)")


def _rows(judgements, options, summary: ExportSummary, total: int, progress: Progress,
          split: Callable[[Pair], str]) -> Iterator[tuple[str, dict]]:
    per_prompt = dict(
        Pair.objects.filter(judgements__in=judgements).values("prompt").annotate(n=Count("id", distinct=True))
        .values_list("prompt", "n")
    )
    related = judgements.select_related(
        "annotator", "assignment", "pair__prompt", "pair__round", "pair__taste",
        "pair__image_a__checkpoint__base_model", "pair__image_b__checkpoint__base_model",
    )
    tastes, models, base_models = set(), set(), {}
    done = 0
    images = _ImageReader(options.image_format)
    for group in _grouped(related.iterator(chunk_size=1000), by_pair=options.aggregate == "majority"):
        done += len(group)
        summary.judgements += len(group)
        row = _row(group, per_prompt, summary, options)
        if row is not None:
            pair = group[0].pair
            row["jpg_0"], row["jpg_1"] = images.read(pair.image_a), images.read(pair.image_b)
            row[INDEX_COLUMN] = summary.rows  # the row's place in the export, as v2 keeps its pandas index
            tastes.add(row["taste"])
            models.update((row["model_0"], row["model_1"]))
            for image in (pair.image_a, pair.image_b):
                if image.checkpoint_id:
                    base_models[image.checkpoint.base_model.name] = image.checkpoint.base_model.path
                else:
                    summary.other_models = True
            summary.rows += 1
            stamp = row["created_at"].isoformat()
            summary.first = min(summary.first or stamp, stamp)
            summary.last = max(summary.last or stamp, stamp)
            where = split(pair)
            summary.split_rows[where] += 1
            yield where, row
        if done % 500 < len(group):
            progress(done, total)
    progress(done, total)
    summary.tastes, summary.models, summary.base_models = sorted(tastes), sorted(models), base_models


def _grouped(judgements, *, by_pair: bool):
    if not by_pair:
        for judgement in judgements:
            yield [judgement]
        return
    group: list[Judgement] = []
    for judgement in judgements:
        if group and judgement.pair_id != group[0].pair_id:
            yield group
            group = []
        group.append(judgement)
    if group:
        yield group


def _row(group: list[Judgement], per_prompt: dict, summary: ExportSummary, options: ExportOptions) -> dict | None:
    first = group[0]
    pair = first.pair
    choice = _verdict(group)
    if choice is None:
        summary.both_bad_skipped += len(group)
        return None
    if choice == "tie":
        if options.ties == "drop":
            summary.ties_dropped += 1
            return None
        summary.ties_kept += 1
    label_0, label_1 = labels_for(choice)
    a, b = pair.image_a, pair.image_b
    single = len(group) == 1
    # Imported rows keep their source's ids (Image.params["imported"]); Chisel's own use the content hash and row ids.
    source_a, source_b = a.params.get(PROVENANCE) or {}, b.params.get(PROVENANCE) or {}
    uid_0, uid_1 = source_a.get("image_uid") or a.sha256, source_b.get("image_uid") or b.sha256
    return {
        "are_different": a.sha256 != b.sha256,
        "best_image_uid": {"a": uid_0, "b": uid_1}.get(choice, ""),
        "caption": pair.prompt.text,
        # Pick-a-Pic v2's type: timestamp[ns] without a timezone; Chisel's values are UTC.
        "created_at": max(j.created_at for j in group).astimezone(UTC).replace(tzinfo=None),
        "has_label": True,
        "image_0_uid": uid_0,
        "image_0_url": _image_url(a.file.name),
        "image_1_uid": uid_1,
        "image_1_url": _image_url(b.file.name),
        "label_0": label_0,
        "label_1": label_1,
        "model_0": _model_name(a),
        "model_1": _model_name(b),
        "ranking_id": source_a.get("ranking_id", first.pk) if single else pair.pk,
        "user_id": source_a.get("user_id", first.annotator_id) if single else -1,
        "num_example_per_prompt": per_prompt.get(pair.prompt_id, 1),
        "taste": pair.taste.slug,
        "round": pair.round.number,
        "pair_id": pair.pk,
        "pair_kind": pair.kind,
        "seed_0": a.seed,
        "seed_1": b.seed,
        "params_0": _params_json(a.params),
        "params_1": _params_json(b.params),
        "guidance": a.params.get("guidance"),
        "flags_0": sorted({f for j in group for f in j.flags_a}),
        "flags_1": sorted({f for j in group for f in j.flags_b}),
        "choice": choice,
        "annotator": first.annotator.username if single else ",".join(sorted({j.annotator.username for j in group})),
        "judgements": len(group),
        "duration_ms": first.duration_ms if single else None,
        "shown_left": (0 if first.assignment.left_is_a else 1) if single else None,
        "weight": sum(options.weights.get(j.annotator.username, 1.0) for j in group) / len(group),
    }


def _verdict(group: list[Judgement]) -> str | None:
    """The pair's verdict: a single judgement's choice, or the majority (a tie counts half to each side)."""
    votes = Counter(j.choice for j in group)
    if votes["both_bad"] == len(group):
        return None
    a = votes["a"] + votes["tie"] / 2
    b = votes["b"] + votes["tie"] / 2
    return "a" if a > b else "b" if b > a else "tie"


def _image_url(name: str) -> str:
    """The image's address: absolute under `CHISEL_PUBLIC_URL` when that is set, else the path in the media folder."""
    base = settings.CHISEL_PUBLIC_URL.rstrip("/")
    return f"{base}{settings.MEDIA_URL}{quote(name)}" if base else name


def _params_json(params: dict) -> str:
    return json.dumps({k: v for k, v in params.items() if k != PROVENANCE}, sort_keys=True)


def _model_name(image) -> str:
    if image.checkpoint_id is None:
        return image.model_name or "unknown"
    return f"{image.checkpoint.base_model.name}/checkpoint-{image.checkpoint_id}"


class _ImageReader:
    """Image bytes from storage (the lossless originals, or re-encoded as JPEG), cached for the current pair."""

    def __init__(self, image_format: str) -> None:
        self.image_format = image_format
        self.cache: dict[int, bytes] = {}

    def read(self, image) -> bytes:
        if image.pk not in self.cache:
            if len(self.cache) > 4:
                self.cache.clear()
            with default_storage.open(image.file.name, "rb") as handle:
                data = handle.read()
            self.cache[image.pk] = data if self.image_format == "original" else _as_jpeg(data)
        return self.cache[image.pk]


def _as_jpeg(data: bytes) -> bytes:
    out = io.BytesIO()
    PILImage.open(io.BytesIO(data)).convert("RGB").save(out, format="JPEG", quality=95)
    return out.getvalue()


def _atomic_target(out: Path) -> Path:
    handle, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(handle)
    return Path(name)


def _place(temp: Path, target: Path, *, overwrite: bool) -> None:
    """Rename the finished temporary file into place; without overwrite, only where nothing is (checked again now)."""
    if target.exists() and not overwrite:
        raise ExportRefused(f"{target} appeared while exporting; it was left alone and nothing was written.")
    os.replace(temp, target)


def _place_splits(temps: dict[str, Path], paths: ExportPaths, options: ExportOptions, sizes: dict[str, int]) -> None:
    """Rename the finished split files into place. A split other than train that got no rows is left out (`datasets`
    refuses to load an empty split), and an earlier export's file of it, which `overwrite` allows replacing, removed."""
    for split, temp in temps.items():
        if split == "train" or sizes[split]:
            _place(temp, paths.splits[split], overwrite=options.overwrite)
        elif options.overwrite:
            paths.splits[split].unlink(missing_ok=True)


def _write_parquet(rows: Iterator[tuple[str, dict]], paths: ExportPaths, options: ExportOptions,
                   sizes: dict[str, int]) -> None:
    """One parquet file per split, each written to a temporary file and renamed into place when all are done;
    `sizes` gets each split's Arrow bytes."""
    temps = {split: _atomic_target(path) for split, path in paths.splits.items()}
    try:
        with ExitStack() as stack:
            writers = {split: stack.enter_context(pq.ParquetWriter(temp, SCHEMA, compression="zstd"))
                       for split, temp in temps.items()}
            batches: dict[str, list[dict]] = {split: [] for split in temps}

            def write(split: str) -> None:
                table = pa.Table.from_pylist(batches[split], schema=SCHEMA)
                writers[split].write_table(table)
                sizes[split] += table.nbytes
                batches[split] = []

            for split, row in rows:
                batches[split].append(row)
                if len(batches[split]) >= ROW_GROUP:
                    write(split)
            for split, batch in batches.items():
                if batch:
                    write(split)
        _place_splits(temps, paths, options, sizes)
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)


def _write_jsonl(rows: Iterator[tuple[str, dict]], paths: ExportPaths, options: ExportOptions,
                 sizes: dict[str, int]) -> None:
    """One JSON object a line (a file per split), images as files in `images/` beside them, named by the stored
    file's content hash. An image file already there is reused only if it holds the same bytes; a failed export
    removes the ones it added."""
    paths.images.mkdir(parents=True, exist_ok=True)
    temps = {split: _atomic_target(path) for split, path in paths.splits.items()}
    added: list[Path] = []
    try:
        with ExitStack() as stack:
            handles = {split: stack.enter_context(temp.open("w")) for split, temp in temps.items()}
            for split, row in rows:
                for side in ("0", "1"):
                    data = row.pop(f"jpg_{side}")
                    stored = Path(row[f"image_{side}_url"])  # named by the sha256 of the stored file
                    name = f"images/{stored.stem}{'.jpg' if options.image_format == 'jpeg' else stored.suffix}"
                    target = paths.data.parent / name
                    if not target.exists():
                        target.write_bytes(data)
                        added.append(target)
                    elif target.read_bytes() != data:
                        raise ExportRefused(f"{target} exists with other content; it is never overwritten: "
                                            "choose another --out.")
                    row[f"image_{side}_file"] = name
                row["created_at"] = row["created_at"].isoformat() + "Z"
                line = json.dumps(row) + "\n"
                handles[split].write(line)
                sizes[split] += len(line.encode())
        _place_splits(temps, paths, options, sizes)
    except BaseException:
        for path in added:
            path.unlink(missing_ok=True)
        raise
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)


def _size_category(rows: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < limit:
            return name
    return "1M<n<10M"


def _dpo_script_words(paths: ExportPaths, files: dict[str, str]) -> str:
    if not paths.folder:
        return ("diffusers' `train_diffusion_dpo.py` takes a dataset folder, not one file: export with `--out FOLDER/`"
                " for one it reads.")
    if "validation" not in files:
        return ("diffusers' `train_diffusion_dpo.py` reads this folder as `--dataset_name`; it has no validation split,"
                " so give the script `--dataset_split_name train`.")
    return ("diffusers' `train_diffusion_dpo.py` reads this folder as `--dataset_name`; by default it trains on the"
            " `validation` split (`--dataset_split_name train` for the rest).")


def _validation_words(summary: ExportSummary, files: dict[str, str]) -> str:
    if not summary.validation:
        return "none: every row is in train (export to a folder for a validation split)"
    if "validation" not in files:
        return f"none: no row fell in it, so it is left out ({summary.validation})"
    return summary.validation


def _write_card(paths: ExportPaths, options: ExportOptions, summary: ExportSummary) -> None:
    """The dataset card: a YAML block the Hub and `datasets` read (licence, task, size, the data files as splits),
    then what is in the files, how they were cut, and the licence terms to respect. Written last, never over a card
    Chisel did not write."""
    tie_policy = (
        f"ties dropped ({summary.ties_dropped} rows)" if options.ties == "drop"
        else f"ties kept as label 0.5 ({summary.ties_kept} rows): diffusers' DPO script reads any label_0 ≠ 0 as a win"
    )
    files = {split: path.relative_to(paths.card.parent).as_posix() for split, path in paths.splits.items()
             if split == "train" or summary.split_rows[split]}
    licence, licence_lines = card_licence(summary.base_models, other_models=summary.other_models)
    metadata = {
        **licence,
        "task_categories": ["text-to-image"],
        "tags": ["preference", "dpo", "pick-a-pic"],
        "size_categories": [_size_category(summary.rows)],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": split, "path": path} for split, path in files.items()]}],
        # As the Hub writes it. `datasets` also keys its cache of a local folder on this block (not on the files),
        # so without it a folder exported again under the same name would load the old rows.
        "dataset_info": {
            # JSON carries no types: without these, `datasets` guesses them file by file (parquet has its own).
            **({"features": card_features(JSONL_SCHEMA)} if options.format == "jsonl" else {}),
            "splits": [
                {"name": split, "num_bytes": summary.split_bytes[split], "num_examples": summary.split_rows[split]}
                for split in files
            ],
            "download_size": sum(paths.splits[split].stat().st_size for split in files),
            "dataset_size": sum(summary.split_bytes.values()),
        },
    }
    splits = ", ".join(f"{split} `{files[split]}` ({summary.split_rows[split]} rows)" for split in files)
    urls = (f"absolute, under {settings.CHISEL_PUBLIC_URL} (Chisel's media route: it asks for a login)"
            if settings.CHISEL_PUBLIC_URL else "paths relative to Chisel's media folder (no CHISEL_PUBLIC_URL was set)")
    lines = [
        "---",
        yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).rstrip("\n"),
        "---",
        CARD_MARK,
        "",
        f"# Chisel preference dataset: {paths.card.parent.name if paths.folder else paths.data.name}",
        "",
        f"Exported {timezone.now().isoformat(timespec='seconds')} by Chisel.",
        "",
        "| | |",
        "|---|---|",
        f"| splits | {splits} |",
        f"| validation | {_validation_words(summary, files)} |",
        f"| format | {'Pick-a-Pic v2 parquet (+ Chisel columns)' if options.format == 'pickapic' else 'JSONL, images in images/'} |",
        f"| rows | {summary.rows} |",
        f"| judgements read | {summary.judgements} |",
        f"| rows per | {'pair (majority of its judgements)' if options.aggregate == 'majority' else 'judgement'} |",
        f"| tastes | {', '.join(summary.tastes) or '—'} |",
        f"| date range | {summary.first or '—'} … {summary.last or '—'} (UTC) |",
        f"| ties | {tie_policy} |",
        f"| both bad | {summary.both_bad_skipped} judgements skipped (no preference) |",
        f"| images | {'the stored lossless originals' if options.image_format == 'original' else 'JPEG, quality 95'} |",
        f"| image URLs | {urls} |",
        f"| models | {', '.join(summary.models) or '—'} |",
        "| agreement | not computed yet |",
        "",
        "Columns: Pick-a-Pic v2's, in its order and types (`__index_level_0__` is the row's place in the export), then",
        "Chisel's own. Labels: `label_0` is 1 when image 0 won, 0 when image 1 won, 0.5 for a tie. `choice` repeats it",
        "as a/b/tie; `flags_0`/`flags_1` are the defects annotators marked on each image (" + _flag_words() + ").",
        "`created_at` is UTC, stored without a timezone (`timestamp[ns]`) as in Pick-a-Pic v2.",
        "",
        _dpo_script_words(paths, files),
        "",
        "## Licence",
        "",
        "The images were generated by the models named above. Their use is bound by those models' licences:",
        "",
        *licence_lines,
        "",
        "Outputs of FLUX.1 [dev] and FLUX.1 Krea [dev] fall under the FLUX.1 [dev] Non-Commercial License, which",
        "restricts using them to train other models; read it before sharing this dataset or training on it.",
        "",
    ]
    temp = _atomic_target(paths.card)
    try:
        temp.write_text("\n".join(lines), encoding="utf-8")
        if paths.card.exists() and not _is_our_card(paths.card):
            raise ExportRefused(f"{paths.card} appeared while exporting and was not written by Chisel; "
                                "it was left alone.")
        _place(temp, paths.card, overwrite=options.overwrite)
    finally:
        temp.unlink(missing_ok=True)


def _flag_words() -> str:
    return ", ".join(f"`{value}` {label.lower()}" for value, label in Judgement.Flag.choices)
