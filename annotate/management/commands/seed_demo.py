"""manage.py seed_demo: the demo taste, users and a round of drawn pairs; prints the logins."""

from django.core.management.base import BaseCommand

from annotate.demo import demo_url_record, demo_world_seed


class Command(BaseCommand):
    help = "Seed the demo world (idempotent) and print its logins."

    def add_arguments(self, parser):
        parser.add_argument("--pairs", type=int, default=60)
        parser.add_argument("--url", help="the URL the demo will serve, recorded for simulate_annotators")

    def handle(self, *args, pairs, url, **options):
        logins = demo_world_seed(pairs=pairs)
        if url:
            demo_url_record(url=url)
        width = max(map(len, logins))
        self.stdout.write("Demo logins (role, username, password):")
        for username, password in logins.items():
            role = "lead     " if username == "lead" else "annotator"
            self.stdout.write(f"  {role}  {username:<{width}}  {password}")
