"""Surface-normal angular-error metrics (Fouhey et al. / Eigen & Fergus), pixel-pooled, DDP-safe."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from umadapt.metrics.depth import check_same_shape
from umadapt.ops import channel_norm

__all__ = ["NormalMetrics", "NORMAL_KEYS"]

NORMAL_KEYS = ("mean", "median", "rmse", "within_11_25", "within_22_5", "within_30")
"""The keys of :meth:`NormalMetrics.compute`, in order."""

_THRESHOLDS = {"within_11_25": 11.25, "within_22_5": 22.5, "within_30": 30.0}


class NormalMetrics(Metric):
    """Angular error between predicted and ground-truth surface normals, in degrees, over a whole evaluation set.

    ``update(pred, target)`` takes two ``[B, 3, H, W]`` tensors (see :mod:`umadapt.samples`).

    * **Valid pixels** are those whose target is finite with norm ``> 0.5`` (all-zero marks missing ground truth).
    * The prediction is L2-normalised per pixel inside the metric (a zero prediction gives a 90 degree error); the
      error is ``acos(clamp(<p, t / |t|>, -1, 1))`` in degrees, computed in float64.
    * **Pixel-pooled** over all valid pixels of all images since the last reset, like the literature.

    ``compute()`` returns a dict of scalar tensors:

    ================  ========================================================  ======
    key               definition                                                better
    ================  ========================================================  ======
    ``mean``          mean angular error (degrees)                              lower
    ``median``        median angular error (degrees), from a histogram, below   lower
    ``rmse``          ``sqrt(mean(error^2))`` (degrees)                         lower
    ``within_11_25``  percentage (0-100) of pixels with error ``< 11.25``        higher
    ``within_22_5``   percentage (0-100) of pixels with error ``< 22.5``         higher
    ``within_30``     percentage (0-100) of pixels with error ``< 30``           higher
    ================  ========================================================  ======

    ``mean``, ``rmse`` and the ``within_*`` percentages are exact (float64 sums and int64 counts). The **median** is
    read from an int64 histogram of the errors with ``bin_width`` degree bins over ``[0, 180]`` (default 0.01 degree,
    18 000 bins, ~144 kB), so that it needs no per-pixel storage and reduces across DDP ranks by summation: the bin
    holding the ``N/2``-th smallest error is found from the cumulative histogram and the value interpolated linearly
    inside it. The result is within one ``bin_width`` of the exact median (unless the two middle errors lie in
    different, far-apart bins, when any value between them is a median). All states use ``dist_reduce_fx="sum"``.
    If no valid pixel has been seen, every value is ``NaN`` (no exception is raised).
    """

    is_differentiable = False
    higher_is_better = None  # mixed: see the table above / umadapt.metrics.mtl.LOWER_IS_BETTER
    full_state_update = False

    def __init__(self, bin_width: float = 0.01, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0 < bin_width <= 180:
            raise ValueError(f"bin_width must be in (0, 180] degrees, got {bin_width}.")
        self.num_bins = int(round(180.0 / bin_width))
        self.bin_width = 180.0 / self.num_bins  # exact tiling of [0, 180]
        self.add_state("sum_err", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sum_sq_err", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        for key in _THRESHOLDS:
            self.add_state(f"count_{key}", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("hist", torch.zeros(self.num_bins, dtype=torch.int64), dist_reduce_fx="sum")

    @staticmethod
    def angular_error(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Per-pixel angular error in degrees (float64) of the valid pixels, and the ``[B, H, W]`` validity mask."""
        target = target.detach()
        t_norm = channel_norm(target)
        valid = torch.isfinite(target).all(dim=1) & (t_norm > 0.5)
        t = target.permute(0, 2, 3, 1)[valid].to(torch.float64)
        p = pred.detach().permute(0, 2, 3, 1)[valid].to(torch.float64)
        t = t / channel_norm(t, keepdim=True)
        p = p / channel_norm(p, keepdim=True).clamp_min(1e-12)
        cos = (p * t).sum(dim=1).clamp(-1.0, 1.0)
        return torch.rad2deg(torch.acos(cos)), valid

    def update(self, pred: Tensor, target: Tensor) -> None:  # type: ignore[override]
        check_same_shape(pred, target, name=type(self).__name__, channels=3)
        err, _ = self.angular_error(pred, target)
        self.sum_err = self.sum_err + err.sum()
        self.sum_sq_err = self.sum_sq_err + err.square().sum()
        for key, threshold in _THRESHOLDS.items():
            state = f"count_{key}"
            setattr(self, state, getattr(self, state) + (err < threshold).sum())
        self.count = self.count + err.numel()
        index = torch.div(err, self.bin_width, rounding_mode="floor").long().clamp_(0, self.num_bins - 1)
        self.hist = self.hist + torch.bincount(index, minlength=self.num_bins)

    def _median(self) -> Tensor:
        hist = self.hist.to(torch.float64)
        total = hist.sum()
        if total <= 0:
            return torch.tensor(float("nan"), dtype=torch.float64, device=hist.device)
        cumulative = torch.cumsum(hist, dim=0)
        half = total / 2
        k = int(torch.searchsorted(cumulative, half).item())  # first bin with cumulative >= N/2
        before = cumulative[k] - hist[k]
        return (k + (half - before) / hist[k]) * self.bin_width

    def compute(self) -> dict[str, Tensor]:
        n = self.count.to(torch.float64)  # 0 -> every ratio below is 0/0 = NaN
        out = {
            "mean": self.sum_err / n,
            "median": self._median(),
            "rmse": torch.sqrt(self.sum_sq_err / n),
        }
        for key in _THRESHOLDS:
            out[key] = 100.0 * getattr(self, f"count_{key}") / n
        return {key: out[key].to(torch.float32) for key in NORMAL_KEYS}
