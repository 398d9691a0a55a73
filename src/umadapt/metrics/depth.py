"""Monocular depth metrics (Eigen et al. 2014 and the NYUD multi-task "abs err"), pooled over pixels or averaged over
images, with an optional depth cap; DDP-safe."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["DepthMetrics", "DEPTH_KEYS"]

DEPTH_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3", "abs_err")
"""The keys of :meth:`DepthMetrics.compute`, in order."""

_SUM_STATES = ("abs_rel", "sq_rel", "sq_err", "sq_log", "abs_err")
REDUCTIONS = ("pixels", "images")


def check_same_shape(pred: Tensor, target: Tensor, *, name: str, channels: int | None = None) -> None:
    """Raise a ``ValueError`` unless ``pred`` and ``target`` are ``[B, C, H, W]`` with equal shapes (and
    ``C == channels``)."""
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
    * ``reduction="pixels"`` (default): every mean below runs over *all valid pixels of all images* seen since the
      last reset, so images with more valid pixels weigh more; what the common NYUD-v2 multi-task benchmarks report.
      ``reduction="images"``: each metric is computed per image over its valid pixels (``rmse`` is the square root
      of that image's mean) and averaged over the images that have a valid pixel, as the monocular depth literature
      evaluates (Eigen et al. 2014; monodepth; BTS). Either way the states are plain sums that reduce exactly
      across DDP ranks.
    * ``max_depth`` (default none): the evaluation cap of a dataset's protocol (NYUD-v2 10 m, KITTI 80 m): pixels
      whose target exceeds it are not valid, and predictions are clamped to ``[min_pred, max_depth]``.

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

    def __init__(
        self, min_pred: float = 1e-3, max_depth: float | None = None, reduction: str = "pixels", **kwargs
    ) -> None:
        super().__init__(**kwargs)
        if not min_pred > 0:
            raise ValueError(f"min_pred must be > 0, got {min_pred}.")
        if max_depth is not None and not max_depth > min_pred:
            raise ValueError(f"max_depth must be > min_pred ({min_pred}) or None, got {max_depth}.")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}.")
        self.min_pred = float(min_pred)
        self.max_depth = None if max_depth is None else float(max_depth)
        self.reduction = reduction
        for name in _SUM_STATES:
            self.add_state(f"sum_{name}", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        if reduction == "images":
            for key in DEPTH_KEYS:
                self.add_state(f"images_{key}", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state("images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        for k in (1, 2, 3):
            self.add_state(f"count_delta{k}", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def _valid(self, target: Tensor) -> Tensor:
        valid = torch.isfinite(target) & (target > 0)
        return valid if self.max_depth is None else valid & (target <= self.max_depth)

    def _clamped(self, pred: Tensor) -> Tensor:
        return pred.to(torch.float64).clamp(self.min_pred, self.max_depth)

    def update(self, pred: Tensor, target: Tensor) -> None:  # type: ignore[override]
        check_same_shape(pred, target, name=type(self).__name__, channels=1)
        target, pred = target.detach(), pred.detach()
        valid = self._valid(target)
        if self.reduction == "images":
            self._update_images(pred, target, valid)
            return
        t = target[valid].to(torch.float64)
        terms = _pixel_terms(self._clamped(pred[valid]), t)
        for name in _SUM_STATES:
            setattr(self, f"sum_{name}", getattr(self, f"sum_{name}") + terms[name].sum())
        for k in (1, 2, 3):
            setattr(self, f"count_delta{k}", getattr(self, f"count_delta{k}") + terms[f"delta{k}"].sum())
        self.count = self.count + t.numel()

    def _update_images(self, pred: Tensor, target: Tensor, valid: Tensor) -> None:
        """Add each image's metrics (over its own valid pixels) to the per-image sums."""
        mask = valid.to(torch.float64)
        t = torch.where(valid, target, torch.ones_like(target)).to(torch.float64)
        p = torch.where(valid, self._clamped(pred), torch.ones_like(t))
        n = mask.sum(dim=(1, 2, 3))
        seen = n > 0
        if not bool(seen.any()):
            return
        means = {
            k: (v.to(torch.float64) * mask).sum(dim=(1, 2, 3))[seen] / n[seen] for k, v in _pixel_terms(p, t).items()
        }
        for key, values in _metrics_from_means(means).items():
            setattr(self, f"images_{key}", getattr(self, f"images_{key}") + values.sum())
        self.images = self.images + seen.sum()

    def compute(self) -> dict[str, Tensor]:
        if self.reduction == "images":
            images = self.images.to(torch.float64)  # 0 -> NaN
            return {key: (getattr(self, f"images_{key}") / images).to(torch.float32) for key in DEPTH_KEYS}
        n = self.count.to(torch.float64)  # 0 -> every ratio below is 0/0 = NaN
        means = {name: getattr(self, f"sum_{name}") / n for name in _SUM_STATES}
        means.update({f"delta{k}": getattr(self, f"count_delta{k}") / n for k in (1, 2, 3)})
        out = _metrics_from_means(means)
        return {key: out[key].to(torch.float32) for key in DEPTH_KEYS}


def _pixel_terms(p: Tensor, t: Tensor) -> dict[str, Tensor]:
    """Each pixel's term of every metric (``p`` the clamped prediction, ``t`` the target): the errors whose mean
    (or its root, for the two RMSEs) a metric is, and the delta indicators."""
    diff, ratio = p - t, torch.maximum(p / t, t / p)
    return {
        "abs_rel": diff.abs() / t,
        "sq_rel": diff.square() / t,
        "sq_err": diff.square(),
        "sq_log": (torch.log(p) - torch.log(t)).square(),
        "abs_err": diff.abs(),
        **{f"delta{k}": ratio < 1.25**k for k in (1, 2, 3)},
    }


def _metrics_from_means(means: dict[str, Tensor]) -> dict[str, Tensor]:
    """The metrics (:data:`DEPTH_KEYS`) from the means of :func:`_pixel_terms` over a set of pixels."""
    out = {key: means[key] for key in DEPTH_KEYS if key in means}
    return {**out, "rmse": means["sq_err"].sqrt(), "rmse_log": means["sq_log"].sqrt()}
