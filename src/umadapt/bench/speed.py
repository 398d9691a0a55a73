"""Speed benchmark behind ``make bench-speed``: writes ``results/speed.md``.

The model and the data module are the shipped SynthRooms source-only config (the registry's stack
``experiments/synthrooms/base.yaml`` + ``source_only.yaml``), built by the umadapt CLI parser with size overrides.

(a) **Framework overhead**: training throughput of a method inside the Lightning ``Trainer`` against a bare
    PyTorch loop doing the same forward, losses, backward, optimizer and LR-scheduler step on the same model and the
    same in-memory batches. The two are interleaved (A, B, A, B, ...) in one process so machine noise hits both, and
    each is timed over steady-state steps only (after warm-up).
    Measured for the SynthRooms model and for the Digits network, whose small step weighs per-step overhead most.
(b) **Data pipeline**: SynthRooms generation + augmentation + collation through the paired data module's training
    loader, with 0 and 2 workers and no cache, then a first pass that fills an empty disk cache and a fresh data
    module reading it, against the images/s that training consumes.
(c) **Peak memory**: the process's peak resident memory (``VmHWM``, reset before each measurement) per part.
(d) **Training-step choices**, each before/after in this run: umadapt's channel reductions against the PyTorch
    forms they replace, channels-last memory format off/on, one against two torch threads, and the cost of one
    validation pass against a training epoch.

    python -m umadapt.bench speed --out results/speed.md
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from umadapt.bench import report
from umadapt.bench.registry import get_benchmark
from umadapt.methods.base import MultiTaskModel

__all__ = ["build", "config_files", "make_batches", "median_step", "time_bare", "time_lightning", "time_pipeline"]

BENCHMARK, METHOD = "synthrooms", "source_only"
"""The registry stack the model and data come from."""


def config_files() -> list[Path]:
    """The shipped YAML stack of the measured model: SynthRooms base + source-only."""
    return get_benchmark(BENCHMARK).stack(METHOD)


def build(overrides: Sequence[str] = (), configs: Sequence[Path] | None = None) -> tuple[MultiTaskModel, Any]:
    """The model and data module of ``configs`` (default :func:`config_files`) with ``overrides``, instantiated by
    the umadapt CLI parser exactly as ``umadapt fit`` would (links, defaults, ``seed_everything``)."""
    from umadapt.cli import build_cli

    args = [arg for path in configs or config_files() for arg in ("--config", str(path))]
    with warnings.catch_warnings():  # it warns that this process also has command-line arguments (the benchmark's)
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli = build_cli([*args, "--trainer.logger=false", "--trainer.enable_progress_bar=false", *overrides], run=False)
    return cli.model, cli.datamodule


def _sizes(batch_size: int, train_size: int, seeds: tuple[int, int] | None = None, workers: int = 0) -> list[str]:
    """CLI overrides: batch size, training images per domain, domain seeds, loader workers, augmentation seed 0."""
    args = [f"--data.init_args.batch_size={batch_size}", f"--data.init_args.num_workers={workers}"]
    args += [f"--data.init_args.{role}.init_args.train_size={train_size}" for role in ("source", "target")]
    if seeds is not None:
        args += [f"--data.init_args.{role}.init_args.seed={s}" for role, s in zip(("source", "target"), seeds)]
    return [*args, "--data.init_args.seed=0"]


def _status_mib(field: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def reset_peak_memory() -> float:
    """Reset the kernel's peak-RSS counter of this process (Linux ``clear_refs``; a no-op elsewhere); returns the
    resident memory at that moment (MiB), the floor of the next peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status_mib("VmRSS")


def peak_memory_mib() -> float:
    """Peak resident memory of this process since the last reset (MiB)."""
    return _status_mib("VmHWM")


def make_batches(datamodule: Any, count: int) -> list[dict[str, Any]]:
    """``count`` training batches of ``datamodule``, rendered once and kept in memory (so (a) measures no loading)."""
    batches = []
    for batch, _, _ in datamodule.train_dataloader():
        batches.append(batch)
        if len(batches) == count:
            break
    return batches


