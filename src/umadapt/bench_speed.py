"""Speed benchmark behind ``make bench-speed``: writes ``results/speed.md``.

(a) **Framework overhead**: training throughput of a method inside the Lightning ``Trainer`` against a bare
    PyTorch loop doing the same forward, losses, backward, optimizer and LR-scheduler step on the same model and the
    same in-memory batches. The two are interleaved (A, B, A, B, ...) in one process so machine noise hits both, and
    each is timed over steady-state steps only (after warm-up).
(b) **Data pipeline**: SynthRooms generation + augmentation + collation through the paired data module's training
    loader, with 0 and 2 workers and an empty cache, against the images/s that training consumes.
(c) **Peak memory**: the process's peak resident memory (``VmHWM``, reset before each measurement) per part.

    python -m umadapt.bench_speed --out results/speed.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from data_modules import PairedDataModule
from data_modules.synthrooms import SynthRooms
from umadapt.methods import SourceOnly
from umadapt.nn import DenseDecoder, ResNetEncoder
from umadapt.schedules import get_lr_schedule

TASKS = ["depth", "normals", "segmentation"]


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


def make_model(seed: int = 0) -> SourceOnly:
    """The SynthRooms base config's model (resnet10, width 16, hidden 32), built in code."""
    torch.manual_seed(seed)
    return SourceOnly(
        encoder=ResNetEncoder(arch="resnet10", width=16, small_input=False),
        tasks=TASKS,
        num_classes=5,
        image_size=(64, 64),
        dense_head=lambda c, o: DenseDecoder(c, o, hidden=32),
        optimizer=lambda p: torch.optim.Adam(p, lr=2e-3),
        lr_schedule="cosine",
    )


def make_batches(count: int, batch_size: int) -> list[dict[str, Any]]:
    """``count`` training batches, rendered once and kept in memory (so (a) measures no data loading)."""
    domains = (SynthRooms("synthetic", 0, 64, train_size=batch_size * count), SynthRooms("real", 1, 64, train_size=batch_size * count))
    dm = PairedDataModule(*domains, tasks=TASKS, batch_size=batch_size, augmentation="hflip", seed=0)
    batches = []
    for batch, _, _ in dm.train_dataloader():
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


def time_lightning(model: SourceOnly, batches: list, warmup: int) -> float:
    """Median seconds per steady-state step of ``Trainer.fit`` (logging on, progress bar and checkpoints off)."""
    timer = _StepTimer()
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=len(batches), logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[timer],
        num_sanity_val_steps=0,
    )
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
    trainer.fit(model, train_dataloaders=loader)
    return median_step(timer.stamps, warmup)


def time_bare(model: SourceOnly, batches: list, warmup: int) -> float:
    """Median seconds per steady-state step of a plain PyTorch loop doing the same work as
    ``SourceOnly.training_step`` (same data hand-over through a ``DataLoader``)."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    schedule = get_lr_schedule("cosine")
    total = len(batches)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step / total))
    stamps = []
    for batch in torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False):
        stamps.append(time.perf_counter())
        source = batch["source"]
        losses = model.task_losses(model(source["image"]), source)
        loss = model.weighted_sum(losses)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    stamps.append(time.perf_counter())
    return median_step(stamps, warmup)


MEMORY_STEPS = 10
"""Training steps run by each training part of the peak-memory measurement."""


def _peak_in_fresh_process(part: str, workers: int, batch_size: int, images: int) -> tuple[float, float]:
    """Run one part (``lightning``, ``bare`` or ``pipeline`` with ``workers``) in this fresh, spawned process;
    return (RSS before it, peak RSS during it) in MiB."""
    torch.set_num_threads(1)
    if part == "pipeline":
        before = reset_peak_memory()
        time_pipeline(workers, batch_size, images)
    else:
        batches = make_batches(MEMORY_STEPS, batch_size)
        model = make_model()
        before = reset_peak_memory()
        (time_lightning if part == "lightning" else time_bare)(model, batches, warmup=1)
    return before, peak_memory_mib()


def peak_memory_table(batch_size: int, images: int) -> dict[str, tuple[float, float]]:
    """Peak resident memory of each part, each measured in its own freshly spawned process (so no part inherits
    another's high-water mark or allocator state)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    parts = {
        "Lightning training": ("lightning", 0), "bare PyTorch training": ("bare", 0),
        "data pipeline, 0 workers": ("pipeline", 0), "data pipeline, 2 workers (main process only)": ("pipeline", 2),
    }  # fmt: skip
    context = multiprocessing.get_context("spawn")
    table = {}
    for label, (part, workers) in parts.items():
        with ProcessPoolExecutor(1, mp_context=context) as pool:  # not daemonic: the 2-worker part forks loaders
            table[label] = pool.submit(_peak_in_fresh_process, part, workers, batch_size, images).result()
    return table


