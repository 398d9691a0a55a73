"""The SynthRooms domain (:mod:`data_modules.synthrooms.domain`): determinism and caching, splits, looks sharing
scenes, the Domain protocol, argument checking, pickling for workers."""

from __future__ import annotations

import numpy as np
import pytest

from data_modules.domain import SPLITS, Domain
from data_modules.synthrooms import CLASS_NAMES, SynthRooms, render_sample

KEYS = {"image", "depth", "normals", "segmentation", "contours"}


def test_determinism_across_instances_and_caching():
    a = SynthRooms("real", seed=5, train_size=10).dataset("train")
    b = SynthRooms("real", seed=5, train_size=10, cache=False).dataset("train")
    for i in (0, 9):
        first, second, again = a[i], b[i], a[i]
        for key in KEYS:
            np.testing.assert_array_equal(first[key], second[key])
            np.testing.assert_array_equal(first[key], again[key])
    fresh, _ = render_sample(5, "train", 9, "real")
    np.testing.assert_array_equal(fresh["image"], a[9]["image"])
    assert not np.array_equal(a[0]["depth"], a[1]["depth"])
    assert not np.array_equal(a[0]["image"], SynthRooms("real", seed=6).dataset("train")[0]["image"])
    # The cache hands out copies: a caller mutating a sample cannot corrupt it.
    sample = a[0]
    sample["depth"][:] = -1.0
    sample["image"][:] = 0.0
    assert (a[0]["depth"] > 0).all() and a[0]["image"].max() > 0
    assert a[-1]["depth"].tobytes() == a[9]["depth"].tobytes()
    with pytest.raises(IndexError):
        a[10]


def test_splits_differ_and_looks_share_scenes():
    domain = SynthRooms(seed=2, train_size=4, val_size=4, test_size=4)
    depths = [domain.dataset(split)[0]["depth"] for split in SPLITS]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not np.array_equal(depths[i], depths[j])
    real = SynthRooms("real", seed=2, train_size=4).dataset("train")[0]
    synthetic = domain.dataset("train")[0]
    for key in ("depth", "normals", "segmentation", "contours"):
        np.testing.assert_array_equal(real[key], synthetic[key])
    assert not np.array_equal(real["image"], synthetic["image"])


def test_domain_protocol_and_attributes():
    domain = SynthRooms("real", seed=1, image_size=32, train_size=3, val_size=2, test_size=1)
    assert isinstance(domain, Domain)
    assert domain.name == "synthrooms-real" and domain.image_size == (32, 32)
    assert tuple(domain.tasks) == ("depth", "normals", "segmentation", "contours")
    assert domain.num_classes == len(domain.class_names) == 5 and tuple(domain.class_names) == CLASS_NAMES
    assert [len(domain.dataset(s)) for s in SPLITS] == [3, 2, 1]
    assert domain.dataset("train") is domain.dataset("train")
    assert domain.dataset("test")[0]["image"].shape == (32, 32, 3)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"look": "photoreal"}, ["photoreal", "synthetic", "real"]),
        ({"image_size": 8}, ["8", "16"]),
        ({"image_size": (64, 15)}, ["15", "16"]),
        ({"train_size": 0}, ["train_size", "0"]),
        ({"val_size": -3}, ["val_size", "-3"]),
        ({"test_size": 2.5}, ["test_size", "2.5"]),
        ({"seed": -1}, ["seed", "-1"]),
    ],
)
def test_bad_arguments_raise(kwargs, words):
    with pytest.raises(ValueError) as info:
        SynthRooms(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_bad_split_raises():
    with pytest.raises(ValueError, match="train.*val.*test.*'dev'|'dev'.*train.*val.*test"):
        SynthRooms().dataset("dev")
    with pytest.raises(ValueError, match="synthetic"):
        render_sample(0, "train", 0, look="cartoon")


def test_dataset_pickles_for_worker_processes():
    import pickle

    dataset = SynthRooms(seed=3, train_size=2).dataset("train")
    expected = dataset[1]
    clone = pickle.loads(pickle.dumps(dataset))
    np.testing.assert_array_equal(clone[1]["normals"], expected["normals"])
