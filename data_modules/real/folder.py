"""A plain folder format for your own data: simulator renders, or photos from your own camera.

Point a config at a folder laid out like this and it becomes a :class:`~data_modules.domain.Domain`, so you can
adapt your simulator to your camera without writing code (see ``docs/real_datasets.md``)::

    <root>/
      images/<name>.png|.jpg            RGB (8 or 16 bit); <name> pairs every file of one sample
      depth/<name>.png                  16-bit PNG, millimetres (depth_png_scale), 0 = invalid  -- or --
      depth/<name>.npy                  float [H, W] metres; 0, negative or non-finite = invalid
      normals/<name>.png                RGB = (n + 1) / 2 * 255 (8 bit; 16 bit: * 65535); all-zero = invalid  -- or --
      normals/<name>.npy                float [H, W, 3] unit vectors; zero = invalid
      segmentation/<name>.png           class IDs (8 or 16 bit grey, or palette indices); 255 = ignore
      classes.txt                       one class name per line; line k (0-based) names class ID k
      splits/train.txt, val.txt, test.txt   optional: one <name> per line

Every subfolder but ``images/`` is optional; the domain's tasks are the subfolders present (or the ``tasks`` you
list). Normals are expected in umadapt's camera frame (x right, y down, z forward, pointing towards the camera);
``normals_axes`` converts another frame, e.g. ``"x,-y,-z"`` for OpenGL/Blender camera space (x right, y up,
z backward). A sample whose label file is missing gets an all-invalid target for that task (depth 0, normals 0,
segmentation 255), counted in :attr:`FolderDomain.missing` and reported once, so a real set can be annotated
only partly (e.g. test images only; unlabelled target training images never need labels).

Splits: a ``splits/<split>.txt`` file wins. Otherwise ``test`` is a seeded ``test_fraction`` of the images, ``val``
a seeded ``val_fraction`` of the rest, and ``train`` what remains (disjoint).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from umadapt.samples import IGNORE_INDEX

from .base import RealDomain
from .errors import CorruptFileError, DatasetNotFoundError
from .io import LabelMapper, check_shape, first_channel, read_image, read_npy, read_png, require, resolve_root, seeded_subset
from .nyud import convert_normals, parse_axes

OBTAIN = "your own data, laid out as documented in data_modules/real/folder.py and docs/real_datasets.md"
LAYOUT = """\
  <root>/images/<name>.png|.jpg
  <root>/depth/<name>.png (16-bit mm) | <name>.npy (metres)       optional
  <root>/normals/<name>.png ((n+1)/2*255) | <name>.npy            optional
  <root>/segmentation/<name>.png (class IDs, 255 = ignore)        optional, needs classes.txt
  <root>/classes.txt                                              one class name per line
  <root>/splits/{train,val,test}.txt                              optional, one <name> per line"""

TASK_FOLDERS = {"depth": "depth", "normals": "normals", "segmentation": "segmentation"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LABEL_SUFFIXES = {"depth": (".png", ".npy"), "normals": (".png", ".npy"), "segmentation": (".png",)}


def _index(folder: Path, suffixes: Sequence[str]) -> dict[str, Path]:
    """``{name: path}`` of the files in ``folder`` with one of ``suffixes`` (the first suffix wins a tie)."""
    found: dict[str, Path] = {}
    for suffix in reversed(suffixes):
        for path in folder.glob(f"*{suffix}"):
            found[path.stem] = path
    return found


class FolderDomain(RealDomain):
    """Your own images and labels in the folder format above, as a :class:`~data_modules.domain.Domain`.

    Args:
        root: the folder; default ``$DATA_ROOT/<name>`` (``name`` below).
        name: the domain's name in logs and results (also its default folder under ``DATA_ROOT``).
        tasks: which of ``depth``, ``normals``, ``segmentation`` to provide; default: every one whose folder exists.
        depth_png_scale: metres per unit of 16-bit depth PNGs (default 0.001: millimetres).
        normals_axes: the frame of the stored normals, as in :class:`~data_modules.real.nyud.NYUDv2MTAN`
            (default ``"x,y,z"``: already umadapt's).
        classes_file: the class list, relative to ``root``.
        test_fraction: share of the images held out as the test split when ``splits/test.txt`` is absent.
        image_size, fit, val_fraction, seed, skip_bad_files, max_items: see :class:`~data_modules.real.base.RealDomain`.
    """

    dataset_name = "folder"

    def __init__(
        self,
        root: str | None = None,
        name: str = "folder",
        tasks: list[str] | None = None,
        image_size: int | Sequence[int] = (256, 256),
        fit: str = "stretch",
        depth_png_scale: float = 0.001,
        normals_axes: str = "x,y,z",
        classes_file: str = "classes.txt",
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        seed: int = 0,
        skip_bad_files: bool = False,
        max_items: int | None = None,
    ) -> None:
        super().__init__(image_size, fit, val_fraction, seed, skip_bad_files, max_items)
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
        self.name = name
        self.dataset_name = f"folder dataset {name!r}"
        self.root = resolve_root(root, name, self.dataset_name, LAYOUT, OBTAIN)
        require(self.root / "images", self.dataset_name, LAYOUT, OBTAIN)
        available = tuple(t for t, folder in TASK_FOLDERS.items() if (self.root / folder).is_dir())
        if tasks is not None:
            for task in tasks:
                if task not in TASK_FOLDERS:
                    raise ValueError(f"Unknown task {task!r} for a folder dataset; valid: {list(TASK_FOLDERS)}.")
                require(self.root / TASK_FOLDERS[task], self.dataset_name, LAYOUT, OBTAIN)
        self.tasks = self._select_tasks(available, tasks)
        self.depth_png_scale = float(depth_png_scale)
        self.normals_axes = normals_axes
        self.axes = parse_axes(normals_axes)
        self.test_fraction = float(test_fraction)
        classes = self.root / classes_file
        if classes.is_file():
            self.class_names = tuple(line.strip() for line in classes.read_text().splitlines() if line.strip())
            if not self.class_names:
                raise CorruptFileError(classes, "it lists no class names (one per line expected)")
            self.num_classes: int | None = len(self.class_names)
        elif "segmentation" in self.tasks:
            raise DatasetNotFoundError(self.dataset_name, classes, LAYOUT, OBTAIN, hint="segmentation/ needs a class list.")
        else:
            self.class_names, self.num_classes = (), None
        if self.num_classes is not None and self.num_classes > IGNORE_INDEX:
            raise CorruptFileError(classes, f"it lists {self.num_classes} classes; at most {IGNORE_INDEX} are supported")
        self.mapper = LabelMapper(np.arange(self.num_classes or 0), f"{classes_file} ({self.num_classes} classes)")
        self.images = _index(self.root / "images", IMAGE_SUFFIXES)
        if not self.images:
            raise DatasetNotFoundError(self.dataset_name, self.root / "images" / "<name>.png", LAYOUT, OBTAIN)
        self.labels = {t: _index(self.root / TASK_FOLDERS[t], LABEL_SUFFIXES[t]) for t in self.tasks}
        self.missing: dict[str, int] = {t: 0 for t in self.tasks}
        self._missing_warned = False
        self._splits = self._make_splits()

    # -- splits ---------------------------------------------------------------------------------------------
    def _split_file(self, split: str) -> list[str] | None:
        path = self.root / "splits" / f"{split}.txt"
        if not path.is_file():
            return None
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        unknown = [n for n in names if n not in self.images]
        if unknown:
            raise CorruptFileError(path, f"it lists {len(unknown)} name(s) with no image in images/, e.g. {unknown[0]!r}")
        return names

    def _make_splits(self) -> dict[str, list[str]]:
        names = sorted(self.images)
        test = self._split_file("test")
        if test is None:
            test = [names[i] for i in seeded_subset(len(names), self.test_fraction, self.seed)]
        rest = [n for n in names if n not in set(test)] or names
        val = self._split_file("val")
        if val is None:
            val = [rest[i] for i in seeded_subset(len(rest), self.val_fraction, self.seed + 1)]
        train = self._split_file("train")
        if train is None:
            taken = set(test) | set(val)
            train = [n for n in names if n not in taken] or rest
        return {"train": train, "val": val, "test": test}

    def items(self, split: str) -> list[str]:
        return list(self._splits[split])

    # -- loading --------------------------------------------------------------------------------------------
    def load(self, name: str) -> dict[str, Any]:
        image = read_image(self.images[name])
        hw = image.shape[:2]
        sample: dict[str, Any] = {"image": image}
        for task in self.tasks:
            path = self.labels[task].get(name)
            if path is None:
                sample[task] = self._invalid(task, hw, name)
                continue
            value = getattr(self, f"_read_{task}")(path)
            check_shape(path, value, hw, task)
            sample[task] = value
        return sample

    def _invalid(self, task: str, hw: tuple[int, int], name: str) -> np.ndarray:
        self.missing[task] += 1
        if not self._missing_warned:
            self._missing_warned = True
            warnings.warn(
                f"{self.dataset_name}: sample {name!r} has no {task} file in {self.root / TASK_FOLDERS[task]}; its "
                f"{task} target is all-invalid. Further missing label files are counted in FolderDomain.missing "
                "without another warning.",
                UserWarning,
                stacklevel=3,
            )
        if task == "segmentation":
            return np.full(hw, IGNORE_INDEX, dtype=np.int64)
        return np.zeros((*hw, 3) if task == "normals" else hw, dtype=np.float32)

    def _read_depth(self, path: Path) -> np.ndarray:
        if path.suffix == ".npy":
            depth = read_npy(path).astype(np.float32)
            depth = depth[..., 0] if depth.ndim == 3 and depth.shape[2] == 1 else depth
        else:
            raw = read_png(path)
            if raw.dtype != np.uint16:
                raise CorruptFileError(path, f"depth PNGs must be 16-bit (millimetres), got {raw.dtype}")
            depth = first_channel(raw).astype(np.float32) * np.float32(self.depth_png_scale)
        if depth.ndim != 2:
            raise CorruptFileError(path, f"expected an [H, W] depth map, got shape {depth.shape}")
        return np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)

    def _read_normals(self, path: Path) -> np.ndarray:
        if path.suffix == ".npy":
            normals = read_npy(path).astype(np.float32)
            zero = ~np.isfinite(normals).all(-1) if normals.ndim == 3 else None
        else:
            raw = read_png(path)
            if raw.ndim != 3 or raw.shape[2] < 3:
                raise CorruptFileError(path, "normal PNGs must be RGB = (n + 1) / 2 * 255")
            raw = raw[..., :3]
            zero = (raw == 0).all(-1)
            top = 65535.0 if raw.dtype == np.uint16 else 255.0
            normals = raw.astype(np.float32) / np.float32(top) * 2.0 - 1.0
        if normals.ndim != 3 or normals.shape[2] != 3:
            raise CorruptFileError(path, f"expected [H, W, 3] normals, got shape {normals.shape}")
        normals = np.nan_to_num(normals)
        if zero is not None:
            normals[zero] = 0.0
        return convert_normals(normals, self.axes)

    def _read_segmentation(self, path: Path) -> np.ndarray:
        labels = read_png(path)
        if labels.ndim == 3:
            if not (labels[..., :1] == labels[..., : min(3, labels.shape[2])]).all():
                raise CorruptFileError(path, "segmentation PNGs must hold class IDs (grey or palette), not colours")
            labels = labels[..., 0]
        labels = labels.astype(np.int64)
        ignore = labels == IGNORE_INDEX
        mapped = self.mapper(np.where(ignore, 0, labels), path)  # IDs >= num_classes: counted, -> 255
        mapped[ignore] = IGNORE_INDEX
        return mapped

    def describe(self) -> dict:
        return {**super().describe(), "splits": {k: len(v) for k, v in self._splits.items()}}
