"""Checks of method arguments shared by several methods, each failing with a message that names the key and the fix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from umadapt.errors import ConfigError
from umadapt.schedules import PhaseSchedule

__all__ = ["check_non_negative", "phase_schedule", "stage_indices", "task_subset"]


def check_non_negative(**values: float) -> None:
    """Refuse a negative weight or margin, naming its ``model.init_args`` key."""
    for name, value in values.items():
        if value < 0:
            raise ConfigError(f"model.init_args.{name} must be >= 0, got {value}.")


def stage_indices(encoder: nn.Module, indices: list[int] | None, key: str, method: str) -> list[int]:
    """``indices`` into ``encoder.stages`` (finest first; negative from the end; default ``[-1]``, the last) as
    sorted non-negative indices; ``key`` and ``method`` name the argument and its method in errors."""
    stages = getattr(encoder, "stages", None)
    if stages is None:
        raise ConfigError(
            f"{method} adapts chosen encoder stages, but {type(encoder).__name__} has no `stages` list; "
            "use an encoder that exposes one (e.g. umadapt.nn.ResNetEncoder)."
        )
    count = len(stages)
    chosen = [-1] if indices is None else list(indices)
    if not chosen or any(not -count <= i < count for i in chosen):
        raise ConfigError(
            f"{key} must be non-empty indices into the encoder's {count} stages "
            f"(0..{count - 1}, or negative from the end), got {indices}."
        )
    return sorted({i % count for i in chosen})


def phase_schedule(
    phases: Mapping[str, float] | None, names: Sequence[str], default: Mapping[str, float], key: str
) -> PhaseSchedule:
    """The :class:`PhaseSchedule` of ``phases`` (``default`` when ``None``; a missing phase has length 0), refusing
    phase names outside ``names`` and lengths that are negative or sum to 0, naming ``key``."""
    phases = dict(default if phases is None else phases)
    unknown = sorted(set(phases) - set(names))
    if unknown:
        raise ConfigError(f"{key} names unknown phase(s) {unknown}; valid phases: {list(names)}.")
    try:
        return PhaseSchedule({name: float(phases.get(name, 0.0)) for name in names})
    except ValueError as error:
        raise ConfigError(f"{key}: {error}") from None


def task_subset(
    chosen: Sequence[str] | None, tasks: Sequence[str], default: Sequence[str], key: str, minimum: int
) -> list[str]:
    """``chosen`` (``default`` when ``None``) as a list of at least ``minimum`` of the model's ``tasks``, naming
    ``key`` in errors."""
    chosen = list(default if chosen is None else chosen)
    missing = [t for t in chosen if t not in tasks]
    if missing:
        raise ConfigError(
            f"{key} names {missing}, which the model has no head for (its tasks: {list(tasks)}). Drop it from {key} "
            "or add it to data.tasks."
        )
    if len(set(chosen)) < minimum:
        count = {1: "one", 2: "two", 3: "three"}.get(minimum, str(minimum))
        raise ConfigError(
            f"{key} needs at least {count} tasks, got {chosen} (model tasks: {list(tasks)}). List more in {key}."
        )
    return chosen
