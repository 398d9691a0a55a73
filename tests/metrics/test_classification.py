"""Classification metrics (:mod:`umadapt.metrics.classification`): accuracy, logits against NumPy, merging, empty
input and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.helpers.metrics import (
    assert_matches,
    merged,
)
from umadapt.metrics import (
    CLASSIFICATION_KEYS,
    ClassificationMetrics,
)


def test_classification_accuracy():
    target = torch.tensor([0, 0, 0, 1, 2, 2])
    pred = torch.tensor([0, 1, 0, 1, 0, 2])
    metric = ClassificationMetrics(num_classes=4)
    metric.update(pred, target)
    out = metric.compute()
    assert tuple(out) == CLASSIFICATION_KEYS
    assert out["accuracy"].item() == pytest.approx(4 / 6)
    assert out["mean_acc"].item() == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)  # class 3 absent: left out


def test_classification_logits_match_numpy_and_merge():
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(16, 6, generator=g), torch.randint(0, 6, (16,), generator=g)) for _ in range(4)]
    single = ClassificationMetrics(6)
    for args in batches:
        single.update(*args)
    pred = np.concatenate([lg.argmax(1).numpy() for lg, _ in batches])
    target = np.concatenate([t.numpy() for _, t in batches])
    recalls = [np.mean(pred[target == k] == k) for k in range(6) if np.any(target == k)]
    ref = {"accuracy": np.mean(pred == target), "mean_acc": np.mean(recalls)}
    assert_matches(single.compute(), ref, CLASSIFICATION_KEYS, rel=1e-6)
    assert_matches(merged(ClassificationMetrics, {"num_classes": 6}, batches, 2).compute(), ref, CLASSIFICATION_KEYS)


def test_classification_empty_and_errors():
    metric = ClassificationMetrics(3, ignore_index=-1)
    metric.update(torch.tensor([0, 1]), torch.tensor([-1, -1]))
    assert all(math.isnan(v.item()) for v in metric.compute().values())
    with pytest.raises(ValueError, match="expected logits"):
        metric.update(torch.randn(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="expected predicted labels"):
        metric.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="target values"):
        metric.update(torch.tensor([0, 1]), torch.tensor([0, 3]))
