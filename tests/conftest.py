"""Shared fixtures: a tiny in-memory domain, W&B kept offline, a clean working directory for CLI runs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from data_modules.domain import Domain

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


class _ToyDataset(Dataset):
    def __init__(self, seed: int, split: str, size: int, image_size: int, shift: float) -> None:
        self.seed, self.split, self.size, self.image_size, self.shift = seed, split, size, image_size, shift

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, SPLIT_IDS[self.split], index])
        h = w = self.image_size
        segmentation = (np.arange(w)[None, :].repeat(h, 0) >= rng.integers(4, w - 4)).astype(np.int64)
        segmentation[:2, :2] = 255
        depth = (1.0 + segmentation + rng.random((h, w)) * 0.1).astype(np.float32)
        normals = np.zeros((h, w, 3), np.float32)
        normals[..., 2] = -1.0
        image = np.clip(np.stack([segmentation * 0.6 + self.shift] * 3, -1) + rng.random((h, w, 3)) * 0.2, 0, 1)
        contours = np.zeros((h, w), np.float32)
        return {
            "image": image.astype(np.float32),
            "depth": depth,
            "normals": normals,
            "segmentation": segmentation,
            "contours": contours,
        }


class ToyDomain(Domain):
    """A minimal :class:`data_modules.domain.Domain`: vertical two-class scenes, cheap to make."""

    def __init__(self, seed: int = 0, image_size: int = 32, size: int = 8, shift: float = 0.0) -> None:
        self.name = f"toy-{seed}"
        self.tasks = ("depth", "normals", "segmentation", "contours")
        self.num_classes = 2
        self.class_names = ("left", "right")
        self.image_size = (image_size, image_size)
        self.seed, self.size, self.shift = seed, size, shift

    def dataset(self, split: str) -> Dataset:
        return _ToyDataset(self.seed, split, self.size, self.image_size[0], self.shift)


# The suite's models are tiny: one thread per process is faster than two on a 2-core machine, and CLI subprocesses
# (including two-process DDP) inherit it through the environment instead of oversubscribing the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _wandb_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture
def toy_domains() -> tuple[ToyDomain, ToyDomain]:
    return ToyDomain(seed=0), ToyDomain(seed=1, shift=0.3)
