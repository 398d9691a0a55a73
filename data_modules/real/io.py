"""Small helpers shared by the real-dataset readers: where the data lives, reading images and PNGs exactly as
distributed, mapping label IDs, resizing samples per key, and seeded splits.

``DATA_ROOT``: every reader takes ``root: str | None = None``; ``None`` means ``$DATA_ROOT/<DatasetFolder>`` (see
:func:`resolve_root`). Nothing is ever downloaded.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from umadapt.samples import DENSE_TARGETS, IGNORE_INDEX, native_key

from .errors import CorruptFileError, DatasetNotFoundError

DATA_ROOT_ENV = "DATA_ROOT"
FITS = ("stretch", "crop")
"""How a sample is brought to ``image_size``: ``stretch`` resizes to it (the aspect ratio may change); ``crop`` scales
it to cover ``image_size`` keeping the aspect ratio, then takes the centre crop."""
EVAL_RESOLUTIONS = ("image_size", "native")
"""Where validation and test labels are scored: ``image_size`` (the labels resized with nearest, as the model sees
them) or ``native`` (also served at their stored size, :func:`native_targets`; predictions are upsampled to it)."""


# ---------------------------------------------------------------------------------------------------- roots
def resolve_root(root: str | os.PathLike | None, folder: str, dataset: str, layout: str, obtain: str) -> Path:
    """The dataset's root: ``root`` when given, else ``$DATA_ROOT/<folder>``; it must be an existing directory.

    Raises:
        DatasetNotFoundError: ``root`` is ``None`` and ``DATA_ROOT`` is unset, or the directory does not exist. The
            message names the path tried, the expected layout and where the dataset is obtained.
    """
    if root is None:
        base = os.environ.get(DATA_ROOT_ENV)
        if not base:
            raise DatasetNotFoundError(
                dataset,
                f"${DATA_ROOT_ENV}/{folder} (DATA_ROOT is not set)",
                layout,
                obtain,
                hint=f"Set DATA_ROOT (environment or `make ... DATA_ROOT=/data`) so that $DATA_ROOT/{folder} is this "
                f"dataset, or pass root: /path/to/{folder}.",
            )
        path = Path(base).expanduser() / folder
    else:
        path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetNotFoundError(dataset, path, layout, obtain)
    return path


def require(path: Path, dataset: str, layout: str, obtain: str, kind: str = "dir") -> Path:
    """``path`` if it exists as a directory (``kind='dir'``) or file (``kind='file'``), else a
    :class:`DatasetNotFoundError` naming it."""
    ok = path.is_dir() if kind == "dir" else path.is_file()
    if not ok:
        raise DatasetNotFoundError(dataset, path, layout, obtain)
    return path


# ---------------------------------------------------------------------------------------------------- reading
def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise CorruptFileError(path, "the file does not exist (listed by the dataset's layout but missing)")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An RGB image as float32 ``[H, W, 3]`` in ``[0, 1]`` (8- or 16-bit files; grey images become 3 channels,
    alpha is dropped)."""
    path = Path(path)
    _check_exists(path)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if image is None or image.ndim != 3 or image.size == 0:
        raise CorruptFileError(path, "not a readable image (truncated or not an image file)")
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    return np.ascontiguousarray(image[..., ::-1], dtype=np.float32) / np.float32(scale)


def read_png(path: str | os.PathLike) -> np.ndarray:
    """A PNG's stored values, unconverted: palette PNGs give their **indices** (as GTA5's label PNGs need), 8/16-bit
    grey PNGs give ``[H, W]`` values, colour PNGs give ``[H, W, C]`` with channels in the file's order (R, G, B[, A]),
    16 bits kept."""
    path = Path(path)
    _check_exists(path)
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode in ("P", "L", "I;16", "I;16B", "I", "1"):
                image.load()
                array = np.array(image)
                return array.astype(np.uint16) if mode.startswith("I;16") else array
    except (OSError, SyntaxError, ValueError) as error:
        raise CorruptFileError(path, f"not a readable PNG ({error})") from None
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # colour, possibly 16 bits per channel (PIL would truncate)
    if array is None:
        raise CorruptFileError(path, "not a readable PNG")
    if array.ndim == 3:
        array = array[..., [2, 1, 0, 3][: array.shape[2]]] if array.shape[2] >= 3 else array
    return np.ascontiguousarray(array)


def read_npy(path: str | os.PathLike) -> np.ndarray:
    """A ``.npy`` array (never pickled objects)."""
    path = Path(path)
    _check_exists(path)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise CorruptFileError(path, f"not a readable .npy array ({error})") from None


def first_channel(array: np.ndarray) -> np.ndarray:
    """``array`` itself when single-channel, else its first channel (file order)."""
    return array if array.ndim == 2 else array[..., 0]


