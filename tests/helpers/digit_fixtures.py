"""Tiny copies of the real digit datasets written in their exact distributed formats (MNIST IDX, MNIST-M folders,
SVHN .mat, USPS LIBSVM), with the values the readers must give back."""

from __future__ import annotations

import bz2
import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image

SIZES = {"train": 12, "test": 6}


def labels(split: str) -> np.ndarray:
    return np.arange(SIZES[split], dtype=np.uint8) % 10


def images(split: str, size: int, channels: int = 0) -> np.ndarray:
    rng = np.random.default_rng(SIZES[split] + size)
    shape = (SIZES[split], size, size) + ((channels,) if channels else ())
    return rng.integers(0, 256, shape, dtype=np.uint8)


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def write_mnist(root: Path, compress: bool = False) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        suffix = ".gz" if compress else ""
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images(split, 28), compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels(split), compress)


def write_mnist_m(root: Path) -> None:
    for split in ("train", "test"):
        folder = root / f"mnist_m_{split}"
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for i, (image, label) in enumerate(zip(images(split, 28, 3), labels(split))):
            Image.fromarray(image).save(folder / f"{i:08d}.png")
            lines.append(f"{i:08d}.png {label}")
        (root / f"mnist_m_{split}_labels.txt").write_text("\n".join(lines) + "\n")


def write_svhn(root: Path) -> None:
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        x = np.transpose(images(split, 32, 3), (1, 2, 3, 0))  # 32 x 32 x 3 x N
        y = labels(split).astype(np.uint8)
        y[y == 0] = 10  # SVHN: 10 means digit 0
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x, "y": y[:, None]})


def usps_values(split: str) -> np.ndarray:
    return images(split, 16).reshape(SIZES[split], 256).astype(np.float64) / 127.5 - 1.0


def write_usps(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "usps.bz2"), ("test", "usps.t.bz2")):
        rows = [
            f"{label + 1} " + " ".join(f"{j + 1}:{v:.6f}" for j, v in enumerate(values) if v != 0)
            for values, label in zip(usps_values(split), labels(split))
        ]
        (root / name).write_bytes(bz2.compress(("\n".join(rows) + "\n").encode()))


def write_all(root: Path) -> Path:
    """Every dataset under ``root`` as ``DATA_ROOT`` expects it (mnist, mnist_m, svhn, usps)."""
    write_mnist(root / "mnist", compress=True)
    write_mnist_m(root / "mnist_m")
    write_svhn(root / "svhn")
    write_usps(root / "usps")
    return root
