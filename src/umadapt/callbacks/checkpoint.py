"""Checkpoints a killed run can resume from, and the metric history a resumed run keeps.

Lightning 2.6's ``ModelCheckpoint(save_last=True, save_top_k=0)`` writes ``last.ckpt`` only when training ends, so
a run killed in its last epoch leaves nothing to resume. :class:`RunCheckpoint` keeps ``last.ckpt`` current: after
every training epoch and, optionally, every ``last_every_n_train_steps`` steps.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from umadapt.callbacks.run_folder import run_folder

__all__ = ["RunCheckpoint", "keep_csv_history"]


class RunCheckpoint(ModelCheckpoint):
    """:class:`~pytorch_lightning.callbacks.ModelCheckpoint` that keeps ``last.ckpt`` current when ``save_last``
    is set, whatever ``save_top_k`` is (umadapt's default keeps no other checkpoint: none is chosen by a metric).

    Args:
        last_every_n_train_steps: also refresh ``last.ckpt`` every n optimizer steps (0: only at epoch ends).
        *args, **kwargs: those of ``ModelCheckpoint``.
    """

    def __init__(self, *args: Any, last_every_n_train_steps: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if last_every_n_train_steps < 0:
            raise ValueError(f"last_every_n_train_steps must be >= 0, got {last_every_n_train_steps}.")
        self.last_every_n_train_steps = int(last_every_n_train_steps)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # without a dirpath and a run folder (logger off, default_root_dir the current directory) save nothing:
        # Lightning would write checkpoints/ into the current directory
        self._has_folder = self.dirpath is not None or run_folder(trainer) is not None  # a collective: every rank
        super().setup(trainer, pl_module, stage)

    def _should_skip_saving_checkpoint(self, trainer: pl.Trainer) -> bool:
        return not getattr(self, "_has_folder", True) or super()._should_skip_saving_checkpoint(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning saves last.ckpt here unconditionally (even under fast_dev_run): only when saving is due
        if not self._should_skip_saving_checkpoint(trainer):
            super().on_train_end(trainer, pl_module)

    def _refresh_last(self, trainer: pl.Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            self._last_global_step_saved = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        every = self.last_every_n_train_steps
        if every and trainer.global_step % every == 0:
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._refresh_last(trainer)


def keep_csv_history(logger: Any, resumed_step: int) -> int:
    """Make a resumed run's :class:`CSVLogger` append to its ``metrics.csv`` instead of replacing it: keep the rows
    logged before ``resumed_step`` (the checkpoint's ``global_step``; later rows are logged again by the resumed
    run) and hand the header to the logger's writer. Returns the number of rows kept (0 for other loggers)."""
    if not isinstance(logger, CSVLogger):
        return 0
    path = Path(logger.log_dir) / "metrics.csv"
    if not path.is_file():
        return 0
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = sorted(reader.fieldnames or [])
        rows = [row for row in reader if not row.get("step") or int(float(row["step"])) < resumed_step]
    writer = logger.experiment  # creating the writer removes the old file; write the kept history back
    text = io.StringIO()
    table = csv.DictWriter(text, fieldnames=header)
    table.writeheader()
    table.writerows(rows)
    path.write_text(text.getvalue())
    writer.metrics_keys = header
    return len(rows)