def check_shape(path: str | os.PathLike, array: np.ndarray, hw: tuple[int, int], what: str) -> None:
    """Raise :class:`CorruptFileError` unless ``array`` is ``hw`` in its first two axes."""
    if tuple(array.shape[:2]) != tuple(hw):
        raise CorruptFileError(
            path, f"its {what} is {array.shape[0]}x{array.shape[1]}, but the image is {hw[0]}x{hw[1]}"
        )


# ---------------------------------------------------------------------------------------------------- labels
class LabelMapper:
    """Maps raw label IDs through a lookup table; IDs outside the table become ``255`` (ignore).

    IDs outside the table (negative, or ``>= len(table)``) are counted in :attr:`unmapped_pixels` (per file in
    :attr:`unmapped_files`: ``{file: (pixels, first values)}``, read by ``umadapt check-data``) and reported **once**
    per mapper with a ``UserWarning`` naming the first file and values seen. IDs the table itself maps to ``255``
    (void classes) are legitimate and not counted.
    """

    def __init__(self, table: Sequence[int] | np.ndarray, name: str) -> None:
        self.table = np.asarray(table, dtype=np.int64)
        self.name = name
        self.unmapped_pixels = 0
        self.unmapped_values: set[int] = set()
        self.unmapped_files: dict[str, tuple[int, list[int]]] = {}
        self._warned = False

    def __call__(self, labels: np.ndarray, source: str | os.PathLike = "?") -> np.ndarray:
        labels = np.asarray(labels).astype(np.int64, copy=False)
        outside = (labels < 0) | (labels >= len(self.table))
        out = self.table[np.where(outside, 0, labels)]
        if outside.any():
            out[outside] = IGNORE_INDEX
            values = np.unique(labels[outside])
            self.unmapped_pixels += int(outside.sum())
            self.unmapped_values.update(int(v) for v in values[:32])
            self.unmapped_files[str(source)] = (int(outside.sum()), values[:10].tolist())
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"{source}: {int(outside.sum())} pixels have label IDs outside the {self.name} mapping "
                    f"(values {values[:10].tolist()}); they are mapped to ignore ({IGNORE_INDEX}). Further occurrences "
                    "are counted (LabelMapper.unmapped_pixels) without another warning.",
                    UserWarning,
                    stacklevel=2,
                )
        return out


def lookup_table(mapping: Mapping[int, int], size: int) -> np.ndarray:
    """A dense lookup table of ``size`` entries from a sparse ``{raw id: class}`` dict; the rest map to 255."""
    table = np.full(size, IGNORE_INDEX, dtype=np.int64)
    for raw, mapped in mapping.items():
        table[raw] = mapped
    return table


# ---------------------------------------------------------------------------------------------------- resizing
def _nearest_index(out_len: int, in_len: int, scaled_len: int, offset: int) -> np.ndarray:
    """Source index of each output pixel for a nearest resize ``in_len -> scaled_len`` followed by a crop at
    ``offset`` of ``out_len`` pixels (pixel centres aligned, as OpenCV's area/linear resizes do)."""
    centres = (np.arange(out_len) + offset + 0.5) * (in_len / scaled_len) - 0.5
    return np.clip(np.floor(centres + 0.5), 0, in_len - 1).astype(np.int64)  # ties: the later pixel, consistently


