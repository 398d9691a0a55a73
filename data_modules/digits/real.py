"""Domains over the real digit datasets (MNIST, MNIST-M, SVHN, USPS) in their distributed formats.

The data is never downloaded: pass ``root`` or set the ``DATA_ROOT`` environment variable (the root is then
``$DATA_ROOT/<mnist|mnist_m|svhn|usps>``). See :mod:`data_modules.digits.formats` for the files each root holds.

Splits: ``train`` and ``val`` come from the dataset's training files (``val`` = ``val_size`` images chosen by a
permutation seeded with ``split_seed``, disjoint from ``train``), ``test`` is the dataset's test file. Images are
resized to ``image_size`` and grey ones replicated to three channels, on access. Like the embedded digits, every
sample carries ``label`` with its derived ``parity`` and ``magnitude``
(:data:`~data_modules.digits.dataset.DIGIT_TASKS`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
from torch.utils.data import Dataset

from ..domain import SPLITS, Domain
from .dataset import CLASS_NAMES, DIGIT_TASKS, DigitDataset, square_size, take
from .formats import data_root, read_mnist, read_mnist_m, read_svhn, read_usps

__all__ = ["MNIST", "MNISTM", "SVHN", "USPS", "RealDigits"]

Reader = Callable[[os.PathLike, str], tuple[Sequence[np.ndarray], np.ndarray]]


class RealDigits(Domain):
    """A real digit dataset read from ``root`` with :attr:`reader`; subclasses set ``dataset_name`` and ``reader``.

    Args:
        root: folder holding the files (default ``$DATA_ROOT/<dataset_name>``).
        image_size: side (or ``(height, width)``) of the returned images.
        val_size: images held out of the training files for validation.
        train_size, test_size: use only the first images of these splits (``None``: all).
        split_seed: seed of the permutation that picks the validation images.
    """

    dataset_name: str = ""
    reader: Reader

    def __init__(
        self,
        root: str | None = None,
        image_size: int | Sequence[int] = 32,
        val_size: int = 1000,
        train_size: int | None = None,
        test_size: int | None = None,
        split_seed: int = 0,
    ) -> None:
        self.root = data_root(self.dataset_name, root)
        self.name = self.dataset_name
        self.tasks = DIGIT_TASKS
        self.default_tasks = ("label",)  # parity and magnitude only when data.tasks asks for them
        self.num_classes = 10
        self.class_names = CLASS_NAMES
        self.image_size = square_size(image_size)
        if isinstance(val_size, bool) or not isinstance(val_size, int) or val_size < 1:
            raise ValueError(f"val_size must be a positive int, got {val_size!r}.")
        self.val_size, self.train_size, self.test_size = val_size, train_size, test_size
        self.split_seed = int(split_seed)
        self._files: dict[str, tuple[Sequence[np.ndarray], np.ndarray]] = {}
        self._cache: dict[str, Dataset] = {}

    def _load(self, file_split: str) -> tuple[Sequence[np.ndarray], np.ndarray]:
        if file_split not in self._files:
            self._files[file_split] = type(self).reader(self.root, file_split)
        return self._files[file_split]

    def dataset(self, split: str) -> Dataset:
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; valid splits: {list(SPLITS)}.")
        if split not in self._cache:
            images, labels = self._load("test" if split == "test" else "train")
            if split == "test":
                indices = take(np.arange(len(labels)), self.test_size, "test_size")
            else:
                if self.val_size >= len(labels):
                    raise ValueError(
                        f"val_size={self.val_size} leaves no training images of the {len(labels)} in {self.root}."
                    )
                order = np.random.default_rng(self.split_seed).permutation(len(labels))
                val, train = order[: self.val_size], np.sort(order[self.val_size :])
                indices = np.sort(val) if split == "val" else take(train, self.train_size, "train_size")
            self._cache[split] = DigitDataset(images, labels, indices, self.image_size)
        return self._cache[split]

    def describe(self) -> dict:
        return {**super().describe(), "root": str(self.root), "val_size": self.val_size, "split_seed": self.split_seed}


class MNIST(RealDigits):
    """MNIST (IDX files, optionally gzipped), grey 28x28 replicated to RGB."""

    dataset_name = "mnist"
    reader = staticmethod(read_mnist)


class MNISTM(RealDigits):
    """MNIST-M as distributed by Ganin et al.: ``mnist_m_train/``, ``mnist_m_test/`` and their label lists."""

    dataset_name = "mnist_m"
    reader = staticmethod(read_mnist_m)


class SVHN(RealDigits):
    """SVHN cropped digits (``train_32x32.mat``, ``test_32x32.mat``); label 10 is mapped to digit 0."""

    dataset_name = "svhn"
    reader = staticmethod(read_svhn)


class USPS(RealDigits):
    """USPS 16x16 (``usps.bz2`` / ``usps.t.bz2`` LIBSVM files, or ``usps.h5``), grey replicated to RGB."""

    dataset_name = "usps"
    reader = staticmethod(read_usps)
