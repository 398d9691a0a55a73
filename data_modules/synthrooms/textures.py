"""Surface textures for the "real" look: scikit-image's bundled photographs, loaded once per process.

Each photograph is resized to ``SIZE x SIZE``, contrast-normalized (so a dark photo such as the Hubble deep field
still reads as a surface) and pre-filtered at a few blur levels, a cheap stand-in for mip-mapping: far or
grazing surfaces sample a blurrier level instead of aliasing.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import skimage.data

SIZE = 128
BLUR_SIGMAS = (0.0, 1.0, 2.0, 4.0)  # texels, one per level
PHOTOS = (
    "brick", "gravel", "grass", "camera", "moon", "coins", "coffee", "chelsea",
    "astronaut", "rocket", "immunohistochemistry", "hubble_deep_field",
)  # fmt: skip


def _prepare(name: str) -> np.ndarray:
    image = getattr(skimage.data, name)()
    image = np.asarray(image, dtype=np.float32) / 255.0
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    side = min(image.shape[:2])  # central square crop
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    image = cv2.resize(image[top : top + side, left : left + side, :3], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    luminance = image.mean(axis=2)
    image = 0.5 + (image - luminance.mean()) * (0.2 / max(float(luminance.std()), 1e-3))
    return np.clip(image, 0.03, 1.0)


@lru_cache(maxsize=1)
def texture_bank() -> np.ndarray:
    """``(levels, textures, SIZE, SIZE, 3)`` float32 array, built on first use and cached for the process."""
    bank = np.empty((len(BLUR_SIGMAS), len(PHOTOS), SIZE, SIZE, 3), dtype=np.float32)
    for t, name in enumerate(PHOTOS):
        image = _prepare(name)
        for level, sigma in enumerate(BLUR_SIGMAS):
            blurred = cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) if sigma else image
            bank[level, t] = blurred
    bank.setflags(write=False)
    return bank
