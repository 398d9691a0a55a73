"""Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019, arXiv:1803.10704)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from umadapt.weighting.base import LossWeighting

__all__ = ["DynamicWeightAveraging", "dwa_weights"]


def dwa_weights(previous: Tensor, before: Tensor, temperature: float) -> Tensor:
    """Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019, Sec. 4.1.3, Eq. 7)::

        λ_k(t) = K exp(w_k(t-1) / T) / Σ_i exp(w_i(t-1) / T),   w_k(t-1) = L_k(t-1) / L_k(t-2)

    ``previous`` and ``before`` are the epoch-mean losses ``L(t-1)`` and ``L(t-2)`` of the ``K`` tasks."""
    ratio = previous / before.clamp_min(1e-12)
    return previous.numel() * torch.softmax(ratio / temperature, dim=0)


class DynamicWeightAveraging(LossWeighting):
    """Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019): each task's weight follows the rate at which its
    epoch-mean loss falls (Eq. 7, see :func:`dwa_weights`); the first two epochs use weight 1 for every task, as in
    the paper.

    The epoch-mean losses are accumulated from the training calls; a new epoch is recognised from
    ``model.current_epoch``. State is kept in buffers, so it survives checkpoints.

    Args:
        temperature: ``T``; larger means softer (closer to equal) weights. The paper uses 2.
    """

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"DynamicWeightAveraging.temperature must be positive, got {temperature}.")
        self.temperature = float(temperature)

    def bind(self, model: nn.Module) -> None:
        super().bind(model)
        k = len(self.tasks)
        self.register_buffer("epoch_sum", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("epoch_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("history", torch.ones(2, k, dtype=torch.float64))  # rows: L(t-1), L(t-2)
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self.register_buffer("epoch", torch.full((), -1, dtype=torch.long))

    def _weights(self) -> Tensor:
        if int(self.epochs_done) < 2:
            return torch.ones(len(self.tasks), device=self.history.device)
        return dwa_weights(self.history[0], self.history[1], self.temperature).float()

    def combine(self, losses: Mapping[str, Tensor], model: nn.Module) -> Tensor:
        values = self._require_all_tasks(losses)
        epoch = int(getattr(model, "current_epoch", 0))
        if epoch != int(self.epoch):
            if int(self.epoch_count) > 0:
                self.history[1] = self.history[0]
                self.history[0] = self.epoch_sum / self.epoch_count
                self.epochs_done += 1
            self.epoch_sum.zero_()
            self.epoch_count.zero_()
            self.epoch.fill_(epoch)
        weights = self._weights()
        self.epoch_sum += torch.stack([v.detach().double() for v in values])
        self.epoch_count += 1
        self._record(self._by_task(weights))
        return sum(weights[i].to(v.dtype) * v for i, v in enumerate(values))  # type: ignore[return-value]

    def current_weights(self) -> dict[str, Tensor]:
        return self._by_task(self._weights())
