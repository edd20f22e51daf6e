"""Gate calibration: the promotion rule's false-promotion rate (true win rate ½) and its power (0.6, 0.7).

Simulates `--rounds` rounds' eval judgements per scenario (statistics only: no images, no training; see
`annotate/gate_calibration.py` for the model of annotators), applies the gate (`annotate.stats.clustered_win_rate`,
lower bound above ½) and, for comparison, the old Wilson interval over judgements, and prints the share of rounds
each promotes with a 95% Clopper–Pearson interval; the last line is one JSON object with the same figures.
The default scenario is a launched round's: 48 eval pairs, overlap 2, 12 held-out prompts, 10% ties.

    .venv/bin/python bench/gate.py                     # the tables in docs/evaluation.md (about 2 minutes)
    .venv/bin/python bench/gate.py --rounds 400 --prompts 12
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from annotate.gate_calibration import (  # noqa: E402
    EVAL_PAIRS, OVERLAP, PAIR_SD, PROMPT_SD, PROMPTS, TIE_SHARE, Scenario, promotion_rates,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2000, help="simulated rounds per scenario (at least 200)")
    parser.add_argument("--eval-pairs", type=int, default=EVAL_PAIRS)
    parser.add_argument("--overlap", type=int, default=OVERLAP)
    parser.add_argument("--prompts", type=int, nargs="+", default=[3, 6, PROMPTS, 24],
                        help="held-out prompt counts to try (the first rows use the default, %d)" % PROMPTS)
    parser.add_argument("--prompt-sd", type=float, default=PROMPT_SD)
    parser.add_argument("--pair-sd", type=float, default=PAIR_SD)
    parser.add_argument("--ties", type=float, default=TIE_SHARE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--true-rates", type=float, nargs="+", default=[0.5, 0.6, 0.7],
                        help="the child's true win rates to simulate (first 0.5: the false-promotion row)")
    args = parser.parse_args()
    if args.rounds < 1:
        sys.exit("--rounds must be at least 1")
    started = time.monotonic()
    prompts = [PROMPTS, *[p for p in args.prompts if p != PROMPTS]] if PROMPTS in args.prompts else args.prompts
    rows = []
    for count in prompts:
        for true_rate in args.true_rates:
            scenario = Scenario(true_rate=true_rate, eval_pairs=args.eval_pairs, overlap=args.overlap, prompts=count,
                                prompt_sd=args.prompt_sd, pair_sd=args.pair_sd, tie_share=args.ties)
            rows.append(promotion_rates(scenario, rounds=args.rounds, seed=args.seed))
    print(f"{args.rounds} simulated rounds per row; eval pairs {args.eval_pairs}, overlap {args.overlap}, "
          f"prompt sd {args.prompt_sd}, pair sd {args.pair_sd}, ties {args.ties:.0%}")
    print(f"{'prompts':>7} {'true win':>8}  {'promoted (gate)':<24} {'promoted (old Wilson)':<24}")
    for row in rows:
        cells = [f"{r['share']:6.1%} [{r['low']:.1%}, {r['high']:.1%}]" for r in (row["clustered"], row["wilson"])]
        print(f"{row['prompts']:>7} {row['true_rate']:>8.1f}  {cells[0]:<24} {cells[1]:<24}")
    null = rows[0]["clustered"]
    verdict = "PASS" if null["low"] <= 0.025 else "FAIL"
    print(f"{verdict}  false promotion at the first scenario {null['share']:.1%} (95% CI {null['low']:.1%}-"
          f"{null['high']:.1%}) within sampling error of the nominal 2.5%")
    print(json.dumps({"rows": rows, "wall_s": round(time.monotonic() - started, 1)}))


if __name__ == "__main__":
    main()
