"""Readers for the real digit datasets in the formats they are distributed in.

===========  =====================================================================================================
dataset      files under its root (``$DATA_ROOT/<name>`` by default)
===========  =====================================================================================================
MNIST        ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
             ``t10k-labels-idx1-ubyte`` (IDX format, each optionally gzipped with a ``.gz`` suffix)
MNIST-M      ``mnist_m_train/`` and ``mnist_m_test/`` (PNG images) with ``mnist_m_train_labels.txt`` and
             ``mnist_m_test_labels.txt`` (one ``<filename> <label>`` per line)
SVHN         ``train_32x32.mat``, ``test_32x32.mat`` (cropped digits, MATLAB v5: ``X`` uint8 ``32x32x3xN``,
             ``y`` ``Nx1`` in 1..10 where 10 means digit 0)
USPS         ``usps.bz2``, ``usps.t.bz2`` (LIBSVM format: ``<label> <index>:<value> ...``, 256 values in [-1, 1],
             labels 1..10 meaning digits 0..9), or ``usps.h5`` (groups ``train``/``test`` with ``data`` [N, 256]
             in [0, 1] and ``target`` [N]; needs ``h5py``)
===========  =====================================================================================================

Every reader returns ``(images, labels)``: images indexable by int (uint8 ``[H, W]`` or ``[H, W, 3]`` each),
labels int64 ``[N]`` in 0..9. A missing or malformed file raises :class:`DigitDataError` (a ``ValueError``; the
missing-file case is also a ``FileNotFoundError``) naming the file and the layout expected.
"""

from __future__ import annotations

import bz2
import gzip
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "DigitDataError",
    "MissingDigitFile",
    "data_root",
    "read_idx",
    "read_mnist",
    "read_mnist_m",
    "read_svhn",
    "read_usps",
    "LAYOUTS",
]

LAYOUTS = {
    "mnist": "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte "
    "(IDX files as distributed by LeCun et al., optionally gzipped: <name>.gz)",
    "mnist_m": "mnist_m_train/ and mnist_m_test/ (image files) with mnist_m_train_labels.txt and "
    "mnist_m_test_labels.txt (one '<filename> <label>' per line), as distributed by Ganin et al.",
    "svhn": "train_32x32.mat and test_32x32.mat (SVHN cropped digits, MATLAB v5: X uint8 32x32x3xN, "
    "y Nx1 with labels 1..10 where 10 is digit 0)",
    "usps": "usps.bz2 and usps.t.bz2 (LIBSVM format '<label> <index>:<value> ...', 256 features in [-1, 1], "
    "labels 1..10 meaning digits 0..9), or usps.h5 (groups train/test with data [N, 256] and target [N])",
}
"""The expected files of each dataset, quoted in error messages."""


class DigitDataError(ValueError):
    """A digit data file is missing, truncated or not in the expected format; the message names the file."""


class MissingDigitFile(DigitDataError, FileNotFoundError):
    """A digit data file or folder does not exist."""


