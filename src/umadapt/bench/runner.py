"""The one benchmark runner: fit and test each (method, seed) of a benchmark as ``python -m umadapt`` processes.

Each run is ``python -m umadapt fit`` and then ``python -m umadapt test --ckpt_path <run>/checkpoints/last.ckpt``
(the last checkpoint: no target labels choose it), exactly as a user would type them; :mod:`umadapt.bench.pairs`
and :mod:`umadapt.bench.mtl` call :func:`run_benchmark` too.

Resume rule (``--resume``): a (method, seed) whose record ``<runs-dir>/<method>/seed<N>/benchmark_record.json``
exists is reused, unless a run it starts from (``checkpoints_from``) trains again in the same call; every other one
is trained. Without ``--resume`` every run is trained again. Each record keeps the :func:`code_version` that trained
it, and reusing a record of other (or uncommitted) code prints a warning naming it.

A method of the registry's ``checkpoints_from`` starts from another method's ``last.ckpt`` of the same seed (a
self-training student from its teacher): that run waits for the producer's run of its seed (trained or reused), and a
shard keeps both. A producer that is not requested must have run before with the same ``--runs-dir``.

    python -m umadapt.bench run synthrooms --methods source_only oracle --seeds 0 1 2 --out results/synthrooms.md
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from umadapt.bench import report
from umadapt.bench.registry import Benchmark, get_benchmark
from umadapt.errors import ConfigError

__all__ = ["RECORD", "Progress", "Runs", "checkpoint_args", "code_version", "run_benchmark", "run_command", "run_one"]

RECORD = "benchmark_record.json"
"""The file that marks a finished (method, seed): its test metrics, wall times and command arguments."""

CODE_DIRS = ("src", "data_modules", "experiments")
"""The folders whose content decides a run's numbers (tests, docs and results do not)."""

Execute = Callable[..., float]
"""``execute(command, log, threads=None)``: runs one command with its output in a log file (with ``threads`` torch
threads when given); returns its wall time in seconds."""


def code_version(root: Path) -> str | None:
    """A short hash of the git trees of :data:`CODE_DIRS` at ``HEAD`` of the checkout ``root``, with ``+dirty``
    when they have uncommitted changes (or untracked files); ``None`` outside a git checkout. Two runs of equal
    versions without ``+dirty`` ran the same code, whatever else (docs, tests) changed between their commits."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout

    try:
        trees = git("rev-parse", *(f"HEAD:{d}" for d in CODE_DIRS if (root / d).is_dir())).split()
        dirty = git("status", "--porcelain", "--", *CODE_DIRS).strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return hashlib.sha1(" ".join(trees).encode()).hexdigest()[:12] + ("+dirty" if dirty else "")


def _other_code(record: Mapping, version: str | None) -> str | None:
    """Why a reused record may not be what this code gives (``None`` if it is the same, committed code)."""
    trained = record.get("code_version")
    if trained is None:
        return "its record does not say which code trained it"
    if trained != version:
        return f"code {trained} trained it, this tree is {version}"
    if trained.endswith("+dirty"):
        return f"code {trained} had uncommitted changes"
    return None


def run_command(command: list[str], log: Path, threads: int | None = None) -> float:
    """Run one CLI command with its output in ``log`` (``threads``: its torch/OpenMP threads); return its wall
    time. A failure exits with the log's tail."""
    start = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    env = None
    if threads is not None:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with log.open("w") as handle:
        process = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    if process.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise SystemExit(f"bench: command failed ({process.returncode}; log {log}): {' '.join(command)}\n{tail}")
    return time.perf_counter() - start


def run_dir(runs_dir: Path, method: str, seed: int) -> Path:
    """The folder of one (method, seed): ``<runs-dir>/<method>/seed<N>``."""
    return runs_dir / method / f"seed{seed}"


def checkpoint_path(runs_dir: Path, method: str, seed: int) -> Path:
    """The last checkpoint of one (method, seed), the one ``test`` scores and ``checkpoints_from`` hands on."""
    return run_dir(runs_dir, method, seed) / "checkpoints" / "last.ckpt"


def producers(bench: Benchmark, method: str) -> list[str]:
    """The methods whose same-seed checkpoints ``method`` starts from (the registry's ``checkpoints_from``, and the
    runs of its ``single_task_checkpoints``)."""
    return list(
        dict.fromkeys([*bench.checkpoints_from.get(method, {}).values(), *bench.checkpoint_runs(method).values()])
    )


