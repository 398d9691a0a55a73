"""The interface every loss weighting implements, and the configuration checks they share."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from umadapt.errors import ConfigError
from umadapt.weighting.gradients import shared_parameters

__all__ = ["LossWeighting"]


class LossWeighting(nn.Module):
    """Base class: ``forward(losses, model)`` returns the loss to minimise.

    Subclasses implement :meth:`combine` (training) and :meth:`current_weights` (evaluation and logging). The model
    calls :meth:`bind` once from its constructor, which records the tasks and checks the configuration, and
    :meth:`check_optimizers` once its optimizers exist (``on_fit_start``).
    """

    needs_task_gradients: bool = False
    uses_fixed_weights: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[str] = []
        self.last_weights: dict[str, Tensor | float] = {}

    @property
    def name(self) -> str:
        return type(self).__name__

    def bind(self, model: nn.Module) -> None:
        """Record ``model.tasks``; refuse ``model.loss_weights`` other than 1 (they belong to :class:`FixedWeighting`)
        and, for gradient-based weightings, configurations without per-task gradients."""
        self.tasks = list(model.tasks)
        if not self.uses_fixed_weights:
            custom = {t: w for t, w in getattr(model, "loss_weights", {}).items() if w != 1.0}
            if custom:
                raise ConfigError(
                    f"model.loss_weights {custom} apply only to FixedWeighting, but the weighting is {self.name}, "
                    "which sets the weights itself: remove model.loss_weights (or set them to 1.0)."
                )
        if self.needs_task_gradients:
            if len(self.tasks) < 2:
                raise ConfigError(
                    f"{self.name} balances the gradients of several tasks, but the model has the single task "
                    f"{self.tasks}: use FixedWeighting (the default) for single-task models."
                )
            if not shared_parameters(model):
                encoder = getattr(model, "encoder", None)
                raise ConfigError(
                    f"{self.name} needs per-task gradients of parameters the tasks share, but "
                    f"{type(encoder).__name__} shares no trainable parameter between tasks. Use FixedWeighting, "
                    "UncertaintyWeighting or DynamicWeightAveraging with this encoder."
                )

    def check_optimizers(self, optimizers: Iterable[torch.optim.Optimizer], owner: str = "the model") -> None:
        """Refuse ``optimizers`` (e.g. ``trainer.optimizers``) that leave out a parameter this weighting learns, whose
        weights would otherwise silently stay put. No optimizers, or no learnable weights, pass."""
        own, optimizers = [p for p in self.parameters() if p.requires_grad], list(optimizers)
        if not own or not optimizers:
            return
        held = {id(p) for optimizer in optimizers for group in optimizer.param_groups for p in group["params"]}
        if any(id(p) not in held for p in own):
            raise ConfigError(
                f"{self.name} learns its weights, but none of {owner}'s optimizers holds model.weighting's parameters: "
                "add self.weighting.parameters() to an optimizer in configure_optimizers, or use FixedWeighting or "
                "DynamicWeightAveraging."
            )

    def forward(self, losses: Mapping[str, Tensor], model: nn.Module) -> Tensor:
        self._refuse_unknown(losses)
        if getattr(model, "training", False) and torch.is_grad_enabled():
            return self.combine(losses, model)
        weights = self.current_weights()
        total = 0.0
        for t, loss in losses.items():
            total = total + weights[t].to(device=loss.device, dtype=loss.dtype) * loss
        return total  # type: ignore[return-value]

    def combine(self, losses: Mapping[str, Tensor], model: nn.Module) -> Tensor:
        """The training loss; may update the weighting's state and record :attr:`last_weights`."""
        raise NotImplementedError

    def current_weights(self) -> dict[str, Tensor]:
        """The weight of every task as of now, without changing any state."""
        raise NotImplementedError

    # -- helpers for subclasses -------------------------------------------------------------------------------
    def _refuse_unknown(self, losses: Mapping[str, Tensor]) -> None:
        unknown = [t for t in losses if t not in self.tasks]
        if unknown:
            raise KeyError(f"{self.name} got losses for {unknown}, which are not among the model's tasks {self.tasks}.")

    def _require_all_tasks(self, losses: Mapping[str, Tensor]) -> list[Tensor]:
        missing = [t for t in self.tasks if t not in losses]
        if missing:
            raise KeyError(f"{self.name} needs a loss for every task; {missing} are missing (got {sorted(losses)}).")
        return [losses[t] for t in self.tasks]

    def _by_task(self, values: Tensor) -> dict[str, Tensor]:
        """``{task: values[i]}`` in the order of :attr:`tasks`."""
        return {t: values[i] for i, t in enumerate(self.tasks)}

    def _record(self, weights: Mapping[str, Tensor | float]) -> None:
        self.last_weights = {t: w.detach() if isinstance(w, Tensor) else float(w) for t, w in weights.items()}
