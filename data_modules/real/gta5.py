"""GTA5 ("Playing for Data", Richter et al. ECCV 2016): a synthetic urban source for Cityscapes, segmentation only.

GTA5 has no official split used by the UDA literature, which trains on every image. Here ``train`` = every image (or,
with ``holdout: true``, every image outside the validation subset), and ``val`` = ``test`` = a seeded subset
(``val_fraction``) of the images. Without ``holdout`` the source val/test images are also trained on: the source
metrics then measure the fit to the training data, as in the literature (which reports target metrics only).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import UnsplitDomain
from .cityscapes_labels import label_id_table
from .errors import CorruptFileError
from .io import LabelMapper, first_channel, read_image, read_png, require, resolve_root

OBTAIN = "https://download.visinf.tu-darmstadt.de/data/from_games/ (Richter et al., 'Playing for Data', ECCV 2016)"
LAYOUT = """\
  <root>/images/00001.png ...   RGB frames (1914x1052)
  <root>/labels/00001.png ...   label PNGs holding Cityscapes label IDs (palette indices), same names"""


def _nearest_to(array: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    rows = np.clip(((np.arange(hw[0]) + 0.5) * array.shape[0] / hw[0]).astype(np.int64), 0, array.shape[0] - 1)
    cols = np.clip(((np.arange(hw[1]) + 0.5) * array.shape[1] / hw[1]).astype(np.int64), 0, array.shape[1] - 1)
    return array[rows][:, cols]


class GTA5(UnsplitDomain):
    """GTA5 ("Playing for Data") as a source for Cityscapes: segmentation with Cityscapes label IDs.

    The label PNGs are palette images whose indices are Cityscapes label IDs; they are mapped to the classes of
    the chosen protocol exactly like Cityscapes' (:func:`~data_modules.real.cityscapes_labels.label_id_table`). A
    handful of GTA5 frames have a label map of another size than the image; such a label map is resized to the
    image (nearest) and reported once with a warning.

    Args:
        root: default ``$DATA_ROOT/GTA5``.
        num_classes: 19 (the GTA5 -> Cityscapes protocol), 16 or 13.
        image_size: default ``(512, 1024)``; ``fit: crop`` keeps the 1914x1052 frames' aspect ratio.
        holdout: remove the val/test subset from the training images.
        eval_resolution: ``native``: the val/test labels at the frame's own size (1914x1052 for most frames; with
            ``fit: crop`` the region the image's centre crop keeps), scored with upsampled predictions; frames of
            different sizes in one batch are scored one by one.
        fit, val_fraction, seed, skip_bad_files, max_items: see :class:`~data_modules.real.base.RealDomain`.
    """

    dataset_name = "GTA5"

    def __init__(
        self,
        root: str | None = None,
        num_classes: int = 19,
        image_size: int | Sequence[int] = (512, 1024),
        fit: str = "crop",
        holdout: bool = False,
        val_fraction: float = 0.02,
        seed: int = 0,
        skip_bad_files: bool = False,
        max_items: int | None = None,
        eval_resolution: str = "image_size",
    ) -> None:
        super().__init__(
            holdout,
            image_size=image_size,
            fit=fit,
            val_fraction=val_fraction,
            seed=seed,
            skip_bad_files=skip_bad_files,
            max_items=max_items,
            eval_resolution=eval_resolution,
        )
        self.root = resolve_root(root, "GTA5", self.dataset_name, LAYOUT, OBTAIN)
        for folder in ("images", "labels"):
            require(self.root / folder, self.dataset_name, LAYOUT, OBTAIN)
        table, names = label_id_table(num_classes)
        self.mapper = LabelMapper(table, f"GTA5 (Cityscapes label ID) -> {num_classes} classes")
        self.num_classes, self.class_names = num_classes, names
        self.tasks = ("segmentation",)
        self.name = f"gta5-{num_classes}"
        self.resized_labels: list[str] = []

    def all_images(self) -> list[Path]:
        images = sorted((self.root / "images").glob("*.png"))
        if not images:
            raise CorruptFileError(self.root / "images", "it holds no *.png images")
        return images

    def load(self, image_path: Path) -> dict[str, Any]:
        image = read_image(image_path)
        path = self.root / "labels" / image_path.name
        labels = first_channel(read_png(path))
        if labels.shape != image.shape[:2]:
            self.resized_labels.append(str(path))
            if len(self.resized_labels) == 1:
                warnings.warn(
                    f"{path}: label map {labels.shape} differs from its image {image.shape[:2]}; resized (nearest) to "
                    "the image. Further cases are listed in GTA5.resized_labels without another warning.",
                    UserWarning,
                    stacklevel=2,
                )
            labels = _nearest_to(labels, image.shape[:2])
        return {"image": image, "segmentation": self.mapper(labels, path)}
