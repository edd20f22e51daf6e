"""manage.py launch_round --taste SLUG (--prompts FILE | --tags a,b) [...]: launch a round from a shell."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotate.errors import DomainError
from annotate.guard_rails import default_guard_rails, registry
from annotate.launch import LaunchSettings, launch_warnings, round_launch
from annotate.launch_settings import QUOTAS
from annotate.models import Taste


class Command(BaseCommand):
    help = "Launch a round of a taste on its current checkpoint: sample, annotate, train, evaluate, promote."

    def add_arguments(self, parser):
        parser.add_argument("--taste", required=True)
        prompts = parser.add_argument_group("prompts (at least one source)")
        prompts.add_argument("--prompts", type=Path, help="a text file, one prompt per line")
        prompts.add_argument("--tags", default="", help="stored prompts carrying all these comma-separated tags")
        parser.add_argument("--held-out", type=float, default=QUOTAS["heldout_share"],
                            help="share of prompts kept for evaluation")
        parser.add_argument("--pairs", type=int, default=QUOTAS["pair_quota"], help="train pairs to sample")
        parser.add_argument("--labels", type=int, default=None, help="train labels before training (default pairs × overlap)")
        parser.add_argument("--overlap", type=int, default=QUOTAS["overlap"], help="annotators per pair")
        parser.add_argument("--eval-pairs", type=int, default=QUOTAS["eval_pair_quota"])
        model = parser.add_argument_group("model settings (default: the base model's own, from its chisel.json, "
                                          "else its family's)")
        model.add_argument("--steps", type=int, help="sampling steps")
        model.add_argument("--guidance", type=float)
        model.add_argument("--size", type=int, help="image width and height in pixels")
        model.add_argument("--beta", type=float)
        model.add_argument("--lr", type=float)
        model.add_argument("--train-steps", type=int)
        model.add_argument("--rank", type=int)
        model.add_argument("--reference", choices=("parent", "base"))
        model.add_argument("--carry-over-alpha", type=float,
                           help="keep the trained adapter only when the held-out labels carry over at this level "
                                "(trainer/carry_over.py); 0: no test")
        parser.add_argument("--threshold", type=float, default=QUOTAS["promotion_threshold"],
                            help="promote when the win rate's lower bound clears it")
        parser.add_argument("--no-auto-advance", action="store_true", help="advance each step by hand from the admin")
        rails = parser.add_argument_group("guard-rails (default: those on by default, with their default limits)")
        rails.add_argument("--rail", action="append", default=[], metavar="NAME", help="run this guard-rail too")
        rails.add_argument("--no-rail", action="append", default=[], metavar="NAME",
                           help="do not run this guard-rail ('all': none of those on by default)")
        rails.add_argument("--rail-limit", action="append", default=[], metavar="NAME.KEY=VALUE",
                           help="set a limit of a guard-rail (and run it), e.g. diversity.max_drop=0.3")

    def handle(self, *args, **o):
        taste = Taste.objects.filter(slug=o["taste"]).first()
        if taste is None:
            raise CommandError(f"There is no taste '{o['taste']}'.")
        texts = []
        if o["prompts"]:
            if not o["prompts"].is_file():
                raise CommandError(f"No prompt file at {o['prompts']}.")
            try:
                texts = o["prompts"].read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise CommandError(f"Cannot read the prompt file {o['prompts']}: {exc}") from exc
        sampling = {key: value for key, value in (("steps", o["steps"]), ("guidance", o["guidance"]),
                                                  ("width", o["size"]), ("height", o["size"])) if value is not None}
        training = {key: value for key, value in (("beta", o["beta"]), ("learning_rate", o["lr"]),
                                                  ("steps", o["train_steps"]), ("rank", o["rank"]),
                                                  ("reference", o["reference"]),
                                                  ("carry_over_alpha", o["carry_over_alpha"])) if value is not None}
        settings = LaunchSettings(
            tags=[t for t in o["tags"].split(",") if t], prompt_texts=texts, heldout_share=o["held_out"],
            pair_quota=o["pairs"], label_quota=o["labels"] or o["pairs"] * o["overlap"], overlap=o["overlap"],
            eval_pair_quota=o["eval_pairs"], sampling=sampling, training=training,
            promotion_threshold=o["threshold"], auto_advance=not o["no_auto_advance"],
            guard_rails=chosen_rails(on=o["rail"], off=o["no_rail"], limits=o["rail_limit"]),
        )
        try:
            round_ = round_launch(taste=taste, settings=settings)
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        for warning in launch_warnings(taste=round_.taste, settings=settings):
            self.stderr.write(f"Warning: {warning}")
        config = round_.sampling_config
        self.stdout.write(
            f"Launched round {round_.pk} ({taste.slug} #{round_.number}, {round_.state}): "
            f"{len(config['prompt_ids'])} train and {len(config['eval_prompt_ids'])} held-out prompts, "
            f"{round_.pair_quota} pairs × overlap {round_.overlap}, {round_.label_quota} labels, "
            f"{round_.eval_pair_quota} eval pairs. Watch it: manage.py round_status {round_.pk} --watch"
        )


def chosen_rails(*, on: list[str], off: list[str], limits: list[str]) -> dict:
    """The guard-rails a launch runs: the default ones, less `off`, plus `on` and those a limit is set for."""
    known = registry()
    for name in [*on, *off]:
        if name not in known and name != "all":
            raise CommandError(f"Unknown guard-rail '{name}'; known: {', '.join(known)}.")
    rails = {} if "all" in off else default_guard_rails()
    rails = {name: limits_ for name, limits_ in rails.items() if name not in off}
    rails.update({name: known[name].limits_with() for name in on if name not in rails})
    for text in limits:
        name, _, rest = text.partition(".")
        key, equals, value = rest.partition("=")
        if not (name and key and equals):
            raise CommandError(f"--rail-limit {text!r}: write NAME.KEY=VALUE, e.g. diversity.max_drop=0.3.")
        if name in off:
            raise CommandError(f"--rail-limit {text!r}: the guard-rail '{name}' is turned off by --no-rail.")
        if name not in known:
            raise CommandError(f"Unknown guard-rail '{name}'; known: {', '.join(known)}.")
        try:
            number = float(value)
        except ValueError:
            raise CommandError(f"--rail-limit {text!r}: {value!r} is not a number.") from None
        rails[name] = {**rails.get(name, known[name].limits_with()), key: number}
    return rails
