"""Fixed weighting (:mod:`umadapt.weighting.fixed`): the weighted sum with ``model.loss_weights``."""

from __future__ import annotations

import pytest
import torch

from umadapt.weighting import (
    FixedWeighting,
)


def test_fixed_weighting_is_the_old_weighted_sum(make_model):
    model = make_model(loss_weights={"depth": 2.0, "normals": 0.5})
    assert isinstance(model.weighting, FixedWeighting)
    losses = {"depth": torch.tensor(1.5), "normals": torch.tensor(2.0), "segmentation": torch.tensor(0.25)}
    assert model.weighted_sum(losses).item() == pytest.approx(2.0 * 1.5 + 0.5 * 2.0 + 0.25)
    assert model.weighting.last_weights == {"depth": 2.0, "normals": 0.5, "segmentation": 1.0}
