"""W&B sweeps: validate a sweep file offline, then create and start it.

A sweep file under ``experiments/sweeps/`` is a standard W&B sweep configuration whose ``command`` calls
``umadapt fit --config ... ${args}``: every rank of a DDP run parses the same values, and the swept values come
last so they win over the YAML files. :func:`validate_sweep` checks, without a server:

- the command runs ``umadapt fit``, names existing ``--config`` files and ends in ``${args}``;
- every swept parameter is a valid CLI key, by parsing exactly the arguments the agent would pass;
- the metric is a ``stage/domain/...`` name, and it uses no target labels (``/target/`` in a ``val`` metric) unless
  the sweep's ``description`` declares it an oracle sweep.

``python -m umadapt.sweeps experiments/sweeps/<name>.yaml [--count N]`` (``make sweep-<name>``) validates, creates
the sweep and runs an agent. Sweeps need a W&B server: log in with ``wandb login`` and set ``WANDB_MODE=online``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

METRIC_PATTERN = re.compile(r"^(train|val)/(source|target|domain|grl|weights)(/[A-Za-z0-9_.]+)+$")


def load_sweep(path: str | Path) -> dict[str, Any]:
    with open(path) as handle:
        sweep = yaml.safe_load(handle)
    if not isinstance(sweep, dict):
        raise ValueError(f"{path}: a sweep file must be a YAML mapping.")
    return sweep


def sample_value(spec: dict[str, Any]) -> Any:
    """A value the agent could send for one parameter specification (first value, or the range's minimum)."""
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return spec["values"][0]
    if "min" in spec:
        return spec["min"]
    raise ValueError(f"Parameter specification {spec} has none of value, values, min.")


def agent_arguments(sweep: dict[str, Any]) -> list[str]:
    """The ``--key=value`` arguments W&B's ``${args}`` expands to, for one sample of every parameter."""
    return [f"--{name}={sample_value(spec)}" for name, spec in sweep.get("parameters", {}).items()]


def command_arguments(sweep: dict[str, Any]) -> list[str]:
    """The CLI arguments of the sweep's command between ``fit`` and ``${args}``."""
    command = [str(c) for c in sweep.get("command", [])]
    if "fit" not in command:
        raise ValueError("The sweep command must run `umadapt fit` (e.g. [${env}, umadapt, fit, --config, ..., ${args}]).")
    return [c for c in command[command.index("fit") + 1 :] if c != "${args}"]


def validate_sweep(path: str | Path, root: str | Path = ".") -> list[str]:
    """Problems with a sweep file (empty when it is valid). Parses the agent's arguments with the real CLI."""
    from umadapt.cli import build_cli

    problems: list[str] = []
    sweep = load_sweep(path)
    command = [str(c) for c in sweep.get("command", [])]
    if not command or command[-1] != "${args}":
        problems.append("the command must end in ${args}, after the --config files, so the swept values win")
    if "umadapt" not in command or "fit" not in command:
        problems.append("the command must call `umadapt fit`")
        return problems
    args = command_arguments(sweep)
    for i, arg in enumerate(args[:-1]):
        if arg == "--config" and not (Path(root) / args[i + 1]).is_file():
            problems.append(f"config file {args[i + 1]} does not exist")
    metric = sweep.get("metric", {}).get("name", "")
    if not METRIC_PATTERN.match(metric):
        problems.append(f"metric {metric!r} is not a logged stage/domain/... name (e.g. val/source/loss)")
    if "/target/" in metric and "oracle" not in str(sweep.get("description", "")).lower():
        problems.append(
            f"metric {metric!r} uses target labels; choose a source or label-free metric, or say 'oracle sweep' in "
            "the description"
        )
    if not sweep.get("parameters"):
        problems.append("the sweep has no parameters")
    if problems:
        return problems
    parameters = agent_arguments(sweep)
    cwd = os.getcwd()
    try:
        os.chdir(root)
        stderr = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
            build_cli([*args, *parameters, "--print_config"], run=False)
    except SystemExit as exit_info:
        if exit_info.code not in (0, None):
            problems.append(f"the agent's arguments {parameters} do not parse: {stderr.getvalue().strip()[-800:]}")
    finally:
        os.chdir(cwd)
    return problems


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m umadapt.sweeps", description="Validate, create and run a W&B sweep.")
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--count", type=int, default=None, help="runs for this agent (default: until stopped)")
    parser.add_argument("--validate-only", action="store_true")
    args = parser.parse_args(argv)
    problems = validate_sweep(args.sweep)
    if problems:
        raise SystemExit(f"{args.sweep}: " + "; ".join(problems))
    print(f"{args.sweep}: valid")
    if args.validate_only:
        return
    if os.environ.get("WANDB_MODE", "online") in ("offline", "disabled", "dryrun"):
        raise SystemExit(
            f"Sweeps need a W&B server, but WANDB_MODE={os.environ['WANDB_MODE']}. Run `wandb login`, then "
            f"`WANDB_MODE=online make sweep-{args.sweep.stem}`."
        )
    import wandb

    sweep = load_sweep(args.sweep)
    sweep_id = wandb.sweep(sweep, project=sweep.get("project"), entity=sweep.get("entity"))
    target = "/".join(p for p in (sweep.get("entity"), sweep.get("project"), sweep_id) if p)
    command = [sys.executable, "-m", "wandb", "agent", target] + (["--count", str(args.count)] if args.count else [])
    raise SystemExit(subprocess.call(command))


if __name__ == "__main__":
    main()
