"""Monocular depth metrics (Eigen et al. 2014 and the NYUD multi-task "abs err"), pixel-pooled, DDP-safe."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["DepthMetrics", "DEPTH_KEYS"]

DEPTH_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3", "abs_err")
"""The keys of :meth:`DepthMetrics.compute`, in order."""

_SUM_STATES = ("abs_rel", "sq_rel", "sq_err", "sq_log", "abs_err")


def check_same_shape(pred: Tensor, target: Tensor, *, name: str, channels: int | None = None) -> None:
    """Raise a ``ValueError`` unless ``pred`` and ``target`` are ``[B, C, H, W]`` with equal shapes (and ``C == channels``)."""
    expected = f"[B, {channels}, H, W]" if channels is not None else "[B, C, H, W]"
    for what, tensor in (("pred", pred), ("target", target)):
        if tensor.ndim != 4 or (channels is not None and tensor.shape[1] != channels):
            raise ValueError(f"{name}: expected {what} of shape {expected}, got {tuple(tensor.shape)}.")
    if pred.shape != target.shape:
        raise ValueError(
            f"{name}: pred and target shapes must match, got pred {tuple(pred.shape)} vs target {tuple(target.shape)}."
        )


class DepthMetrics(Metric):
    """Standard depth-estimation errors and accuracies, accumulated over a whole evaluation set.

    ``update(pred, target)`` takes two ``[B, 1, H, W]`` tensors in metres (see :mod:`umadapt.samples`).

    * **Valid pixels** are those where the target is finite and ``> 0`` (``0`` marks missing ground truth).
      Predictions are not masked, but are clamped to ``>= min_pred`` (default ``1e-3`` m, the usual ``MIN_DEPTH`` of
      the KITTI/NYU evaluation scripts) so that ``log`` and the ratios are defined for zero or negative predictions.
    * **Pixel-pooled**: every sum below runs over *all valid pixels of all images* seen since the last reset (not a
      per-image mean averaged over images), so images with more valid pixels weigh more. This is what the common
      NYUD-v2 multi-task benchmarks report and it makes the states plain sums, which reduce exactly across DDP ranks.

    ``compute()`` returns a dict of scalar tensors (with ``p`` the clamped prediction, ``t`` the target):

    ============  =====================================================  ===============
    key           definition                                             better
    ============  =====================================================  ===============
    ``abs_rel``   ``mean(|p - t| / t)``                                  lower
    ``sq_rel``    ``mean((p - t)^2 / t)``                                lower
    ``rmse``      ``sqrt(mean((p - t)^2))``                              lower
    ``rmse_log``  ``sqrt(mean((log p - log t)^2))``                      lower
    ``delta1``    fraction of pixels with ``max(p/t, t/p) < 1.25``       higher
    ``delta2``    same with ``1.25**2``                                  higher
    ``delta3``    same with ``1.25**3``                                  higher
    ``abs_err``   ``mean(|p - t|)`` (the NYUD multi-task "abs err")      lower
    ============  =====================================================  ===============

    The deltas are fractions in ``[0, 1]``. The per-pixel terms are computed in float64 and accumulated in float64
    sums (plus an int64 pixel count), all reduced with ``"sum"`` across processes. If no valid pixel has been seen,
    every value is ``NaN`` (no exception is raised).
    """

    is_differentiable = False
    higher_is_better = None  # mixed: see the table above / umadapt.metrics.mtl.LOWER_IS_BETTER
    full_state_update = False

    def __init__(self, min_pred: float = 1e-3, **kwargs) -> None:
        super().__init__(**kwargs)
        if not min_pred > 0:
            raise ValueError(f"min_pred must be > 0, got {min_pred}.")
        self.min_pred = float(min_pred)
        for name in _SUM_STATES:
            self.add_state(f"sum_{name}", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        for k in (1, 2, 3):
            self.add_state(f"count_delta{k}", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:  # type: ignore[override]
        check_same_shape(pred, target, name=type(self).__name__, channels=1)
        target = target.detach()
        valid = torch.isfinite(target) & (target > 0)
        t = target[valid].to(torch.float64)
        p = pred.detach()[valid].to(torch.float64).clamp_min(self.min_pred)
        diff = p - t
        self.sum_abs_rel = self.sum_abs_rel + (diff.abs() / t).sum()
        self.sum_sq_rel = self.sum_sq_rel + (diff.square() / t).sum()
        self.sum_sq_err = self.sum_sq_err + diff.square().sum()
        self.sum_sq_log = self.sum_sq_log + (torch.log(p) - torch.log(t)).square().sum()
        self.sum_abs_err = self.sum_abs_err + diff.abs().sum()
        ratio = torch.maximum(p / t, t / p)
        for k in (1, 2, 3):
            state = f"count_delta{k}"
            setattr(self, state, getattr(self, state) + (ratio < 1.25**k).sum())
        self.count = self.count + t.numel()

    def compute(self) -> dict[str, Tensor]:
        n = self.count.to(torch.float64)  # 0 -> every ratio below is 0/0 = NaN
        out = {
            "abs_rel": self.sum_abs_rel / n,
            "sq_rel": self.sum_sq_rel / n,
            "rmse": torch.sqrt(self.sum_sq_err / n),
            "rmse_log": torch.sqrt(self.sum_sq_log / n),
            "delta1": self.count_delta1 / n,
            "delta2": self.count_delta2 / n,
            "delta3": self.count_delta3 / n,
            "abs_err": self.sum_abs_err / n,
        }
        return {key: out[key].to(torch.float32) for key in DEPTH_KEYS}

