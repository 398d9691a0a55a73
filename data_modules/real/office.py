"""Office-31 and Office-Home: object classification, one domain per photo style; task ``label``.

Both are class folders; the classes are the sorted folder names, so class ``k`` is the same object in every
domain (the readers check that a domain has exactly the benchmark's classes).

Splits follow the usual unsupervised DA protocol (DANN, CDAN, Transfer-Learning-Library): train on **all** source
images (labelled) and **all** target images (unlabelled), and test on **all** target images. So ``train`` = ``test``
= every image of the domain; ``val`` = a seeded subset (``val_fraction``, default 10 %) of them, for monitoring
only (it overlaps training by construction; checkpoints are never chosen by it).

The class-folder helpers below also read your own classification data (the folder format's ``classes`` layout,
:class:`~data_modules.real.folder.FolderDomain`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .base import RealDomain
from .errors import DatasetNotFoundError
from .io import read_image, resolve_root, seeded_subset

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

ClassItem = tuple[Path, int]
"""One sample of a class-folder dataset: the image file and its class index."""


def class_folders(domain_dir: Path, reserved: Sequence[str] = ()) -> tuple[str, ...]:
    """The class names of ``<domain_dir>/<class>/<image>``: the sorted sub-folder names (hidden ones and ``reserved``
    names left out)."""
    names = (p.name for p in domain_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    return tuple(sorted(name for name in names if name not in reserved))


def class_folder_items(domain_dir: Path, class_names: Sequence[str]) -> list[ClassItem]:
    """``(image, class index)`` of every image in the class folders, class by class, files sorted by name; a class
    without a folder has no images."""
    return [
        (path, label)
        for label, name in enumerate(class_names)
        if (domain_dir / name).is_dir()
        for path in sorted((domain_dir / name).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    ]


def load_class_item(item: ClassItem) -> dict[str, Any]:
    """The raw sample ``{image, label}`` of one class-folder item."""
    return {"image": read_image(item[0]), "label": item[1]}


class ClassFolderDomain(RealDomain):
    """One domain of a class-folder benchmark: ``<domain folder>/<class>/<image>``; samples ``{image, label}``."""

    benchmark = "class folders"
    domains: tuple[str, ...] = ()
    num_benchmark_classes = 0
    folder = ""
    layout = ""
    obtain = ""

    def __init__(
        self,
        domain: str,
        root: str | None = None,
        image_size: int | Sequence[int] = (224, 224),
        fit: str = "stretch",
        val_fraction: float = 0.1,
        seed: int = 0,
        skip_bad_files: bool = False,
        max_items: int | None = None,
    ) -> None:
        super().__init__(image_size, fit, val_fraction, seed, skip_bad_files, max_items)
        if domain not in self.domains:
            raise ValueError(f"{self.benchmark}: unknown domain {domain!r}; valid domains: {list(self.domains)}.")
        self.domain = domain
        self.dataset_name = f"{self.benchmark} ({domain})"
        self.root = resolve_root(root, self.folder, self.dataset_name, self.layout, self.obtain)
        self.domain_dir = self._domain_dir()
        self.class_names = class_folders(self.domain_dir)
        if len(self.class_names) != self.num_benchmark_classes:
            raise DatasetNotFoundError(
                self.dataset_name,
                self.domain_dir,
                self.layout,
                self.obtain,
                hint=f"Found {len(self.class_names)} class folders there, expected {self.num_benchmark_classes}.",
            )
        self.num_classes = len(self.class_names)
        self.tasks = ("label",)
        self.name = f"{self.benchmark.lower()}-{domain.lower().replace(' ', '_')}"
        self._all: list[ClassItem] | None = None

    def _domain_dir(self) -> Path:
        raise NotImplementedError

    def all_items(self) -> list[ClassItem]:
        if self._all is None:
            self._all = class_folder_items(self.domain_dir, self.class_names)
        return self._all

    def items(self, split: str) -> list[ClassItem]:
        items = self.all_items()
        if split == "val":
            return [items[i] for i in seeded_subset(len(items), self.val_fraction, self.seed)]
        return list(items)

    def load(self, item: ClassItem) -> dict[str, Any]:
        return load_class_item(item)

    def describe(self) -> dict:
        return {**super().describe(), "domain": self.domain}


class Office31(ClassFolderDomain):
    """One Office-31 domain (Saenko et al., ECCV 2010): ``amazon``, ``dslr`` or ``webcam``; 31 classes.

    Args:
        domain: the domain folder.
        root: default ``$DATA_ROOT/Office31``.
        image_size: default 224x224 (the ResNet-50 protocol's input size).
        fit, val_fraction, seed, skip_bad_files, max_items: see :class:`~data_modules.real.base.RealDomain`.
    """

    benchmark = "Office31"
    domains = ("amazon", "dslr", "webcam")
    num_benchmark_classes = 31
    folder = "Office31"
    layout = """\
  <root>/amazon/images/<class>/*.jpg   (31 class folders: back_pack, bike, ..., trash_can)
  <root>/dslr/images/<class>/*.jpg
  <root>/webcam/images/<class>/*.jpg"""
    obtain = "https://faculty.cc.gatech.edu/~judy/domainadapt/ (Office-31, 'domain_adaptation_images.tar.gz')"

    def _domain_dir(self) -> Path:
        path = self.root / self.domain / "images"
        if not path.is_dir():
            raise DatasetNotFoundError(self.dataset_name, path, self.layout, self.obtain)
        return path


class OfficeHome(ClassFolderDomain):
    """One Office-Home domain (Venkateswara et al., CVPR 2017): ``Art``, ``Clipart``, ``Product`` or
    ``Real World`` (a ``Real_World`` folder is accepted too); 65 classes.

    Args: as :class:`Office31`; root default ``$DATA_ROOT/OfficeHome``.
    """

    benchmark = "OfficeHome"
    domains = ("Art", "Clipart", "Product", "Real World")
    num_benchmark_classes = 65
    folder = "OfficeHome"
    layout = """\
  <root>/Art/<class>/*.jpg          (65 class folders: Alarm_Clock, Backpack, ..., Webcam)
  <root>/Clipart/<class>/*.jpg
  <root>/Product/<class>/*.jpg
  <root>/Real World/<class>/*.jpg   (or Real_World)"""
    obtain = "https://www.hemanthdv.org/officeHomeDataset.html (OfficeHomeDataset_10072016.zip)"

    def _domain_dir(self) -> Path:
        candidates = [self.root / self.domain, self.root / self.domain.replace(" ", "_")]
        for path in candidates:
            if path.is_dir():
                return path
        raise DatasetNotFoundError(self.dataset_name, candidates[0], self.layout, self.obtain)
