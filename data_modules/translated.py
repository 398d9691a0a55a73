"""A domain whose images are another domain's, translated by a trained image translator (CyCADA's task stage): the
labels stay those of the original images, since translation changes the look, not the geometry.

The translations are computed once per split, the first time it is asked for, in batches without gradients (a
SynthRooms split of 2000 64x64 images takes seconds on a CPU), and kept in memory as 8-bit images (3 bytes a pixel:
12 KB per 64x64 image, 1.5 MB per 512x1024 frame); augmentation (flips, crops) is applied afterwards by the data
module, to the translated image and its labels together. For datasets too large for that (GTA5's 25k frames: ~38 GB),
write the translations to disk once with ``umadapt predict`` and read them as a folder dataset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

from data_modules.domain import SPLITS, Domain
from umadapt.pixel import Translator, load_translator
from umadapt.samples import IMAGE

__all__ = ["TranslatedDomain"]


class _TranslatedSplit(Dataset):
    """The raw samples of ``base`` with ``image`` replaced by ``images[index]`` (uint8, served as float32 in [0, 1])."""

    def __init__(self, base: Dataset, images: np.ndarray) -> None:
        self.base = base
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.base[index], IMAGE: self.images[index].astype(np.float32) / 255.0}


class TranslatedDomain(Domain):
    """``domain`` seen through a translator: same tasks, labels and splits, translated images.

    Args:
        domain: the domain whose images are translated (normally the labelled source).
        translator: ``last.ckpt`` of a :class:`~umadapt.methods.CyCADATranslator` run (read with
            ``weights_only=True``), or an already loaded :class:`~umadapt.pixel.Translator`.
        direction: ``source_to_target`` (default) or ``target_to_source``.
        batch_size: images translated at once.
    """

    def __init__(
        self,
        domain: Domain,
        translator: str | Translator,
        direction: str = "source_to_target",
        batch_size: int = 64,
    ) -> None:
        if isinstance(translator, str):
            translator = load_translator(translator, direction, "data.init_args.source_translator")
        translator.check_image_size(domain.image_size, f"the domain {domain.name!r}")
        self.domain = domain
        self.translator = translator
        self.batch_size = int(batch_size)
        self.name = f"{domain.name} (translated)"
        self.tasks = domain.tasks
        self.num_classes = domain.num_classes
        self.class_names = domain.class_names
        self.image_size = domain.image_size
        self._splits: dict[str, _TranslatedSplit] = {}

    def dataset(self, split: str) -> Dataset:
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; valid splits: {list(SPLITS)}.")
        if split not in self._splits:
            base = self.domain.dataset(split)
            self._splits[split] = _TranslatedSplit(base, self._translate(base))
        return self._splits[split]

    def _translate(self, base: Dataset) -> np.ndarray:
        """``[N, H, W, 3]`` uint8 translations of a split's images, read and translated ``batch_size`` at a time."""
        size = len(base)  # type: ignore[arg-type]
        out = np.zeros((size, *self.image_size, 3), dtype=np.uint8)
        for start in range(0, size, self.batch_size):
            stop = min(start + self.batch_size, size)
            batch = self.translator.translate_arrays([base[i][IMAGE] for i in range(start, stop)], self.batch_size)
            out[start:stop] = np.rint(batch * 255.0).astype(np.uint8)
        return out

    def describe(self) -> dict[str, Any]:
        return {
            **self.domain.describe(),
            "name": self.name,
            "translator": self.translator.path,
            "direction": self.translator.direction,
        }