class _StepTimer(pl.Callback):
    """Timestamps at the start of every training batch (and at the end of the last one)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self.stamps.append(time.perf_counter())

    def on_train_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.stamps.append(time.perf_counter())


def median_step(stamps: list[float], warmup: int) -> float:
    """Median of the intervals between consecutive step starts after ``warmup`` steps: each interval holds
    everything a loop does per step (data hand-over, forward, backward, optimizer, scheduler, logging, hooks), and
    the median ignores steps slowed by other work on a shared machine."""
    intervals = [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1 :])]
    if not intervals:
        raise ValueError(f"Need more than {warmup} steps to time (warm-up), got {len(stamps) - 1}.")
    return statistics.median(intervals)


def time_lightning(model: MultiTaskModel, batches: list, warmup: int, log_every_n_steps: int = 50) -> float:
    """Median seconds per steady-state step of ``Trainer.fit`` (logging on, progress bar and checkpoints off)."""
    timer = _StepTimer()
    trainer = pl.Trainer(
        log_every_n_steps=log_every_n_steps,
        accelerator="cpu",
        max_steps=len(batches),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
        num_sanity_val_steps=0,
    )
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
    trainer.fit(model, train_dataloaders=loader)
    return median_step(timer.stamps, warmup)


def time_bare(model: MultiTaskModel, batches: list, warmup: int) -> float:
    """Median seconds per steady-state step of a plain PyTorch loop doing the same work as the source-only
    ``training_step`` with the config's optimizer and learning-rate schedule (same hand-over through a DataLoader)."""
    model.setup("fit")  # the model's own preparation, as Trainer.fit calls it (e.g. channels-last weights)
    model.train()
    optimizer = model.optimizer_factory(model.parameters())
    schedule, total = model.lr_schedule, len(batches)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step / total))
    stamps = []
    for batch in torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False):
        stamps.append(time.perf_counter())
        source = batch["source"]
        loss = model.weighted_sum(model.task_losses(model(source["image"]), source))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    stamps.append(time.perf_counter())
    return median_step(stamps, warmup)


def pipeline_data(num_workers: int, batch_size: int, images: int, cache_dir: str | None = None) -> Any:
    """The config's data module for (b): ``images`` per domain, domain seeds 10 and 11 (unlike the training
    batches'); without ``cache_dir`` no disk cache (every sample is rendered), with it that disk cache."""
    roles = ("source", "target")
    if cache_dir is None:
        cache = [f"--data.init_args.{role}.init_args.disk_cache=false" for role in roles]
    else:
        cache = [f"--data.init_args.{role}.init_args.cache_dir={cache_dir}" for role in roles]
    return build([*_sizes(batch_size, images, seeds=(10, 11), workers=num_workers), *cache])[1]


