"""Schedules as functions of training progress ``p = global_step / trainer.estimated_stepping_batches`` in [0, 1].

They never depend on call counts, so resuming, gradient accumulation and multi-GPU runs see the same values.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Callable, Mapping

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


def dann_annealing(p: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    """The learning-rate annealing of DANN (Ganin & Lempitsky, JMLR 2016, Sec. 5.2.2):
    ``mu_p = mu_0 / (1 + alpha * p) ** beta`` with ``alpha = 10``, ``beta = 0.75``; returns the multiplier
    ``mu_p / mu_0``."""
    return 1.0 / (1.0 + alpha * min(max(p, 0.0), 1.0)) ** beta


LR_SCHEDULES: dict[str, ProgressSchedule] = {"constant": constant, "cosine": cosine, "dann": dann_annealing}


def get_lr_schedule(name: str) -> ProgressSchedule:
    """The learning-rate multiplier schedule called ``name``; a clear error lists the valid names otherwise."""
    try:
        return LR_SCHEDULES[name]
    except KeyError:
        raise ValueError(f"Unknown learning-rate schedule {name!r}. Valid names: {sorted(LR_SCHEDULES)}.") from None


# -- coefficient schedules (gradient-reversal coefficient, loss ramps) ------------------------------------------------


def dann_coefficient(p: float, gamma: float = 10.0) -> float:
    """The gradient-reversal coefficient of DANN (Ganin & Lempitsky, JMLR 2016, Sec. 5.2.2):
    ``lambda_p = 2 / (1 + exp(-gamma * p)) - 1`` with ``gamma = 10``; 0 at ``p = 0``, close to 1 at ``p = 1``."""
    return 2.0 / (1.0 + math.exp(-gamma * min(max(p, 0.0), 1.0))) - 1.0


def constant_coefficient(p: float, value: float = 1.0) -> float:
    """``value`` throughout training."""
    return float(value)


def linear_warmup(p: float, warmup: float = 0.1) -> float:
    """Rises linearly from 0 at ``p = 0`` to 1 at ``p = warmup``, then stays at 1."""
    if warmup <= 0.0:
        return 1.0
    return min(max(p, 0.0) / warmup, 1.0)


COEFFICIENT_SCHEDULES: dict[str, Callable[..., float]] = {
    "dann": dann_coefficient,
    "constant": constant_coefficient,
    "linear_warmup": linear_warmup,
}
"""Coefficient schedules by name: ``f(p, **params) -> float``; the keyword parameters come from YAML."""


def get_coefficient_schedule(name: str, params: Mapping[str, float] | None = None) -> ProgressSchedule:
    """The coefficient schedule called ``name`` with its keyword ``params`` bound, as a function of ``p``.

    Unknown names and parameters raise :class:`ValueError` listing the valid ones.
    """
    try:
        function = COEFFICIENT_SCHEDULES[name]
    except KeyError:
        raise ValueError(
            f"Unknown coefficient schedule {name!r}. Valid names: {sorted(COEFFICIENT_SCHEDULES)}."
        ) from None
    params = dict(params or {})
    valid = [n for n in inspect.signature(function).parameters if n != "p"]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"Coefficient schedule {name!r} has no parameter(s) {unknown}; valid parameters: {valid}.")
    return functools.partial(function, **{k: float(v) for k, v in params.items()})
