"""Image edge maps for CCR (deterministic, in range, computed after augmentation) and the semi-supervised target
label fraction of the paired data module."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_modules import PairedDataModule
from data_modules.edges import ImageEdges
from data_modules.synthrooms import render_sample
from tests.conftest import ToyDomain


@pytest.mark.parametrize("method", ["canny", "sobel"])
def test_edges_are_deterministic_in_range_and_not_trivial(method):
    edges = ImageEdges(method)
    for look in ("synthetic", "real"):
        image = render_sample(0, "train", 3, look, 32)[0]["image"]
        first, second = edges.edges(image), edges.edges(image.copy())
        assert first.shape == (32, 32) and first.dtype == np.float32
        assert np.array_equal(first, second)
        assert first.min() >= 0.0 and first.max() <= 1.0 and 0.01 < first.mean() < 0.6
        if method == "canny":
            assert set(np.unique(first)) <= {0.0, 1.0}
    sample = {"image": image, "depth": np.ones((32, 32), np.float32)}
    out = edges(sample)
    assert set(out) == {"image", "depth", "edges"} and "edges" not in sample


def test_bad_edge_options_are_named():
    with pytest.raises(ValueError, match="'prewitt'"):
        ImageEdges("prewitt")
    with pytest.raises(ValueError, match="low <= high"):
        ImageEdges("canny", low=100, high=50)
    with pytest.raises(ValueError, match="edge_options"):
        PairedDataModule(ToyDomain(), ToyDomain(), image_edges="canny", edge_options={"treshold": 3})
    with pytest.raises(ValueError, match="image_edges"):
        PairedDataModule(ToyDomain(), ToyDomain(), edge_options={"low": 3})


def test_edges_are_computed_from_the_augmented_image_for_every_domain_and_split():
    edges = ImageEdges("sobel")
    target = ToyDomain(1, shift=0.3)
    dm = PairedDataModule(ToyDomain(0), target, batch_size=4, image_edges="sobel", augmentation="light")
    batch, _, _ = next(iter(dm.train_dataloader()))
    assert set(batch["target"]) == {"image", "edges"}  # an image-derived map, no labels
    for part in batch.values():
        assert part["edges"].shape == (4, 1, 32, 32) and part["edges"].dtype == torch.float32
        for image, edge in zip(part["image"], part["edges"]):
            expected = edges.edges(image.permute(1, 2, 0).numpy())
            assert np.allclose(edge[0].numpy(), expected, atol=1e-6)
    for role in ("source", "target"):
        assert "edges" in dm.eval_dataset(role, "val")[0]


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
