"""manage.py rotate_token USER [--revoke]: give a user a new API token (the old one stops working), or take it away."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotate.tokens import token_revoke, token_rotate


class Command(BaseCommand):
    help = "Replace a user's API token and print the new one (the old one is refused from now on), or --revoke it."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--revoke", action="store_true", help="Delete the token without making a new one.")

    def handle(self, *args, username, revoke, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"There is no user '{username}'.")
        if revoke:
            had = token_revoke(user=user)
            self.stdout.write(f"Revoked the API token of '{username}'." if had else f"'{username}' had no API token.")
            return
        self.stdout.write(f"API token of '{username}': {token_rotate(user=user)}")
