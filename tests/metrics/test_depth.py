"""Depth metrics (:mod:`umadapt.metrics.depth`) against a hand-written NumPy reference: pixel pooling, merging
states as DDP does, all-invalid batches, perfect predictions, shape errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.helpers.metrics import (
    assert_matches,
    depth_reference,
    make_depth,
    merged,
)
from umadapt.metrics import (
    DEPTH_KEYS,
    DepthMetrics,
)


def test_depth_matches_numpy():
    batches = [make_depth(seed) for seed in range(3)]
    metric = DepthMetrics()
    for pred, target in batches:
        metric.update(pred, target)
    out = metric.compute()
    pred = np.concatenate([p.numpy() for p, _ in batches])
    target = np.concatenate([t.numpy() for _, t in batches])
    assert_matches(out, depth_reference(pred, target), DEPTH_KEYS, rel=1e-5)


def test_depth_is_pixel_pooled():
    # image 0: 3 valid pixels, abs err 1 each; image 1: 1 valid pixel, abs err 5.
    # Pixel-pooled mean: (3 + 5) / 4 = 2 (a per-image mean would give (1 + 5) / 2 = 3).
    target = torch.tensor([[2.0, 2.0, 2.0, 0.0], [1.0, 0.0, 0.0, 0.0]]).reshape(2, 1, 2, 2)
    pred = torch.tensor([[3.0, 3.0, 1.0, 9.0], [6.0, 1.0, 1.0, 1.0]]).reshape(2, 1, 2, 2)
    metric = DepthMetrics()
    metric.update(pred, target)
    out = metric.compute()
    assert out["abs_err"].item() == pytest.approx(2.0)
    assert out["abs_rel"].item() == pytest.approx((3 * 0.5 + 5.0) / 4)
    assert out["delta1"].item() == pytest.approx(0.0)
    # ratios: 1.5, 1.5, 2, 6 -> two are < 1.25**2 = 1.5625, none more below 1.25**3 = 1.953
    assert out["delta2"].item() == pytest.approx(0.5)
    assert out["delta3"].item() == pytest.approx(0.5)


def test_depth_merge_equals_single_pass():
    batches = [make_depth(seed) for seed in range(4)]
    single = DepthMetrics()
    for args in batches:
        single.update(*args)
    combined = merged(DepthMetrics, {}, batches, split=1)
    via_forward = DepthMetrics()  # forward() (as Lightning calls it) accumulates the same states
    for args in batches:
        via_forward(*args)
    for other in (combined, via_forward):
        a, b = single.compute(), other.compute()
        for key in DEPTH_KEYS:
            assert a[key].item() == pytest.approx(b[key].item(), rel=1e-6), key


def test_depth_all_invalid_gives_nan_and_later_valid_data_counts():
    metric = DepthMetrics()
    metric.update(torch.rand(2, 1, 4, 4), torch.zeros(2, 1, 4, 4))
    out = metric.compute()
    assert tuple(out) == DEPTH_KEYS
    assert all(math.isnan(v.item()) for v in out.values())
    pred, target = make_depth(7)
    metric.reset()
    metric.update(torch.rand(2, 1, 4, 4), torch.zeros(2, 1, 4, 4))
    metric.update(pred, target)
    assert_matches(metric.compute(), depth_reference(pred.numpy(), target.numpy()), DEPTH_KEYS, rel=1e-5)


def test_depth_perfect_prediction():
    _, target = make_depth(3)
    metric = DepthMetrics()
    metric.update(target.nan_to_num(1.0, 1.0), target)
    out = metric.compute()
    for key in ("abs_rel", "sq_rel", "rmse", "rmse_log", "abs_err"):
        assert out[key].item() == pytest.approx(0.0, abs=1e-7)
    for key in ("delta1", "delta2", "delta3"):
        assert out[key].item() == 1.0


@pytest.mark.parametrize(
    "pred_shape,target_shape",
    [((2, 1, 4, 4), (2, 1, 4, 5)), ((2, 1, 4, 4), (3, 1, 4, 4)), ((2, 4, 4), (2, 4, 4)), ((2, 2, 4, 4), (2, 2, 4, 4))],
)
def test_depth_shape_mismatch_raises(pred_shape, target_shape):
    with pytest.raises(ValueError, match="expected|must match"):
        DepthMetrics().update(torch.rand(pred_shape), torch.rand(target_shape))


def _per_image_reference(batches, max_depth: float = np.inf) -> dict[str, float]:
    """The literature's per-image protocol in NumPy: each image's metrics over its valid pixels, averaged over the
    images that have one."""
    images = [(p.numpy(), t.numpy()) for pred, target in batches for p, t in zip(pred, target)]
    valid = [(p, t) for p, t in images if (np.isfinite(t) & (t > 0) & (t <= max_depth)).any()]
    per_image = [depth_reference(p, t, max_depth=max_depth) for p, t in valid]
    return {key: float(np.mean([m[key] for m in per_image])) for key in DEPTH_KEYS}


@pytest.mark.parametrize("max_depth", [None, 6.0])
def test_per_image_reduction_and_depth_cap_match_numpy(max_depth):
    """``reduction="images"`` averages per-image metrics (one image below has no valid pixel: it does not count);
    ``max_depth`` drops targets beyond the cap and clamps predictions to it; DDP's merge of states gives the same."""
    batches = [make_depth(seed) for seed in range(3)]
    batches[1][1][2] = 0.0  # an image without ground truth
    options = {"reduction": "images", "max_depth": max_depth}
    expected = _per_image_reference(batches, np.inf if max_depth is None else max_depth)
    metric = DepthMetrics(**options)
    for pred, target in batches:
        metric.update(pred, target)
    assert_matches(metric.compute(), expected, DEPTH_KEYS, rel=1e-5)
    assert_matches(merged(DepthMetrics, options, batches, split=1).compute(), expected, DEPTH_KEYS, rel=1e-5)
    if max_depth is not None:  # pixel pooling with the cap, too
        pooled = DepthMetrics(max_depth=max_depth)
        for pred, target in batches:
            pooled.update(pred, target)
        pred = np.concatenate([p.numpy() for p, _ in batches])
        target = np.concatenate([t.numpy() for _, t in batches])
        assert_matches(pooled.compute(), depth_reference(pred, target, max_depth=max_depth), DEPTH_KEYS, rel=1e-5)


def test_per_image_rmse_differs_from_pooled_rmse():
    """Image 0: 3 valid pixels with error 1; image 1: 1 pixel with error 5. Pooled RMSE sqrt((3 + 25) / 4) = 2.65,
    per image (1 + 5) / 2 = 3."""
    target = torch.tensor([[2.0, 2.0, 2.0, 0.0], [1.0, 0.0, 0.0, 0.0]]).reshape(2, 1, 2, 2)
    pred = torch.tensor([[3.0, 3.0, 1.0, 9.0], [6.0, 1.0, 1.0, 1.0]]).reshape(2, 1, 2, 2)
    values = {}
    for reduction in ("pixels", "images"):
        metric = DepthMetrics(reduction=reduction)
        metric.update(pred, target)
        values[reduction] = float(metric.compute()["rmse"])
    assert values == pytest.approx({"pixels": math.sqrt(28 / 4), "images": 3.0})


def test_bad_depth_options_are_named():
    with pytest.raises(ValueError, match="reduction must be one of"):
        DepthMetrics(reduction="image")
    with pytest.raises(ValueError, match="max_depth must be > min_pred"):
        DepthMetrics(max_depth=0.0)
