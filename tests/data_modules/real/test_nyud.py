"""NYUD-v2 (:mod:`data_modules.real.nyud`, :mod:`~data_modules.real.nyud_tables`): the 894->40->13 class tables,
the labelled .mat file's axes, 1-based splits and labels, the MTAN copy's conversions, pickling for workers."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from data_modules.real import (
    DatasetNotFoundError,
    NYUDv2,
    NYUDv2MTAN,
)
from data_modules.real.nyud_tables import CLASSES_13, CLASSES_40, MAP_40_TO_13, MAP_894_TO_40
from tests.helpers import real_fixtures as fx


def test_nyu_894_to_40_table():
    assert len(MAP_894_TO_40) == 894 and set(MAP_894_TO_40) <= set(range(1, 41))
    # Checksum of the vector transcribed from two independent copies of classMapping40.mat (they agree exactly).
    assert (
        hashlib.sha256(bytes(MAP_894_TO_40)).hexdigest()
        == "9c75cdc1ff39748751966fe8d8493b1d2ca3acda9ec861b2f70f52221d65a7bd"
    )
    # Raw NYU class names (1-based, from the labelled file's `names`) whose NYU-40 class is unambiguous.
    named = {
        3: "cabinet",
        4: "ceiling",
        5: "chair",
        7: "counter",
        11: "floor",
        15: "paper",
        17: "refrigerator",
        19: "table",
        21: "wall",
        24: "sink",
        26: "box",
        28: "door",
        36: "desk",
        42: "shelves",
        45: "whiteboard",
    }
    for raw, name in named.items():
        assert CLASSES_40[MAP_894_TO_40[raw - 1] - 1] == name, raw
    # Each specific class 1..37 is the image of exactly one raw class; the rest fall in the three "other" classes.
    counts = np.bincount(MAP_894_TO_40, minlength=41)
    assert (counts[1:38] == 1).all() and counts[38:].sum() == 894 - 37


def test_nyu_40_to_13_table():
    assert len(MAP_40_TO_13) == 40 and set(MAP_40_TO_13) == set(range(1, 14))
    expect = {
        "wall": "wall",
        "floor": "floor",
        "bed": "bed",
        "chair": "chair",
        "sofa": "sofa",
        "table": "table",
        "desk": "table",
        "window": "window",
        "blinds": "window",
        "curtain": "window",
        "door": "wall",
        "picture": "picture",
        "ceiling": "ceiling",
        "books": "books",
        "television": "tv",
        "floor mat": "floor",
        "cabinet": "furniture",
        "bookshelf": "furniture",
        "otherfurniture": "furniture",
        "pillow": "objects",
        "otherprop": "objects",
        "person": "objects",
    }
    for c40, c13 in expect.items():
        assert CLASSES_13[MAP_40_TO_13[CLASSES_40.index(c40)] - 1] == c13, c40


def test_nyud_mat_axes_splits_and_labels(env):
    domain = NYUDv2(crop=None, image_size=(fx.NYU_H, fx.NYU_W))
    assert domain.dataset("train").items == [0, 2] and domain.dataset("test").items == [1, 3]  # 1-based [1,3], [2,4]
    sample = domain.dataset("test")[0]  # MATLAB image 2
    np.testing.assert_allclose(sample["image"], fx.nyud_image(1) / 255.0, atol=1e-7)
    np.testing.assert_allclose(sample["depth"], fx.nyud_depth(1))
    # raw 0 -> ignore, 21 wall -> 0, 11 floor -> 1, 3 cabinet -> 2, 5 chair -> 4 (0-based NYU-40)
    expected = np.array([255, 0, 1, 2, 4])[(np.add.outer(np.arange(fx.NYU_H), np.arange(fx.NYU_W)) + 1) % 5]
    np.testing.assert_array_equal(sample["segmentation"], expected)
    domain13 = NYUDv2(num_classes=13, crop=None, image_size=(fx.NYU_H, fx.NYU_W))
    seg13 = domain13.dataset("test")[0]["segmentation"]
    np.testing.assert_array_equal(
        seg13, np.array([255, 11, 4, 5, 3])[(np.add.outer(np.arange(fx.NYU_H), np.arange(fx.NYU_W)) + 1) % 5]
    )
    assert domain.num_classes == 40 and domain13.class_names[11] == "wall"


def test_nyud_label_outside_mapping_warns_once(env):
    domain = NYUDv2(crop=None, image_size=(fx.NYU_H, fx.NYU_W))
    with pytest.warns(UserWarning, match="outside the NYUDv2 894->40 mapping") as record:
        sample = domain.dataset("test")[1]  # MATLAB image 4 holds raw id 895
        domain.dataset("test")[1]
    assert sum("outside" in str(w.message) for w in record) == 1
    assert sample["segmentation"][0, 0] == 255 and domain.mapper.unmapped_pixels == 2


def test_nyud_crop_and_missing_split(env, tmp_path):
    domain = NYUDv2(crop=(1, 5, 2, 7), image_size=(4, 5))
    np.testing.assert_allclose(domain.dataset("train")[0]["depth"], fx.nyud_depth(0)[1:5, 2:7])
    (tmp_path / "NYUDv2").mkdir()
    (tmp_path / "NYUDv2" / "nyu_depth_v2_labeled.mat").write_bytes(
        (env / "NYUDv2" / "nyu_depth_v2_labeled.mat").read_bytes()
    )
    with pytest.raises(DatasetNotFoundError) as info:
        NYUDv2(root=str(tmp_path / "NYUDv2"))
    message = str(info.value)
    assert "splits.mat" in message and "trainNdxs" in message and "cs.nyu.edu" in message


def test_nyud_mtan_conversions(env):
    domain = NYUDv2MTAN(image_size=(fx.MTAN_H, fx.MTAN_W))
    assert len(domain.dataset("train")) == 3 and len(domain.dataset("test")) == 2
    sample = domain.dataset("train")[1]
    raw = fx.mtan_sample(1)
    np.testing.assert_allclose(sample["image"], raw["image"])
    assert (
        sample["segmentation"][0, 0] == 255
        and sample["segmentation"][1, 0] == 11
        and sample["segmentation"][-1, 0] == 4
    )
    assert (
        sample["depth"].shape == (fx.MTAN_H, fx.MTAN_W) and sample["depth"][0, 0] == 0 and sample["depth"][5, 5] == 3.0
    )
    # NYU toolbox frame (y up) -> umadapt (y down): the floor's upward normal becomes -y; walls keep -z.
    np.testing.assert_allclose(sample["normals"][-1, 0], [0, -1, 0])
    np.testing.assert_allclose(sample["normals"][0, 0], [0, 0, -1])
    with pytest.warns(UserWarning, match="floor's normals point down"):
        NYUDv2MTAN(image_size=(fx.MTAN_H, fx.MTAN_W), normals_axes="x,y,z").dataset("train")[0]


def test_domains_pickle_for_workers(env):
    import pickle

    domain = NYUDv2(crop=None, image_size=(fx.NYU_H, fx.NYU_W))
    domain.dataset("train")[0]  # opens the HDF5 file in this process
    clone = pickle.loads(pickle.dumps(domain.dataset("train")))
    np.testing.assert_allclose(clone[0]["depth"], fx.nyud_depth(0))
