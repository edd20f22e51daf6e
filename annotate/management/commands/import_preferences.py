"""manage.py import_preferences PATH --taste SLUG --source NAME [--format auto|pickapic|jsonl]: all rows or none."""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotate.import_sources import FORMATS
from annotate.imports import ImportRejected, import_preferences
from annotate.models import Taste
from trainer.images import MAX_PIXELS


class Command(BaseCommand):
    help = ("Import a preference file, Pick-a-Pic parquet or JSONL as export_preferences writes it, as judgements of "
            "the pseudo-annotator import:<source>. All rows or none: a bad file is refused with one line.")

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="a parquet or JSONL file, or a dataset folder an export wrote")
        parser.add_argument("--taste", required=True)
        parser.add_argument("--source", required=True, help="a short name for where the data came from")
        parser.add_argument("--format", choices=FORMATS, default="auto",
                            help="auto (by content: parquet starts with PAR1, JSONL with '{'), pickapic or jsonl")
        parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="larger images are refused")

    def handle(self, *args, path, taste, source, format, max_pixels, **options):
        if not path.is_file() and not path.is_dir():
            raise CommandError(f"No such file: {path}")
        taste_row = Taste.objects.filter(slug=taste).first()
        if taste_row is None:
            raise CommandError(f"There is no taste '{taste}'.")
        with tqdm(unit="row", desc="importing", leave=False, disable=not sys.stderr.isatty()) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                summary = import_preferences(path=path, taste=taste_row, source=source, max_pixels=max_pixels,
                                             progress=progress, format=format)
            except ImportRejected as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Imported {summary.rows} rows ({summary.ties} ties, {summary.captions} captions) into round "
            f"{summary.round_number} of '{taste}', judged by {summary.annotator}."
        )
