"""The benchmark registry: ``experiments/benchmarks.yaml`` read into validated :class:`Benchmark` records.

A method is a YAML *stack*: the benchmark's base config, the method file, then optional delta files (an ablation
lists only the keys it changes), composed in order as ``--config`` files. :func:`config_stacks` gives the stack of
every YAML that ends one, so tests compose each file as the benchmarks do.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from umadapt.errors import ConfigError
from umadapt.metrics import is_lower_better

__all__ = ["REGISTRY_PATH", "Benchmark", "config_stacks", "get_benchmark", "load_registry"]

REGISTRY_PATH = Path(__file__).resolve().parents[3] / "experiments" / "benchmarks.yaml"
"""The registry of the source tree (an installed package falls back to ``./experiments/benchmarks.yaml``)."""

REQUIRED = ("base", "methods", "headline")
OPTIONAL = ("reference", "oracle", "domain", "domains", "published", "pairs", "extra_report", "checkpoints_from")
OPTIONAL += ("single_task", "single_task_checkpoints", "epoch_scale")  # the multi-task benchmark (umadapt.bench.mtl)


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of the registry; paths are relative to ``root`` (the repository root)."""

    name: str
    root: Path
    base: str
    methods: dict[str, tuple[str, ...]]
    """Method name -> the files stacked after ``base``."""
    headline: dict[str, str]
    reference: str = "source_only"
    oracle: str | None = "oracle"
    domain: str = "target"
    domains: tuple[str, ...] = ("target",)
    published: dict[str, str] = field(default_factory=dict)
    pairs: tuple[tuple[str, str], ...] = ()
    extra_report: str | None = None
    single_task: dict[str, str] = field(default_factory=dict)
    single_task_checkpoints: dict[str, str] = field(default_factory=dict)
    """Method -> the config key that receives ``{task: last.ckpt of that seed's single-task run}`` (teachers to
    distil, columns to initialise), so those methods run after the single-task runs."""
    task_runs: dict[str, dict[str, str]] = field(default_factory=dict)
    """Method -> ``{task: method}`` whose runs give its ``single_task_checkpoints`` instead of ``single_task``'s
    (e.g. teachers trained longer); registry form ``{key: <config key>, runs: {task: method}}``."""
    epoch_scale: dict[str, int] = field(default_factory=dict)
    checkpoints_from: dict[str, dict[str, str]] = field(default_factory=dict)
    """Consumer method -> ``{config key: producer method}``: the key receives the producer's ``last.ckpt`` of the
    same seed (e.g. a self-training student's teacher), so the producer's run of that seed finishes first."""

    def checkpoint_runs(self, method: str) -> dict[str, str]:
        """``{task: method}`` of the runs whose checkpoints ``method`` receives (``{}`` if none)."""
        if method not in self.single_task_checkpoints:
            return {}
        return dict(self.task_runs.get(method, self.single_task))

    def stack(self, method: str) -> list[Path]:
        """The config files of ``method``, in ``--config`` order."""
        return [self.root / p for p in (self.base, *self.methods[method])]

    @property
    def headline_keys(self) -> list[str]:
        """The headline ``task/metric`` keys (one per task), used for Δ_MTL and gap closed."""
        return [f"{task}/{metric}" for task, metric in self.headline.items()]


def default_path() -> Path:
    """The registry file: the source tree's, else ``experiments/benchmarks.yaml`` under the working directory."""
    return REGISTRY_PATH if REGISTRY_PATH.is_file() else Path.cwd() / "experiments" / "benchmarks.yaml"


def load_registry(path: str | Path | None = None) -> dict[str, Benchmark]:
    """Every benchmark of the registry file ``path`` (default :func:`default_path`), validated."""
    path = Path(path) if path is not None else default_path()
    if not path.is_file():
        hint = "run from the repository root or pass --registry PATH"
        raise ConfigError(f"Benchmark registry not found: {str(path)!r}; {hint}.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML ({str(error).splitlines()[0]}); fix the syntax.") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path} must map benchmark names to their settings (see the comment at its top).")
    return {name: _benchmark(name, entry, path) for name, entry in data.items()}


