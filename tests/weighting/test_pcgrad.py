"""PCGrad (:mod:`umadapt.weighting.pcgrad`): the projection, the projected gradient on shared parameters only, and
manual optimization."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from data_modules import PairedDataModule
from tests.helpers import tiny_model, tiny_trainer
from umadapt.weighting import (
    PCGrad,
    project_conflicting,
)


def test_pcgrad_projection_removes_the_conflicting_component():
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    projected, coefficients = project_conflicting(grads)
    assert torch.allclose(projected, torch.tensor([[0.5, 0.5], [0.0, 1.0]]))
    assert torch.dot(projected[0], grads[1]).abs() < 1e-6 and torch.dot(projected[1], grads[0]).abs() < 1e-6
    assert torch.allclose(coefficients @ grads, projected)
    agreeing = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert torch.equal(project_conflicting(agreeing)[0], agreeing)  # no conflict: unchanged


def test_pcgrad_sets_the_projected_gradient_on_shared_parameters_only(bound):
    model = bound(["depth", "normals"])
    head = nn.Parameter(torch.tensor(2.0))
    weighting = PCGrad()
    weighting.bind(model)
    w = model.encoder.weight  # shared, shape [1, 2]
    with torch.no_grad():
        w.copy_(torch.tensor([[0.3, -0.7]]))
    losses = {"depth": w[0, 0] * 1.0 + head * 0.0, "normals": -w[0, 0] + w[0, 1] + head}  # g = (1,0), (-1,1)
    total = weighting(losses, model)
    assert total.item() == pytest.approx(sum(v.item() for v in losses.values()))
    total.backward()
    assert torch.allclose(w.grad, torch.tensor([[0.5, 1.5]]))  # (0.5, 0.5) + (0, 1)
    assert head.grad.item() == pytest.approx(1.0)  # task-specific parameters: plain gradient


def test_pcgrad_works_under_manual_optimization(tmp_path, toy_domains, manual_two_players):
    model = tiny_model(
        manual_two_players,
        width=4,
        weighting=PCGrad(),
    )
    before = [p.detach().clone() for p in model.encoder.parameters()]
    tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(model, PairedDataModule(*toy_domains, batch_size=4))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.encoder.parameters()))
