"""Tests of umadapt.metrics against hand-written NumPy references, plus DDP-style state merging."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from umadapt.metrics import (
    CLASSIFICATION_KEYS,
    DEPTH_KEYS,
    LOWER_IS_BETTER,
    NORMAL_KEYS,
    SEGMENTATION_KEYS,
    ClassificationMetrics,
    DepthMetrics,
    NormalMetrics,
    SegmentationMetrics,
    delta_mtl,
    gap_closed,
    is_lower_better,
)
from umadapt.samples import IGNORE_INDEX

# --------------------------------------------------------------------------------------------------------------------
# Random inputs with invalid pixels / ignored labels mixed in
# --------------------------------------------------------------------------------------------------------------------


def make_depth(seed: int, b: int = 3, h: int = 17, w: int = 23) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(b, 1, h, w, generator=g) * 9.5 + 0.5
    target[torch.rand(b, 1, h, w, generator=g) < 0.3] = 0.0  # missing ground truth
    target[0, 0, 0, 0] = float("nan")  # non-finite ground truth is invalid too
    target[0, 0, 0, 1] = float("inf")
    pred = target.nan_to_num(5.0, 5.0) * torch.exp(0.3 * torch.randn(b, 1, h, w, generator=g)) + 0.1
    pred[torch.rand(b, 1, h, w, generator=g) < 0.05] = -1.0  # negative predictions get clamped
    pred[0, 0, 1, 0] = 0.0
    return pred, target


def make_normals(seed: int, b: int = 3, h: int = 19, w: int = 21) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(b, 3, h, w, generator=g)
    target = target / target.norm(dim=1, keepdim=True)
    target = target * (torch.rand(b, 1, h, w, generator=g) > 0.25)  # all-zero = invalid
    pred = target + 0.6 * torch.randn(b, 3, h, w, generator=g)
    pred = pred * (0.5 + torch.rand(b, 1, h, w, generator=g))  # not unit length: normalised inside the metric
    return pred, target


def make_segmentation(seed: int, c: int = 5, b: int = 3, h: int = 13, w: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, c - 1, (b, h, w), generator=g)  # class c-1 never in the target
    target[torch.rand(b, h, w, generator=g) < 0.2] = IGNORE_INDEX
    logits = torch.randn(b, c, h, w, generator=g)
    logits[:, 0] += 2.0 * (target == 0)  # make class 0 somewhat predictable
    return logits, target


# --------------------------------------------------------------------------------------------------------------------
# NumPy references
# --------------------------------------------------------------------------------------------------------------------


def depth_reference(pred: np.ndarray, target: np.ndarray, min_pred: float = 1e-3) -> dict[str, float]:
    pred, target = pred.astype(np.float64).ravel(), target.astype(np.float64).ravel()
    valid = np.isfinite(target) & (target > 0)
    p, t = np.maximum(pred[valid], min_pred), target[valid]
    ratio = np.maximum(p / t, t / p)
    return {
        "abs_rel": np.mean(np.abs(p - t) / t),
        "sq_rel": np.mean((p - t) ** 2 / t),
        "rmse": np.sqrt(np.mean((p - t) ** 2)),
        "rmse_log": np.sqrt(np.mean((np.log(p) - np.log(t)) ** 2)),
        "delta1": np.mean(ratio < 1.25),
        "delta2": np.mean(ratio < 1.25**2),
        "delta3": np.mean(ratio < 1.25**3),
        "abs_err": np.mean(np.abs(p - t)),
    }


def normal_errors_reference(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    p = pred.astype(np.float64).transpose(0, 2, 3, 1).reshape(-1, 3)
    t = target.astype(np.float64).transpose(0, 2, 3, 1).reshape(-1, 3)
    valid = np.linalg.norm(t, axis=1) > 0.5
    p, t = p[valid], t[valid]
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)
    return np.degrees(np.arccos(np.clip(np.sum(p * t, axis=1), -1.0, 1.0)))


def normals_reference(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    err = normal_errors_reference(pred, target)
    return {
        "mean": err.mean(),
        "median": np.median(err),
        "rmse": np.sqrt(np.mean(err**2)),
        "within_11_25": 100 * np.mean(err < 11.25),
        "within_22_5": 100 * np.mean(err < 22.5),
        "within_30": 100 * np.mean(err < 30),
    }


def segmentation_reference(pred: np.ndarray, target: np.ndarray, c: int) -> tuple[dict[str, float], np.ndarray]:
    pred, target = pred.ravel(), target.ravel()
    valid = target != IGNORE_INDEX
    pred, target = pred[valid], target[valid]
    confmat = np.zeros((c, c), dtype=np.int64)
    for t, p in zip(target, pred):
        confmat[t, p] += 1
    ious, recalls = [], []
    for k in range(c):
        tp = np.sum((pred == k) & (target == k))
        union = np.sum((pred == k) | (target == k))
        ious.append(tp / union if union else np.nan)
        if np.sum(target == k):
            recalls.append(tp / np.sum(target == k))
    ious = np.array(ious)
    return {
        "miou": np.nanmean(ious),
        "pixel_acc": np.mean(pred == target),
        "mean_acc": np.mean(recalls),
    }, ious


def assert_matches(out: dict[str, torch.Tensor], ref: dict[str, float], keys: tuple[str, ...], **tol) -> None:
    assert tuple(out.keys()) == keys
    for key in keys:
        assert out[key].ndim == 0, key
        assert out[key].item() == pytest.approx(float(ref[key]), **tol), key


def merged(metric_cls, kwargs, batches, split: int):
    """Update one metric with batches[:split] and another with batches[split:], then merge the second into the first."""
    first, second = metric_cls(**kwargs), metric_cls(**kwargs)
    for args in batches[:split]:
        first.update(*args)
    for args in batches[split:]:
        second.update(*args)
    if hasattr(first, "merge_state"):
        first.merge_state(second)
    else:  # older torchmetrics: every state of these metrics is summed across processes
        for name in first._defaults:
            setattr(first, name, getattr(first, name) + getattr(second, name))
    return first


# --------------------------------------------------------------------------------------------------------------------
# Depth
# --------------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------------
# Normals
# --------------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------------
# Real DDP: two gloo processes, each updating half, synchronised in compute()
# --------------------------------------------------------------------------------------------------------------------


def _ddp_worker(rank: int, world_size: int, init_file: str, out_file: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        metrics = {"depth": DepthMetrics(), "normals": NormalMetrics(), "seg": SegmentationMetrics(5)}
        makers = {"depth": make_depth, "normals": make_normals, "seg": make_segmentation}
        for name, metric in metrics.items():
            for seed in range(rank, 4, world_size):
                metric.update(*makers[name](seed))
        results = {name: {k: v.item() for k, v in m.compute().items()} for name, m in metrics.items()}
        if rank == 0:
            torch.save(results, out_file)
    finally:
        dist.destroy_process_group()


def test_ddp_sync_matches_single_process(tmp_path):
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    out_file = str(tmp_path / "out.pt")
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), out_file), nprocs=2, join=True)
    synced = torch.load(out_file)
    for name, metric, maker in (
        ("depth", DepthMetrics(), make_depth),
        ("normals", NormalMetrics(), make_normals),
        ("seg", SegmentationMetrics(5), make_segmentation),
    ):
        for seed in range(4):
            metric.update(*maker(seed))
        for key, value in metric.compute().items():
            assert synced[name][key] == pytest.approx(value.item(), rel=1e-6), (name, key)


# --------------------------------------------------------------------------------------------------------------------
# Multi-task summaries
# --------------------------------------------------------------------------------------------------------------------


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