def get_benchmark(name: str, path: str | Path | None = None) -> Benchmark:
    """The benchmark ``name`` of the registry; an unknown name is a :class:`ConfigError` listing the known ones."""
    registry = load_registry(path)
    if name not in registry:
        raise ConfigError(f"Unknown benchmark {name!r}; registered: {sorted(registry)} (experiments/benchmarks.yaml).")
    return registry[name]


def config_stacks(path: str | Path | None = None) -> dict[str, list[Path]]:
    """``{yaml path relative to experiments/: its stack}`` for every YAML that ends a method's stack."""
    stacks: dict[str, list[Path]] = {}
    for bench in load_registry(path).values():
        experiments = bench.root / "experiments"
        for method in bench.methods:
            stack = bench.stack(method)
            key = stack[-1].relative_to(experiments).as_posix()
            if stacks.setdefault(key, stack) != stack:
                raise ConfigError(
                    f"experiments/{key} ends two different stacks in the registry ({stacks[key]} and {stack}); "
                    "give one of them its own delta file."
                )
    return stacks


def _benchmark(name: str, entry: Any, path: Path) -> Benchmark:
    where = f"{path.name}: benchmark {name!r}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a mapping of settings, got {type(entry).__name__}.")
    unknown = sorted(set(entry) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {unknown}; valid keys: {sorted((*REQUIRED, *OPTIONAL))}.")
    missing = [k for k in REQUIRED if k not in entry]
    if missing:
        raise ConfigError(f"{where} lacks {missing}; add them (see the comment at the top of {path.name}).")
    root = path.resolve().parent.parent
    methods = entry["methods"]
    if not isinstance(methods, dict) or not methods:
        raise ConfigError(f"{where}: methods must map each method name to a list of YAML files.")
    stacks = {}
    for method, files in methods.items():
        if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
            raise ConfigError(f"{where}: method {method!r} must be a non-empty list of YAML files, e.g. [a.yaml].")
        stacks[method] = tuple(files)
    for file in (entry["base"], *(f for files in stacks.values() for f in files)):
        if not (root / file).is_file():
            raise ConfigError(f"{where}: {file} does not exist; fix the path (relative to {root}) or add the file.")
    headline = entry["headline"]
    if not isinstance(headline, dict) or not headline:
        raise ConfigError(f"{where}: headline must map each task to one metric, e.g. {{depth: rmse}}.")
    for task, metric in headline.items():
        try:
            is_lower_better(f"{task}/{metric}")
        except KeyError:
            message = f"{where}: headline metric {task}/{metric} has no known direction; name a umadapt metric."
            raise ConfigError(message) from None
    bench = Benchmark(
        name=name,
        root=root,
        base=entry["base"],
        methods=stacks,
        headline=dict(headline),
        reference=entry.get("reference", "source_only"),
        oracle=entry.get("oracle", "oracle"),
        domain=entry.get("domain", "target"),
        domains=tuple(entry.get("domains", [entry.get("domain", "target")])),
        published={str(k): str(v) for k, v in (entry.get("published") or {}).items()},
        pairs=tuple(_pair(where, p) for p in entry.get("pairs", [])),
        extra_report=entry.get("extra_report"),
        single_task=dict(entry.get("single_task", {})),
        **_single_task_checkpoints(where, entry.get("single_task_checkpoints") or {}),
        epoch_scale={str(k): int(v) for k, v in entry.get("epoch_scale", {}).items()},
        checkpoints_from=_checkpoints_from(where, entry.get("checkpoints_from") or {}, set(stacks)),
    )
    _check_names(where, bench)
    return bench


def _checkpoints_from(where: str, value: Any, methods: set[str]) -> dict[str, dict[str, str]]:
    """``checkpoints_from`` validated: methods of the benchmark, no method taking its own checkpoint, no cycle."""
    example = "e.g. {self_training: {model.init_args.teacher_checkpoint: source_only}}"
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: checkpoints_from must map each method to {{config key: method}}, {example}.")
    result: dict[str, dict[str, str]] = {}
    for consumer, keys in value.items():
        if consumer not in methods:
            message = f"checkpoints_from names {consumer!r}, which is not among its methods {sorted(methods)}"
            raise ConfigError(f"{where}: {message}.")
        strings = isinstance(keys, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items())
        if not strings or not keys:
            raise ConfigError(
                f"{where}: checkpoints_from of {consumer!r} must map config keys to methods, got {keys!r}; {example}."
            )
        for key, producer in keys.items():
            if producer not in methods:
                raise ConfigError(
                    f"{where}: checkpoints_from gives {consumer}'s {key} the checkpoint of {producer!r}, which is not "
                    f"among its methods {sorted(methods)}."
                )
            if producer == consumer:
                raise ConfigError(f"{where}: checkpoints_from: {consumer} cannot take its own checkpoint ({key}).")
        result[consumer] = dict(keys)
    for start in result:  # depth-first along producers: reaching `start` again is a cycle
        paths = [[start, producer] for producer in result[start].values()]
        while paths:
            path = paths.pop()
            if path[-1] == start:
                cycle = " -> ".join(path)
                message = f"checkpoints_from has a cycle ({cycle}: each starts from the next one's checkpoint)"
                raise ConfigError(f"{where}: {message}; remove one of its links.")
            paths += [[*path, p] for p in result.get(path[-1], {}).values() if p not in path[1:]]
    return result


def _single_task_checkpoints(where: str, value: Any) -> dict[str, dict]:
    """``single_task_checkpoints`` split into config keys and the runs that override ``single_task``: each method
    maps to a config key, or to ``{key: <config key>, runs: {task: method}}``."""
    example = "e.g. {universal: model.init_args.teachers} or {universal: {key: ..., runs: {depth: teacher_depth}}}"
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: single_task_checkpoints must map methods to config keys, {example}.")
    keys, runs = {}, {}
    for method, spec in value.items():
        if isinstance(spec, dict):
            mapping = spec.get("runs")
            valid = set(spec) == {"key", "runs"} and isinstance(spec["key"], str) and isinstance(mapping, dict)
            if not valid or not all(isinstance(t, str) and isinstance(m, str) for t, m in mapping.items()):
                raise ConfigError(f"{where}: single_task_checkpoints of {method!r} is {spec!r}; {example}.")
            keys[str(method)], runs[str(method)] = spec["key"], dict(mapping)
        elif isinstance(spec, str):
            keys[str(method)] = spec
        else:
            raise ConfigError(f"{where}: single_task_checkpoints of {method!r} is {spec!r}; {example}.")
    return {"single_task_checkpoints": keys, "task_runs": runs}


def _pair(where: str, pair: Any) -> tuple[str, str]:
    if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(d, str) for d in pair):
        raise ConfigError(f"{where}: each pair must be [source, target] domain names, got {pair!r}.")
    return pair[0], pair[1]


