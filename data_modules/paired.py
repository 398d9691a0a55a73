"""The paired data module: one labelled source domain, one target domain, batches as :mod:`umadapt.samples` says.

Training batches are ``{"source": {...labelled...}, "target": {...}}`` drawn through a ``CombinedLoader``. In
unsupervised mode (the default) the target training dataset returns ``image`` only: its samples never carry labels,
so no method can use them. ``target_labels: true`` gives the target training samples their labels (train-on-target
oracle, semi-supervised methods). Validation and test loaders are ``[source, target]`` (in :attr:`eval_domains`
order) and carry labels, for evaluation only. ``target_label_fraction`` labels a fixed subset of the target training
images only, served by a third training loader ``"target_labelled"``; ``target_weak_labels`` serves weak labels
(image tags or one point per class, :mod:`data_modules.weak_labels`) with the target training images instead of
their masks; ``image_edges`` adds an ``edges`` map of the image to every sample (see :mod:`data_modules.edges`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from data_modules.augment import build_augmentation
from data_modules.domain import SPLITS, Domain
from data_modules.edges import ImageEdges, WithImageEdges
from data_modules.translated import TranslatedDomain
from data_modules.weak_labels import WEAK_LABEL_MODES, WeakLabelDataset
from umadapt.samples import IMAGE, collate_samples, native_key, to_tensor_sample
from umadapt.tasks import TASKS

COMBINED_MODES = ("max_size_cycle", "min_size", "max_size", "sequential")


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one sample in one epoch: a pure function of ``(run seed, epoch, index)``."""
    return int(np.random.SeedSequence([seed % 2**32, epoch, index]).generate_state(1)[0])


