"""Exporting judgements as a preference dataset: Pick-a-Pic v2 parquet or JSONL, streamed in row groups."""

import io
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from django.core.files.storage import default_storage
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from PIL import Image as PILImage

from annotate.models import Judgement, Pair
from trainer.pickapic import SCHEMA, labels_for

ROW_GROUP = 256  # rows per parquet row group: memory stays flat whatever the export's size
Progress = Callable[[int, int], None]


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


@dataclass
class ExportSummary:
    path: str
    rows: int = 0
    judgements: int = 0
    ties_dropped: int = 0
    ties_kept: int = 0
    both_bad_skipped: int = 0
    tastes: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    first: str | None = None
    last: str | None = None

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
    """Write the dataset file (atomically: a temporary file renamed into place) and its card beside it."""
    judgements = judgements_for(options)
    total = judgements.count()
    summary = ExportSummary(path=str(options.out))
    rows = _rows(judgements, options, summary, total, progress or (lambda done, total: None))
    options.out.parent.mkdir(parents=True, exist_ok=True)
    writer = _write_parquet if options.format == "pickapic" else _write_jsonl
    writer(rows, options)
    _write_card(options, summary)
    return summary


def _rows(judgements, options, summary: ExportSummary, total: int, progress: Progress) -> Iterator[dict]:
    per_prompt = dict(
        Pair.objects.filter(judgements__in=judgements).values("prompt").annotate(n=Count("id", distinct=True))
        .values_list("prompt", "n")
    )
    related = judgements.select_related(
        "annotator", "assignment", "pair__prompt", "pair__round", "pair__taste",
        "pair__image_a__checkpoint__base_model", "pair__image_b__checkpoint__base_model",
    )
    tastes, models = set(), set()
    done = 0
    images = _ImageReader(options.image_format)
    for group in _grouped(related.iterator(chunk_size=1000), by_pair=options.aggregate == "majority"):
        done += len(group)
        summary.judgements += len(group)
        row = _row(group, per_prompt, summary, options)
        if row is not None:
            pair = group[0].pair
            row["jpg_0"], row["jpg_1"] = images.read(pair.image_a), images.read(pair.image_b)
            tastes.add(row["taste"])
            models.update((row["model_0"], row["model_1"]))
            summary.rows += 1
            stamp = row["created_at"].isoformat()
            summary.first = min(summary.first or stamp, stamp)
            summary.last = max(summary.last or stamp, stamp)
            yield row
        if done % 500 < len(group):
            progress(done, total)
    progress(done, total)
    summary.tastes, summary.models = sorted(tastes), sorted(models)


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
    return {
        "are_different": a.sha256 != b.sha256,
        "best_image_uid": {"a": a.sha256, "b": b.sha256}.get(choice, ""),
        "caption": pair.prompt.text,
        "created_at": max(j.created_at for j in group),
        "has_label": True,
        "image_0_uid": a.sha256,
        "image_0_url": a.file.name,
        "image_1_uid": b.sha256,
        "image_1_url": b.file.name,
        "label_0": label_0,
        "label_1": label_1,
        "model_0": _model_name(a),
        "model_1": _model_name(b),
        "ranking_id": first.pk if single else pair.pk,
        "user_id": first.annotator_id if single else -1,
        "num_example_per_prompt": per_prompt.get(pair.prompt_id, 1),
        "taste": pair.taste.slug,
        "round": pair.round.number,
        "pair_id": pair.pk,
        "pair_kind": pair.kind,
        "seed_0": a.seed,
        "seed_1": b.seed,
        "params_0": json.dumps(a.params, sort_keys=True),
        "params_1": json.dumps(b.params, sort_keys=True),
        "guidance": a.params.get("guidance"),
        "flags_0": sorted({f for j in group for f in j.flags_a}),
        "flags_1": sorted({f for j in group for f in j.flags_b}),
        "choice": choice,
        "annotator": first.annotator.username if single else ",".join(sorted({j.annotator.username for j in group})),
        "judgements": len(group),
        "duration_ms": first.duration_ms if single else None,
        "shown_left": (0 if first.assignment.left_is_a else 1) if single else None,
    }


