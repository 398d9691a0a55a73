"""The SynthRooms domain: deterministic, procedurally rendered raw samples for each split.

Sample ``index`` of ``split`` is a pure function of ``(seed, split, index)``: the scene comes from
``default_rng([seed, SPLIT_IDS[split], index, 0])`` and the look's own randomness from a second stream, so both looks
of the same ``(seed, split, index)`` show the same scene, splits never overlap and every worker or rank agrees.

``classes`` picks the class set: ``"basic"`` (the default; 5 classes, :data:`CLASS_NAMES`) or ``"rich"`` (11 classes,
:data:`RICH_CLASS_NAMES`: eight object kinds, each in only some views, so image-level class tags carry information
for weak-label adaptation, Paul et al., ECCV 2020). Basic samples are exactly those the generator always made.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ..domain import SPLITS, Domain
from .disk_cache import SampleStore
from .looks import LOOKS, shade_real, shade_synthetic
from .render import CLASS_NAMES, camera_normals, cast, contours
from .scene import CLASS_SETS, RICH_CLASS_NAMES, sample_rich_scene, sample_scene

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
TASKS = ("depth", "normals", "segmentation", "contours")
CLASS_NAMES_OF = {"basic": CLASS_NAMES, "rich": RICH_CLASS_NAMES}


@dataclass(frozen=True)
class CameraInfo:
    """Pinhole intrinsics (pixels; pixel ``(u, v)`` centre at integer coordinates) and the camera pose.

    A pixel with z-depth ``z`` back-projects to the camera-frame point ``((u - cx) / fx * z, (v - cy) / fy * z, z)``;
    ``rotation`` (camera-to-world, columns right/down/forward) and ``position`` place it in the world (z up).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    rotation: np.ndarray
    position: np.ndarray


