"""W&B sweeps: validate a sweep file offline, then create and start it.

A sweep file under ``experiments/sweeps/`` is a standard W&B sweep configuration whose ``command`` calls
``umadapt fit --config ... ${args}``: every rank of a DDP run parses the same values, and the swept values come
last so they win over the YAML files. :func:`validate_sweep` checks, without a server, and reports every problem:

- the command runs ``umadapt fit``, names existing ``--config`` files and ends in ``${args}``;
- ``method`` and every ``distribution`` are names W&B knows; ranges have numeric bounds with ``min <= max``;
- every value the agent can pass (each of ``values``, ``value``, both bounds of a range) is accepted by the real
  CLI: ``--key=value`` after the ``--config`` files, parsed and instantiated, so a wrong type, an unknown key or a
  value a constructor refuses (a batch size of -8) is named with its parameter;
- ``metric.goal`` is minimize or maximize, and ``metric.name`` is a name a short smoke run (one CPU epoch of one
  batch per loader, logged to a temporary CSV logger) really logged; it uses no target labels (``/target/`` in a
  ``val`` metric) unless the sweep's ``description`` declares it an oracle sweep.

``python -m umadapt.sweeps experiments/sweeps/<name>.yaml [--count N]`` (``make sweep-<name>``) validates, creates
the sweep and runs an agent; ``--validate-only`` stops after validating. ``python -m umadapt.sweeps --agent
ENTITY/PROJECT/SWEEP_ID [--count N]`` joins a sweep created elsewhere (another machine's agent; see
``docs/scaling.md``): it neither validates nor creates anything. Sweeps need a W&B server: log in with
``wandb login`` and set ``WANDB_MODE=online``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import difflib
import functools
import io
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")
# Every W&B sweep distribution: the `distribution` enums of W&B's sweep-configuration JSON schema
# (github.com/wandb/sweeps, src/sweeps/config/schema.json), listed under "distribution" on
# https://docs.wandb.ai/models/sweeps/sweep-config-keys.
DISTRIBUTIONS = (
    "constant",
    "categorical",
    "categorical_w_probabilities",
    "int_uniform",
    "uniform",
    "q_uniform",
    "log_uniform",
    "log_uniform_values",
    "q_log_uniform",
    "q_log_uniform_values",
    "inv_log_uniform",
    "inv_log_uniform_values",
    "normal",
    "q_normal",
    "log_normal",
    "q_log_normal",
    "beta",
    "q_beta",
)
# Distributions on a (min, max) range, and the value the agent passes at a bound (``log_uniform`` bounds are
# exponents: its values run from exp(min) to exp(max); ``inv_log_uniform`` from exp(-max) to exp(-min)).
BOUNDED: dict[str, Callable[[float], float]] = {
    "int_uniform": lambda bound: bound,
    "uniform": lambda bound: bound,
    "q_uniform": lambda bound: bound,
    "log_uniform": math.exp,
    "q_log_uniform": math.exp,
    "inv_log_uniform": lambda bound: math.exp(-bound),
    "log_uniform_values": lambda bound: bound,
    "q_log_uniform_values": lambda bound: bound,
    "inv_log_uniform_values": lambda bound: bound,
}
# The keys of one parameter's specification in W&B's schema (``parameters`` would nest a dictionary).
SPEC_KEYS = ("distribution", "value", "values", "probabilities", "min", "max", "q", "mu", "sigma", "a", "b")
POSITIVE_MIN = ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values")
# Unbounded distributions: checked at their centre (W&B's defaults: mu 0, sigma 1, a = b = 1).
CENTRES: dict[str, Callable[[dict[str, Any]], float]] = {
    "normal": lambda spec: spec.get("mu", 0.0),
    "q_normal": lambda spec: spec.get("mu", 0.0),
    "log_normal": lambda spec: math.exp(spec.get("mu", 0.0)),
    "q_log_normal": lambda spec: math.exp(spec.get("mu", 0.0)),
    "beta": lambda spec: spec.get("a", 1.0) / (spec.get("a", 1.0) + spec.get("b", 1.0)),
    "q_beta": lambda spec: spec.get("a", 1.0) / (spec.get("a", 1.0) + spec.get("b", 1.0)),
}
SMOKE_BATCHES = 1
# After the agent's arguments: one short CPU epoch (its logger and root folder: a temporary folder).
SMOKE_ARGUMENTS = (
    "--trainer.max_epochs=1",
    "--trainer.max_steps=-1",
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--trainer.num_nodes=1",
    "--trainer.strategy=auto",
    "--trainer.precision=32-true",
    "--trainer.val_check_interval=1.0",
    "--trainer.check_val_every_n_epoch=1",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
)


def load_sweep(path: str | Path) -> dict[str, Any]:
    """The sweep file as a mapping; ``ValueError`` names the file (and the line, for a YAML syntax error)."""
    try:
        with open(path) as handle:
            sweep = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        raise ValueError(
            f"{path}:{where} not valid YAML ({getattr(error, 'problem', error)}); fix this file."
        ) from None
    if not isinstance(sweep, dict):
        raise ValueError(f"{path}: a sweep file must be a YAML mapping.")
    return sweep


def _suggest(word: Any, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(word), choices, n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _quantize(value: float, spec: dict[str, Any], distribution: str) -> Any:
    """The value as the agent passes it: ``q_*`` rounds to a multiple of ``q`` (an int when ``q`` is one)."""
    if distribution == "int_uniform":
        return int(value)
    if not distribution.startswith("q_"):
        return value
    q = spec.get("q", 1.0)
    rounded = round(value / q) * q
    return int(rounded) if isinstance(q, int) else float(rounded)


def distribution_of(spec: dict[str, Any]) -> str:
    """The spec's distribution, inferred as W&B does when absent (values, value, integer or real range)."""
    if "distribution" in spec:
        return str(spec["distribution"])
    if "values" in spec:
        return "categorical"
    if "value" in spec:
        return "constant"
    return "int_uniform" if all(isinstance(spec.get(b), int) for b in ("min", "max")) else "uniform"