def checkpoint_args(bench: Benchmark, runs_dir: Path, method: str, seed: int, skip: Collection[str] = ()) -> list[str]:
    """``--<key>=<last.ckpt>`` for each checkpoint ``method`` receives from another method of ``seed``; a missing
    checkpoint (of a producer not in ``skip``) is a :class:`ConfigError` naming the fix."""
    args = []
    for key, producer in bench.checkpoints_from.get(method, {}).items():
        path = checkpoint_path(runs_dir, producer, seed)
        if producer not in skip and not path.is_file():
            raise ConfigError(
                f"{method} seed {seed} starts from {producer}'s checkpoint ({key}), but {_shown(path)} does not "
                f"exist; add {producer} to --methods, or run it first with the same --runs-dir."
            )
        args.append(f"--{key}={_shown(path)}")
    return args


def _shown(path: Path) -> str:
    """``path`` as a user types it: relative to the working directory where it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def run_one(
    bench: Benchmark,
    method: str,
    seed: int,
    runs_dir: Path,
    extra: Sequence[str] = (),
    *,
    predict: bool = False,
    execute: Execute = run_command,
    threads: int | None = None,
    version: str | None = None,
) -> dict:
    """Fit and test one (method, seed) (with ``predict``, also write one batch of prediction PNGs; ``threads``:
    torch threads of each command, default inherited); write and return its record (``version``: the
    :func:`code_version` it records, default this checkout's)."""
    folder = run_dir(runs_dir, method, seed)
    configs = [arg for path in bench.stack(method) for arg in ("--config", _shown(path))]
    common = [
        f"--seed_everything={seed}",
        f"--trainer.logger.init_args.save_dir={runs_dir}",
        f"--trainer.logger.init_args.name={method}",
        *extra,
    ]
    ckpt = f"--ckpt_path={folder / 'checkpoints' / 'last.ckpt'}"

    def umadapt(subcommand: str, version: str, *more: str) -> float:
        command = [sys.executable, "-m", "umadapt", subcommand, *configs, *common]
        command += [f"--trainer.logger.init_args.version={version}", *more]
        log = folder / f"{subcommand}.log"
        return execute(command, log) if threads is None else execute(command, log, threads=threads)

    if folder.exists():  # an earlier or killed run's: Lightning would keep its last.ckpt (saving last-v1.ckpt
        shutil.rmtree(folder)  # beside it) and `test` below would score that stale checkpoint
    fit_seconds = umadapt("fit", f"seed{seed}")
    results = folder / "results.json"
    test_seconds = umadapt("test", f"seed{seed}-test", ckpt, f"--results.path={results}")
    if predict:
        output = f"--predictions.output_dir={folder / 'predictions'}"
        umadapt("predict", f"seed{seed}-predict", ckpt, output, "--trainer.limit_predict_batches=1")
    record = json.loads(results.read_text())
    record.update(fit_seconds=fit_seconds, test_seconds=test_seconds, command_args=[*configs, *common])
    record["code_version"] = version if version is not None else code_version(bench.root)
    (folder / RECORD).write_text(json.dumps(record, indent=2))
    return record


@dataclass
class Runs:
    """The records of a benchmark's runs, per method in run order, and the wall time spent per method."""

    records: dict[str, list[dict]] = field(default_factory=dict)
    wall: dict[str, dict] = field(default_factory=dict)
    execution: dict = field(default_factory=dict)
    """How the runs were scheduled: ``jobs``, torch ``threads`` per run, ``elapsed_s`` of the whole call, and the
    ``code_versions`` that trained them."""

    def add(self, method: str, record: dict) -> None:
        self.records.setdefault(method, []).append(record)
        wall = self.wall.setdefault(method, {"runs": 0, "fit": 0.0, "test": 0.0})
        wall["runs"] += 1
        wall["fit"] += record.get("fit_seconds", 0.0)
        wall["test"] += record.get("test_seconds", 0.0)


@dataclass
class Progress:
    """Overall progress: runs done of planned, elapsed time, and an ETA from the mean time of the runs trained
    (divided by the number of runs that train side by side)."""

    label: str
    planned: int
    to_train: int
    jobs: int = 1
    start: float = field(default_factory=time.perf_counter)
    done: int = 0
    trained: int = 0
    train_seconds: float = 0.0

    def eta_minutes(self) -> float | None:
        """Minutes until every planned run is done (``None`` before the first trained run)."""
        left = self.to_train - self.trained
        if not left:
            return 0.0
        if not self.trained:
            return None
        return left * self.train_seconds / self.trained / min(self.jobs, left) / 60

    def summary(self) -> str:
        eta = self.eta_minutes()
        elapsed = (time.perf_counter() - self.start) / 60
        return (
            f"{self.done}/{self.planned} runs done, elapsed {elapsed:.1f} min, "
            f"ETA {'n/a' if eta is None else f'{eta:.1f} min'}"
        )

    def finished(self, method: str, seed: int, seconds: float | None) -> str:
        """Count one run (``seconds`` is ``None`` for a reused one); return its progress line."""
        self.done += 1
        if seconds is None:
            what = f"reused {RECORD} (--resume)"
        else:
            self.trained += 1
            self.train_seconds += seconds
            what = f"trained in {seconds:.0f} s"
        return f"{self.label}: {method} seed {seed} {what}; {self.summary()}"


def run_status(runs_dir: Path, method: str, seed: int) -> str:
    """What a running (method, seed) is doing, from the last progress line of its log (see
    :class:`umadapt.callbacks.progress.LineProgress`)."""
    from umadapt.callbacks.progress import PREFIX, parse_line

    folder = run_dir(runs_dir, method, seed)
    for name in ("predict", "test", "fit"):
        log = folder / f"{name}.log"
        if not log.is_file():
            continue
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - 65536))  # the last line may sit under warnings
            lines = [line for line in handle.read().decode(errors="replace").splitlines() if PREFIX in line]
        if name != "fit":
            return f"{method} seed {seed}: {name}"
        parsed = parse_line(lines[-1]) if lines else None
        if parsed is None:
            return f"{method} seed {seed}: starting"
        eta = "?" if parsed["eta_min"] is None else f"{parsed['eta_min']:.1f} min"
        return (
            f"{method} seed {seed}: epoch {parsed['epoch']}/{parsed['epochs'] or '?'}, "
            f"batch {parsed['batch']}/{parsed['batches'] or '?'}, ETA {eta}"
        )
    return f"{method} seed {seed}: starting"


