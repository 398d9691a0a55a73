"""Schedules as functions of training progress ``p = global_step / trainer.estimated_stepping_batches`` in [0, 1].

They never depend on call counts, so resuming, gradient accumulation and multi-GPU runs see the same values.
"""

from __future__ import annotations

import math
from typing import Callable

import pytorch_lightning as pl

ProgressSchedule = Callable[[float], float]
"""Maps progress ``p`` in [0, 1] to a multiplier."""


def training_progress(trainer: pl.Trainer) -> float:
    """``p = global_step / estimated_stepping_batches``, clipped to [0, 1]."""
    total = trainer.estimated_stepping_batches
    if not total or not math.isfinite(total):
        return 0.0
    return min(max(trainer.global_step / total, 0.0), 1.0)


def constant(p: float) -> float:
    return 1.0


def cosine(p: float) -> float:
    """Cosine decay from 1 to 0 over training."""
    return 0.5 * (1.0 + math.cos(math.pi * min(max(p, 0.0), 1.0)))


LR_SCHEDULES: dict[str, ProgressSchedule] = {"constant": constant, "cosine": cosine}


def get_lr_schedule(name: str) -> ProgressSchedule:
    """The learning-rate multiplier schedule called ``name``; a clear error lists the valid names otherwise."""
    try:
        return LR_SCHEDULES[name]
    except KeyError:
        raise ValueError(f"Unknown learning-rate schedule {name!r}. Valid names: {sorted(LR_SCHEDULES)}.") from None
