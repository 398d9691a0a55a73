"""Uncertainty weighting (:mod:`umadapt.weighting.uncertainty`): Kendall et al.'s formula and its gradient."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import TASKS
from umadapt.weighting import (
    UncertaintyWeighting,
)


def test_uncertainty_weighting_formula(bound):
    weighting = UncertaintyWeighting()
    weighting.bind(bound(TASKS))
    s = torch.tensor([math.log(2.0), 0.0, math.log(4.0)])
    with torch.no_grad():
        weighting.log_variance.copy_(s)
    losses = {"depth": torch.tensor(3.0), "normals": torch.tensor(1.0), "segmentation": torch.tensor(3.0)}
    total = weighting(losses, bound(TASKS))
    # regression: 1/(2 sigma^2) L + log sigma; classification: 1/sigma^2 L + log sigma, with log sigma = s / 2
    expected = 0.5 / 2 * 3.0 + 0.5 * 1.0 + 1 / 4 * 3.0 + 0.5 * s.sum().item()
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert weighting.last_weights["segmentation"].item() == pytest.approx(0.25)
    total.backward()  # d/ds of exp(-s) L + s/2 = -exp(-s) L + 1/2
    assert weighting.log_variance.grad[2].item() == pytest.approx(-0.25 * 3.0 + 0.5)
