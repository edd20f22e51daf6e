"""manage.py round_status ROUND [--watch]: where a round stands, step by step."""

import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotate.loop import round_progress
from annotate.models import Round

STEPS = ("sampling", "annotation", "training", "evaluation")
FINAL = (Round.State.DONE, Round.State.FAILED, Round.State.CANCELLED)


class Command(BaseCommand):
    help = "Show a round's state and progress; --watch follows it with progress bars until it ends."

    def add_arguments(self, parser):
        parser.add_argument("round", type=int)
        parser.add_argument("--watch", action="store_true")
        parser.add_argument("--every", type=float, default=2.0, help="seconds between refreshes with --watch")

    def handle(self, *args, round, watch, every, **options):
        if not Round.objects.filter(pk=round).exists():
            raise CommandError(f"There is no round {round}.")
        progress = round_progress(round_id=round)
        if watch:
            bars = {step: tqdm(desc=f"{step:<10}", total=max(1, progress[step]["total"]), unit="", position=i)
                    for i, step in enumerate(STEPS)}
            while progress["state"] not in FINAL:
                for step, bar in bars.items():
                    bar.total = max(1, progress[step]["total"])
                    bar.n = min(progress[step]["done"], bar.total)
                    bar.set_postfix_str(progress["state"] + (" (paused)" if progress["paused"] else ""), refresh=False)
                    bar.refresh()
                time.sleep(every)
                progress = round_progress(round_id=round)
            for bar in bars.values():
                bar.close()
        self.stdout.write(self.summary(progress))

    def summary(self, p: dict) -> str:
        lines = [f"Round {p['id']}: {p['state']}{' (paused)' if p['paused'] else ''}"]
        if p["error"]:
            lines.append(f"  error ({p['failed_in'] or p['state']}): {p['error']}")
        for step in STEPS:
            lines.append(f"  {step:<10} {p[step]['done']:>6} / {p[step]['total']}")
        if p["base"]["total"]:
            lines.append(f"  {'vs base':<10} {p['base']['done']:>6} / {p['base']['total']}")
        for label, win in (("eval win rate", p["evaluation"]["win"]), ("win rate against the base", p["base"]["win"])):
            if win:
                rate = "—" if win["rate"] is None else f"{win['rate']:.3f}"
                lines.append(f"  {label} {rate} [{win['low']:.3f}, {win['high']:.3f}] over {win['n']} judgements")
        decision = p["decision"]
        if decision:
            lines.append(f"  decision: {'promoted' if decision['promote'] else 'rejected'} — {decision['reason']}")
            for name, check in (decision.get("guard_rails") or {}).items():
                state = "off" if check.get("on") is False else "holds" if check["ok"] else "BROKEN"
                lines.append(f"    {name}: {state} — {check['detail']}")
        return "\n".join(lines)
