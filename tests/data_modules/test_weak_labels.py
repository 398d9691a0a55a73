"""Weak target supervision (:mod:`data_modules.weak_labels`, ``data.target_weak_labels``): tags and points derived
from the masks, one click per class present fixed by the seed, the dense masks never served, augmentation keeping
points on their pixels, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_modules import PairedDataModule
from data_modules.augment import build_augmentation
from data_modules.weak_labels import WeakLabelDataset, image_tags, sample_points
from tests.helpers import ToyDomain
from umadapt.metrics import SegmentationMetrics
from umadapt.metrics.mtl import is_lower_better
from umadapt.samples import IGNORE_INDEX, to_tensor_sample


def _mask(seed: int = 0, classes: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = rng.integers(0, classes - 1, size=(12, 10))  # the last class never appears
    mask[:2] = IGNORE_INDEX
    return mask


def test_tags_are_the_classes_present_above_the_fraction():
    mask = np.full((4, 5), IGNORE_INDEX)
    mask[0] = 1  # 5 pixels
    mask[1, :1] = 3  # 1 pixel
    assert image_tags(mask, 4).tolist() == [0.0, 1.0, 0.0, 1.0]
    assert image_tags(mask, 4, min_fraction=0.2).tolist() == [0.0, 1.0, 0.0, 0.0]  # 1/6 < 0.2
    assert image_tags(np.full((2, 2), IGNORE_INDEX), 3).tolist() == [0.0, 0.0, 0.0]


def test_points_are_one_pixel_per_present_class_and_fixed_by_the_seed():
    mask = _mask()
    points = sample_points(mask, 5, np.random.default_rng(7))
    labelled = points != IGNORE_INDEX
    present = sorted(set(mask[mask != IGNORE_INDEX].tolist()))
    assert sorted(points[labelled].tolist()) == present  # exactly one pixel per class present, none for the absent
    assert np.all(mask[labelled] == points[labelled])  # each on a pixel of its class
    again = sample_points(mask, 5, np.random.default_rng(7))
    other = sample_points(mask, 5, np.random.default_rng(8))
    assert np.array_equal(points, again) and not np.array_equal(points, other)


def test_the_weak_dataset_serves_image_and_weak_labels_only():
    domain = ToyDomain(seed=1, image_size=16)
    base = domain.dataset("train")
    points = WeakLabelDataset(base, "points", 2, seed=3)
    assert set(points[0]) == {"image", "points", "tags"}
    assert set(WeakLabelDataset(base, "tags", 2)[0]) == {"image", "tags"}
    assert np.array_equal(points[1]["points"], WeakLabelDataset(base, "points", 2, seed=3)[1]["points"])
    assert not np.array_equal(points[1]["points"], WeakLabelDataset(base, "points", 2, seed=4)[1]["points"])
    with pytest.raises(ValueError, match="mode must be one of \\['tags', 'points'\\]"):
        WeakLabelDataset(base, "boxes", 2)


@pytest.mark.parametrize("mode", ["tags", "points"])
def test_a_wda_target_batch_holds_no_dense_mask(mode):
    dm = PairedDataModule(ToyDomain(0, 16), ToyDomain(1, 16), batch_size=4, target_weak_labels=mode)
    target = next(iter(dm.train_dataloader()))[0]["target"]
    served = {"image", "tags"} if mode == "tags" else {"image", "points", "tags"}  # clicking a point tags the image
    assert set(target) == served
    assert set(dm.train_dataset("target")[0]) == served  # the dataset itself, not only the batch
    if mode == "tags":
        assert target["tags"].shape == (4, 2) and target["tags"].dtype == torch.float32
    else:
        assert target["points"].shape == (4, 16, 16) and target["points"].dtype == torch.int64
        assert ((target["points"] != IGNORE_INDEX).flatten(1).sum(dim=1) <= 2).all()
    assert dm.describe()["target_weak_labels"] == mode
    _, target_val = dm.val_dataloader()
    assert "segmentation" in next(iter(target_val))  # evaluation keeps its labels


def test_weak_labels_from_a_target_without_masks_are_named():
    class ImagesOnly(ToyDomain):
        def __init__(self):
            super().__init__(seed=1, image_size=16)
            self.name, self.tasks = "photos", ("depth",)

    with pytest.raises(ValueError, match="target_weak_labels=tags .* target domain 'photos' provides \\['depth'\\]"):
        PairedDataModule(ToyDomain(0, 16), ImagesOnly(), tasks=["depth"], target_weak_labels="tags")
    with pytest.raises(ValueError, match="target_weak_labels must be one of \\['none', 'tags', 'points'\\]"):
        PairedDataModule(ToyDomain(0, 16), ToyDomain(1, 16), target_weak_labels="boxes")
    with pytest.raises(ValueError, match="set one of them"):
        PairedDataModule(ToyDomain(0, 16), ToyDomain(1, 16), target_weak_labels="points", target_labels=True)


def test_a_flip_moves_points_with_the_image_and_tags_pass_through():
    image = np.random.default_rng(0).random((6, 8, 3)).astype(np.float32)
    points = np.full((6, 8), IGNORE_INDEX, dtype=np.int64)
    points[2, 1], points[4, 6] = 0, 3
    tags = np.array([1.0, 0.0, 0.0, 1.0], dtype=np.float32)
    augment = build_augmentation("hflip")
    for seed in range(8):
        out = augment({"image": image, "points": points, "tags": tags}, seed=seed)
        flipped = not np.array_equal(out["image"], image)
        assert np.array_equal(out["points"], points[:, ::-1] if flipped else points)
        assert out["tags"] is tags
    batch = to_tensor_sample(out)
    assert batch["points"].dtype == torch.int64 and batch["tags"].dtype == torch.float32


def test_per_class_iou_reaches_compute_under_the_class_names():
    metric = SegmentationMetrics(3, class_names=["a", "b", "c"])
    target = torch.tensor([[[0, 0, 1, 1]]])
    metric.update(torch.tensor([[[0, 1, 1, 1]]]), target)
    scores = metric.compute()
    assert scores["iou_a"] == pytest.approx(0.5) and scores["iou_b"] == pytest.approx(2 / 3)
    assert "iou_c" not in scores  # union 0: not scored, never NaN in the logs
    assert not is_lower_better("test/target/segmentation/iou_a")
    with pytest.raises(ValueError, match="class_names has 2 names but the model has num_classes=3"):
        SegmentationMetrics(3, class_names=["a", "b"])


def test_points_cut_away_by_a_crop_keep_their_tags():
    """Under ``standard`` augmentation (a random resized crop) some clicks leave the image; the tags served with the
    points still name every class of the image, so a lost click never becomes a negative weak label."""
    dm = PairedDataModule(ToyDomain(0, 16), ToyDomain(1, 16), batch_size=8, target_weak_labels="points",
                          augmentation="standard")  # fmt: skip
    lost = 0
    for epoch in range(4):
        dm.train_dataset("target")  # the sampler seeds each epoch's crops
        for index in range(8):
            sample = dm.train_dataset("target")[(index, epoch * 100 + index)]
            clicked = set(sample["points"][sample["points"] != IGNORE_INDEX].tolist())
            tagged = set(torch.nonzero(sample["tags"]).flatten().tolist())
            assert clicked <= tagged
            lost += len(tagged - clicked)
    assert lost > 0  # the crop does cut clicks away, so the check above is not vacuous