def shard_plan(
    plan: list[tuple[str, int]], shard: tuple[int, int], links: Mapping[str, Sequence[str]] | None = None
) -> list[tuple[str, int]]:
    """The runs of shard ``(k, n)`` (1-based): every n-th run of ``plan`` starting at the k-th. With ``links``
    (method -> the methods whose checkpoints it starts from), the runs of one seed linked through them count as one,
    so a consumer trains on its producer's shard; the runs keep their plan order."""
    k, n = shard
    if not 1 <= k <= n:
        raise ConfigError(f"--shard {k}/{n}: K must be between 1 and N (e.g. --shard 1/2 and --shard 2/2).")
    group = {m: m for m, _ in plan}  # union-find over the planned methods: group[m] leads to its group's root

    def root(method: str) -> str:
        while group[method] != method:
            method = group[method]
        return method

    for method in group:
        for producer in (links or {}).get(method, ()):
            if producer in group:
                group[root(producer)] = root(method)
    keys = list(dict.fromkeys((root(m), s) for m, s in plan))
    mine = set(keys[k - 1 :: n])
    return [(m, s) for m, s in plan if (root(m), s) in mine]


def run_benchmark(
    bench: Benchmark,
    methods: Sequence[str],
    seeds: Sequence[int],
    runs_dir: Path,
    extra: Sequence[str] = (),
    *,
    epochs: int | None = None,
    predict: bool = False,
    resume: bool = False,
    seed_major: bool = False,
    run_args: Callable[[str, int], list[str]] | None = None,
    execute: Execute = run_command,
    label: str | None = None,
    jobs: int = 1,
    shard: tuple[int, int] = (1, 1),
    status_every: float | None = None,
) -> Runs:
    """Run (or, with ``resume``, reuse) every (method, seed), method by method (``seed_major``: seed by seed).

    ``epochs`` overrides ``trainer.max_epochs`` (times the benchmark's ``epoch_scale`` of the method); ``run_args``
    adds arguments to one (method, seed) that is trained, as do the benchmark's ``checkpoints_from`` (the producer's
    ``last.ckpt`` of the seed, :func:`checkpoint_args`): such a run starts once its producers' runs of the seed in
    this call are done, and a missing producer checkpoint that no run here trains stops the call before training.
    ``jobs`` runs train side by side as independent processes, each with ``cpu_count // jobs`` torch threads;
    ``shard=(k, n)`` trains only this machine's share of the plan (:func:`shard_plan`). While runs train, a status
    line every ``status_every`` seconds (default 15 on a terminal, 60 otherwise) shows each one's epoch, batch and
    ETA. The records come back in plan order."""
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}.")
    plan = [(m, s) for s in seeds for m in methods] if seed_major else [(m, s) for m in methods for s in seeds]
    plan = shard_plan(plan, shard, {m: producers(bench, m) for m in methods})
    reused = {p for p in plan if resume and (run_dir(runs_dir, *p) / RECORD).is_file()}
    stale = True
    while stale:  # a consumer whose producer of the same seed trains again in this call is trained again too
        stale = {(m, s) for m, s in reused if any((p, s) in plan and (p, s) not in reused for p in producers(bench, m))}
        reused -= stale
    pending = [p for p in plan if p not in reused]  # not started yet, in plan order
    to_train = set(pending)

    def waits_for(method: str, seed: int) -> list[tuple[str, int]]:
        """The runs this call trains whose checkpoints (method, seed) starts from."""
        return [(p, seed) for p in producers(bench, method) if (p, seed) in to_train]

    for method, seed in pending:  # a producer checkpoint that nothing here will train must exist before any training
        checkpoint_args(bench, runs_dir, method, seed, skip=[p for p, _ in waits_for(method, seed)])
    progress = Progress(label or f"bench {bench.name}", len(plan), len(plan) - len(reused), jobs=jobs)
    version = code_version(bench.root)
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    if status_every is None:
        status_every = 15.0 if sys.stdout.isatty() else 60.0

    def train(index: int, method: str, seed: int) -> dict:
        # one write with its newline: print(text) writes the newline separately and lines of two threads interleave
        print(f"{progress.label}: [{index}/{len(plan)}] {method} seed {seed} ...\n", end="", flush=True)
        args = list(extra)
        if epochs:
            args.append(f"--trainer.max_epochs={epochs * bench.epoch_scale.get(method, 1)}")
        args += checkpoint_args(bench, runs_dir, method, seed)
        args += run_args(method, seed) if run_args else []
        options = dict(predict=predict, execute=execute, threads=threads, version=version)
        return run_one(bench, method, seed, runs_dir, args, **options)

    records: dict[tuple[str, int], dict] = {}
    index = {p: i for i, p in enumerate(plan, 1)}
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        running: dict[concurrent.futures.Future, tuple[str, int]] = {}

        def submit_ready() -> None:
            """Start (in plan order) every pending run whose producers' runs of its seed are done."""
            for run in [p for p in pending if all(w in records for w in waits_for(*p))]:
                pending.remove(run)
                running[pool.submit(train, index[run], *run)] = run

        for method, seed in plan:
            if (method, seed) in reused:
                records[method, seed] = json.loads((run_dir(runs_dir, method, seed) / RECORD).read_text())
                print(progress.finished(method, seed, None), flush=True)
                if (why := _other_code(records[method, seed], version)) is not None:
                    print(
                        f"{progress.label}: warning: reused {method} seed {seed}, but {why}; its numbers may differ "
                        "from what this code gives (run it without --resume to train it again).",
                        flush=True,
                    )
        submit_ready()
        while running:
            done, _ = concurrent.futures.wait(running, timeout=status_every, return_when="FIRST_COMPLETED")
            for future in done:
                method, seed = running.pop(future)
                try:
                    record = future.result()
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
                records[method, seed] = record
                print(progress.finished(method, seed, record["fit_seconds"] + record["test_seconds"]), flush=True)
            submit_ready()
            active = [running[f] for f in running if f.running()]
            if not done and active:
                states = "; ".join(run_status(runs_dir, *p) for p in active)
                print(f"{progress.label}: {states} | {progress.summary()}", flush=True)
    if pending:  # only a cycle in checkpoints_from, which the registry rejects, leaves runs waiting
        raise ConfigError(f"{progress.label}: {pending} wait for each other's checkpoints (checkpoints_from).")
    elapsed = None if reused else time.perf_counter() - progress.start  # reused runs' time is not in this call
    versions = list(dict.fromkeys(records[p].get("code_version") or "unrecorded" for p in plan))
    runs = Runs(execution={"jobs": jobs, "threads": threads, "elapsed_s": elapsed, "code_versions": versions})
    for method, seed in plan:
        runs.add(method, records[method, seed])
    return runs


