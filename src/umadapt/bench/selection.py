"""``python -m umadapt.bench select <grid.yaml>``: train a hyperparameter grid of one method and choose among its
checkpoints without target labels (:mod:`umadapt.select`).

A grid file (``experiments/selection/*.yaml``) names a benchmark and method of the registry, the grid's ``axes``
(``{axis: {value label: [CLI arguments]}}``, every combination is one *setting*), the ``default`` setting, the
validators and their options, and the ``rule``: the validator whose pick is the headline, fixed before any test
number is seen. Optionally a ``prepare`` run is trained first per seed (e.g. UM-Adapt's source phase, which every
adaptation setting then starts from: ``{prepare}`` in an argument is that seed's ``last.ckpt``), stacked like the
grid's method or like the registry method ``prepare.method`` (e.g. ``source_only``, a self-training grid's
teacher); with ``prepare.candidate: true`` its last checkpoint is a candidate too (no adaptation at all). ``args``
are added to every setting (not to the prepare run).

Runs go to ``<runs-dir>/<setting>/seed<N>``, saving a checkpoint every ``checkpoint_every_n_epochs`` epochs; the
report goes to ``--out`` (``.json`` and one scatter PNG per validator beside it).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from umadapt.bench.registry import Benchmark, get_benchmark
from umadapt.bench.runner import run_benchmark, run_command, run_dir
from umadapt.errors import ConfigError

__all__ = ["Grid", "load_grid", "main"]

KEYS = {"benchmark", "method", "axes", "default", "validators", "rule", "headline", "title"}
KEYS |= {"validator_options", "checkpoint_every_n_epochs", "prepare", "args"}


@dataclass(frozen=True)
class Grid:
    """A grid file, validated (see the module docstring)."""

    path: Path
    benchmark: str
    method: str
    axes: dict[str, dict[str, list[str]]]
    default_values: dict[str, str]
    """``{axis: value label}`` of the default setting."""
    validators: list[str]
    rule: str
    headline: list[str]
    title: str
    validator_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoint_every_n_epochs: int = 0
    prepare: dict[str, Any] | None = None
    args: list[str] = field(default_factory=list)

    @property
    def default(self) -> str:
        """The default setting's name."""
        return setting_name(self.default_values)

    def settings(self) -> dict[str, list[str]]:
        """``{setting name: its CLI arguments}`` for every combination of the axes' values, in grid order."""
        names = list(self.axes)
        out = {}
        for values in itertools.product(*(self.axes[a].items() for a in names)):
            name = setting_name(dict(zip(names, (label for label, _ in values))))
            out[name] = [arg for _, args in values for arg in args]
        return out


def setting_name(labels: Mapping[str, str]) -> str:
    """A setting's name (its run folder) from ``{axis: value label}``, in axis order: ``mu0_0.01-w_1.0``."""
    return "-".join(f"{axis}_{label}" for axis, label in labels.items())