def parameter_values(name: str, spec: Any) -> tuple[list[Any], list[str]]:
    """The values the agent can pass for one parameter that decide whether it parses (every listed value, both
    bounds of a range, the centre of an unbounded distribution), and the problems of the specification itself."""
    if not isinstance(spec, dict) or "parameters" in spec:
        return [], [
            f"parameter {name}: write a mapping with value, values or min/max (nested parameters are not "
            "supported: use dotted keys such as model.init_args.lr)"
        ]
    distribution = distribution_of(spec)
    if distribution not in DISTRIBUTIONS:
        return [], [
            f"parameter {name}: distribution {distribution!r} is not a W&B distribution; "
            f"{_suggest(distribution, DISTRIBUTIONS)}valid: {', '.join(DISTRIBUTIONS)}"
        ]
    problems = [
        f"parameter {name}: unknown key {key!r}; {_suggest(key, SPEC_KEYS)}valid keys: {', '.join(SPEC_KEYS)}"
        for key in spec
        if key not in SPEC_KEYS
    ]
    problems += [
        f"parameter {name}: {key} {spec[key]!r} is not a number; write a number"
        for key in ("q", "mu", "sigma", "a", "b")
        if key in spec and not _is_number(spec[key])
    ]
    if _is_number(spec.get("q", 1.0)) and spec.get("q", 1.0) <= 0:
        problems.append(f"parameter {name}: q {spec['q']} must be > 0 (values are rounded to multiples of q)")
    if problems:
        return [], problems
    if distribution in CENTRES:
        return [_quantize(CENTRES[distribution](spec), spec, distribution)], []
    if distribution == "constant":
        if "value" not in spec:
            return [], [f"parameter {name}: distribution constant needs a value: key"]
        return [spec["value"]], []
    if distribution in BOUNDED:
        return _bound_values(name, spec, distribution)
    values = spec.get("values")
    if not isinstance(values, list) or not values:
        return [], [f"parameter {name}: {distribution} needs a non-empty list, e.g. values: [16, 32]"]
    return values, []


