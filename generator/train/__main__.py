"""`python -m generator.train CONFIG [--set key=value ...]` (also under `accelerate launch -m`).

Prints one JSON event per line on stdout (main process); exit code 2 for a bad config.
"""

from __future__ import annotations

import argparse
import json
import sys


def build_parser() -> argparse.ArgumentParser:
    """The trainer's command line (what the training flows launch)."""
    parser = argparse.ArgumentParser(prog="python -m generator.train", description=__doc__)
    parser.add_argument("config", help="training YAML (see generator/train/configs/)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.max_steps=10",
    )
    parser.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="stop after this many steps (checkpointed), as if preempted",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from generator.train.config import ConfigError, load_config

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(json.dumps({"event": "error", "kind": "config", "message": str(exc)}), flush=True)
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from generator.train.stages import trainer_for

    trainer_for(cfg).train(stop_after=args.stop_after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