class SeededSampler(DistributedSampler):
    """Shuffles by ``(seed, epoch)`` and yields ``(index, augmentation seed)`` pairs, sharded across ranks.

    Order and augmentation are functions of ``(seed, epoch, index)`` only, never of global RNG state, so a run
    resumed from an epoch-end checkpoint replays exactly what the uninterrupted run saw. It subclasses
    ``DistributedSampler`` so Lightning neither replaces it under DDP nor forgets to call ``set_epoch``.
    """

    def __init__(
        self, dataset: Dataset, num_replicas: int, rank: int, shuffle: bool, seed: int, drop_last: bool
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        for index in super().__iter__():
            yield index, sample_seed(self.seed, self.epoch, index)


class SampleDataset(Dataset):
    """Selects ``keys`` from a domain's raw samples, augments them jointly and converts them to tensors.

    Items are indexed by ``index`` or by ``(index, augmentation seed)`` (from :class:`SeededSampler`). With
    ``native``, the native-resolution target of each selected key (``native/<key>``, served by a real-data reader's
    validation and test splits with ``eval_resolution: native``) is kept too, where the raw sample has one; it is
    never augmented (evaluation samples are not).
    """

    def __init__(
        self,
        base: Dataset,
        keys: Sequence[str],
        transform: Callable[[dict], dict] | None = None,
        native: bool = False,
    ) -> None:
        self.base = base
        self.keys = tuple(keys)
        self.transform = transform
        self.native = bool(native)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        index, seed = item if isinstance(item, tuple) else (item, None)
        raw = self.base[index]
        missing = [k for k in self.keys if k not in raw]
        if missing:
            raise KeyError(f"Sample {index} of {self.base!r} lacks {missing}; it has {sorted(raw)}.")
        sample = {k: raw[k] for k in self.keys}
        if self.transform is not None:
            sample = self.transform(sample, seed=seed)
        if self.native:
            sample.update({native_key(k): raw[native_key(k)] for k in self.keys if native_key(k) in raw})
        return to_tensor_sample(sample)


class _IndexSubset(Dataset):
    """The raw samples ``base[indices[i]]``: a fixed subset of a domain's split."""

    def __init__(self, base: Dataset, indices: Sequence[int]) -> None:
        self.base = base
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        return self.base[self.indices[index]]


def _build_edges(method: str | None, options: dict[str, float] | None) -> ImageEdges | None:
    if method is None:
        if options:
            raise ValueError(
                "data.edge_options is set but data.image_edges is not; name an edge method (canny, sobel)."
            )
        return None
    try:
        return ImageEdges(method, **dict(options or {}))
    except TypeError as error:
        raise ValueError(f"Bad data.edge_options {options}: {error}. Valid keys: sigma, low, high, scale.") from None


def _check_fraction(fraction: float, target_labels: bool) -> float:
    fraction = float(fraction)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(
            f"target_label_fraction must be in [0, 1), got {fraction}; use target_labels: true to label every image."
        )
    if fraction > 0 and target_labels:
        raise ValueError(
            "target_labels: true labels every target image, target_label_fraction only some: set one of them."
        )
    return fraction


class PairedDataModule(pl.LightningDataModule):
    """Pairs a labelled source :class:`~data_modules.domain.Domain` with a target domain.

    Args:
        source: the labelled (synthetic) domain.
        target: the (real) domain to adapt to.
        tasks: the supervision keys to load; default: the source's ``default_tasks`` (else every task it provides)
            that umadapt knows (e.g. ``depth``, ``normals``, ``segmentation``; ``label`` for digits). Linked into
            the model by the CLI.
        extra_keys: further supervision keys methods need besides the tasks (e.g. ``contours``).
        target_labels: give target *training* samples their labels (oracle / semi-supervised). Off by default:
            the target training samples are images only.
        batch_size: training batch size per domain.
        eval_batch_size: validation/test/predict batch size (default: ``batch_size``).
        num_workers: DataLoader worker processes.
        augmentation: name of an albumentations preset for the training data (see ``data_modules.augment``).
        combined_mode: how source and target loaders are zipped (``CombinedLoader`` mode).
        predict_domain: which domain ``predict`` runs on (``source`` or ``target``), test split.
        seed: seed of the training order and augmentation (default: the run's ``seed_everything`` value).
        image_edges: add an ``edges`` map of the (augmented) image to every sample, computed by this classical
            edge detector (``canny`` or ``sobel``, see :mod:`data_modules.edges`); from the image only, so target
            samples get it too. ``None`` (default): no ``edges`` key.
        edge_options: keyword arguments of :class:`~data_modules.edges.ImageEdges` (``sigma``, ``low``, ``high``,
            ``scale``).
        target_label_fraction: semi-supervised mode: this fraction of the target *training* images (a subset fixed
            by ``target_label_seed``) is served with labels by an extra ``"target_labelled"`` training loader; the
            ``"target"`` loader then serves the other images, without labels. 0 (default) = no target labels.
            A subset smaller than ``batch_size`` is repeated to fill one batch.
        target_label_seed: seed of the choice of the labelled target subset.
        source_translator: ``last.ckpt`` of a :class:`~umadapt.methods.CyCADATranslator` run: the source images are
            served translated into the target look, with their own labels, in every split
            (:class:`~data_modules.translated.TranslatedDomain`): CyCADA's task stage for any method.
        target_weak_labels: weakly-supervised adaptation (WDA): the target training images come with ``tags``
            (image-level class tags) or ``points`` (one labelled pixel per class present, with the tags), derived
            from the target's masks, and never with the masks themselves (:mod:`data_modules.weak_labels`).
            ``none`` (default): images only (UDA).
        weak_label_seed: seed of the ``points`` clicks (fixed per image across epochs, like a human's).
        tag_min_fraction: ``tags``: a class is tagged when it covers more than this fraction of the labelled
            pixels (0: any pixel).
    """

    eval_domains: tuple[str, str] = ("source", "target")

    def __init__(
        self,
        source: Domain,
        target: Domain,
        tasks: list[str] | None = None,
        extra_keys: list[str] | None = None,
        target_labels: bool = False,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        augmentation: str = "hflip",
        combined_mode: str = "max_size_cycle",
        predict_domain: str = "target",
        seed: int | None = None,
        image_edges: str | None = None,
        edge_options: dict[str, float] | None = None,
        target_label_fraction: float = 0.0,
        target_label_seed: int = 0,
        source_translator: str | None = None,
        target_weak_labels: str = "none",
        weak_label_seed: int = 0,
        tag_min_fraction: float = 0.0,
    ) -> None:
        super().__init__()
        if source_translator:
            source = TranslatedDomain(source, source_translator)
        self.source_translator = source_translator
        self.source = source
        self.target = target
        self.domains = {"source": source, "target": target}
        if combined_mode not in COMBINED_MODES:
            raise ValueError(f"Unknown combined_mode {combined_mode!r}. Valid modes: {list(COMBINED_MODES)}.")
        if predict_domain not in self.domains:
            raise ValueError(f"predict_domain must be 'source' or 'target', got {predict_domain!r}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.tasks = self._check_tasks(tasks)
        self.extra_keys = list(extra_keys or [])
        self._check_provided(self.extra_keys, "extra_keys")
        self.target_labels = target_labels
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.augmentation = augmentation
        self.transform = build_augmentation(augmentation)
        self.combined_mode = combined_mode
        self.predict_domain = predict_domain
        self.seed = seed
        self.edges = _build_edges(image_edges, edge_options)
        self.target_label_fraction = _check_fraction(target_label_fraction, target_labels)
        self.target_label_seed = int(target_label_seed)
        self.target_weak_labels = self._check_weak_labels(target_weak_labels, tag_min_fraction)
        self.weak_label_seed = int(weak_label_seed)
        self.tag_min_fraction = float(tag_min_fraction)
        if tuple(source.image_size) != tuple(target.image_size):
            raise ValueError(
                f"Source and target image sizes differ: {tuple(source.image_size)} vs {tuple(target.image_size)}; "
                "set the same image_size for both domains."
            )
        if source.num_classes != target.num_classes:
            raise ValueError(
                f"Source and target disagree on the number of classes: {source.num_classes} vs {target.num_classes}."
            )
        self._datasets: dict[tuple[str, str], Dataset] = {}

    # -- values the CLI links into the model -------------------------------------------------------------------
    @property
    def num_classes(self) -> int | None:
        return self.source.num_classes

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.source.image_size)  # type: ignore[return-value]

    @property
    def class_names(self) -> list[str]:
        return list(self.source.class_names)

    # -- validation ---------------------------------------------------------------------------------------------
    def _check_tasks(self, tasks: list[str] | None) -> list[str]:
        if tasks is None:
            tasks = [t for t in getattr(self.source, "default_tasks", self.source.tasks) if t in TASKS]
            if not tasks:
                raise ValueError(f"Source domain {self.source.name!r} provides no known task ({sorted(TASKS)}).")
            return tasks
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"Unknown task(s) {unknown} in data.tasks. Known tasks: {sorted(TASKS)}.")
        self._check_provided(tasks, "tasks")
        return list(tasks)

    def _check_weak_labels(self, mode: str, tag_min_fraction: float) -> str:
        if mode not in WEAK_LABEL_MODES:
            raise ValueError(f"data.target_weak_labels must be one of {list(WEAK_LABEL_MODES)}, got {mode!r}.")
        if not 0.0 <= float(tag_min_fraction) < 1.0:
            raise ValueError(f"data.tag_min_fraction must be in [0, 1), got {tag_min_fraction}.")
        if mode == "none":
            return mode
        if self.target_labels or self.target_label_fraction > 0:
            raise ValueError(
                f"data.target_weak_labels={mode} serves weak labels instead of the target masks, but "
                "target_labels/target_label_fraction ask for the masks: set one of them."
            )
        target = self.domains["target"]
        if "segmentation" not in target.tasks or not target.num_classes:
            raise ValueError(
                f"data.target_weak_labels={mode} derives the {mode} from the target's segmentation masks, but the "
                f"target domain {target.name!r} provides {list(target.tasks)}; use a target with segmentation "
                "labels or target_weak_labels: none."
            )
        return mode

    def _check_provided(self, keys: Sequence[str], what: str) -> None:
        for role, domain in self.domains.items():
            missing = [k for k in keys if k not in domain.tasks]
            if missing:
                raise ValueError(
                    f"The {role} domain {domain.name!r} does not provide {missing} (asked for in data.{what}); "
                    f"it provides {list(domain.tasks)}."
                )

    # -- datasets -----------------------------------------------------------------------------------------------
    def _dataset(self, role: str, split: str, labelled: bool, train: bool, native: bool = False) -> Dataset:
        key = (role, split, labelled, train, native)
        if key not in self._datasets:
            keys = [IMAGE, *self.tasks, *self.extra_keys] if labelled else [IMAGE]
            base = self.domains[role].dataset(split)
            self._datasets[key] = SampleDataset(base, keys, self._sample_transform(train), native=native)
        return self._datasets[key]

    def _sample_transform(self, train: bool) -> Callable[..., dict] | None:
        transform = self.transform if train else None
        return transform if self.edges is None else WithImageEdges(self.edges, transform)

    def target_label_indices(self) -> list[int]:
        """Indices of the labelled target training images (semi-supervised mode), fixed by ``target_label_seed``."""
        size = len(self.domains["target"].dataset("train"))  # type: ignore[arg-type]
        count = int(round(self.target_label_fraction * size))
        if self.target_label_fraction > 0 and count == 0:
            raise ValueError(
                f"target_label_fraction={self.target_label_fraction} labels no image of the {size} target training "
                "images; raise the fraction."
            )
        return sorted(np.random.default_rng(self.target_label_seed).permutation(size)[:count].tolist())

    def _target_subset(self, labelled: bool) -> Dataset:
        key = ("target", "train", labelled, True, "subset")
        if key not in self._datasets:
            base = self.domains["target"].dataset("train")
            chosen = self.target_label_indices()
            if labelled:  # repeated when fewer than one batch (tiny data sets), so the loader yields full batches
                indices = chosen * -(-self.batch_size // len(chosen))
            else:
                indices = sorted(set(range(len(base))) - set(chosen))  # type: ignore[arg-type]
            keys = [IMAGE, *self.tasks, *self.extra_keys] if labelled else [IMAGE]
            self._datasets[key] = SampleDataset(_IndexSubset(base, indices), keys, self._sample_transform(True))
        return self._datasets[key]

    def _weak_target(self) -> Dataset:
        key = ("target", "train", self.target_weak_labels)
        if key not in self._datasets:
            target = self.domains["target"]
            weak = WeakLabelDataset(
                target.dataset("train"),
                self.target_weak_labels,
                int(target.num_classes),  # type: ignore[arg-type]
                self.weak_label_seed,
                self.tag_min_fraction,
            )
            keys = [IMAGE, "tags"] if self.target_weak_labels == "tags" else [IMAGE, "points", "tags"]
            self._datasets[key] = SampleDataset(weak, keys, self._sample_transform(True))
        return self._datasets[key]

    def train_dataset(self, role: str) -> Dataset:
        if self.target_label_fraction > 0 and role in ("target", "target_labelled"):
            return self._target_subset(labelled=role == "target_labelled")
        if role == "target" and self.target_weak_labels != "none":
            return self._weak_target()
        labelled = role == "source" or self.target_labels
        return self._dataset(role, "train", labelled, train=True)

    def images_dataset(self, role: str, split: str = "train") -> Dataset:
        """The images of a domain's split alone (no label, no augmentation), e.g. for statistics of the target
        training images (AdaBN)."""
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; valid splits: {list(SPLITS)}.")
        return self._dataset(role, split, labelled=False, train=False)

    def eval_dataset(self, role: str, split: str, native: bool = True) -> Dataset:
        """A domain's split with labels, unaugmented; ``native``: with the native-resolution targets the domain
        serves (``eval_resolution: native``), batched by :func:`~umadapt.samples.collate_samples`."""
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; valid splits: {list(SPLITS)}.")
        return self._dataset(role, split, labelled=True, train=False, native=native)

    # -- loaders ------------------------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        sampler = None
        if train:
            trainer = self.trainer
            sampler = SeededSampler(
                dataset,
                num_replicas=trainer.world_size if trainer is not None else 1,
                rank=trainer.global_rank if trainer is not None else 0,
                shuffle=True,
                seed=self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0)),
                drop_last=True,
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            drop_last=train,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=None if train else collate_samples,  # native targets may differ in size within a batch
        )

    def train_dataloader(self) -> CombinedLoader:
        loaders = {role: self._loader(self.train_dataset(role), train=True) for role in self.domains}
        for role, loader in loaders.items():
            if len(loader) == 0:
                raise ValueError(
                    f"The {role} training split has {len(loader.dataset)} samples, fewer than one batch of "  # type: ignore[arg-type]
                    f"data.batch_size={self.batch_size} per process (incomplete batches are dropped). Lower "
                    "data.init_args.batch_size or use more training samples."
                )
        if self.target_label_fraction > 0:
            loaders["target_labelled"] = self._loader(self.train_dataset("target_labelled"), train=True)
        return CombinedLoader(loaders, mode=self.combined_mode)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(self.eval_dataset(role, "val"), train=False) for role in self.eval_domains]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(self.eval_dataset(role, "test"), train=False) for role in self.eval_domains]

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.eval_dataset(self.predict_domain, "test", native=False), train=False)

    def describe(self) -> dict[str, Any]:
        """Data identity for reproducibility records and results tables."""
        return {
            "source": self.source.describe(),
            "target": self.target.describe(),
            "tasks": list(self.tasks),
            "target_labels": self.target_labels,
            "target_label_fraction": self.target_label_fraction,
            "target_weak_labels": self.target_weak_labels,
            "image_size": list(self.image_size),
        }
