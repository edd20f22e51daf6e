"""manage.py create_taste SLUG [--name NAME]: a new taste with an empty cohort."""

from django.core.management.base import BaseCommand, CommandError

from annotate import services
from annotate.models import Taste


class Command(BaseCommand):
    help = "Create a taste: a named target aesthetic with its own cohort of annotators."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="")
        parser.add_argument("--description", default="")

    def handle(self, *args, slug, name, description, **options):
        if Taste.objects.filter(slug=slug).exists():
            raise CommandError(f"Taste '{slug}' already exists.")
        taste = services.taste_create(slug=slug, name=name, description=description)
        self.stdout.write(f"Created taste '{taste.slug}' ({taste.name}).")
