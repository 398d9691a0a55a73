"""The paired data module: one labelled source domain, one target domain, batches as :mod:`umadapt.samples` says.

Training batches are ``{"source": {...labelled...}, "target": {...}}`` drawn through a ``CombinedLoader``. In
unsupervised mode (the default) the target training dataset returns ``image`` only: its samples never carry labels,
so no method can use them. ``target_labels: true`` gives the target training samples their labels (train-on-target
oracle, semi-supervised methods). Validation and test loaders are ``[source, target]`` (in :attr:`eval_domains`
order) and carry labels, for evaluation only.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import pytorch_lightning as pl
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset

from data_modules.augment import build_augmentation
from data_modules.domain import SPLITS, Domain
from umadapt.samples import IMAGE, to_tensor_sample
from umadapt.tasks import TASKS

COMBINED_MODES = ("max_size_cycle", "min_size", "max_size", "sequential")


class SampleDataset(Dataset):
    """Selects ``keys`` from a domain's raw samples, augments them jointly and converts them to tensors."""

    def __init__(self, base: Dataset, keys: Sequence[str], transform: Callable[[dict], dict] | None = None) -> None:
        self.base = base
        self.keys = tuple(keys)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict:
        raw = self.base[index]
        missing = [k for k in self.keys if k not in raw]
        if missing:
            raise KeyError(f"Sample {index} of {self.base!r} lacks {missing}; it has {sorted(raw)}.")
        sample = {k: raw[k] for k in self.keys}
        if self.transform is not None:
            sample = self.transform(sample)
        return to_tensor_sample(sample)


class PairedDataModule(pl.LightningDataModule):
    """Pairs a labelled source :class:`~data_modules.domain.Domain` with a target domain.

    Args:
        source: the labelled (synthetic) domain.
        target: the (real) domain to adapt to.
        tasks: the supervision keys to load; default: every task the source provides that umadapt knows
            (``depth``, ``normals``, ``segmentation``, ``label``). Linked into the model by the CLI.
        extra_keys: further supervision keys methods need besides the tasks (e.g. ``contours``).
        target_labels: give target *training* samples their labels (oracle / semi-supervised). Off by default:
            the target training samples are images only.
        batch_size: training batch size per domain.
        eval_batch_size: validation/test/predict batch size (default: ``batch_size``).
        num_workers: DataLoader worker processes.
        augmentation: name of an albumentations preset for the training data (see ``data_modules.augment``).
        combined_mode: how source and target loaders are zipped (``CombinedLoader`` mode).
        predict_domain: which domain ``predict`` runs on (``source`` or ``target``), test split.
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
    ) -> None:
        super().__init__()
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
            tasks = [t for t in self.source.tasks if t in TASKS]
            if not tasks:
                raise ValueError(f"Source domain {self.source.name!r} provides no known task ({sorted(TASKS)}).")
            return tasks
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"Unknown task(s) {unknown} in data.tasks. Known tasks: {sorted(TASKS)}.")
        self._check_provided(tasks, "tasks")
        return list(tasks)

    def _check_provided(self, keys: Sequence[str], what: str) -> None:
        for role, domain in self.domains.items():
            missing = [k for k in keys if k not in domain.tasks]
            if missing:
                raise ValueError(
                    f"The {role} domain {domain.name!r} does not provide {missing} (asked for in data.{what}); "
                    f"it provides {list(domain.tasks)}."
                )

    # -- datasets -----------------------------------------------------------------------------------------------
    def _dataset(self, role: str, split: str, labelled: bool, train: bool) -> Dataset:
        key = (role, split, labelled, train)
        if key not in self._datasets:
            keys = [IMAGE, *self.tasks, *self.extra_keys] if labelled else [IMAGE]
            base = self.domains[role].dataset(split)
            self._datasets[key] = SampleDataset(base, keys, self.transform if train else None)
        return self._datasets[key]

    def train_dataset(self, role: str) -> Dataset:
        labelled = role == "source" or self.target_labels
        return self._dataset(role, "train", labelled, train=True)

    def eval_dataset(self, role: str, split: str) -> Dataset:
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; valid splits: {list(SPLITS)}.")
        return self._dataset(role, split, labelled=True, train=False)

    # -- loaders ------------------------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=train,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> CombinedLoader:
        loaders = {role: self._loader(self.train_dataset(role), train=True) for role in self.domains}
        return CombinedLoader(loaders, mode=self.combined_mode)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(self.eval_dataset(role, "val"), train=False) for role in self.eval_domains]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(self.eval_dataset(role, "test"), train=False) for role in self.eval_domains]

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.eval_dataset(self.predict_domain, "test"), train=False)

    def describe(self) -> dict[str, Any]:
        """Data identity for reproducibility records and results tables."""
        return {
            "source": self.source.name,
            "target": self.target.name,
            "tasks": list(self.tasks),
            "target_labels": self.target_labels,
            "image_size": list(self.image_size),
        }