def time_pipeline(num_workers: int, batch_size: int, images: int) -> float:
    """Training images/s through the paired loader (SynthRooms rendering + hflip + tensors), fresh cache."""
    domains = (SynthRooms("synthetic", 10, 64, train_size=images), SynthRooms("real", 11, 64, train_size=images))
    dm = PairedDataModule(*domains, tasks=TASKS, batch_size=batch_size, num_workers=num_workers, augmentation="hflip", seed=0)
    start = time.perf_counter()
    seen = 0
    for batch, _, _ in dm.train_dataloader():
        seen += batch["source"]["image"].shape[0] + batch["target"]["image"].shape[0]
    return seen / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m umadapt.bench_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/speed.md"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pipeline-images", type=int, default=512)
    args = parser.parse_args(argv)
    pl.seed_everything(0, verbose=False)

    batches = make_batches(args.steps, args.batch_size)
    lightning, bare = [], []
    for _ in range(args.repeats):  # interleaved, each on a fresh copy of the same initial model
        lightning.append(time_lightning(make_model(), batches, args.warmup))
        bare.append(time_bare(make_model(), batches, args.warmup))
    l_step, b_step = statistics.median(lightning), statistics.median(bare)
    overhead = 100 * (l_step - b_step) / b_step
    consumed = 2 * args.batch_size / l_step  # a training step consumes a source and a target batch

    pipeline = {workers: time_pipeline(workers, args.batch_size, args.pipeline_images) for workers in (0, 2)}
    memory = peak_memory_table(args.batch_size, images=args.pipeline_images)

    lines = [
        "# Speed: framework overhead, data pipeline, memory",
        "",
        f"Command: `python -m umadapt.bench_speed {' '.join(sys.argv[1:] if argv is None else argv)}`",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"pytorch-lightning {pl.__version__}. Model: the SynthRooms base config (ResNet-10 width 16, dense decoders "
        f"hidden 32, 3 tasks), batch {args.batch_size} of 64x64 source images per step.",
        "",
        "## (a) Lightning vs a bare PyTorch loop (same model, same in-memory batches, interleaved)",
        "",
        "| loop | s/step (median of runs) | runs (median s/step each) | images/s |",
        "|---|---|---|---|",
        f"| Lightning `Trainer.fit` | {l_step:.4f} | {', '.join(f'{x:.4f}' for x in lightning)} | {args.batch_size / l_step:.0f} |",
        f"| bare PyTorch | {b_step:.4f} | {', '.join(f'{x:.4f}' for x in bare)} | {args.batch_size / b_step:.0f} |",
        "",
        f"Framework overhead: **{overhead:+.1f} %** per step (goal: at most 5 %). Each run times the interval "
        f"between consecutive step starts over {args.steps - args.warmup} steady-state steps after {args.warmup} "
        f"warm-up steps and keeps the median; {args.repeats} interleaved runs each.",
        "",
        "## (b) Data pipeline (SynthRooms rendering + augmentation + collation, empty cache)",
        "",
        "| loader | images/s |",
        "|---|---|",
        *(f"| {w} workers | {r:.0f} |" for w, r in pipeline.items()),
        f"| training consumes (source + target per step) | {consumed:.0f} |",
        "",
        "After the first epoch the per-domain cache serves samples from memory, so rendering cost is paid once.",
        "",
        "## (c) Peak resident memory (MiB), each part in a fresh process",
        "",
        "| part | RSS before the part | peak RSS during it | increase |",
        "|---|---|---|---|",
        *(f"| {k} | {a:.0f} | {b:.0f} | {b - a:.0f} |" for k, (a, b) in memory.items()),
        "",
        f"Training parts: {MEMORY_STEPS} steps on in-memory batches (the batches are in the 'before' figure); "
        "pipeline parts: "
        f"{args.pipeline_images} images per domain.",
    ]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
