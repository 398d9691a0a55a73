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
import copy
import platform
import statistics
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


def reset_peak_memory() -> None:
    """Reset the kernel's peak-RSS counter for this process (Linux ``clear_refs``; a no-op elsewhere)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


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
    """Wall time of the training steps after ``warmup`` steps."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = self.end = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.end = time.perf_counter()


def time_lightning(model: SourceOnly, batches: list, warmup: int) -> float:
    """Seconds per steady-state step of ``Trainer.fit`` (logging on, progress bar and checkpoints off)."""
    timer = _StepTimer(warmup)
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=len(batches), logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[timer],
        num_sanity_val_steps=0,
    )
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
    trainer.fit(model, train_dataloaders=loader)
    return (timer.end - timer.start) / (len(batches) - warmup)


def time_bare(model: SourceOnly, batches: list, warmup: int) -> float:
    """Seconds per steady-state step of a plain PyTorch loop doing the same work as ``SourceOnly.training_step``."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    schedule = get_lr_schedule("cosine")
    total = len(batches)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step / total))
    start = 0.0
    for step, batch in enumerate(batches):
        if step == warmup:
            start = time.perf_counter()
        source = batch["source"]
        losses = model.task_losses(model(source["image"]), source)
        loss = model.weighted_sum(losses)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return (time.perf_counter() - start) / (total - warmup)


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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pipeline-images", type=int, default=512)
    args = parser.parse_args(argv)
    pl.seed_everything(0, verbose=False)

    batches = make_batches(args.steps, args.batch_size)
    lightning, bare, memory = [], [], {}
    for _ in range(args.repeats):  # interleaved, each on a fresh copy of the same initial model
        reset_peak_memory()
        lightning.append(time_lightning(make_model(), batches, args.warmup))
        memory["Lightning training"] = max(memory.get("Lightning training", 0.0), peak_memory_mib())
        reset_peak_memory()
        bare.append(time_bare(make_model(), batches, args.warmup))
        memory["bare PyTorch training"] = max(memory.get("bare PyTorch training", 0.0), peak_memory_mib())
    l_step, b_step = statistics.median(lightning), statistics.median(bare)
    overhead = 100 * (l_step - b_step) / b_step
    consumed = 2 * args.batch_size / l_step  # a training step consumes a source and a target batch

    pipeline = {}
    for workers in (0, 2):
        reset_peak_memory()
        pipeline[workers] = time_pipeline(workers, args.batch_size, args.pipeline_images)
        memory[f"data pipeline, {workers} workers (main process)"] = peak_memory_mib()

    lines = [
        "# Speed: framework overhead, data pipeline, memory",
        "",
        f"Command: `python -m umadapt.bench_speed {' '.join(argv or [])}`".replace("  ", " "),
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"pytorch-lightning {pl.__version__}. Model: the SynthRooms base config (ResNet-10 width 16, dense decoders "
        f"hidden 32, 3 tasks), batch {args.batch_size} of 64x64 source images per step.",
        "",
        "## (a) Lightning vs a bare PyTorch loop (same model, same in-memory batches, interleaved)",
        "",
        "| loop | s/step (median of runs) | runs (s/step) | images/s |",
        "|---|---|---|---|",
        f"| Lightning `Trainer.fit` | {l_step:.4f} | {', '.join(f'{x:.4f}' for x in lightning)} | {args.batch_size / l_step:.0f} |",
        f"| bare PyTorch | {b_step:.4f} | {', '.join(f'{x:.4f}' for x in bare)} | {args.batch_size / b_step:.0f} |",
        "",
        f"Framework overhead: **{overhead:+.1f} %** per step (goal: at most 5 %), over {args.steps - args.warmup} "
        f"steady-state steps after {args.warmup} warm-up steps, {args.repeats} interleaved runs each.",
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
        "## (c) Peak resident memory (MiB)",
        "",
        "| part | peak RSS |",
        "|---|---|",
        *(f"| {k} | {v:.0f} |" for k, v in memory.items()),
    ]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
