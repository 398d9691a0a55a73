"""Random metric inputs with invalid pixels and ignored labels mixed in, and hand-written NumPy references of every
metric, for tests/metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umadapt.samples import IGNORE_INDEX


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


def depth_reference(
    pred: np.ndarray, target: np.ndarray, min_pred: float = 1e-3, max_depth: float = np.inf
) -> dict[str, float]:
    pred, target = pred.astype(np.float64).ravel(), target.astype(np.float64).ravel()
    valid = np.isfinite(target) & (target > 0) & (target <= max_depth)
    p, t = np.clip(pred[valid], min_pred, max_depth), target[valid]
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
