"""Surface-normal metrics (:mod:`umadapt.metrics.normals`) against a NumPy reference: angular errors, the binned
median within its resolution, merging, all-invalid batches, shape errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.helpers.metrics import (
    make_normals,
    merged,
    normal_errors_reference,
    normals_reference,
)
from umadapt.metrics import (
    NORMAL_KEYS,
    NormalMetrics,
)


def test_normals_match_numpy_and_median_within_resolution():
    batches = [make_normals(seed) for seed in range(3)]
    metric = NormalMetrics()
    for pred, target in batches:
        metric.update(pred, target)
    out = metric.compute()
    pred = np.concatenate([p.numpy() for p, _ in batches])
    target = np.concatenate([t.numpy() for _, t in batches])
    ref = normals_reference(pred, target)
    exact = tuple(k for k in NORMAL_KEYS if k != "median")
    assert tuple(out) == NORMAL_KEYS
    for key in exact:
        assert out[key].item() == pytest.approx(ref[key], rel=1e-5), key
    assert abs(out["median"].item() - ref["median"]) <= metric.bin_width + 1e-4
    assert metric.bin_width == pytest.approx(0.01)


def test_normals_median_coarse_bins_and_small_known_case():
    # Errors 0, 90, 90 degrees (+ one invalid pixel): mean 60, median 90, within_30 = 33.3%.
    target = torch.tensor([[1.0, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0]]).T.reshape(1, 3, 2, 2)
    pred = torch.tensor([[2.0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]]).T.reshape(1, 3, 2, 2)
    metric = NormalMetrics(bin_width=1.0)
    metric.update(pred, target)
    out = metric.compute()
    assert out["mean"].item() == pytest.approx(60.0)
    assert 90.0 <= out["median"].item() <= 91.0
    assert out["within_30"].item() == pytest.approx(100 / 3, rel=1e-6)
    assert out["within_11_25"].item() == pytest.approx(100 / 3, rel=1e-6)
    assert out["rmse"].item() == pytest.approx(math.sqrt((0 + 2 * 90**2) / 3), rel=1e-6)

    # A larger sample with coarse (1 degree) bins stays within one bin of np.median.
    pred, target = make_normals(11, b=4, h=32, w=32)
    metric = NormalMetrics(bin_width=1.0)
    metric.update(pred, target)
    ref = np.median(normal_errors_reference(pred.numpy(), target.numpy()))
    assert abs(metric.compute()["median"].item() - ref) <= 1.0


def test_normals_merge_equals_single_pass():
    batches = [make_normals(seed) for seed in range(4)]
    single = NormalMetrics()
    for args in batches:
        single.update(*args)
    combined = merged(NormalMetrics, {}, batches, split=2)
    assert torch.equal(single.hist, combined.hist)
    a, b = single.compute(), combined.compute()
    for key in NORMAL_KEYS:
        assert a[key].item() == pytest.approx(b[key].item(), rel=1e-6), key


def test_normals_all_invalid_gives_nan():
    metric = NormalMetrics()
    metric.update(torch.randn(2, 3, 5, 5), torch.zeros(2, 3, 5, 5))
    out = metric.compute()
    assert tuple(out) == NORMAL_KEYS
    assert all(math.isnan(v.item()) for v in out.values())


def test_normals_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        NormalMetrics().update(torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="must match"):
        NormalMetrics().update(torch.rand(2, 3, 4, 4), torch.rand(2, 3, 8, 8))
