"""Homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018, arXiv:1705.07115)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from umadapt.errors import ConfigError
from umadapt.tasks import get_task
from umadapt.weighting.base import LossWeighting

__all__ = ["UncertaintyWeighting"]


class UncertaintyWeighting(LossWeighting):
    """Homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

    The paper's joint loss for one regression output ``y_1`` and one regression (Eq. 7) or classification (Eq. 10)
    output ``y_2``, with a learned noise scale ``σ_t`` per task::

        Eq. 7:   L(W, σ_1, σ_2) = 1/(2σ_1²) L_1(W) + 1/(2σ_2²) L_2(W) + log σ_1 σ_2
        Eq. 10:  L(W, σ_1, σ_2) ≈ 1/(2σ_1²) L_1(W) + 1/σ_2² L_2(W)    + log σ_1 + log σ_2

    Extended to every task and written with the learned ``s_t = log σ_t²`` (as the paper trains it, so
    ``log σ_t = s_t / 2``), the loss is ``Σ_t c_t exp(-s_t) L_t + ½ s_t`` with ``c_t = ½`` for regression tasks
    (depth, normals) and ``c_t = 1`` for classification tasks (segmentation, label). The logged weight of a task is
    its factor ``c_t exp(-s_t)``. ``s_t`` are parameters of the model, trained by its optimizer.

    Args:
        init_log_variance: initial ``s_t`` (0: ``σ = 1``).
        classification: tasks to treat as classification; default those whose output size is the number of
            classes (``segmentation``, ``label``).
    """

    def __init__(self, init_log_variance: float = 0.0, classification: list[str] | None = None) -> None:
        super().__init__()
        self.init_log_variance = float(init_log_variance)
        self.classification = None if classification is None else list(classification)
        self.log_variance = nn.Parameter(torch.zeros(0))

    def bind(self, model: nn.Module) -> None:
        super().bind(model)
        unknown = [t for t in self.classification or [] if t not in self.tasks]
        if unknown:
            raise ConfigError(f"UncertaintyWeighting.classification names {unknown}, not among the tasks {self.tasks}.")
        self.log_variance = nn.Parameter(torch.full((len(self.tasks),), self.init_log_variance))
        classification = (
            self.classification
            if self.classification is not None
            else [t for t in self.tasks if get_task(t).categorical]
        )
        scale = torch.tensor([1.0 if t in classification else 0.5 for t in self.tasks])
        self.register_buffer("scale", scale, persistent=False)

    def _factors(self) -> Tensor:
        return self.scale * torch.exp(-self.log_variance)

    def combine(self, losses: Mapping[str, Tensor], model: nn.Module) -> Tensor:
        factors = self._factors()
        self._record(self._by_task(factors))
        total = 0.0
        for i, t in enumerate(self.tasks):
            if t in losses:
                total = total + factors[i] * losses[t] + 0.5 * self.log_variance[i]
        return total  # type: ignore[return-value]

    def current_weights(self) -> dict[str, Tensor]:
        return self._by_task(self._factors().detach())