def _choice(name: str, value: Any, valid: Sequence[str]) -> str:
    if value not in valid:
        raise ValueError(f"{name} must be one of {tuple(valid)}, got {value!r}")
    return value


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def image_shape(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` from an int (square) or a pair; each side must be at least 16 pixels."""
    sides = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else tuple(image_size)
    if len(sides) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 16 for s in sides):
        raise ValueError(f"image_size must be an int >= 16 or a (height, width) pair of them, got {image_size!r}")
    return int(sides[0]), int(sides[1])


def _compact(image, depth, normals, segmentation, edges) -> tuple[np.ndarray, ...]:
    """The stored form of a sample: the image quantized to 8 bits like a real camera's, labels as small ints."""
    return (
        np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8),
        depth.astype(np.float32),
        normals.astype(np.float32),
        segmentation.astype(np.uint8),
        edges.astype(np.uint8),
    )


def _expand(stored: tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
    """Fresh raw-sample arrays (see :mod:`umadapt.samples`) from the stored form; never aliases the cache."""
    image, depth, normals, segmentation, edges = stored
    return {
        "image": image.astype(np.float32) / np.float32(255.0),
        "depth": depth.copy(),
        "normals": normals.copy(),
        "segmentation": segmentation.astype(np.int64),
        "contours": edges.astype(np.float32),
    }


def _render_stored(seed: int, split: str, index: int, look: str, shape: tuple[int, int], classes: str = "basic"):
    height, width = shape
    sampler = sample_rich_scene if classes == "rich" else sample_scene
    scene = sampler(np.random.default_rng([seed, SPLIT_IDS[split], index, 0]))
    look_rng = np.random.default_rng([seed, SPLIT_IDS[split], index, 1 + LOOKS.index(look)])
    g = cast(scene, height, width)
    fx, fy, cx, cy = scene.camera.intrinsics(height, width)
    image = shade_synthetic(scene, g, look_rng) if look == "synthetic" else shade_real(scene, g, look_rng, fx)
    normals = camera_normals(g, scene)
    stored = _compact(image, g.depth.reshape(shape), normals, g.segmentation.reshape(shape), contours(g, normals))
    return stored, CameraInfo(fx, fy, cx, cy, scene.camera.rotation.copy(), scene.camera.position.copy())


def render_sample(
    seed: int,
    split: str,
    index: int,
    look: str = "synthetic",
    image_size: int | Sequence[int] = 64,
    classes: str = "basic",
) -> tuple[dict[str, np.ndarray], CameraInfo]:
    """Render sample ``index`` of ``split``: the raw sample (exactly what the dataset returns) and its camera.
    ``classes``: ``"basic"`` or ``"rich"`` (see the module docstring)."""
    _choice("look", look, LOOKS)
    _choice("split", split, SPLITS)
    _choice("classes", classes, CLASS_SETS)
    _positive_int("seed", seed, minimum=0)
    _positive_int("index", index, minimum=0)
    stored, camera = _render_stored(int(seed), split, int(index), look, image_shape(image_size), classes)
    return _expand(stored), camera


def measure_generation_rate(
    look: str = "synthetic",
    image_size: int | Sequence[int] = 64,
    num_images: int = 200,
    seed: int = 12345,
    classes: str = "basic",
) -> float:
    """Images per second rendering ``num_images`` fresh samples in this process (textures loaded beforehand)."""
    _positive_int("num_images", num_images)
    render_sample(seed, "train", 0, look, image_size, classes)
    start = time.perf_counter()
    for index in range(1, num_images + 1):
        render_sample(seed, "train", index, look, image_size, classes)
    return num_images / (time.perf_counter() - start)


class SynthRoomsDataset(Dataset):
    """``size`` raw samples of one split and look; ``cache=True`` keeps rendered samples in memory (~86 KB each at
    64x64), so epochs after the first cost a copy; ``disk_cache=True`` reads and writes them under ``cache_dir``
    (see :mod:`~data_modules.synthrooms.disk_cache`), so later processes skip rendering. Lookup: memory, disk, render.
    ``classes``: the class set, ``"basic"`` or ``"rich"``.
    """

    def __init__(
        self,
        seed: int,
        split: str,
        look: str,
        image_size: tuple[int, int],
        size: int,
        cache: bool = True,
        disk_cache: bool = True,
        cache_dir: str | os.PathLike | None = None,
        classes: str = "basic",
    ):
        self.seed, self.split, self.look, self.image_size, self.size = seed, split, look, image_size, size
        self.classes = _choice("classes", classes, CLASS_SETS)
        self._cache: dict[int, tuple[np.ndarray, ...]] | None = {} if cache else None
        self._store = SampleStore(look, seed, image_size, cache_dir, classes=classes) if disk_cache else None

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        index = int(index)
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"index out of range for a {self.split} split of {self.size} samples")
        stored = self._cache.get(index) if self._cache is not None else None
        if stored is None:
            stored = self._store.load(self.split, index) if self._store is not None else None
            if stored is None:
                stored, _ = _render_stored(self.seed, self.split, index, self.look, self.image_size, self.classes)
                if self._store is not None:
                    self._store.save(self.split, index, stored)
            if self._cache is not None:
                self._cache[index] = stored
        return _expand(stored)


class SynthRooms(Domain):
    """The SynthRooms benchmark in one look ("synthetic": the source, "real": the target); a :class:`Domain`.

    Args:
        look: ``synthetic`` (flat-shaded, the source) or ``real`` (photo-textured, noisy, the target).
        seed: generator seed; sample ``index`` of a split is a pure function of ``(seed, split, index)``.
        image_size: side of the square images in pixels, at least 16.
        train_size: number of training samples.
        val_size: number of validation samples.
        test_size: number of test samples.
        cache: keep rendered samples in memory (~86 KB each at 64x64), so epochs after the first cost a copy.
        disk_cache: also keep them on disk, so later runs and DataLoader workers on this machine read them instead
            of rendering. Files live under ``<cache_dir>/synthrooms/<generator fingerprint>/``; a change to the
            generator's code or to numpy, scikit-image or OpenCV changes the fingerprint, so stale files are never
            read. Clear with ``python -m data_modules.synthrooms --clear-cache`` (``make clean-cache``).
        cache_dir: the disk cache's folder; ``None`` (default): ``$UMADAPT_CACHE_DIR``, else
            ``$XDG_CACHE_HOME/umadapt``, else ``~/.cache/umadapt``. Not part of the data's identity.
        classes: the class set. ``basic`` (default): floor, wall, ceiling, furniture, object, nearly all in every
            view. ``rich``: 11 classes (:data:`RICH_CLASS_NAMES`: floor, wall, ceiling and eight object kinds, each
            in roughly 20-70 % of the views), so image-level class tags carry information, for weak-label
            adaptation (Paul et al., ECCV 2020). Sets ``num_classes``, ``class_names`` and a ``-rich`` name suffix.
    """

    tasks = TASKS
    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES

    def __init__(
        self,
        look: str = "synthetic",
        seed: int = 0,
        image_size: int = 64,
        train_size: int = 2000,
        val_size: int = 200,
        test_size: int = 500,
        cache: bool = True,
        disk_cache: bool = True,
        cache_dir: str | None = None,
        classes: str = "basic",
    ):
        self.look = _choice("look", look, LOOKS)
        self.classes = _choice("classes", classes, CLASS_SETS)
        self.class_names = CLASS_NAMES_OF[self.classes]
        self.num_classes = len(self.class_names)
        self.seed = _positive_int("seed", seed, minimum=0)
        self.image_size = image_shape(image_size)
        self.sizes = {
            "train": _positive_int("train_size", train_size),
            "val": _positive_int("val_size", val_size),
            "test": _positive_int("test_size", test_size),
        }
        self.cache = bool(cache)
        self.disk_cache = bool(disk_cache)
        self.cache_dir = cache_dir
        self.name = f"synthrooms-{look}" + ("-rich" if self.classes == "rich" else "")
        self._datasets: dict[str, SynthRoomsDataset] = {}

    def describe(self) -> dict[str, Any]:
        """Data identity for run records: the generator's parameters fully determine every sample."""
        identity = {
            "name": self.name,
            "look": self.look,
            "seed": self.seed,
            "image_size": list(self.image_size),
            "sizes": dict(self.sizes),
            "tasks": list(self.tasks),
        }
        if self.classes != "basic":  # basic runs keep the records they always had
            identity["classes"] = self.classes
        return identity

    def dataset(self, split: str) -> SynthRoomsDataset:
        """The split's dataset (one instance per split, so its cache survives repeated calls)."""
        _choice("split", split, SPLITS)
        if split not in self._datasets:
            self._datasets[split] = SynthRoomsDataset(
                self.seed,
                split,
                self.look,
                self.image_size,
                self.sizes[split],
                self.cache,
                self.disk_cache,
                self.cache_dir,
                self.classes,
            )
        return self._datasets[split]

    def __repr__(self) -> str:
        classes = f", classes={self.classes!r}" if self.classes != "basic" else ""
        return (
            f"SynthRooms(look={self.look!r}, seed={self.seed}, image_size={self.image_size}, sizes={self.sizes}"
            f"{classes})"
        )


def class_presence(domain: SynthRooms, split: str = "train", count: int | None = None) -> dict[str, float]:
    """Fraction of the first ``count`` images (default: the whole split) of ``domain``'s ``split`` in which each
    class has at least one pixel, by class name: how informative image-level tags are."""
    dataset = domain.dataset(split)
    count = len(dataset) if count is None else min(_positive_int("count", count), len(dataset))
    seen = np.zeros(domain.num_classes)
    for index in range(count):
        seen += np.bincount(dataset[index]["segmentation"].ravel(), minlength=domain.num_classes) > 0
    return {name: float(n / count) for name, n in zip(domain.class_names, seen)}
