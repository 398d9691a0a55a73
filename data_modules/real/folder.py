"""A plain folder format for your own data: simulator renders, or photos from your own camera.

Point a config at a folder laid out in one of two ways and it becomes a :class:`~data_modules.domain.Domain`, so
you can adapt your simulator to your camera without writing code (see ``docs/real_datasets.md`` and the configs in
``experiments/own_data/``). Dense tasks (``layout: dense``)::

    <root>/
      images/<name>.png|.jpg            RGB (8 or 16 bit); <name> pairs every file of one sample
      depth/<name>.png                  16-bit PNG, millimetres (depth_png_scale), 0 = invalid  -- or --
      depth/<name>.npy                  float [H, W] metres; 0, negative or non-finite = invalid
      normals/<name>.png                RGB = (n + 1) / 2 * 255 (8 bit; 16 bit: * 65535); all-zero = invalid  -- or --
      normals/<name>.npy                float [H, W, 3] unit vectors; zero = invalid
      segmentation/<name>.png           class IDs (8 or 16 bit grey, or palette indices); 255 = ignore
      classes.txt                       one class name per line; line k (0-based) names class ID k
      splits/train.txt, val.txt, test.txt   optional: one <name> per line

Classification (``layout: classes``, the ImageFolder layout; task ``label``)::

    <root>/
      <class>/<image>.jpg|.jpeg|.png|.bmp   one folder per class; the classes are the sorted folder names
      classes.txt                       optional: the classes in order (for a domain that lacks some class folders)
      splits/train.txt, val.txt, test.txt   optional: one <class>/<image file> per line

``layout: auto`` (the default) reads the dense layout when ``images/`` exists, else the class folders, and says so
in its errors. In the dense layout, every subfolder but ``images/`` is optional; the domain's tasks are the
subfolders present (or the ``tasks`` you list). Normals are expected in umadapt's camera frame (x right, y down,
z forward, pointing towards the camera); ``normals_axes`` converts another frame, e.g. ``"x,-y,-z"`` for
OpenGL/Blender camera space (x right, y up, z backward). A sample whose label file is missing gets an all-invalid
target for that task (depth 0, normals 0, segmentation 255), counted in :attr:`FolderDomain.missing` and reported
once, so a real set can be annotated only partly (e.g. test images only; unlabelled target training images never
need labels).

Splits (both layouts): a ``splits/<split>.txt`` file wins. Otherwise ``test`` is a seeded ``test_fraction`` of the
images, ``val`` a seeded ``val_fraction`` of the rest, and ``train`` what remains (disjoint). An unreadable or
inconsistent file raises :class:`~data_modules.real.errors.CorruptFileError` saying to fix that file;
``umadapt check-data`` lists every such file of a config at once.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umadapt.samples import IGNORE_INDEX

from .base import RealDomain
from .errors import OWN_DATA_FIX, CorruptFileError, DatasetNotFoundError
from .io import (
    LabelMapper,
    check_shape,
    first_channel,
    read_image,
    read_npy,
    read_png,
    require,
    resolve_root,
    seeded_subset,
)
from .nyud import convert_normals, parse_axes
from .office import class_folder_items, class_folders, load_class_item

OBTAIN = "your own data, laid out as documented in data_modules/real/folder.py and docs/real_datasets.md"
LAYOUT = """\
  <root>/images/<name>.png|.jpg
  <root>/depth/<name>.png (16-bit mm) | <name>.npy (metres)       optional
  <root>/normals/<name>.png ((n+1)/2*255) | <name>.npy            optional
  <root>/segmentation/<name>.png (class IDs, 255 = ignore)        optional, needs classes.txt
  <root>/classes.txt                                              one class name per line
  <root>/splits/{train,val,test}.txt                              optional, one <name> per line"""
CLASSES_LAYOUT = """\
  <root>/<class>/<image>.jpg|.png                                 one folder per class (task label)
  <root>/classes.txt                                              optional: classes in order (default: sorted folders)
  <root>/splits/{train,val,test}.txt                              optional, one <class>/<image file> per line"""
LAYOUTS = {
    "dense": LAYOUT,
    "classes": CLASSES_LAYOUT,
    "auto": f"dense tasks (layout: dense):\n{LAYOUT}\nor classification (layout: classes):\n{CLASSES_LAYOUT}",
}
RESERVED = ("splits",)
"""Folder names that are never classes in the classes layout."""

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
        layout: ``dense`` (``images/`` + task folders), ``classes`` (``<class>/<image>``, task ``label``) or
            ``auto``: ``dense`` when ``images/`` exists, else ``classes``.
        tasks: dense layout: which of ``depth``, ``normals``, ``segmentation`` to provide (default: every one whose
            folder exists); classes layout: ``[label]`` (the default).
        depth_png_scale: metres per unit of 16-bit depth PNGs (default 0.001: millimetres).
        normals_axes: the frame of the stored normals, as in :class:`~data_modules.real.nyud.NYUDv2MTAN`
            (default ``"x,y,z"``: already umadapt's).
        classes_file: the class list, relative to ``root`` (needed by segmentation; optional for classes).
        test_fraction: share of the images held out as the test split when ``splits/test.txt`` is absent.
        eval_resolution: ``native``: the val/test labels at each file's own size (with ``fit: crop`` the region the
            image's centre crop keeps), scored with upsampled predictions.
        image_size, fit, val_fraction, seed, skip_bad_files, max_items: see :class:`~data_modules.real.base.RealDomain`.
    """

    dataset_name = "folder"

    def __init__(
        self,
        root: str | None = None,
        name: str = "folder",
        layout: str = "auto",
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
        eval_resolution: str = "image_size",
    ) -> None:
        super().__init__(image_size, fit, val_fraction, seed, skip_bad_files, max_items, eval_resolution)
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}.")
        self.name = name
        self.dataset_name = f"folder dataset {name!r}"
        self.root = resolve_root(root, name, self.dataset_name, LAYOUTS[layout], OBTAIN)
        self.layout = self._detect_layout(layout)
        self.depth_png_scale = float(depth_png_scale)
        self.normals_axes = normals_axes
        self.axes = parse_axes(normals_axes)
        self.test_fraction = float(test_fraction)
        self.images: dict[str, Path] = {}
        self.labels: dict[str, dict[str, Path]] = {}
        self.class_of: dict[str, int] = {}
        if self.layout == "classes":
            self._init_classes(tasks, layout, self.root / classes_file)
        else:
            self._init_dense(tasks, classes_file)
        self.missing: dict[str, int] = {t: 0 for t in self.labels}
        self._missing_warned = False
        self._splits = self._make_splits()

    def _detect_layout(self, layout: str) -> str:
        if layout != "auto":
            return layout
        if (self.root / "images").is_dir():
            return "dense"
        if class_folders(self.root, (*RESERVED, *TASK_FOLDERS)):
            return "classes"
        raise DatasetNotFoundError(
            self.dataset_name,
            self.root / "images",
            LAYOUTS["auto"],
            OBTAIN,
            hint="layout: auto found neither images/ (dense tasks) nor class folders (classification) there; "
            "lay the folder out as one of these, or set layout: dense or layout: classes to be told what is missing.",
        )

    def _read_classes(self, path: Path) -> tuple[str, ...]:
        names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
        if not names:
            raise CorruptFileError(path, "it lists no class names (one per line expected)", OWN_DATA_FIX)
        return names

    def _init_dense(self, tasks: list[str] | None, classes_file: str) -> None:
        require(self.root / "images", self.dataset_name, LAYOUT, OBTAIN)
        available = tuple(t for t, folder in TASK_FOLDERS.items() if (self.root / folder).is_dir())
        if tasks is not None:
            for task in tasks:
                if task not in TASK_FOLDERS:
                    raise ValueError(
                        f"Unknown task {task!r} for a folder dataset in the dense layout; valid: {list(TASK_FOLDERS)} "
                        "(classification data takes layout: classes)."
                    )
                require(self.root / TASK_FOLDERS[task], self.dataset_name, LAYOUT, OBTAIN)
        self.tasks = self._select_tasks(available, tasks)
        classes = self.root / classes_file
        if classes.is_file():
            self.class_names = self._read_classes(classes)
            self.num_classes: int | None = len(self.class_names)
        elif "segmentation" in self.tasks:
            hint = "segmentation/ needs a class list."
            raise DatasetNotFoundError(self.dataset_name, classes, LAYOUT, OBTAIN, hint=hint)
        else:
            self.class_names, self.num_classes = (), None
        if self.num_classes is not None and self.num_classes > IGNORE_INDEX:
            problem = f"it lists {self.num_classes} classes; at most {IGNORE_INDEX} are supported"
            raise CorruptFileError(classes, problem, OWN_DATA_FIX)
        self.mapper = LabelMapper(np.arange(self.num_classes or 0), f"{classes_file} ({self.num_classes} classes)")
        self.images = _index(self.root / "images", IMAGE_SUFFIXES)
        if not self.images:
            raise DatasetNotFoundError(self.dataset_name, self.root / "images" / "<name>.png", LAYOUT, OBTAIN)
        self.labels = {t: _index(self.root / TASK_FOLDERS[t], LABEL_SUFFIXES[t]) for t in self.tasks}

    def _init_classes(self, tasks: list[str] | None, layout: str, classes: Path) -> None:
        how = "read as class folders (layout: auto found no images/ folder)" if layout == "auto" else "layout: classes"
        if tasks is not None and list(tasks) != ["label"]:
            raise ValueError(
                f"{self.dataset_name} at {self.root} is {how}, which provides the task label only, not {list(tasks)}. "
                "Dense tasks need the dense layout (images/ and depth/, normals/, segmentation/ folders)."
            )
        self.tasks = ("label",)
        folders = class_folders(self.root, RESERVED)
        if classes.is_file():
            self.class_names = self._read_classes(classes)
            unlisted = sorted(set(folders) - set(self.class_names))
            if unlisted:
                problem = f"it does not list the class folder(s) {unlisted[:5]}; list every class, one per line"
                raise CorruptFileError(classes, problem, OWN_DATA_FIX)
        else:
            self.class_names = folders
        self.num_classes = len(self.class_names)
        for path, label in class_folder_items(self.root, self.class_names):
            name = path.relative_to(self.root).as_posix()
            self.images[name], self.class_of[name] = path, label
        if not self.images:
            raise DatasetNotFoundError(
                self.dataset_name,
                self.root / "<class>" / "<image>.jpg",
                CLASSES_LAYOUT,
                OBTAIN,
                hint=f"It is {how}; found {len(folders)} class folder(s) {list(folders[:5])}, but no images in them.",
            )

    # -- splits ---------------------------------------------------------------------------------------------
    def _split_file(self, split: str) -> list[str] | None:
        path = self.root / "splits" / f"{split}.txt"
        if not path.is_file():
            return None
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        unknown = [n for n in names if n not in self.images]
        if unknown:
            where = "<class>/<image file> under the root" if self.layout == "classes" else "images/<name>.png|.jpg"
            problem = f"it lists {len(unknown)} name(s) with no image ({where}), e.g. {unknown[0]!r}"
            raise CorruptFileError(path, problem, OWN_DATA_FIX)
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
        try:
            if self.layout == "classes":
                return load_class_item((self.images[name], self.class_of[name]))
            return self._load_dense(name)
        except CorruptFileError as error:
            raise error.with_fix(OWN_DATA_FIX) from None  # the user's own file: fix it, nothing to re-download

    def layout_problems(self) -> list[tuple[str, str]]:
        """Label files whose image is missing (no sample reads them: usually a typo in a name)."""
        return [
            (str(path), f"a {task} file without an image images/{name}.png|.jpg (no sample uses it; check its name)")
            for task, files in self.labels.items()
            for name, path in sorted(files.items())
            if name not in self.images
        ]

    def check_item(self, name: str) -> list[tuple[str, str]]:
        """Every bad file of one sample (its image and each label file), not only the first."""
        if self.layout == "classes":
            return super().check_item(name)
        problems: list[tuple[str, str]] = []
        self._load_dense(name, problems)
        return problems

    def _load_dense(self, name: str, problems: list[tuple[str, str]] | None = None) -> dict[str, Any]:
        """The sample; with ``problems``, each bad file is appended there instead of raising at the first."""
        sample: dict[str, Any] = {}
        for key, path in (("image", self.images[name]), *((t, self.labels[t].get(name)) for t in self.tasks)):
            try:
                if key == "image":
                    sample[key] = read_image(path)
                elif path is None:
                    if "image" in sample:
                        sample[key] = self._invalid(key, sample["image"].shape[:2], name)
                else:
                    value = getattr(self, f"_read_{key}")(path)
                    if "image" in sample:
                        check_shape(path, value, sample["image"].shape[:2], key)
                    sample[key] = value
            except CorruptFileError as error:
                if problems is None:
                    raise
                problems.append((error.path, error.problem))
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
        return {**super().describe(), "layout": self.layout, "splits": {k: len(v) for k, v in self._splits.items()}}
