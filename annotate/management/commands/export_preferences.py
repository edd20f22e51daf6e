"""manage.py export_preferences --out PATH [filters] [--format pickapic|jsonl] [--aggregate none|majority] [--ties drop|keep]"""

from datetime import datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from annotate.exports import ExportOptions, export_preferences
from annotate.models import Pair


def when(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(f"'{text}' is not an ISO date or date-time (e.g. 2026-11-01 or 2026-11-01T12:00).") from exc
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


def add_export_arguments(parser) -> None:
    parser.add_argument("--format", choices=["pickapic", "jsonl"], default="pickapic")
    parser.add_argument("--aggregate", choices=["none", "majority"], default="none",
                        help="one row per judgement (none) or per pair (majority vote)")
    parser.add_argument("--ties", choices=["drop", "keep"], default="drop",
                        help="keep exports ties as label 0.5, which diffusers' DPO script reads as a win for image 0")
    parser.add_argument("--image-format", choices=["original", "jpeg"], default="original")
    parser.add_argument("--taste", action="append", default=[], dest="tastes")
    parser.add_argument("--round", action="append", type=int, default=[], dest="rounds", help="round id; repeatable")
    parser.add_argument("--annotator", action="append", default=[], dest="annotators")
    parser.add_argument("--kind", action="append", choices=Pair.Kind.values, default=[], dest="kinds")
    parser.add_argument("--since", type=when)
    parser.add_argument("--until", type=when)


class Command(BaseCommand):
    help = "Export judgements as a preference dataset (Pick-a-Pic v2 parquet or JSONL) with a dataset card."

    def add_arguments(self, parser):
        parser.add_argument("--out", type=Path, required=True)
        add_export_arguments(parser)

    def handle(self, *args, out, **options):
        fields = {k: options[k] for k in ("format", "aggregate", "ties", "image_format", "tastes", "rounds",
                                          "annotators", "kinds", "since", "until")}
        with tqdm(unit="judgement", desc="exporting") as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            summary = export_preferences(ExportOptions(out=out, **fields), progress)
        self.stdout.write(
            f"Wrote {summary.rows} rows from {summary.judgements} judgements to {out} "
            f"(ties dropped: {summary.ties_dropped}, ties kept: {summary.ties_kept}, "
            f"both-bad skipped: {summary.both_bad_skipped}); card: {out.parent / 'README.md'}"
        )
