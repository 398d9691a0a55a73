"""Contour maps of the *image* from a classical edge detector (OpenCV), for contour-based content regularization.

:class:`ImageEdges` is a picklable transform on raw samples (see :mod:`umadapt.samples`): it reads ``image``
(float32 ``[H, W, 3]`` in ``[0, 1]``) and adds ``edges`` (float32 ``[H, W]`` in ``[0, 1]``). It uses nothing but the
image, so it is allowed on unlabelled target images; it is *not* SynthRooms' ground-truth ``contours`` key.
:class:`~data_modules.PairedDataModule` applies it after augmentation when ``image_edges`` names a method.

==========  ====================================================================================================
method      edges
==========  ====================================================================================================
``canny``   grey image (uint8, ITU-R 601 luma) -> Gaussian blur (``sigma``, skipped when 0) -> ``cv2.Canny(low,
            high, L2gradient=True)``; binary ``{0, 1}``. ``low``/``high`` are gradient-magnitude thresholds in
            uint8 grey levels (OpenCV's units, 3x3 Sobel aperture).
``sobel``   grey image (float, ``[0, 1]``) -> Gaussian blur (``sigma``) -> 3x3 Sobel gradient magnitude
            ``sqrt(gx^2 + gy^2)`` -> ``clip(magnitude / scale, 0, 1)``; soft values.
==========  ====================================================================================================

Both are deterministic functions of the image (no randomness), so the same image always gives the same map.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import cv2
import numpy as np

__all__ = ["EDGE_KEY", "EDGE_METHODS", "ImageEdges", "WithImageEdges"]

EDGE_KEY = "edges"
EDGE_METHODS = ("canny", "sobel")


class ImageEdges:
    """Adds ``edges`` computed from ``image`` to a raw sample (see the module docstring for the methods).

    Args:
        method: ``"canny"`` or ``"sobel"``.
        sigma: standard deviation (pixels) of the Gaussian blur applied to the grey image first; 0 = no blur.
        low: Canny's lower hysteresis threshold (uint8 grey levels).
        high: Canny's upper hysteresis threshold (uint8 grey levels).
        scale: Sobel magnitude that maps to 1 (magnitudes of a ``[0, 1]`` grey image; a unit step gives 4).
    """

    def __init__(
        self, method: str = "canny", sigma: float = 1.0, low: float = 40.0, high: float = 120.0, scale: float = 0.5
    ) -> None:
        if method not in EDGE_METHODS:
            raise ValueError(f"Unknown edge method {method!r}. Valid methods: {list(EDGE_METHODS)}.")
        if sigma < 0 or scale <= 0 or not 0 <= low <= high:
            raise ValueError(
                f"ImageEdges needs sigma >= 0, scale > 0 and 0 <= low <= high; got sigma={sigma}, scale={scale}, "
                f"low={low}, high={high}."
            )
        self.method = method
        self.sigma = float(sigma)
        self.low = float(low)
        self.high = float(high)
        self.scale = float(scale)

    def edges(self, image: np.ndarray) -> np.ndarray:
        """The float32 ``[H, W]`` edge map in ``[0, 1]`` of a float ``[H, W, 3]`` image in ``[0, 1]``."""
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"ImageEdges expects an [H, W, 3] image, got shape {image.shape}.")
        rgb = np.clip(image, 0.0, 1.0)
        if self.method == "canny":
            grey = cv2.cvtColor(np.round(rgb * 255.0).astype(np.uint8), cv2.COLOR_RGB2GRAY)
            if self.sigma > 0:
                grey = cv2.GaussianBlur(grey, (0, 0), self.sigma)
            return (cv2.Canny(grey, self.low, self.high, L2gradient=True) > 0).astype(np.float32)
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if self.sigma > 0:
            grey = cv2.GaussianBlur(grey, (0, 0), self.sigma)
        gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
        return np.clip(np.sqrt(gx * gx + gy * gy) / self.scale, 0.0, 1.0).astype(np.float32)

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        out[EDGE_KEY] = self.edges(sample["image"])
        return out

    def __repr__(self) -> str:
        return (
            f"ImageEdges(method={self.method!r}, sigma={self.sigma}, low={self.low}, high={self.high}, "
            f"scale={self.scale})"
        )


class WithImageEdges:
    """Runs ``transform`` (e.g. an augmentation, or ``None``) and then adds the edges of the resulting image, so the
    contour map always matches the image the model sees. ``seed`` is passed on to ``transform``."""

    def __init__(self, edges: ImageEdges, transform: Callable[..., dict] | None = None) -> None:
        self.edges = edges
        self.transform = transform

    def __call__(self, sample: Mapping[str, Any], seed: int | None = None) -> dict[str, Any]:
        if self.transform is None:
            out = dict(sample)
        else:
            out = self.transform(sample) if seed is None else self.transform(sample, seed=seed)
        return self.edges(out)

    def __repr__(self) -> str:
        return f"WithImageEdges({self.edges!r}, transform={self.transform!r})"
