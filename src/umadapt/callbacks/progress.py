"""Progress as plain lines, for logs and pipes: Lightning's bar redraws itself with carriage returns, which a log
file keeps as one unreadable line per redraw.

The ``umadapt`` command uses :class:`LineProgress` instead of the bar when its output is not a terminal (a benchmark
run's ``fit.log``, a batch job's output), and :mod:`umadapt.bench.runner` reads the last line to show each running
run's epoch, step and ETA.
"""

from __future__ import annotations

import math
import re
import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar

PREFIX = "progress:"
"""Every line starts with it; :func:`parse_line` reads such a line back."""

_LINE = re.compile(
    rf"{PREFIX} epoch (?P<epoch>\d+)/(?P<epochs>\d+|\?) batch (?P<batch>\d+)/(?P<batches>\d+|\?) "
    r".*?ETA (?P<eta>[\d.]+|\?)"
)


class LineProgress(ProgressBar):
    """Training progress as one line every ``interval`` seconds and at the end of every epoch::

        progress: epoch 3/12 batch 150/756 (20 %) 4.1 batches/s train/source/loss 1.234 ETA 2.5 min

    ``epoch`` counts from 1; ``batch`` counts training batches over the whole fit, out of batches per epoch x
    ``max_epochs`` (capped by ``max_steps``): batches, not optimizer steps, since a method may take several optimizer
    steps per batch. The ETA extrapolates the rate since the start of this fit. Validation, test and predict print
    one line when they finish.

    Args:
        interval: seconds between two training lines (0: one per step).
    """

    def __init__(self, interval: float = 30.0) -> None:
        super().__init__()
        if not interval >= 0:
            raise ValueError(f"interval must be >= 0 seconds, got {interval}.")
        self.interval = float(interval)
        self._enabled = True
        self._start = self._last = 0.0
        self._first_batch = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _write(self, text: str) -> None:
        if self._enabled and self.trainer.is_global_zero:
            print(f"{PREFIX} {text}", file=sys.stdout, flush=True)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self._last = time.perf_counter()
        self._first_batch = _batches_done(trainer)

    def line(self, trainer: pl.Trainer) -> str:
        """The current training line (without the prefix)."""
        batch, total = _batches_done(trainer), _batches_planned(trainer)
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        elapsed = time.perf_counter() - self._start
        rate = (batch - self._first_batch) / elapsed if elapsed > 0 else 0.0
        text = f"epoch {trainer.current_epoch + 1}/{epochs} batch {batch}/{'?' if total is None else total}"
        if total:
            text += f" ({100 * batch / total:.0f} %)"
        text += f" {rate:.1f} batches/s"
        loss = next(((k, v) for k, v in trainer.progress_bar_metrics.items() if k.startswith("train/")), None)
        if loss is not None:
            text += f" {loss[0]} {float(loss[1]):.4g}"
        eta = max(total - batch, 0) / rate / 60 if total is not None and rate > 0 else None
        return text + (f" ETA {eta:.1f} min" if eta is not None else " ETA ?")

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            self._write(self.line(trainer))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = time.perf_counter()
        self._write(self.line(trainer) + " (epoch done)")

    def _evaluation_done(self, trainer: pl.Trainer, stage: str) -> None:
        if not trainer.sanity_checking:
            self._write(f"{stage} done")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "validate":  # a stand-alone `umadapt validate`, not validation within fit
            self._write("validation done")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._evaluation_done(trainer, "test")

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._evaluation_done(trainer, "predict")


def _batches_done(trainer: pl.Trainer) -> int:
    """Training batches finished in this fit, over all epochs (resumed runs count from their checkpoint)."""
    return trainer.fit_loop.epoch_loop.batch_progress.total.processed


def _batches_planned(trainer: pl.Trainer) -> int | None:
    """Training batches of the whole fit: batches per epoch x ``max_epochs``, capped by ``max_steps`` (in batches
    under automatic optimization); ``None`` when unknown (an iterable without length, no epoch limit)."""
    per_epoch = trainer.num_training_batches
    epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
    total = per_epoch * epochs if epochs and math.isfinite(per_epoch) else None
    if trainer.max_steps > 0 and trainer.lightning_module.automatic_optimization:
        by_steps = trainer.max_steps * trainer.accumulate_grad_batches
        total = by_steps if total is None else min(total, by_steps)
    return int(total) if total is not None else None


def parse_line(line: str) -> dict[str, Any] | None:
    """``{epoch, epochs, batch, batches, eta_min}`` of a :class:`LineProgress` training line (``None`` if it is not
    one; unknown totals are ``None``)."""
    match = _LINE.search(line)
    if not match:
        return None

    def number(key: str, kind: type) -> Any:
        value = match.group(key)
        return None if value == "?" else kind(value)

    return {
        "epoch": int(match.group("epoch")),
        "epochs": number("epochs", int),
        "batch": int(match.group("batch")),
        "batches": number("batches", int),
        "eta_min": number("eta", float),
    }
