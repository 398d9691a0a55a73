"""The constant weighted sum, the default weighting."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from umadapt.weighting.base import LossWeighting

__all__ = ["FixedWeighting"]


class FixedWeighting(LossWeighting):
    """``L = Σ_t w_t L_t`` with the constant ``w_t`` of ``model.loss_weights`` (tasks not listed weigh 1): exactly the
    weighted sum of :class:`~umadapt.methods.base.MultiTaskModel` before weightings existed."""

    uses_fixed_weights = True

    def bind(self, model: nn.Module) -> None:
        super().bind(model)
        self._weights = {t: float(w) for t, w in getattr(model, "loss_weights", {}).items()}

    def forward(self, losses: Mapping[str, Tensor], model: nn.Module) -> Tensor:
        self._refuse_unknown(losses)
        self._weights = {t: float(w) for t, w in getattr(model, "loss_weights", self._weights).items()}
        if getattr(model, "training", False) and torch.is_grad_enabled():
            self._record({t: self._weights.get(t, 1.0) for t in losses})
        return sum(self._weights.get(t, 1.0) * loss for t, loss in losses.items())  # type: ignore[return-value]

    def current_weights(self) -> dict[str, Tensor]:
        return {t: torch.tensor(self._weights.get(t, 1.0)) for t in self.tasks}
