"""Per-task gradients (:mod:`umadapt.weighting.gradients`): injecting a given gradient, and a task whose loss misses
the shared parameters named."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from umadapt.errors import ConfigError
from umadapt.weighting import (
    PCGrad,
    inject_gradient,
)


def test_inject_gradient_adds_exactly_the_given_gradient():
    p = nn.Parameter(torch.tensor([1.0, 2.0]))
    loss = (p**2).sum() + inject_gradient([p], [torch.tensor([10.0, -1.0])])
    assert loss.item() == 5.0
    loss.backward()
    assert torch.equal(p.grad, torch.tensor([12.0, 3.0]))


def test_gradient_weighting_refuses_a_task_that_misses_the_shared_parameters(bound):
    model = bound(["depth", "normals"])
    weighting = PCGrad()
    weighting.bind(model)
    head = nn.Parameter(torch.tensor(1.0))
    losses = {"depth": model.encoder.weight.sum(), "normals": head * 2.0}
    with pytest.raises(ConfigError, match="'normals' loss does not reach"):
        weighting(losses, model)
    with pytest.raises(ConfigError, match="'depth' loss carries no gradient"):
        weighting({"depth": torch.tensor(1.0), "normals": head * 2.0}, model)
