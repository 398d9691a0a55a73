"""Datasets of digit images shared by the embedded benchmark and the real digit formats.

Raw samples follow :mod:`umadapt.samples`: ``{"image": float32 [H, W, 3] in [0, 1], "label": int, "parity": int,
"magnitude": int}``. Grey images are replicated to three channels and every image is resized to the domain's
``image_size`` on access.

Besides the digit (``label``, 10 classes), every sample serves two binary tasks derived from it (:data:`DIGIT_TASKS`),
a multi-task classification stand-in on the digits: ``parity`` (0 even, 1 odd) and ``magnitude`` (0 for 0-4, 1 for
5-9). A run asks for the ones it trains with ``data.tasks``; the others are never loaded.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from torch.utils.data import Dataset

CLASS_NAMES = tuple(str(d) for d in range(10))
"""Digit class names, ``"0"`` to ``"9"``; label ``k`` is digit ``k``."""

DIGIT_TASKS = ("label", "parity", "magnitude")
"""The tasks a digit domain serves: the digit, and the two binary tasks derived from it."""


def parity(digit: int) -> int:
    """The ``parity`` class of a digit: 0 for an even digit, 1 for an odd one."""
    return int(digit) % 2


def magnitude(digit: int) -> int:
    """The ``magnitude`` class of a digit: 0 for 0-4, 1 for 5-9."""
    return int(int(digit) >= 5)


def to_rgb_float(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` (uint8 in 0-255 or float in 0-1; ``[H, W]``, ``[H, W, 1]`` or ``[H, W, 3]``) as float32
    ``[*size, 3]`` in ``[0, 1]``, resized bilinearly (area-averaged when shrinking)."""
    array = np.asarray(image)
    array = array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array.astype(np.float32)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    height, width = size
    if array.shape[:2] != (height, width):
        shrink = array.shape[0] > height or array.shape[1] > width
        array = cv2.resize(array, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.clip(array, 0.0, 1.0)


class DigitDataset(Dataset):
    """Images and labels selected by ``indices``; each sample is resized and made RGB on access, and carries the
    digit's ``label`` with its derived ``parity`` and ``magnitude``.

    Args:
        images: a sequence of images indexable by int (a NumPy array ``[N, H, W(, C)]`` or a lazy loader).
        labels: int labels ``[N]`` in 0-9.
        indices: which items of ``images``/``labels`` this dataset holds, in order.
        image_size: ``(height, width)`` of the returned images.
    """

    def __init__(
        self, images: Sequence[np.ndarray], labels: np.ndarray, indices: np.ndarray, image_size: tuple[int, int]
    ) -> None:
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.image_size = (int(image_size[0]), int(image_size[1]))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        i = int(self.indices[index])
        label = int(self.labels[i])
        return {
            "image": to_rgb_float(self.images[i], self.image_size),
            "label": label,
            "parity": parity(label),
            "magnitude": magnitude(label),
        }


def square_size(image_size: int | Sequence[int], minimum: int = 8) -> tuple[int, int]:
    """``(height, width)`` from an int or a pair; each side at least ``minimum``."""
    sides = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else tuple(image_size)
    if len(sides) != 2 or any(
        isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < minimum for s in sides
    ):
        raise ValueError(
            f"image_size must be an int >= {minimum} or a (height, width) pair of them, got {image_size!r}."
        )
    return int(sides[0]), int(sides[1])


def take(indices: np.ndarray, size: int | None, what: str) -> np.ndarray:
    """The first ``size`` of ``indices`` (all when ``None``); an error names the limit when there are fewer."""
    if size is None:
        return indices
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"{what} must be a positive int or null, got {size!r}.")
    if size > len(indices):
        raise ValueError(
            f"{what}={size} is larger than the {len(indices)} images available for it; use at most {len(indices)}."
        )
    return indices[:size]
