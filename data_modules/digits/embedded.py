"""Digits -> Digits-M: a miniature of DANN's MNIST -> MNIST-M experiment built from data the packages ship.

* **Digits** (source): the 1,797 UCI handwritten digits bundled with scikit-learn (``load_digits``: real scans,
  8x8, 17 grey levels 0-16), scaled to [0, 1], resized to ``image_size`` and replicated to 3 channels. The default
  nearest-neighbour resize keeps the strokes' edges sharp, as MNIST's are (``interpolation="linear"`` blurs them
  over 4 pixels at 32x32).
* **Digits-M** (target): the MNIST-M recipe of Ganin et al. (JMLR 2016, Sec. 5.2.1): each digit is blended over a
  patch cropped at random from a colour photograph, ``out = |patch - digit|`` per channel. The photographs are the
  colour photos bundled with scikit-image (:data:`PHOTOS`), resized by ``photo_scale`` (0.5: a 32x32 patch spans
  5-20 % of a photo's shorter side; MNIST-M's 28x28 patches span about 9 % of its 481x321 BSDS500 photos'); the
  patch of digit ``i`` is a pure function of ``(seed, i)``.

The 1,797 digits are split once, by a permutation seeded with ``split_seed``, into disjoint blocks
(:data:`LAYOUT`): source train / val / test and target train / val / test. Both domains draw from the same
permutation, so a digit scan is in exactly one block: target test digits are never seen in training, in either
look. ``pool`` says which blocks a domain uses (``source`` for :class:`Digits`, ``target`` for :class:`DigitsM` by
default); ``train_size``/``val_size``/``test_size`` take the first images of a block (for quick runs).

Every sample carries the digit ``label`` (10 classes) and the two binary tasks derived from it, ``parity`` and
``magnitude`` (:data:`~data_modules.digits.dataset.DIGIT_TASKS`): a multi-task classification benchmark in miniature.
``data.tasks`` picks the ones a run loads; unset, ``label`` alone (the domains' ``default_tasks``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np
import skimage.data
from torch.utils.data import Dataset

from ..domain import SPLITS, Domain
from .dataset import CLASS_NAMES, DIGIT_TASKS, DigitDataset, square_size, take

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
"""Colour photographs of ``skimage.data`` that the Digits-M patches are cut from."""

POOLS = ("source", "target")
LAYOUT: dict[tuple[str, str], int] = {
    ("source", "train"): 700,
    ("source", "val"): 50,
    ("source", "test"): 50,
    ("target", "train"): 500,
    ("target", "val"): 150,
    ("target", "test"): 347,
}
"""Sizes of the disjoint blocks of the 1,797 digits, in permutation order; they add up to 1,797."""

NUM_DIGITS = 1797
INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}
"""How the 8x8 scans are resized (``Digits``/``DigitsM`` ``interpolation``)."""


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    if images.shape != (NUM_DIGITS, 8, 8):
        raise RuntimeError(f"sklearn's load_digits returned {images.shape}, expected ({NUM_DIGITS}, 8, 8).")
    return images, bunch.target.astype(np.int64)


@lru_cache(maxsize=8)
def partition(split_seed: int) -> dict[tuple[str, str], np.ndarray]:
    """Disjoint digit indices for every ``(pool, split)`` block of :data:`LAYOUT`, from one seeded permutation."""
    order = np.random.default_rng(split_seed).permutation(NUM_DIGITS)
    blocks, start = {}, 0
    for key, size in LAYOUT.items():
        blocks[key] = order[start : start + size]
        start += size
    return blocks


@lru_cache(maxsize=4)
def photos(scale: float = 0.5) -> tuple[np.ndarray, ...]:
    """The photographs of :data:`PHOTOS` as float32 RGB in [0, 1], resized by ``scale`` (below 1, a patch of a given
    size covers more of the photo, so it holds more texture)."""
    out = []
    for name in PHOTOS:
        image = np.asarray(getattr(skimage.data, name)(), dtype=np.float32)[..., :3] / 255.0
        height, width = image.shape[:2]
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        out.append(np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA)))
    return tuple(out)


def resized_digits(indices: np.ndarray, size: tuple[int, int], interpolation: str = "nearest") -> np.ndarray:
    """Digit scans ``indices`` resized to ``size`` (``interpolation`` one of :data:`INTERPOLATIONS`): float32
    ``[N, H, W]`` in [0, 1]."""
    images, _ = _digits()
    height, width = size
    flag = INTERPOLATIONS[interpolation]
    out = [cv2.resize(images[i], (width, height), interpolation=flag) for i in indices]
    return np.clip(np.stack(out) if out else np.zeros((0, height, width), np.float32), 0.0, 1.0)


def blend_over_photos(digits: np.ndarray, indices: np.ndarray, seed: int, photo_scale: float = 0.5) -> np.ndarray:
    """The MNIST-M blend ``|patch - digit|`` of each grey digit ``[N, H, W]`` with a random patch of the photos
    resized by ``photo_scale``; the patch of digit ``indices[k]`` is drawn from ``default_rng([seed, indices[k]])``.
    Returns ``[N, H, W, 3]``."""
    bank = photos(float(photo_scale))
    n, height, width = digits.shape
    out = np.empty((n, height, width, 3), np.float32)
    for k, (digit, index) in enumerate(zip(digits, indices)):
        rng = np.random.default_rng([seed, int(index)])
        photo = bank[int(rng.integers(len(bank)))]
        if photo.shape[0] < height or photo.shape[1] < width:
            raise ValueError(f"image_size {height}x{width} is larger than a Digits-M photo {photo.shape[:2]}.")
        top = int(rng.integers(photo.shape[0] - height + 1))
        left = int(rng.integers(photo.shape[1] - width + 1))
        out[k] = np.abs(photo[top : top + height, left : left + width] - digit[..., None])
    return out


class _EmbeddedDigits(Domain):
    """Common part of :class:`Digits` and :class:`DigitsM`: splits, sizes and caching."""

    default_pool = "source"

    def __init__(
        self,
        image_size: int | Sequence[int] = 32,
        split_seed: int = 0,
        pool: str | None = None,
        train_size: int | None = None,
        val_size: int | None = None,
        test_size: int | None = None,
        interpolation: str = "nearest",
    ) -> None:
        pool = self.default_pool if pool is None else pool
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}.")
        self.interpolation = interpolation
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}.")
        self.image_size = square_size(image_size)
        self.tasks = DIGIT_TASKS
        self.default_tasks = ("label",)  # parity and magnitude only when data.tasks asks for them
        self.num_classes = 10
        self.class_names = CLASS_NAMES
        self.split_seed = int(split_seed)
        self.pool = pool
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self._indices = {
            split: take(partition(self.split_seed)[(pool, split)], self.sizes[split], f"{split}_size")
            for split in SPLITS
        }
        self._cache: dict[str, Dataset] = {}

    def indices(self, split: str) -> np.ndarray:
        """Indices (into ``load_digits``) of the digits of ``split``."""
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; valid splits: {list(SPLITS)}.")
        return self._indices[split]

    def _images(self, indices: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def dataset(self, split: str) -> Dataset:
        if split not in self._cache:
            indices = self.indices(split)
            _, labels = _digits()
            images = self._images(indices)
            self._cache[split] = DigitDataset(images, labels[indices], np.arange(len(indices)), self.image_size)
        return self._cache[split]

    def describe(self) -> dict:
        return {
            **super().describe(),
            "pool": self.pool,
            "split_seed": self.split_seed,
            "sizes": {s: len(self._indices[s]) for s in SPLITS},
        }


class Digits(_EmbeddedDigits):
    """The source domain: scikit-learn's 8x8 digit scans, resized to ``image_size``, grey replicated to RGB.

    Args:
        image_size: side (or ``(height, width)``) of the returned images.
        split_seed: seed of the permutation that splits the 1,797 digits (share it with the target domain).
        pool: which blocks of :data:`LAYOUT` to use (``source`` by default).
        train_size, val_size, test_size: use only the first images of a block (``None``: all of it).
        interpolation: how the 8x8 scans are resized, one of :data:`INTERPOLATIONS`.
    """

    default_pool = "source"

    def __init__(
        self,
        image_size: int | Sequence[int] = 32,
        split_seed: int = 0,
        pool: str | None = None,
        train_size: int | None = None,
        val_size: int | None = None,
        test_size: int | None = None,
        interpolation: str = "nearest",
    ) -> None:
        super().__init__(image_size, split_seed, pool, train_size, val_size, test_size, interpolation)
        self.name = "digits"

    def _images(self, indices: np.ndarray) -> np.ndarray:
        return resized_digits(indices, self.image_size, self.interpolation)


class DigitsM(_EmbeddedDigits):
    """The target domain: the same digits blended over random colour-photo patches (the MNIST-M recipe).

    Args:
        image_size: side (or ``(height, width)``) of the returned images.
        split_seed: seed of the permutation that splits the 1,797 digits (share it with the source domain).
        seed: seed of the patch choice (photo and position) of every digit.
        pool: which blocks of :data:`LAYOUT` to use (``target`` by default).
        train_size, val_size, test_size: use only the first images of a block (``None``: all of it).
        interpolation: how the 8x8 scans are resized, one of :data:`INTERPOLATIONS`.
        photo_scale: the photos are resized by this factor before the patches are cut.
    """

    default_pool = "target"

    def __init__(
        self,
        image_size: int | Sequence[int] = 32,
        split_seed: int = 0,
        seed: int = 0,
        pool: str | None = None,
        train_size: int | None = None,
        val_size: int | None = None,
        test_size: int | None = None,
        interpolation: str = "nearest",
        photo_scale: float = 0.5,
    ) -> None:
        super().__init__(image_size, split_seed, pool, train_size, val_size, test_size, interpolation)
        if not 0.0 < photo_scale <= 4.0:
            raise ValueError(f"photo_scale must be in (0, 4], got {photo_scale}.")
        self.name = "digits-m"
        self.seed = int(seed)
        self.photo_scale = float(photo_scale)

    def _images(self, indices: np.ndarray) -> np.ndarray:
        digits = resized_digits(indices, self.image_size, self.interpolation)
        return blend_over_photos(digits, indices, self.seed, self.photo_scale)

    def describe(self) -> dict:
        return {**super().describe(), "seed": self.seed, "photos": list(PHOTOS), "photo_scale": self.photo_scale}
