"""Multi-task summaries (:mod:`umadapt.metrics.mtl`): which metrics are lower-is-better, delta_MTL by hand, the gap
closed in both directions."""

from __future__ import annotations

import math

import pytest
import torch

from umadapt.metrics import (
    CLASSIFICATION_KEYS,
    DEPTH_KEYS,
    LOWER_IS_BETTER,
    NORMAL_KEYS,
    SEGMENTATION_KEYS,
    delta_mtl,
    gap_closed,
    is_lower_better,
    spearman,
)


def test_lower_is_better_sets():
    for key in ("abs_rel", "sq_rel", "rmse", "rmse_log", "abs_err", "mean", "median"):
        assert key in LOWER_IS_BETTER and is_lower_better(key)
    higher = ("delta1", "delta2", "delta3", "within_11_25", "within_22_5", "within_30", "miou", "pixel_acc")
    for key in (*higher, "mean_acc", "accuracy"):
        assert key not in LOWER_IS_BETTER and not is_lower_better(key)
    assert is_lower_better("val/target/depth/abs_rel") and not is_lower_better("val/seg/miou")
    with pytest.raises(KeyError, match="Unknown metric"):
        is_lower_better("loss_total")
    # every key the metrics produce has a known direction
    for key in (*DEPTH_KEYS, *NORMAL_KEYS, *SEGMENTATION_KEYS, *CLASSIFICATION_KEYS):
        is_lower_better(key)


def test_delta_mtl_hand_example():
    reference = {"miou": 0.40, "abs_rel": 0.20, "mean": 20.0}
    results = {"miou": 0.44, "abs_rel": 0.25, "mean": 18.0}
    # miou +10 %; abs_rel worse by 25 % -> -25; mean angle better by 10 % -> +10 => (10 - 25 + 10) / 3 = -5/3
    expected = (10.0 - 25.0 + 10.0) / 3
    assert delta_mtl(results, reference, {"abs_rel", "mean"}) == pytest.approx(expected)
    assert delta_mtl(results, reference, LOWER_IS_BETTER) == pytest.approx(expected)
    assert delta_mtl(results, reference, is_lower_better) == pytest.approx(expected)
    assert delta_mtl(results, reference) == pytest.approx(expected)
    assert delta_mtl(results, reference, lambda n: n != "miou") == pytest.approx(expected)
    # tensors are accepted; a subset of metrics can be chosen; the reference may hold extra metrics
    tensor_results = {k: torch.tensor(v) for k, v in results.items()}
    assert delta_mtl(tensor_results, {**reference, "rmse": 1.0}, metrics=["miou", "abs_rel"]) == pytest.approx(
        (10.0 - 25.0) / 2, rel=1e-5
    )
    assert delta_mtl(reference, reference) == 0.0


def test_delta_mtl_by_task_averages_within_each_task_first():
    """depth has two metrics (+20 %, 0 %), normals one (-10 %): by metric (20 + 0 - 10) / 3 = 3.33 %, by task
    ((20 + 0) / 2 - 10) / 2 = 0 %."""
    reference = {"depth/abs_err": 0.5, "depth/rmse": 1.0, "normals/mean": 20.0}
    results = {"depth/abs_err": 0.4, "depth/rmse": 1.0, "normals/mean": 22.0}
    assert delta_mtl(results, reference) == pytest.approx(10.0 / 3)
    assert delta_mtl(results, reference, by_task=True) == pytest.approx(0.0)


def test_delta_mtl_errors():
    with pytest.raises(KeyError, match="missing from the reference"):
        delta_mtl({"miou": 0.5}, {"abs_rel": 0.1})
    with pytest.raises(ValueError, match="is 0"):
        delta_mtl({"miou": 0.5}, {"miou": 0.0})
    with pytest.raises(ValueError, match="at least one"):
        delta_mtl({}, {"miou": 0.5})
    with pytest.raises(TypeError):
        delta_mtl({"miou": 0.5}, {"miou": 0.4}, "miou")


def test_gap_closed_both_directions():
    # higher is better: source-only 30 mIoU, oracle 50, method 40 -> half the gap
    assert gap_closed(40.0, 30.0, 50.0, lower_is_better=False) == pytest.approx(0.5)
    assert gap_closed(55.0, 30.0, 50.0, lower_is_better=False) == pytest.approx(1.25)
    assert gap_closed(25.0, 30.0, 50.0, lower_is_better=False) == pytest.approx(-0.25)
    # lower is better: abs_rel source-only 0.5, oracle 0.2, method 0.35 -> half; 0.26 -> 0.8
    assert gap_closed(0.35, 0.5, 0.2, lower_is_better=True) == pytest.approx(0.5)
    assert gap_closed(0.26, 0.5, 0.2, lower_is_better=True) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="no gap"):
        gap_closed(0.3, 0.4, 0.4, lower_is_better=True)
    with pytest.warns(UserWarning, match="not better"):
        gap_closed(0.3, 0.2, 0.5, lower_is_better=True)


def test_spearman_gives_ties_their_average_rank():
    """[3, 1, 3, 2] ranks as [3.5, 1, 3.5, 2]: against [4, 1, 3, 2] that is 4.5 / sqrt(4.5 * 5), and against the
    average ranks themselves exactly 1."""
    assert spearman([3, 1, 3, 2], [4, 1, 3, 2]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    assert spearman([3, 1, 3, 2], [3.5, 1, 3.5, 2]) == pytest.approx(1.0)
