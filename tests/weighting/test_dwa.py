"""Dynamic weight averaging (:mod:`umadapt.weighting.dwa`): the formula, the per-epoch bookkeeping, and its state
in the state dict."""

from __future__ import annotations

import torch

from tests.helpers import TASKS
from umadapt.weighting import (
    DynamicWeightAveraging,
    dwa_weights,
)


def test_dwa_formula_and_epoch_bookkeeping(bound):
    previous, before = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 2.0, 1.0])
    expected = 3 * torch.softmax(torch.tensor([0.5, 1.0, 3.0]) / 2.0, dim=0)
    assert torch.allclose(dwa_weights(previous, before, 2.0), expected)

    weighting = DynamicWeightAveraging(temperature=2.0)
    weighting.bind(bound(TASKS))
    epoch_losses = {0: [2.0, 2.0, 1.0], 1: [1.0, 2.0, 3.0], 2: [5.0, 5.0, 5.0]}
    for epoch, values in epoch_losses.items():
        model = bound(TASKS, epoch)
        for scale in (0.5, 1.5):  # two steps whose mean is `values`
            weighting({t: torch.tensor(v * scale, requires_grad=True) for t, v in zip(TASKS, values)}, model)
            weights = torch.stack([torch.as_tensor(weighting.last_weights[t]) for t in TASKS])
            if epoch < 2:
                assert torch.equal(weights, torch.ones(3))
            else:
                assert torch.allclose(weights, expected)


def test_dwa_state_survives_the_state_dict(make_model):
    model = make_model(weighting=DynamicWeightAveraging())
    model.weighting.history.fill_(3.0)
    model.weighting.epochs_done.fill_(2)
    copy = make_model(weighting=DynamicWeightAveraging())
    copy.load_state_dict(model.state_dict())
    assert int(copy.weighting.epochs_done) == 2 and torch.equal(copy.weighting.history, model.weighting.history)
