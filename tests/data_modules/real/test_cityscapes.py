"""Cityscapes (:mod:`data_modules.real.cityscapes`, :mod:`~data_modules.real.cityscapes_labels`): the label table
against cityscapesScripts, train IDs and depth from disparity by hand, the 16-class protocol, bad camera files."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from data_modules.real import (
    Cityscapes,
    CorruptFileError,
    DatasetNotFoundError,
)
from data_modules.real.cityscapes import disparity_to_depth
from data_modules.real.cityscapes_labels import LABEL_TABLE, TRAIN_CLASSES, label_id_table
from tests.helpers import real_fixtures as fx


def test_cityscapes_table_matches_cityscapesscripts():
    labels = pytest.importorskip("cityscapesscripts.helpers.labels")
    official = [(label.name, label.id, label.trainId) for label in labels.labels]
    assert list(LABEL_TABLE) == official
    table, names = label_id_table(19)
    for label in labels.labels:
        if label.id >= 0:
            assert table[label.id] == (label.trainId if label.trainId not in (-1, 255) else 255), label.name
    assert names == TRAIN_CLASSES and len(names) == 19


def test_cityscapes_labels_and_depth(env):
    domain = Cityscapes(image_size=(fx.CS_H, fx.CS_W))
    assert [p.name for p in domain.dataset("test").items] == [
        "frankfurt_000000_000294_leftImg8bit.png",
        "lindau_000000_000019_leftImg8bit.png",
    ]
    sample = domain.dataset("test")[1]
    # label ids 7 road, 26 car, 0 unlabeled, 9 parking, 33 bicycle, 24 person -> 0, 13, 255, 255, 18, 11
    expected = np.array([0, 13, 255, 255, 18, 11])[(np.add.outer(np.arange(fx.CS_H), np.arange(fx.CS_W)) + 1) % 6]
    np.testing.assert_array_equal(sample["segmentation"], expected)
    # disparity p: 0 and 1 -> invalid; 257 -> d = 1 px -> 0.2 m * 2000 px / 1 px = 400 m; 25601 -> d = 100 -> 4 m
    np.testing.assert_allclose(sample["depth"][0, :4], [0.0, 400.0, 4.0, 0.0])
    np.testing.assert_allclose(
        disparity_to_depth(np.array([0, 1, 257, 513]), 0.2, 2000.0, max_depth=300.0), [0, 0, 0, 200.0]
    )


def test_cityscapes_16_class_protocol_and_seg_only(env, data_root, tmp_path):
    domain = Cityscapes(num_classes=16, tasks=["segmentation"], image_size=(fx.CS_H, fx.CS_W))
    seg = domain.dataset("train")[0]["segmentation"]
    assert set(np.unique(seg)) == {0, 12, 255, 15, 10}  # road, car, ignore, bicycle, person in the 16-class order
    assert "depth" not in domain.dataset("train")[0]
    with pytest.raises(DatasetNotFoundError, match="disparity"):
        root = tmp_path / "cs"
        (root / "leftImg8bit" / "train").mkdir(parents=True)
        (root / "leftImg8bit" / "val").mkdir(parents=True)
        (root / "gtFine" / "train").mkdir(parents=True)
        (root / "gtFine" / "val").mkdir(parents=True)
        Cityscapes(root=str(root))


def test_missing_data_root_names_the_fix(monkeypatch):
    monkeypatch.delenv("DATA_ROOT", raising=False)
    with pytest.raises(DatasetNotFoundError) as info:
        Cityscapes()
    assert (
        "DATA_ROOT" in str(info.value)
        and "leftImg8bit" in str(info.value)
        and "cityscapes-dataset.com" in str(info.value)
    )


def test_corrupt_camera_json_and_label_outside_table(tmp_path):
    root = fx.write_cityscapes(tmp_path / "Cityscapes")
    camera = next((root / "camera" / "val").rglob("*.json"))
    camera.write_text(json.dumps({"intrinsic": {"fx": 1.0}}))
    label = next((root / "gtFine" / "val").rglob("*labelIds.png"))
    ids = fx.cityscapes_labels(0)
    ids[0, 0] = 200
    fx._png8(label, ids)
    domain = Cityscapes(root=str(root), image_size=(fx.CS_H, fx.CS_W))
    with pytest.raises(CorruptFileError, match="camera.json"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the out-of-table label is reported by the segmentation-only domain below
        domain.dataset("test")[0]
    seg_only = Cityscapes(root=str(root), tasks=["segmentation"], image_size=(fx.CS_H, fx.CS_W))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        seg = seg_only.dataset("test")[0]["segmentation"]
        seg_only.dataset("test")[0]
    assert seg[0, 0] == 255 and sum("outside" in str(w.message) for w in record) == 1
    assert seg_only.mapper.unmapped_pixels == 2 and seg_only.mapper.unmapped_values == {200}
