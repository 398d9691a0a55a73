"""What a *domain* is: a source of raw samples for the train/val/test splits of one look of the data.

The paired data module pairs one source domain with one target domain. Any object with the attributes and the
method of :class:`Domain` works (SynthRooms, Digits, a folder of your own simulator output, ...).
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from torch.utils.data import Dataset

SPLITS = ("train", "val", "test")


@runtime_checkable
class Domain(Protocol):
    """A domain provides datasets of raw samples (see :mod:`umadapt.samples`) for each split.

    Attributes:
        name: short human-readable name, used in logs and results.
        tasks: the supervision keys this domain can provide (e.g. ``("depth", "normals", "segmentation")``).
        num_classes: number of semantic classes (segmentation or label), or ``None`` without a class task.
        class_names: names of the classes, ``len(class_names) == num_classes``.
        image_size: ``(height, width)`` of the images it returns.
    """

    name: str
    tasks: Sequence[str]
    num_classes: int | None
    class_names: Sequence[str]
    image_size: tuple[int, int]

    def dataset(self, split: str) -> Dataset:
        """The dataset of raw samples (all keys this domain provides) for ``split`` in :data:`SPLITS`."""
        ...
