"""manage.py seed_demo: the demo taste, users and a round of drawn pairs; prints the logins."""

from django.core.management.base import BaseCommand, CommandError

from annotate.demo import demo_url_record, demo_world_seed
from annotate.launch_settings import QUOTAS


class Command(BaseCommand):
    help = "Seed the demo world (idempotent) and print its logins."

    def add_arguments(self, parser):
        parser.add_argument("--pairs", type=int, default=QUOTAS["pair_quota"], help="pairs in the first round")
        parser.add_argument("--eval-pairs", type=int, default=QUOTAS["eval_pair_quota"],
                            help="child-vs-parent pairs of the first round")
        parser.add_argument("--train-steps", type=int, help="training steps of the first round (default: the model's)")
        parser.add_argument("--url", help="the URL the demo will serve, recorded for simulate_annotators")

    def handle(self, *args, pairs, eval_pairs, train_steps, url, **options):
        if min(pairs, eval_pairs, train_steps or 1) < 1:
            raise CommandError("--pairs, --eval-pairs and --train-steps take a whole number of at least 1.")
        logins = demo_world_seed(pairs=pairs, eval_pairs=eval_pairs, train_steps=train_steps)
        if url:
            demo_url_record(url=url)
        width = max(map(len, logins))
        self.stdout.write("Demo logins (role, username, password):")
        for username, password in logins.items():
            role = "lead     " if username == "lead" else "annotator"
            self.stdout.write(f"  {role}  {username:<{width}}  {password}")
