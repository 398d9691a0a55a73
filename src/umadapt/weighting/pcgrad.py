"""PCGrad, gradient surgery (Yu, Kumar, Gupta, Levine, Hausman & Finn, NeurIPS 2020, arXiv:2001.06782)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from umadapt.weighting.base import LossWeighting
from umadapt.weighting.gradients import inject_gradient, shared_parameters, task_gradients

__all__ = ["PCGrad", "project_conflicting"]


def project_conflicting(grads: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Gradient surgery (Yu et al., NeurIPS 2020, Sec. 2.3, Algorithm 1): for each task ``i`` and every other task
    ``j`` in random order::

        if g_i^PC · g_j < 0:   g_i^PC ← g_i^PC - (g_i^PC · g_j / ||g_j||²) g_j

    Args:
        grads: ``[K, P]`` flattened per-task gradients (``g_j`` are the original ones).

    Returns:
        ``(projected [K, P], coefficients [K, K])`` with ``projected = coefficients @ grads``; the column sums of
        ``coefficients`` are the effective weights of the original gradients in ``Σ_i g_i^PC``.
    """
    k = grads.shape[0]
    projected = grads.clone()
    coefficients = torch.eye(k, dtype=grads.dtype, device=grads.device)
    squared = (grads * grads).sum(dim=1)
    for i in range(k):
        others = [j for j in range(k) if j != i]
        order = torch.randperm(len(others), generator=generator).tolist()
        for index in order:
            j = others[index]
            dot = torch.dot(projected[i], grads[j])
            if dot < 0 and squared[j] > 0:
                scale = dot / squared[j]
                projected[i] = projected[i] - scale * grads[j]
                coefficients[i, j] = coefficients[i, j] - scale
    return projected, coefficients


class PCGrad(LossWeighting):
    """PCGrad (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020): the shared parameters get the
    update ``g^PC = Σ_i g_i^PC`` of Algorithm 1 (see :func:`project_conflicting`), every other parameter the
    gradient of ``Σ_i L_i``.

    The logged weight of a task is the effective coefficient ``a_j`` of its original gradient in
    ``Σ_i g_i^PC = Σ_j a_j g_j`` (1 when no gradients conflict).
    """

    needs_task_gradients = True

    def combine(self, losses: Mapping[str, Tensor], model: nn.Module) -> Tensor:
        values = self._require_all_tasks(losses)
        params = shared_parameters(model)
        grads = task_gradients(values, params, self.tasks, self.name)
        flat = torch.stack([torch.cat([g.reshape(-1).float() for g in task]) for task in grads])
        projected, coefficients = project_conflicting(flat)
        correction = projected.sum(0) - flat.sum(0)
        self._record(self._by_task(coefficients.sum(0)))
        pieces, offset = [], 0
        for p in params:
            pieces.append(correction[offset : offset + p.numel()].view_as(p).to(p.dtype))
            offset += p.numel()
        total = sum(values)
        return total + inject_gradient(params, pieces).to(total.dtype)  # type: ignore[union-attr]

    def current_weights(self) -> dict[str, Tensor]:
        return {t: torch.tensor(1.0) for t in self.tasks}
