"""manage.py export_preferences --out NAME.parquet|NAME.jsonl|FOLDER/ [filters] [--aggregate none|majority] [--ties drop|keep] [--overwrite]"""

import sys
from datetime import datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from annotate.exports import ExportOptions, ExportRefused, export_preferences
from annotate.models import Pair

TIES_WARNING = ("Warning: {n} ties kept as label 0.5; diffusers' train_diffusion_dpo.py treats any label_0 other than 0 "
                "as \"image 0 wins\", so export with --ties drop (the default) for that script.")


def when(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(f"'{text}' is not an ISO date or date-time (e.g. 2026-11-01 or 2026-11-01T12:00).") from exc
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


def share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise CommandError(f"--validation-share {text}: give a number between 0 and 1 (e.g. 0.1).")
    return value


def add_export_arguments(parser) -> None:
    parser.add_argument("--format", choices=["pickapic", "jsonl"],
                        help="pickapic (parquet) or jsonl; by default taken from --out's extension, else pickapic")
    parser.add_argument("--aggregate", choices=["none", "majority"], default="none",
                        help="one row per judgement (none) or per pair (majority vote)")
    parser.add_argument("--ties", choices=["drop", "keep"], default="drop",
                        help="keep exports ties as label 0.5, which diffusers' DPO script reads as a win for image 0")
    parser.add_argument("--image-format", choices=["original", "jpeg"], default="original")
    parser.add_argument("--taste", action="append", default=[], dest="tastes")
    parser.add_argument("--round", action="append", type=int, default=[], dest="rounds", help="round id; repeatable")
    parser.add_argument("--annotator", action="append", default=[], dest="annotators")
    parser.add_argument("--kind", action="append", choices=Pair.Kind.values, default=[], dest="kinds")
    parser.add_argument("--since", help="ISO date or date-time (read in handle: a bad one is one line, not argparse's)")
    parser.add_argument("--until")


class Command(BaseCommand):
    help = ("Export judgements as a preference dataset (Pick-a-Pic v2 parquet or JSONL) with a dataset card: "
            "--out NAME.parquet writes NAME.parquet and NAME.parquet.README.md; --out FOLDER/ writes a dataset folder "
            "(README.md, data/train.parquet and data/validation.parquet) that datasets.load_dataset(FOLDER) reads. "
            "Never overwrites a file it did not write.")

    def add_arguments(self, parser):
        parser.add_argument("--out", type=Path, required=True,
                            help="NAME.parquet or NAME.jsonl (one file, card beside it), or a folder (a dataset folder)")
        parser.add_argument("--overwrite", action="store_true",
                            help="replace an earlier export's file and card (a card Chisel did not write: never)")
        parser.add_argument("--validation-share", default="0.1",
                            help="a dataset folder without eval pairs holds out this share of its prompts as the "
                                 "validation split (default 0.1)")
        add_export_arguments(parser)

    def handle(self, *args, out, overwrite, format, validation_share, **options):
        format = format or ("jsonl" if out.suffix == ".jsonl" else "pickapic")
        fields = {k: options[k] for k in ("aggregate", "ties", "image_format", "tastes", "rounds", "annotators",
                                          "kinds")}
        fields.update({k: when(options[k]) if options[k] else None for k in ("since", "until")})
        with tqdm(unit="judgement", desc="exporting", leave=False, disable=not sys.stderr.isatty()) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                summary = export_preferences(ExportOptions(out=out, format=format, overwrite=overwrite,
                                                           validation_share=share(validation_share), **fields),
                                             progress)
            except ExportRefused as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Wrote {summary.rows} rows from {summary.judgements} judgements to {summary.path} "
            f"(ties dropped: {summary.ties_dropped}, ties kept: {summary.ties_kept}, "
            f"both-bad skipped: {summary.both_bad_skipped}); card: {summary.card}"
        )
        if fields["ties"] == "keep" and summary.ties_kept:
            self.stderr.write(TIES_WARNING.format(n=summary.ties_kept))