def select_methods(bench: Benchmark, requested: Sequence[str] | None) -> list[str]:
    """The requested methods (default: all of the benchmark's, in registry order); an unknown one is an error."""
    unknown = [m for m in requested or () if m not in bench.methods]
    if unknown:
        raise ConfigError(f"Unknown method(s) {unknown} for {bench.name}; valid: {list(bench.methods)}.")
    return list(requested or bench.methods)


def add_run_arguments(parser: argparse.ArgumentParser, runs_dir: str, out: bool = True) -> None:
    """The options every benchmark command shares."""
    parser.add_argument("--methods", nargs="+", help="methods to run (default: all of the benchmark's)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="override trainer.max_epochs (times the registry's epoch_scale)")
    if out:
        parser.add_argument("--out", type=Path, required=True, help="Markdown table to write (.json, .png beside it)")
    parser.add_argument("--runs-dir", type=Path, default=Path(runs_dir))
    parser.add_argument("--cli-arg", action="append", default=[], help="extra argument passed to every umadapt call")
    parser.add_argument("--predict", action="store_true", help="also write one batch of prediction PNGs per run")
    parser.add_argument("--resume", action="store_true", help=f"reuse each run whose {RECORD} exists")
    parser.add_argument("--registry", type=Path, help="the benchmark registry (default: experiments/benchmarks.yaml)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs side by side, each with cpu_count // jobs torch threads (default 1)"
    )


def _shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)``."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N such as 1/2, got {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"K must be between 1 and N in K/N, got {text!r}")
    return k, n


def execute_none(command: list[str], log: Path, threads: int | None = None) -> float:
    """An ``execute`` for plans whose every run is reused: training one is a bug."""
    raise RuntimeError(f"bench: expected every run to be reused, but it would train: {' '.join(command)}")


def main(argv: list[str] | None = None, execute: Execute = run_command) -> None:
    """``python -m umadapt.bench run <benchmark> ...`` (``execute``: see :data:`Execute`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m umadapt.bench run", description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", help="a benchmark of experiments/benchmarks.yaml")
    add_run_arguments(parser, "results/runs")
    parser.add_argument(
        "--shard",
        type=_shard,
        default=(1, 1),
        metavar="K/N",
        help="train only every N-th run starting at the K-th (one shard per machine, sharing --runs-dir); then run "
        "once more with --resume to write the table",
    )
    args = parser.parse_args(argv)
    bench = get_benchmark(args.benchmark, args.registry)
    methods = select_methods(bench, args.methods)
    options = dict(epochs=args.epochs, predict=args.predict, resume=args.resume, jobs=args.jobs, shard=args.shard)
    options["execute"] = execute
    runs = run_benchmark(bench, methods, args.seeds, args.runs_dir, args.cli_arg, **options)
    if args.shard[1] > 1:
        missing = [(m, s) for m in methods for s in args.seeds if not (run_dir(args.runs_dir, m, s) / RECORD).is_file()]
        if missing:
            print(
                f"Shard {args.shard[0]}/{args.shard[1]} done ({sum(map(len, runs.records.values()))} runs). "
                f"{len(missing)} runs of other shards are not finished yet; when every shard has finished, "
                "run the same command without --shard and with --resume to write the table."
            )
            return
        runs = run_benchmark(bench, methods, args.seeds, args.runs_dir, args.cli_arg, resume=True, execute=execute_none)
    command = f"python -m umadapt.bench run {' '.join(argv)}"
    report.write_benchmark(bench, runs.records, runs.wall, args.seeds, args.out, command, runs.execution)
    print(args.out.read_text())
    beside = [str(p) for p in (args.out.with_suffix(".json"), args.out.with_suffix(".png")) if p.is_file()]
    print(f"Table written to {args.out} (and {', '.join(beside)}).")
    print(f"Per run, under {args.runs_dir}/<method>/seed<N>/: config.yaml, run_record.json, metrics.csv,")
    print("checkpoints/last.ckpt, images/ (validation grids: input, ground truth, prediction), results.json, fit.log,")
    print(f"test.log and {RECORD}" + (", predictions/ (colourised prediction PNGs)." if args.predict else "."))
