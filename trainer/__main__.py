"""`python -m trainer train --config CFG --data PAIRS.parquet --base MODEL_DIR [--parent LORA_DIR …] --out DIR`."""

import argparse
import json
import sys
from pathlib import Path

from trainer.config import TrainConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer", description="Diffusion-DPO LoRA training on a preference file.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("train", help="train a LoRA on a Pick-a-Pic format parquet file")
    run.add_argument("--config", type=Path, help="YAML training settings (see trainer/config.py)")
    run.add_argument("--data", type=Path, required=True)
    run.add_argument("--base", type=Path, required=True, help="diffusers model folder")
    run.add_argument("--parent", type=Path, action="append", default=[], help="LoRA folders of the parent, oldest first")
    run.add_argument("--out", type=Path, required=True, help="run folder: checkpoint/, metrics.jsonl, states/")
    run.add_argument("--checkpoint", type=Path, help="where the LoRA goes (default: OUT/checkpoint)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting (YAML value)")
    args = parser.parse_args(argv)

    import yaml

    from trainer.data import DatasetError
    from trainer.train import TrainingDiverged, train

    settings = yaml.safe_load(args.config.read_text()) if args.config else {}
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key] = yaml.safe_load(value)
    try:
        config = TrainConfig.from_dict(settings or {})
        result = train(config, data=args.data, base=args.base, out=args.out, parents=tuple(args.parent),
                       checkpoint=args.checkpoint)
    except (DatasetError, TrainingDiverged, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"checkpoint": str(result.checkpoint), "metrics": str(result.metrics), "steps": result.steps,
                      "pairs": result.pairs, "ties_dropped": result.ties_dropped, "final": result.final}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