def _verdict(group: list[Judgement]) -> str | None:
    """The pair's verdict: a single judgement's choice, or the majority (a tie counts half to each side)."""
    votes = Counter(j.choice for j in group)
    if votes["both_bad"] == len(group):
        return None
    a = votes["a"] + votes["tie"] / 2
    b = votes["b"] + votes["tie"] / 2
    return "a" if a > b else "b" if b > a else "tie"


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


def _write_parquet(rows: Iterator[dict], options: ExportOptions) -> None:
    temp = _atomic_target(options.out)
    try:
        with pq.ParquetWriter(temp, SCHEMA, compression="zstd") as writer:
            batch: list[dict] = []
            for row in rows:
                batch.append(row)
                if len(batch) >= ROW_GROUP:
                    writer.write_table(pa.Table.from_pylist(batch, schema=SCHEMA))
                    batch = []
            if batch:
                writer.write_table(pa.Table.from_pylist(batch, schema=SCHEMA))
        os.replace(temp, options.out)
    finally:
        temp.unlink(missing_ok=True)


def _write_jsonl(rows: Iterator[dict], options: ExportOptions) -> None:
    """One JSON object a line, images as files in `images/` beside it, named by content."""
    images = options.out.parent / "images"
    images.mkdir(parents=True, exist_ok=True)
    temp = _atomic_target(options.out)
    try:
        with temp.open("w") as handle:
            for row in rows:
                for side in ("0", "1"):
                    data = row.pop(f"jpg_{side}")
                    suffix = ".jpg" if options.image_format == "jpeg" else Path(row[f"image_{side}_url"]).suffix
                    name = f"images/{row[f'image_{side}_uid']}{suffix}"
                    if not (options.out.parent / name).exists():
                        (options.out.parent / name).write_bytes(data)
                    row[f"image_{side}_file"] = name
                row["created_at"] = row["created_at"].isoformat()
                handle.write(json.dumps(row) + "\n")
        os.replace(temp, options.out)
    finally:
        temp.unlink(missing_ok=True)


def _write_card(options: ExportOptions, summary: ExportSummary) -> None:
    """README.md beside the dataset: what is in it, how it was cut, and the licence terms to respect."""
    tie_policy = (
        f"ties dropped ({summary.ties_dropped} rows)" if options.ties == "drop"
        else f"ties kept as label 0.5 ({summary.ties_kept} rows): diffusers' DPO script reads any label_0 ≠ 0 as a win"
    )
    lines = [
        f"# Chisel preference dataset: {options.out.name}",
        "",
        f"Exported {timezone.now().isoformat(timespec='seconds')} by Chisel.",
        "",
        "| | |",
        "|---|---|",
        f"| format | {'Pick-a-Pic v2 parquet (+ Chisel columns)' if options.format == 'pickapic' else 'JSONL, images in images/'} |",
        f"| rows | {summary.rows} |",
        f"| judgements read | {summary.judgements} |",
        f"| rows per | {'pair (majority of its judgements)' if options.aggregate == 'majority' else 'judgement'} |",
        f"| tastes | {', '.join(summary.tastes) or '—'} |",
        f"| date range | {summary.first or '—'} … {summary.last or '—'} |",
        f"| ties | {tie_policy} |",
        f"| both bad | {summary.both_bad_skipped} judgements skipped (no preference) |",
        f"| images | {'the stored lossless originals' if options.image_format == 'original' else 'JPEG, quality 95'} |",
        f"| models | {', '.join(summary.models) or '—'} |",
        "| agreement | not computed yet |",
        "",
        "Labels: `label_0` is 1 when image 0 won, 0 when image 1 won, 0.5 for a tie. `choice` repeats it as a/b/tie;",
        "`flags_0`/`flags_1` are the defects annotators marked on each image.",
        "",
        "## Licence",
        "",
        "The images were generated by the models named above. Their use is bound by those models' licences: outputs of",
        "FLUX.1 [dev] and FLUX.1 Krea [dev] fall under the FLUX.1 [dev] Non-Commercial License, which restricts using",
        "them to train other models; read it before sharing this dataset or training on it.",
        "",
    ]
    (options.out.parent / "README.md").write_text("\n".join(lines))
