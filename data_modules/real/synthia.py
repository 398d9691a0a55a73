"""SYNTHIA-RAND-CITYSCAPES (Ros et al., CVPR 2016): a synthetic urban source for Cityscapes; segmentation, depth.

SYNTHIA has no official split; the usual protocol trains on every image. Here ``train`` = every image (or, with
``holdout: true``, every image outside the validation subset), and ``val`` = ``test`` = a seeded subset
(``val_fraction``) of the images. Without ``holdout`` the source val/test images are also trained on: the source
metrics then measure the fit to the training data, as in the literature (which reports target metrics only).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import UnsplitDomain
from .cityscapes_labels import protocol
from .errors import CorruptFileError
from .io import LabelMapper, check_shape, first_channel, lookup_table, read_image, read_png, require, resolve_root

OBTAIN = "https://synthia-dataset.net/downloads/ (SYNTHIA-RAND-CITYSCAPES, Ros et al., CVPR 2016)"
LAYOUT = """\
  <root>/RGB/0000000.png ...          RGB frames (1280x760)
  <root>/GT/LABELS/0000000.png ...    16-bit PNGs, SYNTHIA class ID in the first channel  (segmentation)
  <root>/Depth/0000000.png ...        16-bit depth PNGs (or Depth/Depth/...)               (depth)"""

#: SYNTHIA class ID -> Cityscapes training ID (the standard mapping of AdaptSegNet, ADVENT, DADA, ...). SYNTHIA's
#: IDs: 0 void, 1 sky, 2 building, 3 road, 4 sidewalk, 5 fence, 6 vegetation, 7 pole, 8 car, 9 traffic sign,
#: 10 pedestrian, 11 bicycle, 12 motorcycle, 13 parking-slot, 14 road-work, 15 traffic light, 16 terrain, 17 rider,
#: 18 truck, 19 bus, 20 train, 21 wall, 22 lanemarking (0, 13, 14, 22 -> ignore).
SYNTHIA_TO_TRAIN_ID: dict[int, int] = {
    3: 0,
    4: 1,
    2: 2,
    21: 3,
    5: 4,
    7: 5,
    15: 6,
    9: 7,
    6: 8,
    16: 9,
    1: 10,
    10: 11,
    17: 12,
    8: 13,
    18: 14,
    19: 15,
    20: 16,
    12: 17,
    11: 18,
}
SYNTHIA_NUM_IDS = 23


def synthia_table(num_classes: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(table, names)``: ``table[synthia_id]`` (0..22) is the protocol's class index or 255."""
    remap, names = protocol(num_classes)
    train_ids = lookup_table(SYNTHIA_TO_TRAIN_ID, SYNTHIA_NUM_IDS)
    return np.where(train_ids < 255, remap[np.minimum(train_ids, 255)], 255), names


class SynthiaRandCityscapes(UnsplitDomain):
    """SYNTHIA-RAND-CITYSCAPES as a source for Cityscapes: segmentation (16- or 13-class protocol) and depth.

    Labels: the 16-bit ``GT/LABELS`` PNGs hold the SYNTHIA class ID in their first channel (R in file order; OpenCV
    would call it channel 2), mapped with :data:`SYNTHIA_TO_TRAIN_ID` and the protocol. Depth: the first channel
    of the 16-bit ``Depth`` PNGs times ``depth_scale`` metres per unit (default 0.01: centimetres, as the dataset's
    README states; check one image of your copy, e.g. the road a few metres ahead, if in doubt); 0 = invalid.

    Args:
        root: default ``$DATA_ROOT/RAND_CITYSCAPES`` (the folder name of the official archive).
        num_classes: 16 or 13 (the SYNTHIA -> Cityscapes protocols; 19 is accepted, with 3 classes never present).
        tasks: subset of ``("segmentation", "depth")``; default both.
        depth_scale: metres per depth PNG unit.
        image_size: default ``(512, 1024)``; with ``fit: crop`` the 1280x760 frames keep their aspect ratio.
        eval_resolution: ``native``: the val/test labels and depths at the frames' 1280x760 (with ``fit: crop`` the
            region the image's centre crop keeps), scored with upsampled predictions.
        holdout, fit, val_fraction, seed, skip_bad_files, max_items: see :class:`GTA5`.
    """

    dataset_name = "SYNTHIA-RAND-CITYSCAPES"

    def __init__(
        self,
        root: str | None = None,
        num_classes: int = 16,
        tasks: list[str] | None = None,
        depth_scale: float = 0.01,
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
        self.root = resolve_root(root, "RAND_CITYSCAPES", self.dataset_name, LAYOUT, OBTAIN)
        self.tasks = self._select_tasks(("segmentation", "depth"), tasks)
        require(self.root / "RGB", self.dataset_name, LAYOUT, OBTAIN)
        if "segmentation" in self.tasks:
            require(self.root / "GT" / "LABELS", self.dataset_name, LAYOUT, OBTAIN)
        self.depth_dir = (
            self.root / "Depth" / "Depth" if (self.root / "Depth" / "Depth").is_dir() else self.root / "Depth"
        )
        if "depth" in self.tasks:
            require(self.depth_dir, self.dataset_name, LAYOUT, OBTAIN)
        table, names = synthia_table(num_classes)
        self.mapper = LabelMapper(table, f"SYNTHIA class ID -> {num_classes} classes")
        self.num_classes, self.class_names = num_classes, names
        self.depth_scale = float(depth_scale)
        self.name = f"synthia-{num_classes}"

    def all_images(self) -> list[Path]:
        images = sorted((self.root / "RGB").glob("*.png"))
        if not images:
            raise CorruptFileError(self.root / "RGB", "it holds no *.png images")
        return images

    def load(self, image_path: Path) -> dict[str, Any]:
        image = read_image(image_path)
        sample: dict[str, Any] = {"image": image}
        if "segmentation" in self.tasks:
            path = self.root / "GT" / "LABELS" / image_path.name
            labels = first_channel(read_png(path))
            check_shape(path, labels, image.shape[:2], "label map")
            sample["segmentation"] = self.mapper(labels, path)
        if "depth" in self.tasks:
            path = self.depth_dir / image_path.name
            raw = first_channel(read_png(path))
            check_shape(path, raw, image.shape[:2], "depth map")
            sample["depth"] = raw.astype(np.float32) * np.float32(self.depth_scale)
        return sample
