"""manage.py import_gold FILE.csv: mark pairs gold with their expected answers (columns pair_id, choice)."""

import csv

from django.core.management.base import BaseCommand, CommandError

from annotate.errors import DomainError
from annotate.gold import gold_import


class Command(BaseCommand):
    help = ("Mark pairs gold from a CSV file with a header and columns pair_id, choice (a, b or tie), all rows or "
            "none. Gold pairs are served to every annotator of their taste once, scored, and never trained on.")

    def add_arguments(self, parser):
        parser.add_argument("file")

    def handle(self, *args, file, **options):
        try:
            with open(file, newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                if not reader.fieldnames or not {"pair_id", "choice"} <= set(reader.fieldnames):
                    raise CommandError(f"{file} needs a header with the columns pair_id and choice.")
                rows = [(row["pair_id"] or "", row["choice"] or "") for row in reader]
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"Cannot read {file}: {error}.") from error
        try:
            count = gold_import(rows=rows)
        except DomainError as error:
            raise CommandError(f"{file} {error.message} Nothing was imported.") from error
        self.stdout.write(f"{count} pair(s) are gold.")
