"""manage.py create_taste SLUG [--name NAME] [--model DIR]: a new taste with an empty cohort."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotate import services
from annotate.models import Taste


class Command(BaseCommand):
    help = "Create a taste: a named target aesthetic with its own cohort of annotators."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="")
        parser.add_argument("--description", default="")
        parser.add_argument("--model", type=Path, help="a diffusers base model folder: the taste's first checkpoint")

    def handle(self, *args, slug, name, description, model, **options):
        from django.db import transaction

        from annotate.errors import DomainError
        from annotate.launch import taste_base_checkpoint

        if Taste.objects.filter(slug=slug).exists():
            raise CommandError(f"Taste '{slug}' already exists.")
        try:
            with transaction.atomic():
                taste = services.taste_create(slug=slug, name=name, description=description)
                if model is not None:
                    checkpoint = taste_base_checkpoint(taste=taste, model_path=model)
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Created taste '{taste.slug}' ({taste.name}).")
        if model is not None:
            base = checkpoint.base_model
            self.stdout.write(f"Its current checkpoint is the bare base model {base.path}, sampled at "
                              f"{base.default_width}×{base.default_height} px in {base.default_steps} steps "
                              f"(change it in the admin's base models).")