def disk_cache_rates(batch_size: int, images: int) -> tuple[float, float]:
    """Images/s of a first pass that renders into an empty disk cache, and of a fresh data module reading it."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        first = time_pipeline(pipeline_data(0, batch_size, images, cache_dir=folder))
        warm = time_pipeline(pipeline_data(0, batch_size, images, cache_dir=folder))
    return first, warm


DIGITS_TRAIN_IMAGES = 480
"""At most this many Digits training images (Digits-M has 500); its batches repeat to fill ``--steps``."""


def digits_config_files() -> list[Path]:
    """The shipped YAML stack of the Digits network: Digits base + source-only."""
    return get_benchmark("digits").stack(METHOD)


def overhead(
    model: MultiTaskModel, batches: list, warmup: int, repeats: int
) -> tuple[list[float], list[float], list[float]]:
    """Per-run median s/step of ``Trainer.fit``, of the bare loop and of ``Trainer.fit`` logging every step's values
    (``log_every_n_steps=1``: what every step cost before :meth:`MultiTaskModel.log` skipped the values no logger
    receives), interleaved, each on a fresh copy."""
    lightning, bare, every_step = [], [], []
    for _ in range(repeats):
        lightning.append(time_lightning(copy.deepcopy(model), batches, warmup))
        bare.append(time_bare(copy.deepcopy(model), batches, warmup))
        every_step.append(time_lightning(copy.deepcopy(model), batches, warmup, log_every_n_steps=1))
    return lightning, bare, every_step


def _ms_per_call(function: Callable[[], Any], calls: int = 20) -> float:
    function()
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return 1000 * (time.perf_counter() - start) / calls


def reduction_timings(batch_size: int, size: int, classes: int) -> list[tuple[str, float, float]]:
    """ms per call of each PyTorch channel reduction and the :mod:`umadapt.ops` form that replaces it, on a batch
    of normal maps ``[B, 3, size, size]`` and logits ``[B, classes, size, size]``."""
    import torch.nn.functional as F

    from umadapt.ops import channel_argmax, channel_norm, normalize_channels

    normals = torch.randn(batch_size, 3, size, size, requires_grad=True)
    logits = torch.randn(batch_size, classes, size, size)

    def backward(out: torch.Tensor) -> None:
        out.sum().backward()

    return [
        (
            "norm over channels: `vector_norm(x, dim=1)` -> `channel_norm`",
            _ms_per_call(lambda: torch.linalg.vector_norm(normals.detach(), dim=1)),
            _ms_per_call(lambda: channel_norm(normals.detach())),
        ),
        (
            "unit normals, forward + backward: `F.normalize(x, dim=1)` -> `normalize_channels`",
            _ms_per_call(lambda: backward(F.normalize(normals, dim=1, eps=1e-6))),
            _ms_per_call(lambda: backward(normalize_channels(normals, eps=1e-6))),
        ),
        (
            "class map: `argmax(dim=1)` -> `channel_argmax`",
            _ms_per_call(lambda: logits.argmax(dim=1)),
            _ms_per_call(lambda: channel_argmax(logits)),
        ),
    ]


def channels_last_timings(model: MultiTaskModel, batches: list, warmup: int) -> dict[bool, float]:
    """Bare-loop s/step with the model's ``channels_last`` off and on (fresh copies of the same weights)."""
    timings = {}
    for flag in (False, True):
        copy_ = copy.deepcopy(model)
        copy_.channels_last = flag
        timings[flag] = time_bare(copy_, batches, warmup)
    return timings


def thread_timings(model: MultiTaskModel, batches: list, warmup: int) -> dict[int, float]:
    """Bare-loop s/step with 1 and with 2 torch threads (the machine's setting restored afterwards)."""
    before = torch.get_num_threads()
    timings = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            timings[threads] = time_bare(copy.deepcopy(model), batches, warmup)
    finally:
        torch.set_num_threads(before)
    return timings


def validation_seconds(model: MultiTaskModel, datamodule: Any) -> float:
    """Seconds of one validation pass (both domains' validation splits, full metrics), samples already cached."""
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.validate(copy.deepcopy(model), datamodule=datamodule, verbose=False)  # renders the split once
        start = time.perf_counter()
        trainer.validate(copy.deepcopy(model), datamodule=datamodule, verbose=False)
    return time.perf_counter() - start


def time_pipeline(datamodule: Any) -> float:
    """Training images/s through the paired loader of ``datamodule`` (SynthRooms rendering + hflip + tensors)."""
    start = time.perf_counter()
    seen = 0
    for batch, _, _ in datamodule.train_dataloader():
        seen += batch["source"]["image"].shape[0] + batch["target"]["image"].shape[0]
    return seen / (time.perf_counter() - start)


MEMORY_STEPS = 10
"""Training steps run by each training part of the peak-memory measurement."""


def _peak_in_fresh_process(part: str, workers: int, batch_size: int, images: int) -> tuple[float, float]:
    """Run one part (``lightning``, ``bare`` or ``pipeline`` with ``workers``) in this fresh, spawned process;
    return (RSS before it, peak RSS during it) in MiB."""
    torch.set_num_threads(1)
    if part == "pipeline":
        datamodule = pipeline_data(workers, batch_size, images)
        before = reset_peak_memory()
        time_pipeline(datamodule)
    else:
        model, datamodule = build(_sizes(batch_size, batch_size * MEMORY_STEPS))
        batches = make_batches(datamodule, MEMORY_STEPS)
        before = reset_peak_memory()
        (time_lightning if part == "lightning" else time_bare)(model, batches, warmup=1)
    return before, peak_memory_mib()


