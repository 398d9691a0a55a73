"""The paired data module (:mod:`data_modules.paired`): batch structure, dtypes, no target labels in unsupervised
mode, the semi-supervised target label fraction, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_modules import PairedDataModule
from tests.helpers import ToyDomain


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


# -- the semi-supervised target label fraction -------------------------------------------------------------------
def _labelled(sample: dict) -> bool:
    return any(k in sample for k in ("depth", "normals", "segmentation"))


def test_target_label_fraction_labels_exactly_that_fraction_fixed_by_seed():
    target = ToyDomain(1, size=40, shift=0.3)
    dm = PairedDataModule(ToyDomain(0, size=40), target, batch_size=4, target_label_fraction=0.1, target_label_seed=3)
    chosen = dm.target_label_indices()
    assert len(chosen) == 4 and len(set(chosen)) == 4

    def indices(seed: int) -> list[int]:
        dm = PairedDataModule(ToyDomain(0), target, target_label_fraction=0.1, target_label_seed=seed)
        return dm.target_label_indices()

    assert chosen == indices(3) and chosen != indices(4)

    unlabelled, labelled = dm.train_dataset("target"), dm.train_dataset("target_labelled")
    assert len(unlabelled) == 36 and len(labelled) == 4
    assert not any(_labelled(unlabelled[i]) for i in range(len(unlabelled)))
    assert all(set(labelled[i]) == {"image", "depth", "normals", "segmentation"} for i in range(len(labelled)))
    # The labelled samples are exactly the chosen target images (augmentation off: compare images).
    plain = PairedDataModule(
        ToyDomain(0, size=40), target, augmentation="none", target_label_fraction=0.1, target_label_seed=3
    )
    raw = target.dataset("train")
    labelled_images = [plain.train_dataset("target_labelled")[i]["image"] for i in range(4)]
    for index, image in zip(chosen, labelled_images):
        assert np.allclose(image.permute(1, 2, 0).numpy(), raw[index]["image"])

    batch, _, _ = next(iter(dm.train_dataloader()))
    assert set(batch) == {"source", "target", "target_labelled"}
    assert set(batch["target"]) == {"image"} and _labelled(batch["target_labelled"])
    assert dm.describe()["target_label_fraction"] == 0.1


def test_tiny_labelled_subsets_fill_a_batch_and_bad_fractions_are_named():
    dm = PairedDataModule(ToyDomain(0), ToyDomain(1), batch_size=4, target_label_fraction=0.1)  # 1 of 8 images
    assert dm.target_label_indices() and len(dm.target_label_indices()) == 1
    batch, _, _ = next(iter(dm.train_dataloader()))
    assert batch["target_labelled"]["image"].shape[0] == 4
    with pytest.raises(ValueError, match="target_label_fraction"):
        PairedDataModule(ToyDomain(), ToyDomain(), target_label_fraction=1.5)
    with pytest.raises(ValueError, match="set one of them"):
        PairedDataModule(ToyDomain(), ToyDomain(), target_label_fraction=0.1, target_labels=True)
    with pytest.raises(ValueError, match="labels no image"):
        PairedDataModule(ToyDomain(), ToyDomain(), target_label_fraction=0.01).target_label_indices()