def _check_default(axes: Mapping[str, Mapping[str, Any]], chosen: Mapping[str, str], where: str) -> dict[str, str]:
    """The default's ``{axis: value label}`` in axis order, each checked against the axes."""
    if set(chosen) != set(axes):
        raise ConfigError(f"{where}: default must give one value per axis {list(axes)}, got {dict(chosen)}.")
    for axis, label in chosen.items():
        if label not in axes[axis]:
            raise ConfigError(f"{where}: default {axis}={label!r} is not one of {list(axes[axis])}.")
    return {axis: chosen[axis] for axis in axes}


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file; every mistake is a :class:`ConfigError` naming the key and the fix."""
    from umadapt.validators import VALIDATORS

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Grid file not found: {str(path)!r}; see experiments/selection/ for examples.")
    data = yaml.safe_load(path.read_text()) or {}
    where = path.name
    unknown = sorted(set(data) - KEYS)
    missing = sorted({"benchmark", "method", "axes", "default", "validators", "rule", "headline"} - set(data))
    if unknown or missing:
        raise ConfigError(f"{where}: unknown keys {unknown} / missing keys {missing}; valid keys: {sorted(KEYS)}.")
    axes = {
        str(axis): {str(label): [str(a) for a in args] for label, args in (values or {}).items()}
        for axis, values in data["axes"].items()
    }
    if not axes or any(not values for values in axes.values()):
        raise ConfigError(f"{where}: axes must map each axis to {{value label: [CLI arguments]}}, none empty.")
    bad = sorted(set(data["validators"]) - set(VALIDATORS))
    if bad:
        raise ConfigError(f"{where}: unknown validators {bad}; valid: {sorted(VALIDATORS)}.")
    if data["rule"] not in data["validators"]:
        raise ConfigError(f"{where}: rule {data['rule']!r} must be one of its validators {data['validators']}.")
    default = _check_default(axes, {str(k): str(v) for k, v in (data["default"] or {}).items()}, where)
    prepare = data.get("prepare")
    if prepare is not None and not (isinstance(prepare, dict) and prepare.get("name") and "args" in prepare):
        raise ConfigError(
            f"{where}: prepare must be {{name, args: [...], candidate: true|false, method (default: the grid's)}}."
        )
    return Grid(
        path=path,
        benchmark=str(data["benchmark"]),
        method=str(data["method"]),
        axes=axes,
        default_values=default,
        validators=[str(v) for v in data["validators"]],
        rule=str(data["rule"]),
        headline=[str(h) for h in data["headline"]],
        title=str(data.get("title") or f"Model selection without target labels: {data['benchmark']}"),
        validator_options={str(k): dict(v) for k, v in (data.get("validator_options") or {}).items()},
        checkpoint_every_n_epochs=int(data.get("checkpoint_every_n_epochs") or 0),
        prepare=prepare,
        args=[str(a) for a in data.get("args") or []],
    )


def grid_benchmark(grid: Grid, bench: Benchmark) -> Benchmark:
    """The benchmark with one method per setting (and the prepare run), each stacked like ``grid.method``."""
    if grid.method not in bench.methods:
        raise ConfigError(
            f"{grid.path.name}: method {grid.method!r} is not one of {bench.name}'s {list(bench.methods)}."
        )
    methods = {name: bench.methods[grid.method] for name in grid.settings()}
    if grid.prepare:
        prepared = grid.prepare.get("method", grid.method)
        if prepared not in bench.methods:
            raise ConfigError(
                f"{grid.path.name}: prepare.method {prepared!r} is not one of {bench.name}'s {list(bench.methods)}."
            )
        methods[grid.prepare["name"]] = bench.methods[prepared]
    return dataclasses.replace(bench, methods=methods, checkpoints_from={})


def run_grid(
    grid: Grid, seeds: list[int], runs_dir: Path, *, jobs: int = 1, resume: bool = False, execute: Any = run_command
) -> list[Path]:
    """Train the prepare runs, then every setting (a checkpoint every ``checkpoint_every_n_epochs`` epochs); return
    the candidate run folders."""
    bench = grid_benchmark(grid, get_benchmark(grid.benchmark))
    settings = grid.settings()
    options = dict(jobs=jobs, resume=resume, execute=execute, seed_major=True)
    folders: list[Path] = []
    if grid.prepare:
        name = grid.prepare["name"]
        args = [str(a) for a in grid.prepare["args"]]
        run_benchmark(bench, [name], seeds, runs_dir, args, label=f"select {name}", **options)
        if grid.prepare.get("candidate"):
            folders += [run_dir(runs_dir, name, s) for s in seeds]

    def setting_args(setting: str, seed: int) -> list[str]:
        prepared = run_dir(runs_dir, grid.prepare["name"], seed) / "checkpoints" / "last.ckpt" if grid.prepare else ""
        return [a.replace("{prepare}", str(prepared)) for a in (*grid.args, *settings[setting])]

    every = grid.checkpoint_every_n_epochs
    keep = ["--checkpoint.save_top_k=-1", "--checkpoint.save_on_train_epoch_end=true"]  # whatever validation does
    extra = [f"--checkpoint.every_n_epochs={every}", *keep] if every else []
    label = f"select {grid.benchmark}/{grid.method}"
    run_benchmark(bench, list(settings), seeds, runs_dir, extra, run_args=setting_args, label=label, **options)
    folders += [run_dir(runs_dir, setting, s) for setting in settings for s in seeds]
    return folders


def main(argv: list[str] | None = None) -> None:
    """``python -m umadapt.bench select <grid.yaml> --out results/selection_<benchmark>.md``."""
    from umadapt import select

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m umadapt.bench select", description=__doc__.splitlines()[0])
    parser.add_argument("grid", type=Path, help="a grid file, e.g. experiments/selection/digits_dann.yaml")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runs-dir", type=Path, required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--resume", action="store_true", help="reuse every run whose benchmark_record.json exists")
    args = parser.parse_args(argv)
    grid = load_grid(args.grid)
    options = {
        n: {k: str(v).replace("{runs}", str(args.runs_dir)) if isinstance(v, str) else v for k, v in o.items()}
        for n, o in grid.validator_options.items()
    }
    validators = select.build_validators(grid.validators, options)  # mistakes surface before an hour of training
    select.check_headline(grid.headline)
    folders = run_grid(grid, args.seeds, args.runs_dir, jobs=args.jobs, resume=args.resume)
    records = select.score_candidates(select.discover(folders), validators, select.per_seed_options(options))
    command = f"python -m umadapt.bench select {' '.join(argv)}"
    title = f"{grid.title} (headline rule, fixed in advance: {grid.rule})"
    about = {"rule": grid.rule, "benchmark": grid.benchmark, "method": grid.method, "grid": grid.path.name}
    about.update(default_setting=grid.default, seeds=list(args.seeds))
    select.write_report(records, grid.validators, grid.headline, grid.default, args.out, title, command, about)
    print(args.out.read_text())
