"""manage.py create_annotator NAME --taste SLUG [--taste SLUG…]: an annotator (new or existing) and their API token."""

import getpass

from django.core.management.base import BaseCommand, CommandError

from annotate import onboarding
from annotate.errors import DomainError
from annotate.models import Taste


class Command(BaseCommand):
    help = ("Add an annotator to one or more tastes' cohorts (creating them if new) and print their API token. "
            "An existing user keeps their password unless --password or --ask-password is given.")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--taste", action="append", required=True, help="Taste slug; repeat for several.")
        parser.add_argument("--password", help="Set a login password (checked by the password validators).")
        parser.add_argument("--ask-password", action="store_true", help="Ask for the password instead.")

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
            enrolment = onboarding.annotator_enrol(username=username, tastes=tastes, password=password or None)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        slugs = ", ".join(t.slug for t in tastes)
        if enrolment.created:
            self.stdout.write(f"Created annotator '{username}' in {slugs}.")
        else:
            joined = f"added to {', '.join(enrolment.joined)}" if enrolment.joined else f"already in {slugs}"
            kept = "password changed" if password else "password unchanged"
            self.stdout.write(f"Existing user '{username}': {joined}; {kept}.")
        self.stdout.write(f"API token: {enrolment.token}")
