"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018, arXiv:1711.02257)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from umadapt.weighting.base import LossWeighting
from umadapt.weighting.gradients import inject_gradient, shared_parameters, task_gradients

__all__ = ["GradNorm", "gradnorm_targets"]


def gradnorm_targets(norms: Tensor, losses: Tensor, initial_losses: Tensor, alpha: float) -> Tensor:
    """GradNorm's target gradient norms (Chen et al., ICML 2018, Sec. 3.2, Eq. 1)::

        G_W^(i)(t) ↦ Ḡ_W(t) · r_i(t)^α,   r_i = L̃_i / mean_j L̃_j,   L̃_i = L_i(t) / L_i(0)

    where ``norms`` are the weighted gradient norms ``G_W^(i) = ||∇_W w_i L_i||`` and ``Ḡ_W`` their mean. Tasks
    that have trained less (higher ``L̃``) get larger targets. All inputs are treated as constants."""
    inverse_rate = losses / initial_losses.clamp_min(1e-12)
    ratio = inverse_rate / inverse_rate.mean()
    return norms.mean() * ratio.pow(alpha)


class GradNorm(LossWeighting):
    """GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018): learns weights ``w_i`` so that the weighted
    task gradient norms on the shared parameters ``W`` train at rates set by each task's relative inverse training
    rate.

    The weights minimise the paper's gradient loss (Sec. 3.2, Eq. 2), with the targets of Eq. 1 held constant::

        L_grad(t; w_i(t)) = Σ_i | G_W^(i)(t) - Ḡ_W(t) · r_i(t)^α |_1

    Each training call takes ``n_i = ||∇_W L_i||`` by autograd and gives the weights the gradient of ``L_grad``,
    ``sign(w_i n_i - target_i) n_i`` (targets from :func:`gradnorm_targets`), while the network gets the gradient of
    ``Σ_i w_i L_i`` with ``w`` held constant (Algorithm 1). Before each call the weights are renormalised to
    ``Σ_i w_i = K``. ``L_i(0)`` are the losses of the first training call (kept in the checkpoint). ``W`` is every
    shared parameter (the paper usually takes only the last shared layer, to save compute).

    Args:
        alpha: the asymmetry ``α`` (the paper uses 1.5 on NYUv2; 0 pulls all gradient norms to the mean).
    """

    needs_task_gradients = True

    def __init__(self, alpha: float = 1.5) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.weights = nn.Parameter(torch.zeros(0))

    def bind(self, model: nn.Module) -> None:
        super().bind(model)
        k = len(self.tasks)
        self.weights = nn.Parameter(torch.ones(k))
        self.register_buffer("initial_losses", torch.zeros(k))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def _renormalise(self) -> None:
        with torch.no_grad():
            self.weights.clamp_(min=1e-3)
            self.weights.mul_(len(self.tasks) / self.weights.sum())

    def combine(self, losses: Mapping[str, Tensor], model: nn.Module) -> Tensor:
        values = self._require_all_tasks(losses)
        self._renormalise()
        stacked = torch.stack([v.detach().float() for v in values])
        if not bool(self.initialised):
            self.initial_losses.copy_(stacked)
            self.initialised.fill_(True)
        grads = task_gradients(values, shared_parameters(model), self.tasks, self.name)
        norms = torch.stack([torch.sqrt(sum((g.float() ** 2).sum() for g in task)) for task in grads])
        w = self.weights.detach()
        targets = gradnorm_targets(w * norms, stacked, self.initial_losses, self.alpha)
        weight_grad = torch.sign(w * norms - targets) * norms
        self._record(self._by_task(w))
        total = sum(w[i].to(v.dtype) * v for i, v in enumerate(values))
        return total + inject_gradient([self.weights], [weight_grad]).to(total.dtype)  # type: ignore[union-attr]

    def current_weights(self) -> dict[str, Tensor]:
        w = self.weights.detach()
        return self._by_task(w * len(self.tasks) / w.sum())
