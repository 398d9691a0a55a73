"""The paired data module: batch structure, dtypes, no target labels in unsupervised mode, clear errors."""

from __future__ import annotations

import pytest
import torch

from data_modules import PairedDataModule
from tests.conftest import ToyDomain


def _batch(dm: PairedDataModule) -> dict:
    loader = dm.train_dataloader()
    iter(loader)
    batch, _, _ = next(iter(loader))
    return batch


def test_training_batch_structure_and_dtypes(toy_domains):
    dm = PairedDataModule(*toy_domains, batch_size=4)
    batch = _batch(dm)
    assert set(batch) == {"source", "target"}
    source = batch["source"]
    assert set(source) == {"image", "depth", "normals", "segmentation"}
    assert source["image"].shape == (4, 3, 32, 32) and source["image"].dtype == torch.float32
    assert source["depth"].shape == (4, 1, 32, 32) and source["depth"].dtype == torch.float32
    assert source["normals"].shape == (4, 3, 32, 32)
    assert source["segmentation"].shape == (4, 32, 32) and source["segmentation"].dtype == torch.int64


def test_unsupervised_target_carries_no_labels(toy_domains):
    dm = PairedDataModule(*toy_domains, batch_size=4)
    assert set(_batch(dm)["target"]) == {"image"}
    # Not just the batch: the dataset itself never returns labels.
    assert set(dm.train_dataset("target")[0]) == {"image"}


def test_target_labels_switch_and_eval_loaders_are_labelled(toy_domains):
    dm = PairedDataModule(*toy_domains, batch_size=4, target_labels=True)
    assert set(_batch(dm)["target"]) == {"image", "depth", "normals", "segmentation"}
    unsupervised = PairedDataModule(*toy_domains, batch_size=4)
    source_val, target_val = unsupervised.val_dataloader()
    assert "segmentation" in next(iter(target_val)) and "depth" in next(iter(source_val))
    assert len(unsupervised.test_dataloader()) == 2


def test_linked_values(toy_domains):
    dm = PairedDataModule(*toy_domains, tasks=["depth", "segmentation"], extra_keys=["contours"])
    assert dm.tasks == ["depth", "segmentation"] and dm.num_classes == 2 and dm.image_size == (32, 32)
    assert "contours" in dm.train_dataset("source")[0]


def test_unknown_or_missing_task_is_named(toy_domains):
    with pytest.raises(ValueError, match="'label'"):
        PairedDataModule(*toy_domains, tasks=["depth", "label"])
    with pytest.raises(ValueError, match="Unknown task"):
        PairedDataModule(*toy_domains, tasks=["dept"])


def test_mismatched_domains_and_bad_options_are_named():
    with pytest.raises(ValueError, match=r"\(32, 32\) vs \(16, 16\)"):
        PairedDataModule(ToyDomain(image_size=32), ToyDomain(image_size=16))
    with pytest.raises(ValueError, match="combined_mode"):
        PairedDataModule(ToyDomain(), ToyDomain(), combined_mode="zip")
    with pytest.raises(ValueError, match="Valid"):
        PairedDataModule(ToyDomain(), ToyDomain(), augmentation="fancy")


def test_a_training_split_smaller_than_one_batch_is_named(toy_domains):
    dm = PairedDataModule(*toy_domains, batch_size=32)
    with pytest.raises(ValueError, match=r"8 samples, fewer than one batch of data.batch_size=32"):
        dm.train_dataloader()
