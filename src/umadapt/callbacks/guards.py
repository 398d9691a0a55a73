"""Stop a diverged run loudly: a non-finite training loss raises an error naming the loss and the step."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytorch_lightning as pl
import torch

MODES = ("raise", "warn", "off")


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite."""


class NonFiniteLossGuard(pl.Callback):
    """After every training batch, checks the loss the step returned and every ``train/.../loss`` value it
    logged; a NaN or infinite one stops the run (``mode="raise"``) or warns (``"warn"``) with its name and step.

    Args:
        mode: ``raise`` (default), ``warn`` or ``off``.
    """

    def __init__(self, mode: str = "raise") -> None:
        if mode not in MODES:
            raise ValueError(f"Unknown non-finite loss mode {mode!r}; valid modes: {list(MODES)}.")
        self.mode = mode

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.mode == "off":
            return
        values: dict[str, Any] = {}
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            values["loss returned by training_step"] = loss
        values.update({k: v for k, v in trainer.callback_metrics.items() if k.startswith("train/") and "loss" in k})
        bad = [name for name, value in values.items() if not math.isfinite(float(value))]
        if not bad:
            return
        message = (
            f"Non-finite training loss at epoch {trainer.current_epoch}, batch {batch_idx} (trainer.global_step "
            f"{trainer.global_step} after the update): {', '.join(f'{n} = {float(values[n])}' for n in bad)}. "
            "Lower the learning rate, check the inputs, or set nan_guard.mode: warn to continue anyway."
        )
        if self.mode == "raise":
            raise NonFiniteLossError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=1)
