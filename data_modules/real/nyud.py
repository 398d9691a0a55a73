"""NYU Depth v2 (indoor; depth, surface normals, segmentation) in its two common distributions.

* :class:`NYUDv2`: the official labelled file ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5, read with h5py) and
  the official 795/654 split ``splits.mat`` (``trainNdxs``/``testNdxs``, 1-based). Depth and segmentation (40 or
  13 classes, mapped with :mod:`data_modules.real.nyud_tables`).
* :class:`NYUDv2MTAN`: the preprocessed multi-task format of the MTAN and LibMTL benchmarks (per-image ``.npy``:
  288x384 image, 13-class labels, depth, normals). Depth, normals and segmentation.

Splits (both): ``train`` = the official 795 training images, ``test`` = the official 654 test images, ``val`` = a
seeded subset (``val_fraction``) of the training images. The validation images are also trained on (the official
split has no validation set); they serve monitoring only, and checkpoints are never chosen by them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umadapt.samples import IGNORE_INDEX

from .base import RealDomain
from .errors import CorruptFileError, DatasetNotFoundError
from .io import LabelMapper, check_shape, read_npy, require, resolve_root, seeded_subset
from .nyud_tables import CLASSES_13, CLASSES_40, MAP_40_TO_13, MAP_894_TO_40

OBTAIN = (
    "https://cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html (the 'Labeled dataset' and the train/test split file)"
)
MAT_LAYOUT = """\
  <root>/nyu_depth_v2_labeled.mat   the official labelled file (MATLAB v7.3 / HDF5: images, depths, labels)
  <root>/splits.mat                 the official split (trainNdxs: 795, testNdxs: 654; 1-based indices)"""
MTAN_OBTAIN = (
    "the preprocessed NYUv2 of MTAN (github.com/lorenmt/mtan, 'nyuv2.zip') or LibMTL (same files); "
    "the test images are in val/ (or test/)"
)
MTAN_LAYOUT = """\
  <root>/train/image/0.npy ...   float32 [288, 384, 3] in [0, 1]
  <root>/train/label/0.npy ...   [288, 384] 13-class labels 0..12, -1 = unlabelled
  <root>/train/depth/0.npy ...   float32 [288, 384, 1] metres, 0 = invalid
  <root>/train/normal/0.npy ...  float32 [288, 384, 3] unit normals (NYU toolbox frame: x right, y up, z forward)
  <root>/val/...  (or test/...)  the 654 test images, same layout"""

#: Silberman's toolbox marks the valid region of the 480x640 images as rows 45..471, columns 41..601 (1-based,
#: ``get_projection_mask``); outside it the RGB/depth registration leaves a blank border.
NYU_VALID_CROP = (44, 471, 40, 601)


def class_table(num_classes: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """Lookup table raw NYU id (0..894) -> 0-based class (255 for unlabelled), and the class names."""
    table = np.full(len(MAP_894_TO_40) + 1, IGNORE_INDEX, dtype=np.int64)
    c40 = np.asarray(MAP_894_TO_40, dtype=np.int64)
    if num_classes == 40:
        table[1:] = c40 - 1
        return table, CLASSES_40
    if num_classes == 13:
        table[1:] = np.asarray(MAP_40_TO_13, dtype=np.int64)[c40 - 1] - 1
        return table, CLASSES_13
    raise ValueError(f"NYUDv2 num_classes must be 40 or 13, got {num_classes}.")


def read_split_indices(path: Path) -> dict[str, np.ndarray]:
    """``{"train": ..., "test": ...}`` 0-based indices from the official ``splits.mat`` (MATLAB v5 or v7.3)."""
    try:
        from scipy.io import loadmat

        data = loadmat(str(path))
        train, test = data["trainNdxs"], data["testNdxs"]
    except NotImplementedError:  # a v7.3 (HDF5) file
        import h5py

        with h5py.File(path, "r") as handle:
            train, test = handle["trainNdxs"][()], handle["testNdxs"][()]
    except KeyError as error:
        raise CorruptFileError(path, f"it has no {error} variable (expected trainNdxs and testNdxs)") from None
    except (OSError, ValueError) as error:
        raise CorruptFileError(path, f"not a readable MATLAB file ({error})") from None
    out = {
        "train": np.asarray(train).astype(np.int64).ravel() - 1,
        "test": np.asarray(test).astype(np.int64).ravel() - 1,
    }
    if any((v < 0).any() for v in out.values()):
        raise CorruptFileError(path, "it holds index 0 or negative indices; the official indices are 1-based")
    return out


class NYUDv2(RealDomain):
    """NYU Depth v2 from the official ``nyu_depth_v2_labeled.mat`` + ``splits.mat``; depth and segmentation.

    In h5py the MATLAB arrays appear transposed: ``images`` is ``(N, 3, W, H)``, ``depths`` and ``labels`` are
    ``(N, W, H)``; samples are transposed back to ``[H, W, ...]``. Depth is in metres (the in-painted ``depths``).

    Args:
        root: the folder holding the two files; default ``$DATA_ROOT/NYUDv2``.
        num_classes: 40 (Gupta et al.) or 13 (Couprie et al.) classes.
        tasks: subset of ``("depth", "segmentation")``; default both.
        crop: ``(top, bottom, left, right)`` crop applied before resizing (default: the toolbox's valid region of
            the 480x640 images); ``null`` keeps the whole image.
        eval_resolution: ``native``: the val/test labels at the stored 480x640 scale inside ``crop`` (427x561 with
            the default crop: the monocular depth papers' resolution; their Eigen crop is one row and column smaller),
            scored with upsampled predictions.
        image_size, fit, val_fraction, seed, skip_bad_files, max_items: see :class:`~data_modules.real.base.RealDomain`.
    """

    dataset_name = "NYUDv2"

    def __init__(
        self,
        root: str | None = None,
        num_classes: int = 40,
        tasks: list[str] | None = None,
        image_size: int | Sequence[int] = (288, 384),
        fit: str = "stretch",
        crop: tuple[int, int, int, int] | None = NYU_VALID_CROP,
        val_fraction: float = 0.1,
        seed: int = 0,
        mat_file: str = "nyu_depth_v2_labeled.mat",
        split_file: str = "splits.mat",
        skip_bad_files: bool = False,
        max_items: int | None = None,
        eval_resolution: str = "image_size",
    ) -> None:
        super().__init__(image_size, fit, val_fraction, seed, skip_bad_files, max_items, eval_resolution)
        self.root = resolve_root(root, "NYUDv2", self.dataset_name, MAT_LAYOUT, OBTAIN)
        self.mat_path = require(self.root / mat_file, self.dataset_name, MAT_LAYOUT, OBTAIN, kind="file")
        self.split_path = require(self.root / split_file, self.dataset_name, MAT_LAYOUT, OBTAIN, kind="file")
        table, names = class_table(num_classes)
        self.mapper = LabelMapper(table, f"NYUDv2 894->{num_classes}")
        self.num_classes = num_classes
        self.class_names = names
        self.tasks = self._select_tasks(("depth", "segmentation"), tasks)
        self.crop = None if crop is None else tuple(int(c) for c in crop)
        self.name = f"nyudv2-{num_classes}"
        self.splits = read_split_indices(self.split_path)
        self._count = self._num_images()
        too_large = [int(i) + 1 for v in self.splits.values() for i in v if i >= self._count]
        if too_large:
            raise CorruptFileError(
                self.split_path, f"it lists image {too_large[0]} but {self.mat_path.name} holds {self._count} images"
            )
        self._handle: Any = None
        self._handle_pid: int | None = None

    def _num_images(self) -> int:
        import h5py

        try:
            with h5py.File(self.mat_path, "r") as handle:
                missing = [k for k in ("images", "depths", "labels") if k not in handle]
                if missing:
                    raise CorruptFileError(self.mat_path, f"it has no {missing} dataset(s)")
                return int(handle["images"].shape[0])
        except OSError as error:
            raise CorruptFileError(
                self.mat_path, f"not a readable MATLAB v7.3 (HDF5) file ({error}); the official file is v7.3"
            ) from None

    def _file(self) -> Any:
        """One open h5py file per process (h5py handles do not survive fork/pickling)."""
        import h5py

        if self._handle is None or self._handle_pid != os.getpid():
            self._handle = h5py.File(self.mat_path, "r")
            self._handle_pid = os.getpid()
        return self._handle

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handle"], state["_handle_pid"] = None, None
        return state

    def items(self, split: str) -> list[int]:
        train = self.splits["train"]
        if split == "val":
            return [int(i) for i in train[seeded_subset(len(train), self.val_fraction, self.seed)]]
        return [int(i) for i in self.splits["test" if split == "test" else "train"]]

    def load(self, index: int) -> dict[str, Any]:
        handle = self._file()
        image = np.asarray(handle["images"][index]).transpose(2, 1, 0).astype(np.float32) / np.float32(255.0)
        sample: dict[str, Any] = {"image": image}
        if "depth" in self.tasks:
            sample["depth"] = np.asarray(handle["depths"][index], dtype=np.float32).T.copy()
        if "segmentation" in self.tasks:
            sample["segmentation"] = self.mapper(
                np.asarray(handle["labels"][index]).T, f"{self.mat_path}[labels][{index}]"
            )
        if self.crop is not None:
            top, bottom, left, right = self.crop
            h, w = image.shape[:2]
            if bottom > h or right > w:
                raise ValueError(
                    f"crop {self.crop} does not fit the {h}x{w} images of {self.mat_path}; set crop: null."
                )
            sample = {k: np.ascontiguousarray(v[top:bottom, left:right]) for k, v in sample.items()}
        return sample


class NYUDv2MTAN(RealDomain):
    """NYU Depth v2 in the preprocessed multi-task format of MTAN / LibMTL; depth, normals, 13-class segmentation.

    Conversions applied to reach :mod:`umadapt.samples`' conventions:

    * labels: ``-1`` (unlabelled) -> 255; 0..12 kept (the 13 classes of
      :data:`~data_modules.real.nyud_tables.CLASSES_13`); other values -> 255, counted and reported once.
    * depth ``[H, W, 1]`` -> ``[H, W]`` metres; non-finite or negative -> 0 (invalid).
    * normals: MTAN took them from Eigen & Fergus (ICCV 2015), who computed them from the NYU toolbox's point cloud
      (``rgb_plane2rgb_world``: ``[x, -y, z]``, i.e. x right, **y up**, z forward), oriented towards the camera.
      umadapt's frame is x right, **y down**, z forward, so the conversion is ``(n_x, n_y, n_z) -> (n_x, -n_y, n_z)``
      (``normals_axes="x,-y,z"``). The x sign is confirmed by MTAN's own flip augmentation (it negates channel 0).
      Zero vectors stay zero (invalid). If your copy uses another frame, set ``normals_axes`` (each output axis as a
      signed input axis); the reader warns once when the floor's normals point down after conversion, which means
      the frame is wrong.

    Args:
        root: default ``$DATA_ROOT/NYUDv2_MTAN``; holds ``train/`` and ``val/`` (or ``test/``).
        tasks: subset of ``("depth", "normals", "segmentation")``; default all three.
        normals_axes: see above.
        eval_resolution: ``native`` scores the labels at their stored 288x384, which is the default ``image_size``
            (so it changes nothing there); it matters only with another ``image_size``.
        image_size, fit, val_fraction, seed, skip_bad_files, max_items: see :class:`~data_modules.real.base.RealDomain`.
    """

    dataset_name = "NYUDv2 (MTAN format)"
    FLOOR = CLASSES_13.index("floor")

    def __init__(
        self,
        root: str | None = None,
        tasks: list[str] | None = None,
        image_size: int | Sequence[int] = (288, 384),
        fit: str = "stretch",
        normals_axes: str = "x,-y,z",
        val_fraction: float = 0.1,
        seed: int = 0,
        skip_bad_files: bool = False,
        max_items: int | None = None,
        eval_resolution: str = "image_size",
    ) -> None:
        super().__init__(image_size, fit, val_fraction, seed, skip_bad_files, max_items, eval_resolution)
        self.root = resolve_root(root, "NYUDv2_MTAN", self.dataset_name, MTAN_LAYOUT, MTAN_OBTAIN)
        self.tasks = self._select_tasks(("depth", "normals", "segmentation"), tasks)
        self.num_classes = len(CLASSES_13)
        self.class_names = CLASSES_13
        self.name = "nyudv2-mtan"
        self.axes = parse_axes(normals_axes)
        self.normals_axes = normals_axes
        folders = {"train": self.root / "train"}
        folders["test"] = next((self.root / n for n in ("val", "test") if (self.root / n).is_dir()), self.root / "val")
        self.folders = folders
        for split, folder in folders.items():
            for key in ("image", *(_MTAN_FOLDERS[t] for t in self.tasks)):
                require(folder / key, self.dataset_name, MTAN_LAYOUT, MTAN_OBTAIN)
        self.mapper = LabelMapper(np.arange(13), "NYUv2 13-class (MTAN)")
        self._floor_warned = False

    def _indices(self, folder: Path) -> list[int]:
        names = sorted(p.stem for p in (folder / "image").glob("*.npy"))
        indices = sorted(int(n) for n in names if n.isdigit())
        if not indices:
            raise DatasetNotFoundError(self.dataset_name, folder / "image" / "0.npy", MTAN_LAYOUT, MTAN_OBTAIN)
        return indices

    def items(self, split: str) -> list[tuple[str, int]]:
        if split == "test":
            return [("test", i) for i in self._indices(self.folders["test"])]
        train = self._indices(self.folders["train"])
        if split == "val":
            return [("train", train[i]) for i in seeded_subset(len(train), self.val_fraction, self.seed)]
        return [("train", i) for i in train]

    def load(self, item: tuple[str, int]) -> dict[str, Any]:
        folder, index = self.folders[item[0]], item[1]
        path = folder / "image" / f"{index}.npy"
        image = read_npy(path).astype(np.float32)
        if image.ndim != 3 or image.shape[2] != 3:
            raise CorruptFileError(path, f"expected an [H, W, 3] image, got shape {image.shape}")
        if image.max(initial=0.0) > 1.5:  # stored as 0..255
            image = image / np.float32(255.0)
        hw = image.shape[:2]
        sample: dict[str, Any] = {"image": np.clip(image, 0.0, 1.0)}
        if "segmentation" in self.tasks:
            path = folder / "label" / f"{index}.npy"
            raw = read_npy(path)
            check_shape(path, raw, hw, "labels")
            labels = np.rint(raw).astype(np.int64)
            unlabelled = labels == -1
            labels = self.mapper(np.where(unlabelled, 0, labels), path)  # values outside 0..12: counted, -> 255
            labels[unlabelled] = IGNORE_INDEX
            sample["segmentation"] = labels
        if "depth" in self.tasks:
            path = folder / "depth" / f"{index}.npy"
            depth = read_npy(path).astype(np.float32)
            depth = depth[..., 0] if depth.ndim == 3 else depth
            check_shape(path, depth, hw, "depth")
            sample["depth"] = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
        if "normals" in self.tasks:
            path = folder / "normal" / f"{index}.npy"
            normals = read_npy(path).astype(np.float32)
            check_shape(path, normals, hw, "normals")
            if normals.ndim != 3 or normals.shape[2] != 3:
                raise CorruptFileError(path, f"expected [H, W, 3] normals, got shape {normals.shape}")
            sample["normals"] = convert_normals(normals, self.axes)
            if "segmentation" in sample:
                self._check_floor(sample["normals"], sample["segmentation"], path)
        return sample

    def _check_floor(self, normals: np.ndarray, labels: np.ndarray, path: Path) -> None:
        floor = (labels == self.FLOOR) & (np.abs(normals).sum(-1) > 0)
        if self._floor_warned or floor.sum() < 50:
            return
        if float(normals[floor][:, 1].mean()) > 0.5:  # y down: an upward floor normal has n_y < 0
            self._floor_warned = True
            warnings.warn(
                f"{path}: after converting the normals with normals_axes={self.normals_axes!r} the floor's normals "
                "point down (mean n_y > 0.5 in umadapt's y-down frame); your copy uses another frame. "
                "Set normals_axes (e.g. 'x,y,z') so that floors have n_y < 0.",
                UserWarning,
                stacklevel=2,
            )


_MTAN_FOLDERS = {"depth": "depth", "normals": "normal", "segmentation": "label"}


def parse_axes(spec: str) -> tuple[tuple[int, float], ...]:
    """Parse ``"x,-y,z"``: for each output axis (x, y, z), the input axis it takes and its sign."""
    parts = [p.strip() for p in spec.split(",")]
    out = []
    for part in parts:
        sign = -1.0 if part.startswith("-") else 1.0
        name = part.lstrip("+-")
        if name not in ("x", "y", "z"):
            break
        out.append(("xyz".index(name), sign))
    if len(out) != 3 or len(parts) != 3 or sorted(a for a, _ in out) != [0, 1, 2]:
        raise ValueError(
            f"normals_axes must name each of x, y, z once with an optional sign, e.g. 'x,-y,z'; got {spec!r}."
        )
    return tuple(out)


def convert_normals(normals: np.ndarray, axes: Sequence[tuple[int, float]]) -> np.ndarray:
    """Reorder/flip the components of ``[H, W, 3]`` normals per :func:`parse_axes`; renormalise; zero stays zero."""
    out = np.stack([sign * normals[..., axis] for axis, sign in axes], axis=-1).astype(np.float32)
    norm = np.linalg.norm(out, axis=-1, keepdims=True)
    valid = norm > 1e-6
    return np.where(valid, out / np.where(valid, norm, 1.0), 0.0).astype(np.float32)
