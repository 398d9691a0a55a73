"""Schedules as functions of training progress ``p`` in [0, 1] (:func:`training_progress`), phases laid out on it
(:class:`PhaseSchedule`) and the learning-rate restart a phase uses (:func:`restart_lr`).

They never depend on call counts, so resuming, gradient accumulation and multi-GPU runs see the same values.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytorch_lightning as pl

from umadapt.errors import ConfigError

ProgressSchedule = Callable[[float], float]
"""Maps progress ``p`` in [0, 1] to a multiplier."""


def training_progress(trainer: pl.Trainer, batch_idx: int | None = None, steps_per_batch: float = 1.0) -> float:
    """Training progress ``p`` in [0, 1].

    By optimizer steps (default): ``p = global_step / estimated_stepping_batches``. By batches (``batch_idx`` given),
    for methods with manual optimization that take several optimizer steps per batch (their ``global_step`` counts
    every one): ``p = (current_epoch * num_training_batches + batch_idx) / total``, where ``total`` is the number of
    batches the run will train: ``max_epochs * num_training_batches``, or ``max_steps / steps_per_batch`` when that
    ends the run first (``steps_per_batch``: the method's mean optimizer steps per batch). A run of no finite length
    (neither bound, e.g. only ``max_time``) has no progress: 0 (:func:`require_finite_length` refuses such runs).
    """
    if batch_idx is not None:
        batches = trainer.num_training_batches
        if batches and math.isfinite(batches):
            totals = []
            if trainer.max_epochs is not None and trainer.max_epochs >= 1:
                totals.append(trainer.max_epochs * batches)
            if trainer.max_steps is not None and trainer.max_steps > 0:
                by_steps = trainer.max_steps / max(float(steps_per_batch), 1e-12)
                totals.append(round(by_steps) if math.isclose(by_steps, round(by_steps)) else by_steps)
            if totals:
                done = trainer.current_epoch * batches + batch_idx
                return min(max(done / max(min(totals), 1.0), 0.0), 1.0)
    total = trainer.estimated_stepping_batches
    if not total or not math.isfinite(total):
        return 0.0
    return min(max(trainer.global_step / total, 0.0), 1.0)


def require_finite_length(trainer: pl.Trainer, what: str) -> None:
    """Refuse a run of no finite length (``max_epochs: -1`` and no ``max_steps``, e.g. bounded by ``max_time``
    only, or an endless training loader) for ``what`` follows training progress, which would then stay at 0."""
    if not math.isfinite(trainer.estimated_stepping_batches):
        raise ConfigError(
            f"{what} follows training progress, which needs a run of known length, but this run has none "
            f"(trainer.max_epochs={trainer.max_epochs}, trainer.max_steps={trainer.max_steps}; max_time alone does "
            "not say how far a run is): set trainer.max_epochs or trainer.max_steps."
        )


BOUNDARY_TOLERANCE = 1e-9
"""Progress this close below a phase boundary counts as past it (float rounding of ``k / n`` vs the lengths' sums)."""


class PhaseSchedule:
    """Training split into named phases laid out one after another on the training progress ``p``.

    Args:
        lengths: ``{phase: relative length}`` in running order; normalised by their sum; phases of length 0 are
            skipped.
    """

    def __init__(self, lengths: Mapping[str, float]) -> None:
        total = sum(float(v) for v in lengths.values())
        if total <= 0 or any(float(v) < 0 or not math.isfinite(float(v)) for v in lengths.values()):
            raise ValueError(f"Phase lengths must be non-negative and finite with a positive sum, got {dict(lengths)}.")
        self.lengths = {name: float(v) / total for name, v in lengths.items()}
        self.active = [name for name, v in self.lengths.items() if v > 0]

    def at(self, progress: float) -> tuple[str, float]:
        """The phase running at ``progress`` and the progress within it, in [0, 1] (the last phase includes 1)."""
        start = 0.0
        for phase in self.active:
            length = self.lengths[phase]
            if progress < start + length - BOUNDARY_TOLERANCE or phase == self.active[-1]:
                return phase, min(max((progress - start) / length, 0.0), 1.0)
            start += length
        raise AssertionError("unreachable: phases have a positive sum")


def restart_lr(optimizers: Iterable[Any], multiplier: float) -> None:
    """Set every parameter group's learning rate to ``initial_lr * multiplier``: how a phase replays a
    progress-based schedule from its own start. Groups get ``initial_lr`` from their current ``lr`` on first use."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * multiplier


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


def linear_decay_second_half(p: float) -> float:
    """CycleGAN's schedule (Zhu et al. 2017, Sec. 7.1): the initial rate for the first half of training, then a
    linear decay to 0."""
    return min(1.0, 2.0 * (1.0 - min(max(p, 0.0), 1.0)))


LR_SCHEDULES: dict[str, ProgressSchedule] = {"constant": constant, "cosine": cosine, "dann": dann_annealing}
LR_SCHEDULES["linear_decay_second_half"] = linear_decay_second_half


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
