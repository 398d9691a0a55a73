"""``python -m umadapt.tree``: print the tree a trained controllable model
(:class:`~umadapt.methods.ControllableMultiTask`) runs for a preference and one or more budgets, with its MACs, without
touching any data::

    python -m umadapt.tree --config experiments/dynamic/base.yaml --config experiments/dynamic/weights.yaml \\
        --ckpt_path <run>/checkpoints/last.ckpt --preference 0.6 0.2 0.2 --budget 0 0.5 1

The ``--config`` files are the ones the run was trained with; the checkpoint is read with ``weights_only=True``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from jsonargparse import ArgumentError

from umadapt.checkpoints import read_state_dict
from umadapt.errors import ConfigError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m umadapt.tree", description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", required=True, help="the run's config files, in order")
    parser.add_argument("--ckpt_path", required=True, help="the run's last.ckpt")
    parser.add_argument("--preference", type=float, nargs="+", help="one weight per task (default: uniform)")
    parser.add_argument("--budget", type=float, nargs="+", default=[1.0], help="budgets in [0, 1] (default 1)")
    args = parser.parse_args(argv)
    try:
        from umadapt.cli import build_cli

        configs = [a for path in args.config for a in ("--config", path)]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore")
            cli = build_cli([*configs, "--trainer.logger=false"], run=False)
        model = cli.model
        if not hasattr(model, "describe_request"):
            raise ConfigError(
                f"{type(model).__name__} has no tree to print: only umadapt.methods.ControllableMultiTask takes a "
                "preference and a budget."
            )
        model.load_state_dict(read_state_dict(args.ckpt_path, "--ckpt_path"))
        for budget in args.budget:
            print(model.describe_request(args.preference, budget), end="\n\n")
    except (ValueError, ArgumentError) as error:  # includes ConfigError; ArgumentError: a wrong config key
        if os.environ.get("UMADAPT_TRACEBACK"):
            raise
        print(f"umadapt.tree: error: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