def _bound_values(name: str, spec: dict[str, Any], distribution: str) -> tuple[list[Any], list[str]]:
    missing = [bound for bound in ("min", "max") if bound not in spec]
    if missing:
        return [], [
            f"parameter {name}: distribution {distribution} needs both min and max; add {' and '.join(missing)}"
        ]
    integer = distribution == "int_uniform"
    kind, example = ("an integer", 16) if integer else ("a number", 0.001)
    problems = [
        f"parameter {name}: {bound} {spec[bound]!r} is not {kind}; write {kind} (e.g. {bound}: {example})"
        for bound in ("min", "max")
        if not _is_number(spec[bound]) or (integer and not isinstance(spec[bound], int))
    ]
    if problems:
        return [], problems
    low, high = spec["min"], spec["max"]
    if low > high:
        problems.append(f"parameter {name}: min {low} is greater than max {high}; swap them")
    if distribution in POSITIVE_MIN and low <= 0:
        problems.append(f"parameter {name}: {distribution} needs min > 0 (it samples the logarithm), got {low}")
    if problems:
        return [], problems
    return [_quantize(BOUNDED[distribution](bound), spec, distribution) for bound in (low, high)], []


def sample_value(spec: dict[str, Any]) -> Any:
    """A value the agent could send for one parameter specification (its first value, or the range's minimum)."""
    values, problems = parameter_values("?", spec)
    if problems:
        raise ValueError(problems[0])
    return values[0]


def agent_argument(name: str, value: Any) -> str:
    """``--key=value`` exactly as W&B's ``${args}`` formats it (``f"--{param}={value}"``)."""
    return f"--{name}={value}"


def agent_arguments(sweep: dict[str, Any]) -> list[str]:
    """The ``--key=value`` arguments W&B's ``${args}`` expands to, for one sample of every parameter."""
    return [agent_argument(name, sample_value(spec)) for name, spec in sweep.get("parameters", {}).items()]


def command_arguments(sweep: dict[str, Any]) -> list[str]:
    """The CLI arguments of the sweep's command between ``fit`` and ``${args}``."""
    command = [str(c) for c in sweep.get("command", [])]
    if "fit" not in command:
        raise ValueError(
            "The sweep command must run `umadapt fit` (e.g. [${env}, umadapt, fit, --config, ..., ${args}])."
        )
    return [c for c in command[command.index("fit") + 1 :] if c != "${args}"]


@contextlib.contextmanager
def _quietly_in(root: str | Path) -> Iterator[io.StringIO]:
    """Run in ``root`` (the sweep's relative paths start there) with output, warnings and Lightning's info log
    captured; yields the captured stderr."""
    cwd, stderr = os.getcwd(), io.StringIO()
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning_fabric", "lightning")]
    levels = [log.level for log in loggers]
    try:
        os.chdir(root)
        for log in loggers:
            log.setLevel(logging.ERROR)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield stderr
    finally:
        os.chdir(cwd)
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


_NOISE = (
    "Parser key",
    "Does not validate",
    "Subtypes:",
    "Errors:",
    "Given value",
    "Problem with given class_path",
    "Expected a <class 'NoneType'>",
    "tip:",
)