def data_root(dataset: str, root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$DATA_ROOT/<dataset>``; a clear error when neither is set."""
    if root is not None:
        return Path(root).expanduser()
    base = os.environ.get("DATA_ROOT")
    if not base:
        raise DigitDataError(
            f"No root given for the {dataset} data and the DATA_ROOT environment variable is not set: pass "
            f"root=<folder> (data.init_args.<source|target>.init_args.root) or export DATA_ROOT so that "
            f"$DATA_ROOT/{dataset} holds {LAYOUTS.get(dataset, 'the data')}."
        )
    return Path(base).expanduser() / dataset


def _missing(path: Path, dataset: str) -> MissingDigitFile:
    return MissingDigitFile(f"{path} not found. The {dataset} root {path.parent} must hold {LAYOUTS[dataset]}.")


# -- MNIST: IDX ---------------------------------------------------------------------------------------------------

_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` compressed or not): magic ``0x0000 <dtype> <ndim>``, big-endian int32 dims, data."""
    path = Path(path)
    layout = "IDX: 2 zero bytes, a type byte (0x08 = uint8), a dimension count, big-endian uint32 sizes, then the data"
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise MissingDigitFile(f"{path} not found (expected {layout}).") from None
    except (OSError, EOFError) as error:  # a corrupt or truncated gzip stream
        raise DigitDataError(f"Cannot read {path}: {error}. Expected a gzip-compressed {layout}.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DigitDataError(f"{path} is not an IDX file (header {raw[:4]!r}); expected {layout}.")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DigitDataError(f"{path} is truncated inside its header ({len(raw)} bytes); expected {layout}.")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DigitDataError(
            f"{path} is truncated or padded: {len(raw)} bytes, but its header announces shape {shape} of "
            f"{dtype}, i.e. {expected} bytes ({layout})."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _idx_path(root: Path, stem: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise _missing(root / stem, "mnist")


def read_mnist(root: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``train`` (60,000) or ``test`` (10,000): uint8 ``[N, 28, 28]`` images and int64 labels."""
    prefix = {"train": "train", "test": "t10k"}[split]
    root = Path(root)
    images_path = _idx_path(root, f"{prefix}-images-idx3-ubyte")
    labels_path = _idx_path(root, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DigitDataError(f"{images_path} holds {images.dtype} {images.shape}; expected uint8 [N, 28, 28] images.")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DigitDataError(
            f"{labels_path} holds {labels.shape} labels for the {len(images)} images of {images_path}; expected [N]."
        )
    return images, _check_labels(labels.astype(np.int64), labels_path)


def _check_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DigitDataError(f"{path} has labels outside 0..9 (min {labels.min()}, max {labels.max()}).")
    return labels


# -- MNIST-M: image folders + label lists -------------------------------------------------------------------------


class ImageFiles(Sequence):
    """Lazily read image files as uint8 RGB arrays (a sequence indexable by int)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        from PIL import Image

        path = self.paths[index]
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB"), dtype=np.uint8)
        except FileNotFoundError:
            raise _missing(path, "mnist_m") from None
        except OSError as error:
            raise DigitDataError(f"Cannot decode the image {path}: {error}. Expected an image file (PNG).") from None


def read_mnist_m(root: str | os.PathLike, split: str) -> tuple[ImageFiles, np.ndarray]:
    """MNIST-M ``train`` or ``test``: lazily read RGB images (28x28 as distributed) and int64 labels."""
    root = Path(root)
    folder, listing = root / f"mnist_m_{split}", root / f"mnist_m_{split}_labels.txt"
    if not folder.is_dir():
        raise _missing(folder, "mnist_m")
    if not listing.is_file():
        raise _missing(listing, "mnist_m")
    paths, labels = [], []
    for number, line in enumerate(listing.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise DigitDataError(
                f"{listing}, line {number}: {line!r} is not '<filename> <label>' (e.g. '00000000.png 5'); "
                "the file may be truncated or not an MNIST-M label list."
            )
        paths.append(folder / parts[0])
        labels.append(int(parts[1]))
    if not paths:
        raise DigitDataError(f"{listing} lists no images; expected one '<filename> <label>' per line.")
    absent = [p for p in paths[:: max(1, len(paths) // 16)] + paths[-1:] if not p.is_file()]
    if absent:
        raise MissingDigitFile(
            f"{absent[0]} (listed in {listing}) not found: {folder} must hold every image the list names; "
            "the folder may be incompletely extracted."
        )
    return ImageFiles(paths), _check_labels(np.asarray(labels, dtype=np.int64), listing)


# -- SVHN: MATLAB v5 ----------------------------------------------------------------------------------------------


def read_svhn(root: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """SVHN cropped digits ``train`` (73,257) or ``test`` (26,032): uint8 ``[N, 32, 32, 3]``, labels 0..9."""
    import scipy.io

    path = Path(root) / f"{split}_32x32.mat"
    if not path.is_file():
        raise _missing(path, "svhn")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as error:  # scipy raises ValueError, TypeError, OSError... on corrupt or truncated files
        raise DigitDataError(
            f"Cannot read {path} ({type(error).__name__}: {error}); expected {LAYOUTS['svhn']}."
        ) from None
    if "X" not in mat or "y" not in mat:
        raise DigitDataError(
            f"{path} has variables {sorted(k for k in mat if not k.startswith('__'))}; expected X and y."
        )
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise DigitDataError(f"{path}: X has shape {x.shape} and y {len(y)} labels; expected X 32x32x3xN and y Nx1.")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise DigitDataError(f"{path}: y has values outside 1..10 (min {y.min()}, max {y.max()}).")
    images = np.ascontiguousarray(np.transpose(x, (3, 0, 1, 2)).astype(np.uint8))
    return images, (y.astype(np.int64) % 10)


# -- USPS: LIBSVM (bz2) or HDF5 -----------------------------------------------------------------------------------


def _parse_libsvm(text: str, path: Path, features: int = 256) -> tuple[np.ndarray, np.ndarray]:
    rows = [line for line in text.splitlines() if line.strip()]
    if not rows:
        raise DigitDataError(f"{path} holds no samples; expected {LAYOUTS['usps']}.")
    data = np.zeros((len(rows), features), np.float32)
    labels = np.empty(len(rows), np.int64)
    for n, line in enumerate(rows):
        parts = line.split()
        try:
            labels[n] = int(float(parts[0]))
            for item in parts[1:]:
                index, value = item.split(":")
                data[n, int(index) - 1] = float(value)
        except (ValueError, IndexError):
            raise DigitDataError(
                f"{path}, sample {n + 1}: {line[:60]!r}... is not '<label> <index>:<value> ...' with indices "
                f"1..{features}; the file may be truncated or not USPS in LIBSVM format."
            ) from None
    if labels.min() < 1 or labels.max() > 10:
        raise DigitDataError(
            f"{path}: labels outside 1..10 (min {labels.min()}, max {labels.max()}); expected USPS labels."
        )
    return data, labels - 1


def read_usps(root: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """USPS ``train`` (7,291) or ``test`` (2,007): uint8 ``[N, 16, 16]`` and labels 0..9, from ``usps.bz2`` /
    ``usps.t.bz2`` (LIBSVM) or, when those are absent, ``usps.h5``."""
    root = Path(root)
    path = root / ("usps.bz2" if split == "train" else "usps.t.bz2")
    if path.is_file():
        try:
            with bz2.open(path, "rt") as handle:
                text = handle.read()
        except (OSError, EOFError, ValueError) as error:
            raise DigitDataError(
                f"Cannot decompress {path} ({type(error).__name__}: {error}); the file may be truncated. "
                f"Expected {LAYOUTS['usps']}."
            ) from None
        data, labels = _parse_libsvm(text, path)
        if data.min() < -1.0001 or data.max() > 1.0001:
            raise DigitDataError(f"{path}: values outside [-1, 1]; expected USPS features scaled to [-1, 1].")
        images = np.round((data + 1.0) * 127.5)
    elif (root / "usps.h5").is_file():
        images, labels = _read_usps_h5(root / "usps.h5", split)
    else:
        raise _missing(path, "usps")
    return np.clip(images, 0, 255).astype(np.uint8).reshape(-1, 16, 16), labels


def _read_usps_h5(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        import h5py
    except ImportError:
        raise DigitDataError(
            f"Reading {path} needs h5py: pip install h5py (or provide usps.bz2 / usps.t.bz2)."
        ) from None
    try:
        with h5py.File(path, "r") as handle:
            data = np.asarray(handle[split]["data"], dtype=np.float32)
            labels = np.asarray(handle[split]["target"], dtype=np.int64).reshape(-1)
    except KeyError:
        raise DigitDataError(
            f"{path} has no {split}/data and {split}/target datasets; expected {LAYOUTS['usps']}."
        ) from None
    except OSError as error:
        raise DigitDataError(
            f"Cannot read {path} ({error}); the file may be truncated. Expected {LAYOUTS['usps']}."
        ) from None
    if data.ndim != 2 or data.shape[1] != 256 or len(labels) != len(data):
        raise DigitDataError(
            f"{path}: {split}/data is {data.shape} with {len(labels)} targets; expected [N, 256] and [N]."
        )
    return np.round(data * 255.0), _check_labels(labels, path)
