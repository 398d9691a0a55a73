"""The embedded Digits -> Digits-M domains (:mod:`data_modules.digits.embedded`): disjoint seeded splits, the sample
conventions, the MNIST-M blend, unlabelled target training samples, bad sizes named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_modules import PairedDataModule
from data_modules.digits import LAYOUT, Digits, DigitsM
from data_modules.digits.embedded import NUM_DIGITS, partition, photos
from data_modules.domain import SPLITS, Domain


def test_splits_are_disjoint_and_cover_every_digit():
    blocks = partition(0)
    assert sum(LAYOUT.values()) == NUM_DIGITS
    every = np.concatenate(list(blocks.values()))
    assert len(every) == NUM_DIGITS and len(np.unique(every)) == NUM_DIGITS
    source, target = Digits(), DigitsM()
    used = [set(d.indices(s).tolist()) for d in (source, target) for s in SPLITS]
    assert sum(len(u) for u in used) == len(set().union(*used))  # no digit scan in two splits, in either domain
    assert not np.array_equal(partition(0)[("target", "test")], partition(1)[("target", "test")])  # seeded


def test_domains_follow_the_sample_conventions():
    for domain in (Digits(train_size=5), DigitsM(train_size=5)):
        assert isinstance(domain, Domain) and domain.num_classes == 10
        assert domain.tasks == ("label", "parity", "magnitude") and domain.default_tasks == ("label",)
        sample = domain.dataset("train")[0]
        assert sample["image"].shape == (32, 32, 3) and sample["image"].dtype == np.float32
        assert 0.0 <= sample["image"].min() and sample["image"].max() <= 1.0
        assert isinstance(sample["label"], int) and 0 <= sample["label"] <= 9
    grey = Digits(train_size=1).dataset("train")[0]["image"]
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 0], grey[..., 2])


def test_digits_m_is_the_mnist_m_blend_of_the_same_digit():
    import cv2
    from sklearn.datasets import load_digits

    target = DigitsM(train_size=4, seed=3)
    index = int(target.indices("train")[2])
    digit = cv2.resize(load_digits().images[index].astype(np.float32) / 16, (32, 32), interpolation=cv2.INTER_NEAREST)
    image = target.dataset("train")[2]["image"]
    # out = |patch - digit| per channel: where the digit is 0 we see the patch, where it is 1 its complement.
    rng = np.random.default_rng([3, index])
    photo = photos(0.5)[int(rng.integers(len(photos(0.5))))]
    top, left = int(rng.integers(photo.shape[0] - 31)), int(rng.integers(photo.shape[1] - 31))
    patch = photo[top : top + 32, left : left + 32]
    assert np.allclose(image, np.abs(patch - digit[..., None]), atol=1e-6)
    assert target.dataset("train")[2]["label"] == int(load_digits().target[index])
    assert np.array_equal(DigitsM(train_size=4, seed=3).dataset("train")[2]["image"], image)  # deterministic
    assert not np.array_equal(DigitsM(train_size=4, seed=4).dataset("train")[2]["image"], image)


def test_target_training_samples_carry_no_labels():
    dm = PairedDataModule(
        Digits(train_size=8), DigitsM(train_size=8), tasks=["label"], batch_size=4, augmentation="none"
    )
    batch = next(iter(dm.train_dataloader()))[0]
    assert set(batch["target"]) == {"image"} and set(batch["source"]) == {"image", "label"}
    assert batch["source"]["image"].shape == (4, 3, 32, 32) and batch["source"]["label"].dtype == torch.int64


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match="train_size=701.*700"):
        Digits(train_size=701)
    with pytest.raises(ValueError, match="pool must be one of"):
        DigitsM(pool="both")
    with pytest.raises(ValueError, match="interpolation"):
        Digits(interpolation="lanczos")
