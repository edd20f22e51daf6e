"""manage.py create_annotator NAME --taste SLUG [--taste SLUG…]: an annotator and their API token."""

import getpass

from django.core.management.base import BaseCommand, CommandError

from annotate import services
from annotate.errors import DomainError
from annotate.models import Taste


class Command(BaseCommand):
    help = "Create an annotator in one or more tastes' cohorts and print an API token."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--taste", action="append", required=True, help="Taste slug; repeat for several.")
        parser.add_argument("--password", help="Set a login password (asked for with --ask-password).")
        parser.add_argument("--ask-password", action="store_true")

    def handle(self, *args, username, taste, password, ask_password, **options):
        tastes = list(Taste.objects.filter(slug__in=taste))
        missing = sorted(set(taste) - {t.slug for t in tastes})
        if missing:
            known = ", ".join(Taste.objects.values_list("slug", flat=True)) or "none yet"
            raise CommandError(
                f"Unknown taste(s): {', '.join(missing)}. Known tastes: {known}. Create one with `manage.py create_taste`."
            )
        if ask_password:
            password = getpass.getpass("Password: ")
        try:
            user, token = services.annotator_create(username=username, tastes=tastes, password=password)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Created annotator '{user.username}' in {', '.join(t.slug for t in tastes)}.")
        self.stdout.write(f"API token: {token}")
