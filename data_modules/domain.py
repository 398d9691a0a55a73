"""What a *domain* is: a source of raw samples for the train/val/test splits of one look of the data.

The paired data module pairs one source domain with one target domain. A domain subclasses :class:`Domain` (an
abstract base class rather than a ``Protocol`` so that YAML ``class_path`` checks are by inheritance, not by exact
signature matching) and sets the attributes below in ``__init__``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from torch.utils.data import Dataset

SPLITS = ("train", "val", "test")


class Domain(ABC):
    """A domain provides datasets of raw samples (see :mod:`umadapt.samples`) for each split.

    Attributes:
        name: short human-readable name, used in logs and results.
        tasks: the supervision keys this domain can provide (e.g. ``("depth", "normals", "segmentation")``).
        default_tasks: (optional) the tasks trained when ``data.tasks`` is not given; default :attr:`tasks` (the
            digits serve ``parity`` and ``magnitude`` too but train ``label`` alone by default).
        num_classes: number of semantic classes (segmentation or label), or ``None`` without a class task.
        class_names: names of the classes, ``len(class_names) == num_classes``.
        image_size: ``(height, width)`` of the images it returns.
    """

    name: str
    tasks: Sequence[str]
    num_classes: int | None
    class_names: Sequence[str]
    image_size: tuple[int, int]

    @abstractmethod
    def dataset(self, split: str) -> Dataset:
        """The dataset of raw samples (all keys this domain provides) for ``split`` in :data:`SPLITS`."""

    def describe(self) -> dict:
        """Identity of the data for reproducibility records (override to add generator seeds, roots, sizes)."""
        return {"name": self.name, "tasks": list(self.tasks), "image_size": list(self.image_size)}
