"""Image edge maps for CCR (:mod:`data_modules.edges`): deterministic, in range, computed after augmentation, bad
options named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_modules import PairedDataModule
from data_modules.edges import ImageEdges
from data_modules.synthrooms import render_sample
from tests.helpers import ToyDomain


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
