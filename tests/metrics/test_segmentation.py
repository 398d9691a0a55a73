"""Segmentation metrics (:mod:`umadapt.metrics.segmentation`) against a hand case and a NumPy reference, from logits
or labels, merging, all-ignored batches, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.helpers.metrics import (
    assert_matches,
    make_segmentation,
    merged,
    segmentation_reference,
)
from umadapt.metrics import (
    SEGMENTATION_KEYS,
    SegmentationMetrics,
)
from umadapt.samples import IGNORE_INDEX


def test_segmentation_hand_case():
    # target [[0, 0], [1, ignore]], pred [[0, 1], [1, 1]], 3 classes:
    # class 0: TP 1, union 2 -> 0.5; class 1: TP 1, union 2 -> 0.5; class 2: union 0 -> left out.
    target = torch.tensor([[[0, 0], [1, IGNORE_INDEX]]])
    pred = torch.tensor([[[0, 1], [1, 1]]])
    metric = SegmentationMetrics(num_classes=3)
    metric.update(pred, target)
    out = metric.compute()
    assert tuple(out) == SEGMENTATION_KEYS
    assert out["miou"].item() == pytest.approx(0.5)
    assert out["pixel_acc"].item() == pytest.approx(2 / 3)
    assert out["mean_acc"].item() == pytest.approx((1 / 2 + 1) / 2)
    iou = metric.per_class_iou()
    assert iou.shape == (3,)
    assert iou[:2].tolist() == pytest.approx([0.5, 0.5])
    assert math.isnan(iou[2].item())
    assert metric.confmat.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]


def test_segmentation_matches_numpy_logits_and_labels():
    c = 5
    batches = [make_segmentation(seed, c=c) for seed in range(3)]
    from_logits, from_labels = SegmentationMetrics(c), SegmentationMetrics(c)
    for logits, target in batches:
        from_logits.update(logits, target)
        from_labels.update(logits.argmax(1), target)
    pred = np.concatenate([lg.argmax(1).numpy() for lg, _ in batches])
    target = np.concatenate([t.numpy() for _, t in batches])
    ref, ref_iou = segmentation_reference(pred, target, c)
    assert_matches(from_logits.compute(), ref, SEGMENTATION_KEYS, rel=1e-6)
    assert_matches(from_labels.compute(), ref, SEGMENTATION_KEYS, rel=1e-6)
    np.testing.assert_allclose(from_logits.per_class_iou().numpy(), ref_iou, rtol=1e-6)


def test_segmentation_merge_equals_single_pass():
    batches = [make_segmentation(seed) for seed in range(4)]
    single = SegmentationMetrics(5)
    for args in batches:
        single.update(*args)
    combined = merged(SegmentationMetrics, {"num_classes": 5}, batches, split=3)
    assert torch.equal(single.confmat, combined.confmat)
    a, b = single.compute(), combined.compute()
    for key in SEGMENTATION_KEYS:
        assert a[key].item() == pytest.approx(b[key].item()), key


def test_segmentation_all_ignored_gives_nan():
    metric = SegmentationMetrics(4)
    metric.update(torch.randn(2, 4, 3, 3), torch.full((2, 3, 3), IGNORE_INDEX))
    out = metric.compute()
    assert all(math.isnan(v.item()) for v in out.values())


def test_segmentation_errors():
    metric = SegmentationMetrics(4)
    with pytest.raises(ValueError, match="expected logits"):
        metric.update(torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))  # wrong C
    with pytest.raises(ValueError, match="expected logits"):
        metric.update(torch.randn(2, 4, 4, 5), torch.zeros(2, 4, 4, dtype=torch.long))  # wrong W
    with pytest.raises(ValueError, match="expected predicted labels"):
        metric.update(torch.zeros(2, 4, 5, dtype=torch.long), torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="target values"):
        metric.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.tensor([[[0, 7], [1, 2]]]))
    with pytest.raises(ValueError, match="ignore_index"):
        SegmentationMetrics(300)  # 255 would be a real class
