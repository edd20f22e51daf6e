"""manage.py create_lead NAME [--superuser]: a research lead (the Lead group: admin and lead endpoints) and their API token."""

import getpass

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotate import onboarding, services
from annotate.errors import DomainError


class Command(BaseCommand):
    help = "Create a research lead (staff in the Lead group: admin and lead endpoints) and print an API token."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--password", help="Set a login password (or use --ask-password).")
        parser.add_argument("--ask-password", action="store_true")
        parser.add_argument("--superuser", action="store_true",
                            help="Also make them a superuser (every permission, users and groups included).")

    def handle(self, *args, username, password, ask_password, superuser, **options):
        if ask_password:
            password = getpass.getpass("Password: ")
        try:
            if password:
                onboarding.password_check(password=password, user=get_user_model()(username=username))
            user, token = services.lead_create(username=username, password=password, superuser=superuser)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Created {'superuser ' if superuser else ''}lead '{user.username}'.")
        self.stdout.write(f"API token: {token}")
