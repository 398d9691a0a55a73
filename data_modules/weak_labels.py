"""Weak target supervision for weakly-supervised domain adaptation (WDA, Paul et al., "Domain Adaptive Semantic
Segmentation Using Weak Labels", ECCV 2020): what a human gives each target training image instead of a mask.

* ``tags``: the image-level class tags, multi-hot ``[C]`` float32: the classes the image shows;
* ``points``: one clicked pixel per class present, a sparse ``[H, W]`` int64 map that is
  :data:`~umadapt.samples.IGNORE_INDEX` everywhere but those pixels, served with the image's ``tags`` (clicking one
  point per class tags the image too; a crop may cut a click away, never the tag).

Both are derived here from the domain's dense ground truth, once per image (a point is a pure function of
``(seed, index)``, like a click made once), and :class:`WeakLabelDataset` serves them **instead of** the mask: a
weakly labelled sample holds ``image`` and ``tags`` or ``points``, never ``segmentation``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

from umadapt.samples import IGNORE_INDEX, IMAGE

__all__ = ["WEAK_LABEL_MODES", "WeakLabelDataset", "image_tags", "sample_points"]

WEAK_LABEL_MODES = ("none", "tags", "points")
"""Values of ``data.target_weak_labels``: no weak supervision (UDA), image-level tags, or one point per class."""


def image_tags(segmentation: np.ndarray, num_classes: int, min_fraction: float = 0.0) -> np.ndarray:
    """Multi-hot ``[num_classes]`` float32 tags of a ``[H, W]`` mask: the classes covering more than ``min_fraction``
    of the labelled pixels (any pixel at 0); :data:`IGNORE_INDEX` pixels count for nothing."""
    labels = np.asarray(segmentation).ravel()
    labels = labels[labels != IGNORE_INDEX]
    counts = np.bincount(labels, minlength=num_classes)[:num_classes]
    if labels.size == 0:
        return np.zeros(num_classes, dtype=np.float32)
    return (counts > min_fraction * labels.size).astype(np.float32)


def sample_points(segmentation: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """A ``[H, W]`` int64 map holding one pixel per class present in ``segmentation`` (chosen uniformly among that
    class's pixels by ``rng``), :data:`IGNORE_INDEX` elsewhere."""
    mask = np.asarray(segmentation)
    points = np.full(mask.shape, IGNORE_INDEX, dtype=np.int64)
    flat = mask.ravel()
    for c in range(num_classes):
        where = np.flatnonzero(flat == c)
        if where.size:
            points.flat[where[rng.integers(where.size)]] = c
    return points


class WeakLabelDataset(Dataset):
    """The raw samples of a labelled split with the mask replaced by weak labels: ``{image, tags}`` or
    ``{image, points, tags}``.

    Args:
        base: raw samples holding ``image`` and ``segmentation``.
        mode: ``tags`` or ``points``.
        num_classes: the domain's number of classes (the length of ``tags``).
        seed: seed of the point clicks; image ``index``'s points come from ``default_rng([seed, index])``.
        min_fraction: ``tags`` only: a class is tagged when it covers more than this fraction of the labelled pixels.
    """

    def __init__(self, base: Dataset, mode: str, num_classes: int, seed: int = 0, min_fraction: float = 0.0) -> None:
        if mode not in WEAK_LABEL_MODES[1:]:
            raise ValueError(f"WeakLabelDataset mode must be one of {list(WEAK_LABEL_MODES[1:])}, got {mode!r}.")
        self.base, self.mode, self.num_classes = base, mode, int(num_classes)
        self.seed, self.min_fraction = int(seed), float(min_fraction)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        raw = self.base[index]
        mask = raw["segmentation"]
        if self.mode == "tags":
            return {IMAGE: raw[IMAGE], "tags": image_tags(mask, self.num_classes, self.min_fraction)}
        rng = np.random.default_rng([self.seed % 2**32, int(index)])
        points = sample_points(mask, self.num_classes, rng)
        return {IMAGE: raw[IMAGE], "points": points, "tags": image_tags(mask, self.num_classes)}

    def __repr__(self) -> str:
        return f"WeakLabelDataset({self.base!r}, mode={self.mode!r})"