def peak_memory_table(batch_size: int, images: int) -> dict[str, tuple[float, float]]:
    """Peak resident memory of each part, each measured in its own freshly spawned process (so no part inherits
    another's high-water mark or allocator state)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    parts = {
        "Lightning training": ("lightning", 0),
        "bare PyTorch training": ("bare", 0),
        "data pipeline, 0 workers": ("pipeline", 0),
        "data pipeline, 2 workers (main process only)": ("pipeline", 2),
    }
    context = multiprocessing.get_context("spawn")
    table = {}
    for label, (part, workers) in parts.items():
        with ProcessPoolExecutor(1, mp_context=context) as pool:  # not daemonic: the 2-worker part forks loaders
            table[label] = pool.submit(_peak_in_fresh_process, part, workers, batch_size, images).result()
    return table


def _overhead_rows(name: str, loops: dict[str, list[float]], batch_size: int) -> list[str]:
    rows = []
    for loop, runs in loops.items():
        step = statistics.median(runs)
        rows.append(
            f"| {name} | {loop} | {step:.4f} | {', '.join(f'{x:.4f}' for x in runs)} | {batch_size / step:.0f} |"
        )
    return rows


def _loops(lightning: list[float], bare: list[float], every_step: list[float]) -> dict[str, list[float]]:
    return {
        "Lightning `Trainer.fit`": lightning,
        "bare PyTorch": bare,
        "Lightning, every step's values logged (`log_every_n_steps=1`: the cost before this was skipped)": every_step,
    }


def _overhead_summary(lightning: list[float], bare: list[float]) -> tuple[float, float, float]:
    """The overhead of the medians (%), and the lowest and highest overhead of one interleaved pair of runs."""
    l_step, b_step = statistics.median(lightning), statistics.median(bare)
    pairs = [100 * (a - b) / b for a, b in zip(lightning, bare)]
    return 100 * (l_step - b_step) / b_step, min(pairs), max(pairs)


def main(argv: list[str] | None = None) -> None:
    """``python -m umadapt.bench speed ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m umadapt.bench speed", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/speed.md"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pipeline-images", type=int, default=512)
    args = parser.parse_args(argv)

    initial, datamodule = build(_sizes(args.batch_size, args.batch_size * args.steps))
    batches = make_batches(datamodule, args.steps)
    lightning, bare, every_step = overhead(initial, batches, args.warmup, args.repeats)
    digits_images = min(args.batch_size * args.steps, DIGITS_TRAIN_IMAGES)
    digits, digits_data = build(_sizes(args.batch_size, digits_images), digits_config_files())
    digits_batches = make_batches(digits_data, args.steps)
    digits_batches = (digits_batches * args.steps)[: args.steps]  # Digits has fewer images than steps x batch
    digits_lightning, digits_bare, digits_every_step = overhead(digits, digits_batches, args.warmup, args.repeats)
    l_step = statistics.median(lightning)
    consumed = 2 * args.batch_size / l_step  # a training step consumes a source and a target batch

    pipeline = {w: time_pipeline(pipeline_data(w, args.batch_size, args.pipeline_images)) for w in (0, 2)}
    first_pass, warm = disk_cache_rates(args.batch_size, args.pipeline_images)
    memory = peak_memory_table(args.batch_size, images=args.pipeline_images)

    image = batches[0]["source"]["image"]
    reductions = reduction_timings(args.batch_size, image.shape[-1], initial.num_classes or 5)
    layouts = {"SynthRooms": channels_last_timings(initial, batches, args.warmup)}
    layouts["Digits"] = channels_last_timings(digits, digits_batches, args.warmup)
    threads = thread_timings(initial, batches, args.warmup)
    validation = validation_seconds(initial, datamodule)
    shipped = build()[1].source  # the shipped config's training split (the measured batches are fewer)
    epoch_steps = -(-shipped.sizes["train"] // args.batch_size)

    size = "x".join(str(s) for s in image.shape[-2:])
    parameters = sum(p.numel() for p in initial.parameters())
    root = config_files()[0].parents[2]
    stack = " + ".join(f"`{p.relative_to(root).as_posix()}`" for p in config_files())
    digits_stack = " + ".join(f"`{p.relative_to(root).as_posix()}`" for p in digits_config_files())
    overhead_pct, low, high = _overhead_summary(lightning, bare)
    d_overhead, d_low, d_high = _overhead_summary(digits_lightning, digits_bare)
    lines = [
        "# Speed: framework overhead, data pipeline, memory, training-step choices",
        "",
        f"Command: `python -m umadapt.bench speed {' '.join(argv)}`",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"pytorch-lightning {pl.__version__}. Models: the shipped config {stack} built by the umadapt CLI parser "
        f"({type(initial).__name__}, {parameters / 1e3:.0f} k parameters, {len(initial.tasks)} tasks), batch "
        f"{args.batch_size} of {size} source images per step; and the Digits network ({digits_stack}), batch "
        f"{args.batch_size}.",
        "",
        "## (a) Lightning vs a bare PyTorch loop (same model, same in-memory batches, interleaved)",
        "",
        "| model | loop | s/step (median of runs) | runs (median s/step each) | images/s |",
        "|---|---|---|---|---|",
        *_overhead_rows("SynthRooms", _loops(lightning, bare, every_step), args.batch_size),
        *_overhead_rows("Digits", _loops(digits_lightning, digits_bare, digits_every_step), args.batch_size),
        "",
        f"Framework overhead: SynthRooms **{overhead_pct:+.1f} %** per step (interleaved pairs {low:+.1f} to "
        f"{high:+.1f} %), Digits **{d_overhead:+.1f} %** (pairs {d_low:+.1f} to {d_high:+.1f} %); goal: at most 2 %. "
        f"Logging every step's values instead: SynthRooms {_overhead_summary(every_step, bare)[0]:+.1f} %, Digits "
        f"{_overhead_summary(digits_every_step, digits_bare)[0]:+.1f} %. "
        f"Each run times the interval between consecutive step starts over {args.steps - args.warmup} steady-state "
        f"steps after {args.warmup} warm-up steps and keeps the median; {args.repeats} interleaved runs each.",
        "",
        "## (b) Data pipeline (SynthRooms rendering + augmentation + collation)",
        "",
        "| loader | images/s |",
        "|---|---|",
        *(f"| {w} workers, no cache (every sample rendered) | {r:.0f} |" for w, r in pipeline.items()),
        f"| 0 workers, first pass: render and write an empty disk cache | {first_pass:.0f} |",
        f"| 0 workers, a fresh data module reading the warm disk cache | {warm:.0f} |",
        f"| training consumes (source + target per step) | {consumed:.0f} |",
        "",
        "Within a run the per-domain memory cache serves epochs after the first; across runs and DataLoader workers "
        "the disk cache (`data_modules/synthrooms/disk_cache.py`) does, so rendering is paid once per machine.",
        "",
        "## (c) Peak resident memory (MiB), each part in a fresh process",
        "",
        "| part | RSS before the part | peak RSS during it | increase |",
        "|---|---|---|---|",
        *(f"| {k} | {a:.0f} | {b:.0f} | {b - a:.0f} |" for k, (a, b) in memory.items()),
        "",
        f"Training parts: {MEMORY_STEPS} steps on in-memory batches (the batches are in the 'before' figure); "
        f"pipeline parts: {args.pipeline_images} images per domain, no cache.",
        "",
        "## (d) Training-step choices, before -> after in this run",
        "",
        "| choice | before | after | change |",
        "|---|---|---|---|",
        *(f"| {name} | {a:.2f} ms | {b:.2f} ms | {100 * (b - a) / a:+.0f} % |" for name, a, b in reductions),
        *(
            f"| {model}, bare step: contiguous -> `channels_last: true` | {t[False]:.4f} s | {t[True]:.4f} s | "
            f"{100 * (t[True] - t[False]) / t[False]:+.0f} % |"
            for model, t in layouts.items()
        ),
        f"| SynthRooms, bare step: 1 -> 2 torch threads | {threads[1]:.4f} s | {threads[2]:.4f} s | "
        f"{100 * (threads[2] - threads[1]) / threads[1]:+.0f} % |",
        "",
        f"Reductions: batch {args.batch_size} of {size} maps (normals 3 channels, logits "
        f"{initial.num_classes or 5}). Two torch threads do not halve a step, so on a 2-core machine the benchmarks "
        "train two runs side by side with one thread each (`make bench-* JOBS=2`). One validation pass (both domains, "
        f"full metrics) takes {validation:.2f} s, {100 * validation / (epoch_steps * l_step):.0f} % of a training "
        f"epoch of the shipped config ({epoch_steps} Lightning steps of batch {args.batch_size}).",
    ]
    text = "\n".join(lines) + "\n"
    report.write(args.out, text)
    print(text)
