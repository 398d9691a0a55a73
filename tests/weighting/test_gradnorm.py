"""GradNorm (:mod:`umadapt.weighting.gradnorm`): the target gradient norms and the weights' gradient."""

from __future__ import annotations

import pytest
import torch

from umadapt.weighting import (
    GradNorm,
    gradnorm_targets,
)


def test_gradnorm_target_ratio():
    norms = torch.tensor([1.0, 2.0, 3.0])
    losses, initial = torch.tensor([1.0, 1.0, 2.0]), torch.tensor([2.0, 1.0, 2.0])
    inverse_rate = torch.tensor([0.5, 1.0, 1.0])
    ratio = inverse_rate / inverse_rate.mean()
    targets = gradnorm_targets(norms, losses, initial, alpha=1.5)
    assert torch.allclose(targets, 2.0 * ratio**1.5)
    assert targets[0] < targets[1] == targets[2]  # the task that trained fastest gets the smallest target
    assert torch.allclose(gradnorm_targets(norms, losses, initial, alpha=0.0), torch.full((3,), 2.0))


def test_gradnorm_weight_gradient_and_value(bound):
    model = bound(["depth", "normals"])
    weighting = GradNorm(alpha=1.0)
    weighting.bind(model)
    with torch.no_grad():
        model.encoder.weight.copy_(torch.tensor([[0.5, 0.2]]))  # positive losses
    x = torch.tensor([[1.0, 0.0]])
    out = model.encoder(x).sum()  # = w0
    losses = {"depth": 3.0 * out, "normals": 1.0 * out}  # dL/dW norms 3 and 1 at W = (w0, w1)
    total = weighting(losses, model)
    assert total.item() == pytest.approx(4.0 * out.item())  # value: sum w_i L_i with w = 1
    total.backward()
    # first call: L(0) = L, so r = 1 and targets = mean(G) = 2; grad_w = sign(G_i - 2) * n_i
    assert torch.allclose(weighting.weights.grad, torch.tensor([3.0, -1.0]))
    assert torch.allclose(model.encoder.weight.grad, torch.tensor([[4.0, 0.0]]))  # network: sum w_i dL_i
