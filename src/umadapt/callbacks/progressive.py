"""Sequential training of a progressive network: one task (column + head) at a time."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_warn

from umadapt.errors import ConfigError
from umadapt.nn.freeze import freeze
from umadapt.schedules import PhaseSchedule, require_finite_length, restart_lr, training_progress

__all__ = ["ProgressiveTraining", "progressive_phase"]


def progressive_phase(progress: float, num_tasks: int) -> tuple[int, float]:
    """``(k, q)``: training progress ``p`` in [0, 1] falls in phase ``k`` of ``K = num_tasks`` equal phases (the last
    includes ``p = 1``), at progress ``q`` in [0, 1] within that phase (:class:`~umadapt.schedules.PhaseSchedule`)."""
    phase, within = PhaseSchedule({str(k): 1.0 for k in range(num_tasks)}).at(progress)
    return int(phase), within


class ProgressiveTraining(pl.Callback):
    """Trains a :class:`~umadapt.nn.ProgressiveEncoder` as a progressive network (Rusu et al. 2016): training is
    split into ``K`` equal phases of training progress, one per task in the encoder's column order. In phase ``k``
    only column ``k`` (with its lateral adapters) and task ``k``'s head train; the earlier columns and heads are
    frozen (no gradient, eval mode), so learning task ``k`` cannot change the outputs of tasks ``< k``; the later
    ones are not trained yet. The other tasks' losses are still computed and logged, but carry no gradient.

    Works with any method whose ``encoder`` is a ``ProgressiveEncoder`` and whose heads are ``model.heads``; the
    method's other parts (if any) keep training throughout. Logs ``train/progressive/phase``.

    Args:
        restart_lr_schedule: each phase replays the model's learning-rate schedule (``model.lr_schedule``, a
            function of progress) from its start, so every column gets the same schedule; otherwise the last
            column would train at the tail of a decaying schedule.
    """

    def __init__(self, restart_lr_schedule: bool = True) -> None:
        self.restart_lr_schedule = restart_lr_schedule
        self.phase: int | None = None

    def _encoder(self, pl_module: pl.LightningModule) -> Any:
        encoder = getattr(pl_module, "encoder", None)
        if not hasattr(encoder, "set_active") or not hasattr(pl_module, "heads"):
            raise ConfigError(
                "ProgressiveTraining needs a model whose encoder is umadapt.nn.ProgressiveEncoder "
                f"(model.init_args.encoder.class_path), got {type(encoder).__name__}."
            )
        return encoder

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        encoder = self._encoder(pl_module)
        require_finite_length(trainer, "ProgressiveTraining (one phase per task)")
        total = trainer.estimated_stepping_batches
        if total < len(encoder.tasks):
            rank_zero_warn(
                f"ProgressiveTraining: {int(total)} training step(s) for {len(encoder.tasks)} tasks; only the first "
                "task(s) get trained (fine for a smoke test)."
            )
        self.phase = None

    def _enter(self, pl_module: pl.LightningModule, phase: int) -> None:
        encoder = self._encoder(pl_module)
        encoder.set_active(phase)
        task = encoder.tasks[phase]
        for name, head in pl_module.heads.items():
            freeze(head, name != task, training=pl_module.training)
        self.phase = phase

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        encoder = self._encoder(pl_module)
        phase, within = progressive_phase(training_progress(trainer), len(encoder.tasks))
        if phase != self.phase or encoder.active != phase:
            self._enter(pl_module, phase)
        task = encoder.tasks[phase]
        for name, head in pl_module.heads.items():  # Lightning may have put the whole model back in train mode
            if name != task and head.training:
                head.eval()
        schedule = getattr(pl_module, "lr_schedule", None)
        if self.restart_lr_schedule and callable(schedule):
            restart_lr(trainer.optimizers, schedule(within))
        pl_module.log("train/progressive/phase", float(phase), on_step=True, on_epoch=False)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        encoder = self._encoder(pl_module)
        encoder.set_active(None)
        for head in pl_module.heads.values():
            head.requires_grad_(True)
        self.phase = None