def _reason(error: BaseException, stderr: str) -> str:
    """The one useful line of a CLI failure: the innermost cause, without jsonargparse's Union and usage noise."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = stderr.rsplit("error:", 1)[-1] if isinstance(error, SystemExit) else str(error)
    lines = [line.strip().lstrip("- ").strip() for line in text.splitlines()]
    useful = [line for line in lines if line and not line.startswith(_NOISE)]
    return " ".join(useful)[:400].rstrip(".") or f"{type(error).__name__}: {error}"


def cli_error(args: Sequence[str], root: str | Path) -> str | None:
    """Why ``umadapt fit <args>`` fails to parse and instantiate (``None`` when it succeeds)."""
    from umadapt.cli import build_cli

    with _quietly_in(root) as stderr:
        try:
            build_cli(list(args), run=False)
        except SystemExit as exit_info:
            return None if exit_info.code in (0, None) else _reason(exit_info, stderr.getvalue())
        except Exception as error:  # a constructor's refusal (ValueError, ConfigError, ...): the agent's run fails too
            return _reason(error, "")
    return None


@functools.lru_cache(maxsize=16)
def logged_metric_names(root: str, args: tuple[str, ...]) -> tuple[str, ...]:
    """The metric names a smoke run of ``umadapt fit <args>`` logs: one CPU epoch of :data:`SMOKE_BATCHES` batch
    per loader (validation included), the header of its ``metrics.csv`` in a temporary folder."""
    from umadapt.cli import build_cli

    with tempfile.TemporaryDirectory(prefix="umadapt-sweep-") as log_dir, _quietly_in(root):
        logger = {
            "class_path": "pytorch_lightning.loggers.CSVLogger",
            "init_args": {"save_dir": log_dir, "name": "smoke"},
        }
        folders = [f"--trainer.default_root_dir={log_dir}", f"--trainer.logger={json.dumps(logger)}"]
        cli = build_cli([*args, *SMOKE_ARGUMENTS, *folders], run=False)
        # Set after parsing: jsonargparse reads --trainer.limit_train_batches=1 as the float 1.0 (all batches).
        cli.trainer.limit_train_batches = cli.trainer.limit_val_batches = SMOKE_BATCHES
        cli.trainer.fit(cli.model, cli.datamodule)
        with open(Path(cli.trainer.logger.log_dir) / "metrics.csv", newline="") as handle:
            header = next(csv.reader(handle))
    return tuple(name for name in header if name not in ("epoch", "step"))


def _metric_problems(metric: str, logged: Sequence[str]) -> list[str]:
    if metric in logged:
        return []
    label_free = [name for name in logged if name.startswith("val/") and "/target/" not in name]
    return [
        f"metric.name {metric!r} was not logged by a smoke run of this command; {_suggest(metric, logged)}"
        f"validation metrics it logged without target labels: {', '.join(label_free) or 'none'}"
    ]


def _metric(sweep: dict[str, Any]) -> dict[str, Any]:
    return sweep["metric"] if isinstance(sweep.get("metric"), dict) else {}


def _search_problems(sweep: dict[str, Any]) -> list[str]:
    """Problems of ``method`` and ``metric`` (the metric's logged name is checked by the smoke run)."""
    problems = []
    method = sweep.get("method")
    if method not in METHODS:
        problems.append(
            f"method {method!r} is not a W&B search method; {_suggest(method, METHODS)}use one of {', '.join(METHODS)}"
        )
    metric = _metric(sweep)
    name, goal = str(metric.get("name", "")), metric.get("goal", "minimize")
    if goal not in GOALS:
        problems.append(f"metric.goal {goal!r} is not a W&B goal; {_suggest(goal, GOALS)}use {' or '.join(GOALS)}")
    if not name:
        problems.append("metric.name is missing; name a logged validation metric, e.g. val/source/loss")
    if "/target/" in name and "oracle" not in str(sweep.get("description", "")).lower():
        problems.append(
            f"metric.name {name!r} uses target labels; choose a source or label-free metric, or say 'oracle sweep' in "
            "the description"
        )
    return problems


def _parameter_problems(parameters: dict[str, Any], args: list[str], root: str | Path) -> tuple[list[str], list[str]]:
    """Problems of every parameter (its specification, then each value the agent can pass, parsed after ``args``),
    and one ``--key=value`` sample of each parameter without problems, for the smoke run."""
    problems, samples = [], []
    for key, spec in parameters.items():
        values, spec_problems = parameter_values(key, spec)
        for value in dict.fromkeys(map(str, values)):  # each distinct --key=value once, as the agent formats it
            error = cli_error([*args, agent_argument(key, value)], root)
            if error:
                spec_problems.append(
                    f"parameter {key}: the agent's `--{key}={value}` is rejected: {error}; fix the value or the key"
                )
        problems += spec_problems
        if values and not spec_problems:
            samples.append(agent_argument(key, values[0]))
    return problems, samples


def validate_sweep(path: str | Path, root: str | Path = ".") -> list[str]:
    """Every problem with a sweep file, one line each naming the key and the fix (empty when it is valid)."""
    try:
        sweep = load_sweep(path)
    except (OSError, ValueError) as error:
        return [str(error)]
    problems: list[str] = []
    command = [str(c) for c in sweep.get("command", [])]
    if not command or command[-1] != "${args}":
        problems.append("command: end it in ${args}, after the --config files, so the swept values win")
    if "umadapt" not in command or "fit" not in command:
        return [*problems, "command: call `umadapt fit` (e.g. [${env}, umadapt, fit, --config, ..., ${args}])"]
    args = command_arguments(sweep)
    configs = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--config"]
    missing = [config for config in configs if not (Path(root) / config).is_file()]
    problems += [
        f"command: config file {config} does not exist; fix the path (relative to {root})" for config in missing
    ]
    problems += _search_problems(sweep)
    parameters = sweep.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        return [*problems, "parameters: the sweep has no parameters; add at least one"]
    if missing:  # every value would fail to parse for the same reason
        return problems
    parameter_problems, samples = _parameter_problems(parameters, args, root)
    problems += parameter_problems
    metric = str(_metric(sweep).get("name", ""))
    if metric:
        try:
            problems += _metric_problems(metric, logged_metric_names(str(Path(root).resolve()), (*args, *samples)))
        except (Exception, SystemExit) as error:  # the sweep's first run would fail the same way
            problems.append(f"the smoke run `umadapt fit {' '.join([*args, *samples])}` failed: {_reason(error, '')}")
    return problems


def _fail(lines: Sequence[str]) -> None:
    for line in lines:
        print(f"umadapt: error: {line}", file=sys.stderr)
    raise SystemExit(2)


def _require_server(retry: str) -> None:
    """Refuse to start when W&B is offline or disabled: a sweep lives on a W&B server."""
    mode = os.environ.get("WANDB_MODE", "online")
    if mode in ("offline", "disabled", "dryrun"):
        _fail([f"sweeps need a W&B server, but WANDB_MODE={mode}; run `wandb login`, then `WANDB_MODE=online {retry}`"])


def main(argv: list[str] | None = None) -> None:
    """Validate, create and run a sweep file, or join an existing sweep with ``--agent``."""
    parser = argparse.ArgumentParser(
        prog="python -m umadapt.sweeps", description="Validate, create and run a W&B sweep, or join one."
    )
    parser.add_argument("sweep", type=Path, nargs="?", help="the sweep file (omit it with --agent)")
    parser.add_argument("--count", type=int, default=None, help="runs for this agent (default: until stopped)")
    parser.add_argument("--validate-only", action="store_true")
    parser.add_argument(
        "--agent",
        metavar="SWEEP_ID",
        help="join an existing sweep, ENTITY/PROJECT/ID as W&B printed it when the sweep was created; run from the "
        "repository root (the sweep's command names its config files relative to it). Validates and creates nothing.",
    )
    args = parser.parse_args(argv)
    if args.agent:
        if args.sweep is not None or args.validate_only:
            parser.error("--agent joins an existing sweep: give no sweep file and no --validate-only")
        _require_server(f"python -m umadapt.sweeps --agent {args.agent}")
        import wandb

        wandb.agent(args.agent, count=args.count)
        return
    if args.sweep is None:
        parser.error("give a sweep file to create a sweep, or --agent SWEEP_ID to join an existing one")
    problems = validate_sweep(args.sweep)
    if problems:
        _fail([f"{args.sweep}: {problem}" for problem in problems])
    print(f"{args.sweep}: valid")
    if args.validate_only:
        return
    _require_server(f"make sweep-{args.sweep.stem}")
    import wandb

    sweep = load_sweep(args.sweep)
    sweep_id = wandb.sweep(sweep, project=sweep.get("project"), entity=sweep.get("entity"))
    target = "/".join(p for p in (sweep.get("entity"), sweep.get("project"), sweep_id) if p)
    command = [sys.executable, "-m", "wandb", "agent", target] + (["--count", str(args.count)] if args.count else [])
    raise SystemExit(subprocess.call(command))


if __name__ == "__main__":
    main()
