"""A callback that kills the training process abruptly (no cleanup), to test resuming."""

from __future__ import annotations

import os

import pytorch_lightning as pl


class KillAtStep(pl.Callback):
    """Exits the process with code 17 as soon as ``global_step`` reaches ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step >= self.step:
            os._exit(17)


class RecordStartStep(pl.Callback):
    """Writes ``global_step`` at the start of training to ``path`` (0 for a fresh run, k for a run resumed at k)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_start(self, trainer: pl.Trainer, *args: object) -> None:
        with open(self.path, "w") as handle:
            handle.write(str(trainer.global_step))
