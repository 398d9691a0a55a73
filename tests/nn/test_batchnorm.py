"""BatchNorm statistics (:mod:`umadapt.nn.batchnorm`): re-estimation against a direct computation, and state that
round-trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from umadapt.nn.batchnorm import batchnorm_statistics, load_batchnorm_statistics, reestimate_batchnorm


def _model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3), nn.Dropout(0.5), nn.ReLU(), nn.Conv2d(3, 2, 1))


def test_reestimated_statistics_are_the_average_of_the_batch_statistics():
    """The running mean (variance) becomes the mean over batches of each batch's channel mean (unbiased variance)
    at the BatchNorm's input; the weights, the other layers' mode and the momentum stay as they were."""
    torch.manual_seed(0)
    model = _model().train()
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "tracked" not in k}
    batches = [torch.randn(4, 2, 5, 5) * (i + 1) + i for i in range(3)]
    seen = reestimate_batchnorm(model, batches, model)
    assert seen == 3 and model.training and model[1].momentum == 0.1
    inputs = [model[0](b).detach().numpy() for b in batches]
    means = np.mean([x.mean(axis=(0, 2, 3)) for x in inputs], axis=0)
    variances = np.mean([x.transpose(1, 0, 2, 3).reshape(3, -1).var(axis=1, ddof=1) for x in inputs], axis=0)
    np.testing.assert_allclose(model[1].running_mean.numpy(), means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model[1].running_var.numpy(), variances, rtol=1e-5)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())


def test_statistics_round_trip_and_no_batch_changes_nothing():
    model = _model()
    before = batchnorm_statistics(model)
    assert reestimate_batchnorm(model, [], model) == 0
    assert all(torch.equal(a, b) for k in before for a, b in zip(before[k], batchnorm_statistics(model)[k]))
    reestimate_batchnorm(model, [torch.randn(4, 2, 3, 3) + 5], model)
    assert float(model[1].running_mean.abs().sum()) > 0
    load_batchnorm_statistics(model, before)
    assert model[1].running_mean.tolist() == pytest.approx(before["1"][0].tolist())
