"""Cityscapes (real urban scenes; segmentation and depth from disparity), read exactly as distributed.

Splits (the usual UDA protocol): ``train`` = every image of ``leftImg8bit/train`` (used unlabelled as the target),
``test`` = the official ``val`` split (500 images; the official test labels are not public), ``val`` = a seeded
subset (``val_fraction``) of the training images, for monitoring only.

Depth from disparity (cityscapesScripts' README): a disparity PNG value ``p > 0`` is ``d = (p - 1) / 256`` pixels,
``p = 0`` is invalid; ``depth = baseline * fx / d`` metres with ``baseline`` and ``fx`` from the image's
``camera/*.json``. ``d = 0`` (``p = 1``) and ``p = 0`` give depth 0 (invalid); ``max_depth`` optionally invalidates
farther pixels.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import RealDomain
from .cityscapes_labels import label_id_table
from .errors import CorruptFileError
from .io import LabelMapper, check_shape, first_channel, read_image, read_png, require, resolve_root, seeded_subset

OBTAIN = (
    "https://www.cityscapes-dataset.com/downloads/ (leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip, "
    "disparity_trainvaltest.zip, camera_trainvaltest.zip)"
)
LAYOUT = """\
  <root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png    (segmentation)
  <root>/disparity/<split>/<city>/<city>_<seq>_<frame>_disparity.png       (depth)
  <root>/camera/<split>/<city>/<city>_<seq>_<frame>_camera.json            (depth)
  with <split> in train, val"""


def disparity_to_depth(
    disparity_png: np.ndarray, baseline: float, fx: float, max_depth: float | None = None
) -> np.ndarray:
    """Depth in metres from a Cityscapes disparity PNG's raw values; 0 where invalid."""
    p = np.asarray(disparity_png)
    valid = p > 1  # p = 0: invalid; p = 1: d = 0, infinitely far
    depth = np.zeros(p.shape, dtype=np.float32)
    # depth = baseline * fx / d with d = (p - 1) / 256
    depth[valid] = np.float32(baseline * fx * 256.0) / (p[valid].astype(np.float32) - np.float32(1.0))
    if max_depth is not None:
        depth[depth > max_depth] = 0.0
    return depth


def read_camera(path: Path) -> tuple[float, float]:
    """``(baseline, fx)`` from a Cityscapes ``*_camera.json``."""
    try:
        camera = json.loads(Path(path).read_text())
        return float(camera["extrinsic"]["baseline"]), float(camera["intrinsic"]["fx"])
    except FileNotFoundError:
        raise CorruptFileError(path, "the file does not exist (listed by the dataset's layout but missing)") from None
    except (ValueError, KeyError, TypeError) as error:
        raise CorruptFileError(
            path, f"not a Cityscapes camera file with extrinsic.baseline and intrinsic.fx ({error!r})"
        ) from None


class Cityscapes(RealDomain):
    """Cityscapes as a :class:`~data_modules.domain.Domain`: segmentation (19/16/13 classes) and depth.

    Args:
        root: default ``$DATA_ROOT/Cityscapes``.
        num_classes: 19 (GTA5 -> Cityscapes), 16 or 13 (SYNTHIA -> Cityscapes protocols).
        tasks: subset of ``("segmentation", "depth")``; default both. Only the folders of the chosen tasks are needed.
        test_split: the folder used as the test split (``val``: the official validation set).
        max_depth: invalidate depths beyond it (metres); ``None`` keeps every valid disparity.
        image_size: default ``(512, 1024)``, half resolution as in AdaptSegNet / ADVENT.
        eval_resolution: ``native`` scores the val/test labels (and depths) at their stored 1024x2048 with the
            predictions upsampled bilinearly, as AdaptSegNet / ADVENT do (the shipped Cityscapes configs set it);
            ``image_size`` (default) scores them resized (nearest) to ``image_size``.
        fit, val_fraction, seed, skip_bad_files, max_items: see :class:`~data_modules.real.base.RealDomain`.
    """

    dataset_name = "Cityscapes"

    def __init__(
        self,
        root: str | None = None,
        num_classes: int = 19,
        tasks: list[str] | None = None,
        image_size: int | Sequence[int] = (512, 1024),
        fit: str = "stretch",
        test_split: str = "val",
        max_depth: float | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        skip_bad_files: bool = False,
        max_items: int | None = None,
        eval_resolution: str = "image_size",
    ) -> None:
        super().__init__(image_size, fit, val_fraction, seed, skip_bad_files, max_items, eval_resolution)
        self.root = resolve_root(root, "Cityscapes", self.dataset_name, LAYOUT, OBTAIN)
        self.tasks = self._select_tasks(("segmentation", "depth"), tasks)
        table, names = label_id_table(num_classes)
        self.mapper = LabelMapper(table, f"Cityscapes label ID -> {num_classes} classes")
        self.num_classes, self.class_names = num_classes, names
        self.test_split = test_split
        self.max_depth = max_depth
        self.name = f"cityscapes-{num_classes}"
        folders = ["leftImg8bit"]
        if "segmentation" in self.tasks:
            folders.append("gtFine")
        if "depth" in self.tasks:
            folders += ["disparity", "camera"]
        for split in dict.fromkeys(("train", test_split)):
            for folder in folders:
                require(self.root / folder / split, self.dataset_name, LAYOUT, OBTAIN)

    def _images(self, split: str) -> list[Path]:
        folder = self.root / "leftImg8bit" / split
        images = sorted(folder.glob("*/*_leftImg8bit.png"))
        if not images:
            raise CorruptFileError(folder, "it holds no <city>/*_leftImg8bit.png images")
        return images

    def items(self, split: str) -> list[Path]:
        if split == "test":
            return self._images(self.test_split)
        train = self._images("train")
        if split == "val":
            return [train[i] for i in seeded_subset(len(train), self.val_fraction, self.seed)]
        return train

    def companion(self, image: Path, folder: str, suffix: str) -> Path:
        """The file of ``folder`` (gtFine, disparity, camera) that belongs to the image ``image``."""
        split, city = image.parent.parent.name, image.parent.name
        stem = image.name[: -len("_leftImg8bit.png")]
        return self.root / folder / split / city / f"{stem}_{suffix}"

    def load(self, image_path: Path) -> dict[str, Any]:
        image = read_image(image_path)
        sample: dict[str, Any] = {"image": image}
        if "segmentation" in self.tasks:
            path = self.companion(image_path, "gtFine", "gtFine_labelIds.png")
            labels = first_channel(read_png(path))
            check_shape(path, labels, image.shape[:2], "label map")
            sample["segmentation"] = self.mapper(labels, path)
        if "depth" in self.tasks:
            path = self.companion(image_path, "disparity", "disparity.png")
            disparity = first_channel(read_png(path))
            check_shape(path, disparity, image.shape[:2], "disparity map")
            baseline, fx = read_camera(self.companion(image_path, "camera", "camera.json"))
            sample["depth"] = disparity_to_depth(disparity, baseline, fx, self.max_depth)
        return sample
