"""The common base of the real-dataset domains: output size, fit, seeded validation subset, bad-file policy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..domain import SPLITS, Domain
from .errors import CorruptFileError
from .io import EVAL_RESOLUTIONS, FITS, FileDataset, check_split, image_shape, seeded_subset


class RealDomain(Domain):
    """A :class:`~data_modules.domain.Domain` read from files; subclasses list the items of each split and load one.

    Args (shared by every reader):
        image_size: output ``(height, width)`` (or an int for square); every sample is resized to it
            (:func:`~data_modules.real.io.fit_sample`: area/linear for the image, nearest for every target).
        fit: ``stretch`` (resize to ``image_size``) or ``crop`` (keep the aspect ratio, scale to cover, centre crop).
        val_fraction: size of the seeded validation subset (see each reader for which files it is drawn from).
        seed: seed of that subset.
        skip_bad_files: skip unreadable files (counted and reported with a warning) instead of raising.
        max_items: use only the first ``max_items`` samples of each split (quick runs, debugging); ``None`` = all.
        eval_resolution: where the validation and test labels are scored. ``image_size`` (default): as the model
            sees them, resized with nearest to ``image_size``. ``native``: the val/test samples also carry every dense
            target at its stored size after the reader's own fixed crop (e.g. NYUDv2's valid region), under
            ``native/<task>`` (with ``fit: crop``, the region the image's centre crop keeps, not resampled); the
            predictions are upsampled bilinearly to it before scoring (the AdaptSegNet / ADVENT protocol on
            Cityscapes). Training samples never carry them.
    """

    dataset_name = "dataset"

    def __init__(
        self,
        image_size: int | Sequence[int],
        fit: str = "stretch",
        val_fraction: float = 0.1,
        seed: int = 0,
        skip_bad_files: bool = False,
        max_items: int | None = None,
        eval_resolution: str = "image_size",
    ) -> None:
        self.image_size = image_shape(image_size)
        if fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {fit!r}.")
        if eval_resolution not in EVAL_RESOLUTIONS:
            raise ValueError(f"eval_resolution must be one of {EVAL_RESOLUTIONS}, got {eval_resolution!r}.")
        if not 0.0 < val_fraction <= 1.0:
            raise ValueError(f"val_fraction must be in (0, 1], got {val_fraction}.")
        self.fit = fit
        self.val_fraction = float(val_fraction)
        self.seed = int(seed)
        self.skip_bad_files = bool(skip_bad_files)
        self.max_items = max_items
        self.eval_resolution = eval_resolution
        self._datasets: dict[str, FileDataset] = {}

    # -- to implement ---------------------------------------------------------------------------------------
    def items(self, split: str) -> list[Any]:
        """The items (paths, indices, ...) of ``split``, in a deterministic order."""
        raise NotImplementedError

    def load(self, item: Any) -> dict[str, Any]:
        """The raw sample of one item at its stored size (only ``image`` and the keys in :attr:`tasks`)."""
        raise NotImplementedError

    def check_item(self, item: Any) -> list[tuple[str, str]]:
        """``(path, reason)`` of what is wrong with one item (``umadapt check-data``): by default the
        :class:`~data_modules.real.errors.CorruptFileError` that loading it raises, if any."""
        try:
            self.load(item)
        except CorruptFileError as error:
            return [(error.path, error.problem)]
        return []

    def layout_problems(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of files in the dataset's folders that no sample reads though they look meant to be
        (e.g. a label without its image); reported by ``umadapt check-data``. None by default."""
        return []

    # -- Domain -----------------------------------------------------------------------------------------------
    def dataset(self, split: str) -> FileDataset:
        """The split's dataset (built once per split)."""
        check_split(split, SPLITS)
        if split not in self._datasets:
            items = self.items(split)
            if self.max_items is not None:
                items = items[: self.max_items]
            if not items:
                raise ValueError(
                    f"{self.name}: the {split} split is empty; check the dataset's files under {self.root}."
                )
            native = self.eval_resolution == "native" and split in ("val", "test")
            self._datasets[split] = FileDataset(
                items,
                self.load,
                self.image_size,
                self.fit,
                self.skip_bad_files,
                name=f"{self.name}/{split}",
                native=native,
            )
        return self._datasets[split]

    def describe(self) -> dict:
        return {
            **super().describe(),
            "root": str(getattr(self, "root", "")),
            "num_classes": self.num_classes,
            "fit": self.fit,
            "eval_resolution": self.eval_resolution,
            "val_fraction": self.val_fraction,
            "seed": self.seed,
        }

    def _select_tasks(self, available: Sequence[str], tasks: Sequence[str] | None) -> tuple[str, ...]:
        if tasks is None:
            return tuple(available)
        unknown = [t for t in tasks if t not in available]
        if unknown:
            raise ValueError(f"{self.dataset_name} provides {list(available)}; it cannot provide {unknown} (tasks).")
        return tuple(tasks)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, tasks={list(self.tasks)}, image_size={self.image_size})"


class UnsplitDomain(RealDomain):
    """A dataset without an official split (GTA5, SYNTHIA).

    The usual protocol trains on every image. Here ``train`` = every image (or, with
    ``holdout: true``, every image outside the validation subset), and ``val`` = ``test`` = a seeded subset
    (``val_fraction``) of the images. Without ``holdout`` the source val/test images are also trained on: the source
    metrics then measure the fit to the training data, as in the literature (which reports target metrics only).
    """

    def __init__(self, holdout: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.holdout = bool(holdout)
        self._all: list[Path] | None = None

    def all_images(self) -> list[Path]:
        raise NotImplementedError

    def items(self, split: str) -> list[Path]:
        if self._all is None:
            self._all = self.all_images()
        images = self._all
        held = seeded_subset(len(images), self.val_fraction, self.seed)
        if split in ("val", "test"):
            return [images[i] for i in held]
        if self.holdout:
            keep = np.ones(len(images), dtype=bool)
            keep[held] = False
            return [p for p, k in zip(images, keep) if k]
        return list(images)