def _check_names(where: str, bench: Benchmark) -> None:
    """Every method named by a setting is one of the benchmark's methods."""
    methods = set(bench.methods)
    reference_ok = bench.reference in methods or (bench.single_task and bench.reference == "single_task")
    if not reference_ok:
        raise ConfigError(f"{where}: reference {bench.reference!r} is not one of its methods {sorted(methods)}.")
    if bench.oracle is not None and bench.oracle not in methods:
        raise ConfigError(f"{where}: oracle {bench.oracle!r} is not one of its methods; name one or set oracle: null.")
    named = {"single_task": bench.single_task.values(), "single_task_checkpoints": bench.single_task_checkpoints}
    named["single_task_checkpoints runs"] = [m for runs in bench.task_runs.values() for m in runs.values()]
    for key, names in {**named, "epoch_scale": bench.epoch_scale}.items():
        unknown = sorted(set(names) - methods)
        if unknown:
            raise ConfigError(f"{where}: {key} names {unknown}, which are not among its methods {sorted(methods)}.")
    for method, runs in bench.task_runs.items():
        if set(runs) != set(bench.single_task):
            raise ConfigError(
                f"{where}: single_task_checkpoints runs of {method!r} cover the tasks {sorted(runs)}; give one run "
                f"per task of single_task, {sorted(bench.single_task)}."
            )
    if bench.extra_report is not None:
        module, _, function = bench.extra_report.partition(":")
        if not function or importlib.util.find_spec(module) is None:
            raise ConfigError(f"{where}: extra_report {bench.extra_report!r} must be 'module:function' (importable).")