def fit_sample(sample: dict[str, Any], image_size: tuple[int, int] | None, fit: str = "stretch") -> dict[str, Any]:
    """Resize (and for ``fit='crop'`` centre-crop) every dense key of a raw sample to ``image_size`` (``(H, W)``).

    The image uses area interpolation when shrinking and linear when enlarging; depth, normals, segmentation and
    contours use **nearest** (so depths and labels are never blended; invalid pixels stay invalid). Depth keeps its
    values (metres do not change with the image size). ``label`` passes through.
    """
    if image_size is None:
        return sample
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}.")
    out_h, out_w = int(image_size[0]), int(image_size[1])
    in_h, in_w = sample["image"].shape[:2]
    if (in_h, in_w) == (out_h, out_w):
        return sample
    if fit == "stretch":
        scaled_h, scaled_w, top, left = out_h, out_w, 0, 0
    else:
        scale = max(out_h / in_h, out_w / in_w)
        scaled_h, scaled_w = max(out_h, round(in_h * scale)), max(out_w, round(in_w * scale))
        top, left = (scaled_h - out_h) // 2, (scaled_w - out_w) // 2
    rows = _nearest_index(out_h, in_h, scaled_h, top)
    cols = _nearest_index(out_w, in_w, scaled_w, left)
    out: dict[str, Any] = {}
    for key, value in sample.items():
        if key == "image":
            shrink = scaled_h * scaled_w < in_h * in_w
            resized = cv2.resize(
                value, (scaled_w, scaled_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            )
            out[key] = np.ascontiguousarray(np.clip(resized[top : top + out_h, left : left + out_w], 0.0, 1.0))
        elif key == "label":
            out[key] = value
        else:
            out[key] = np.ascontiguousarray(np.asarray(value)[rows][:, cols])
    return out


def native_box(in_hw: Sequence[int], image_size: Sequence[int], fit: str = "stretch") -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of the stored ``in_hw`` frame that :func:`fit_sample` maps onto ``image_size``:
    the whole frame for ``stretch``; for ``crop``, the centre region the image's crop covers, at native scale (its
    edges rounded to whole pixels)."""
    in_h, in_w = int(in_hw[0]), int(in_hw[1])
    if fit == "stretch" or (in_h, in_w) == tuple(int(s) for s in image_size):
        return 0, in_h, 0, in_w
    out_h, out_w = int(image_size[0]), int(image_size[1])
    scale = max(out_h / in_h, out_w / in_w)
    scaled_h, scaled_w = max(out_h, round(in_h * scale)), max(out_w, round(in_w * scale))
    top, left = (scaled_h - out_h) // 2, (scaled_w - out_w) // 2
    return (
        round(top * in_h / scaled_h),
        round((top + out_h) * in_h / scaled_h),
        round(left * in_w / scaled_w),
        round((left + out_w) * in_w / scaled_w),
    )


def native_targets(sample: dict[str, Any], image_size: tuple[int, int] | None, fit: str = "stretch") -> dict[str, Any]:
    """``{native/<task>: target}`` of every dense target (depth, normals, segmentation) of a raw sample, at its
    stored size: unresampled, cut to the region the image keeps (:func:`native_box`)."""
    hw = sample["image"].shape[:2]
    top, bottom, left, right = native_box(hw, image_size or hw, fit)
    return {
        native_key(k): np.ascontiguousarray(np.asarray(sample[k])[top:bottom, left:right])
        for k in DENSE_TARGETS
        if k in sample
    }


# ---------------------------------------------------------------------------------------------------- splits
def seeded_subset(n: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``range(n)`` holding ``max(1, round(fraction * n))`` items."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"val_fraction must be in (0, 1], got {fraction}.")
    if n < 1:
        return np.zeros(0, dtype=np.int64)
    count = min(n, max(1, round(fraction * n)))
    return np.sort(np.random.default_rng(seed).permutation(n)[:count])


def limit(items: list, max_items: int | None) -> list:
    """The first ``max_items`` items (all when ``None``)."""
    if max_items is not None and max_items < 1:
        raise ValueError(f"max_items must be >= 1 or null, got {max_items}.")
    return items if max_items is None else items[:max_items]


# ---------------------------------------------------------------------------------------------------- datasets
class FileDataset:
    """A map-style dataset over ``items`` (one per sample): ``load(item) -> raw sample``, then :func:`fit_sample`;
    with ``native``, the sample also carries its dense targets at their stored size (:func:`native_targets`).

    ``skip_bad_files=False`` (default): an unreadable file raises :class:`CorruptFileError` naming it.
    ``skip_bad_files=True``: the sample is replaced by the next readable one, every skipped file is recorded in
    :attr:`skipped` and reported with a warning (never silently).
    """

    def __init__(
        self,
        items: Sequence[Any],
        load: Callable[[Any], dict[str, Any]],
        image_size: tuple[int, int] | None,
        fit: str = "stretch",
        skip_bad_files: bool = False,
        name: str = "dataset",
        native: bool = False,
    ) -> None:
        self.items = list(items)
        self.load = load
        self.image_size = image_size
        self.fit = fit
        self.skip_bad_files = skip_bad_files
        self.name = name
        self.native = bool(native)
        self.skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.items)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {self.name} ({n} samples)")
        index %= n
        for attempt in range(n):
            item = self.items[(index + attempt) % n]
            try:
                raw = self.load(item)
                sample = fit_sample(raw, self.image_size, self.fit)
                return {**sample, **native_targets(raw, self.image_size, self.fit)} if self.native else sample
            except CorruptFileError as error:
                if not self.skip_bad_files:
                    raise
                if error.path not in self.skipped:
                    self.skipped[error.path] = str(error)
                    warnings.warn(
                        f"{self.name}: skipped unreadable file {error.path} ({len(self.skipped)} skipped so far in "
                        "this process); the next readable sample is used instead.",
                        UserWarning,
                        stacklevel=2,
                    )
        raise CorruptFileError(self.name, f"none of its {n} samples could be read")

    def __repr__(self) -> str:
        native = ", native targets" if self.native else ""
        size = f"image_size={self.image_size}, fit={self.fit!r}{native}"
        return f"FileDataset({self.name!r}, {len(self)} samples, {size})"


def check_split(split: str, valid: Sequence[str] = ("train", "val", "test")) -> str:
    if split not in valid:
        raise ValueError(f"Unknown split {split!r}; valid splits: {list(valid)}.")
    return split


def image_shape(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` from an int (square) or a pair."""
    sides = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else tuple(image_size)
    if len(sides) != 2 or any(isinstance(s, bool) or int(s) < 1 for s in sides):
        raise ValueError(f"image_size must be an int or a (height, width) pair of positive ints, got {image_size!r}.")
    return int(sides[0]), int(sides[1])
