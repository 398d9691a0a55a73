"""The real-dataset readers on tiny copies written in each dataset's exact on-disk format: values, not only shapes
(label mappings against the official tables, depth from disparity by hand, 1-based split indices, axis orders),
and bad input (missing roots and files, corrupt images, labels outside the mapping)."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from data_modules.real import (
    GTA5,
    NYUDv2,
    NYUDv2MTAN,
    Cityscapes,
    CorruptFileError,
    DatasetNotFoundError,
    FolderDomain,
    Office31,
    OfficeHome,
    SynthiaRandCityscapes,
    fit_sample,
)
from data_modules.real.cityscapes import disparity_to_depth
from data_modules.real.cityscapes_labels import LABEL_TABLE, TRAIN_CLASSES, label_id_table
from data_modules.real.nyud_tables import CLASSES_13, CLASSES_40, MAP_40_TO_13, MAP_894_TO_40
from data_modules.real.synthia import SYNTHIA_TO_TRAIN_ID
from tests import real_fixtures as fx

# ----------------------------------------------------------------------------------------------- mapping tables


def test_nyu_894_to_40_table():
    assert len(MAP_894_TO_40) == 894 and set(MAP_894_TO_40) <= set(range(1, 41))
    # Checksum of the vector transcribed from two independent copies of classMapping40.mat (they agree exactly).
    assert hashlib.sha256(bytes(MAP_894_TO_40)).hexdigest() == "9c75cdc1ff39748751966fe8d8493b1d2ca3acda9ec861b2f70f52221d65a7bd"
    # Raw NYU class names (1-based, from the labelled file's `names`) whose NYU-40 class is unambiguous.
    named = {3: "cabinet", 4: "ceiling", 5: "chair", 7: "counter", 11: "floor", 15: "paper", 17: "refrigerator",
             19: "table", 21: "wall", 24: "sink", 26: "box", 28: "door", 36: "desk", 42: "shelves", 45: "whiteboard"}
    for raw, name in named.items():
        assert CLASSES_40[MAP_894_TO_40[raw - 1] - 1] == name, raw
    # Each specific class 1..37 is the image of exactly one raw class; the rest fall in the three "other" classes.
    counts = np.bincount(MAP_894_TO_40, minlength=41)
    assert (counts[1:38] == 1).all() and counts[38:].sum() == 894 - 37


def test_nyu_40_to_13_table():
    assert len(MAP_40_TO_13) == 40 and set(MAP_40_TO_13) == set(range(1, 14))
    expect = {"wall": "wall", "floor": "floor", "bed": "bed", "chair": "chair", "sofa": "sofa", "table": "table",
              "desk": "table", "window": "window", "blinds": "window", "curtain": "window", "door": "wall",
              "picture": "picture", "ceiling": "ceiling", "books": "books", "television": "tv", "floor mat": "floor",
              "cabinet": "furniture", "bookshelf": "furniture", "otherfurniture": "furniture", "pillow": "objects",
              "otherprop": "objects", "person": "objects"}
    for c40, c13 in expect.items():
        assert CLASSES_13[MAP_40_TO_13[CLASSES_40.index(c40)] - 1] == c13, c40


def test_cityscapes_table_matches_cityscapesscripts():
    labels = pytest.importorskip("cityscapesscripts.helpers.labels")
    official = [(label.name, label.id, label.trainId) for label in labels.labels]
    assert list(LABEL_TABLE) == official
    table, names = label_id_table(19)
    for label in labels.labels:
        if label.id >= 0:
            assert table[label.id] == (label.trainId if label.trainId not in (-1, 255) else 255), label.name
    assert names == TRAIN_CLASSES and len(names) == 19


def test_synthia_and_protocols():
    assert sorted(SYNTHIA_TO_TRAIN_ID.values()) == list(range(19))
    table16, names16 = label_id_table(16)
    table13, names13 = label_id_table(13)
    assert "terrain" not in names16 and "truck" not in names16 and "train" not in names16 and len(names16) == 16
    assert not {"wall", "fence", "pole"} & set(names13) and len(names13) == 13
    assert table16[26] == names16.index("car") and table13[26] == names13.index("car") and table16[22] == 255


# ----------------------------------------------------------------------------------------------- NYUD-v2


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return fx.write_all(tmp_path_factory.mktemp("data"))


@pytest.fixture
def env(data_root, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", str(data_root))
    return data_root


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
    np.testing.assert_array_equal(seg13, np.array([255, 11, 4, 5, 3])[(np.add.outer(np.arange(fx.NYU_H), np.arange(fx.NYU_W)) + 1) % 5])
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
    (tmp_path / "NYUDv2" / "nyu_depth_v2_labeled.mat").write_bytes((env / "NYUDv2" / "nyu_depth_v2_labeled.mat").read_bytes())
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
    assert sample["segmentation"][0, 0] == 255 and sample["segmentation"][1, 0] == 11 and sample["segmentation"][-1, 0] == 4
    assert sample["depth"].shape == (fx.MTAN_H, fx.MTAN_W) and sample["depth"][0, 0] == 0 and sample["depth"][5, 5] == 3.0
    # NYU toolbox frame (y up) -> umadapt (y down): the floor's upward normal becomes -y; walls keep -z.
    np.testing.assert_allclose(sample["normals"][-1, 0], [0, -1, 0])
    np.testing.assert_allclose(sample["normals"][0, 0], [0, 0, -1])
    with pytest.warns(UserWarning, match="floor's normals point down"):
        NYUDv2MTAN(image_size=(fx.MTAN_H, fx.MTAN_W), normals_axes="x,y,z").dataset("train")[0]


# ----------------------------------------------------------------------------------------------- Cityscapes family


def test_cityscapes_labels_and_depth(env):
    domain = Cityscapes(image_size=(fx.CS_H, fx.CS_W))
    assert [p.name for p in domain.dataset("test").items] == [
        "frankfurt_000000_000294_leftImg8bit.png", "lindau_000000_000019_leftImg8bit.png"]
    sample = domain.dataset("test")[1]
    # label ids 7 road, 26 car, 0 unlabeled, 9 parking, 33 bicycle, 24 person -> 0, 13, 255, 255, 18, 11
    expected = np.array([0, 13, 255, 255, 18, 11])[(np.add.outer(np.arange(fx.CS_H), np.arange(fx.CS_W)) + 1) % 6]
    np.testing.assert_array_equal(sample["segmentation"], expected)
    # disparity p: 0 and 1 -> invalid; 257 -> d = 1 px -> 0.2 m * 2000 px / 1 px = 400 m; 25601 -> d = 100 -> 4 m
    np.testing.assert_allclose(sample["depth"][0, :4], [0.0, 400.0, 4.0, 0.0])
    np.testing.assert_allclose(disparity_to_depth(np.array([0, 1, 257, 513]), 0.2, 2000.0, max_depth=300.0), [0, 0, 0, 200.0])


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


def test_gta5_reads_palette_indices_and_resizes_per_key(env):
    domain = GTA5(image_size=(fx.GTA_H, fx.GTA_W), val_fraction=0.5)
    assert len(domain.dataset("train")) == 4 and len(domain.dataset("val")) == 2
    assert domain.dataset("val").items == domain.dataset("test").items
    raw = fx.gta5_labels(0)
    sample = domain.dataset("train")[0]
    np.testing.assert_array_equal(sample["segmentation"], label_id_table(19)[0][raw])
    # Resizing: labels nearest (only values that exist), image interpolated.
    small = fit_sample(sample, (5, 9), "stretch")
    assert set(np.unique(small["segmentation"])) <= set(np.unique(sample["segmentation"]))
    np.testing.assert_array_equal(small["segmentation"], sample["segmentation"][1::2, 1::2])
    holdout = GTA5(image_size=(fx.GTA_H, fx.GTA_W), val_fraction=0.5, holdout=True)
    assert not set(holdout.dataset("train").items) & set(holdout.dataset("val").items)


def test_synthia_first_channel_and_depth(env):
    domain = SynthiaRandCityscapes(image_size=(fx.SYN_H, fx.SYN_W))
    sample = domain.dataset("train")[2]
    ids = fx.synthia_ids(2)
    # 3 road -> 0, 8 car -> 12, 21 wall -> 3, 16 terrain -> ignore (16-class), 0 void, 22 lanemarking -> ignore
    expected = {3: 0, 8: 12, 21: 3, 16: 255, 0: 255, 22: 255}
    np.testing.assert_array_equal(sample["segmentation"], np.vectorize(expected.get)(ids))
    np.testing.assert_allclose(sample["depth"], fx.synthia_depth_cm(2) / 100.0, rtol=1e-6)
    thirteen = SynthiaRandCityscapes(num_classes=13, tasks=["segmentation"], image_size=(fx.SYN_H, fx.SYN_W))
    assert set(np.unique(thirteen.dataset("train")[2]["segmentation"])) == {0, 9, 255}  # wall is not in the 13


def test_crop_fit_keeps_aspect_ratio():
    image = np.zeros((4, 8, 3), np.float32)
    depth = np.tile(np.arange(8, dtype=np.float32), (4, 1))
    out = fit_sample({"image": image, "depth": depth}, (4, 4), "crop")
    np.testing.assert_array_equal(out["depth"][0], [2, 3, 4, 5])  # centre crop, no rescale needed
    out = fit_sample({"image": image, "depth": depth}, (2, 2), "crop")
    np.testing.assert_array_equal(out["depth"][0], [3, 5])  # centres 2.5 and 4.5 of the crop, ties upwards


# ----------------------------------------------------------------------------------------------- Office


def test_office31_classes_labels_and_splits(env):
    domain = Office31(domain="dslr", image_size=8)
    assert domain.num_classes == 31 and domain.class_names == tuple(sorted(fx.OFFICE31_CLASSES))
    train, test, val = domain.dataset("train"), domain.dataset("test"), domain.dataset("val")
    assert len(train) == len(test) == 31 and len(val) == 3 and set(val.items) <= set(train.items)
    for index in (0, 17, 30):
        sample = train[index]
        label = sample["label"]
        assert abs(sample["image"].mean() * 255 - 3 * label) < 2  # the fixture's grey level encodes the class
    other = Office31(domain="webcam", image_size=8, seed=1)
    assert other.class_names == domain.class_names and other.dataset("val").items != Office31(domain="webcam", image_size=8).dataset("val").items


def test_officehome_real_world_and_bad_domain(env, data_root):
    domain = OfficeHome(domain="Real World", image_size=8)
    assert domain.num_classes == 65 and len(domain.dataset("test")) == 65
    with pytest.raises(ValueError, match="valid domains"):
        OfficeHome(domain="Sketch")
    with pytest.raises(DatasetNotFoundError, match="Found 3 class folders"):
        root = data_root / "tiny_office"
        for name in ("a", "b", "c"):
            (root / "amazon" / "images" / name).mkdir(parents=True, exist_ok=True)
        Office31(domain="amazon", root=str(root))


# ----------------------------------------------------------------------------------------------- folder format


def test_folder_format_values(env):
    domain = FolderDomain(name="sim_nyud", image_size=(fx.FOLDER_H, fx.FOLDER_W))
    assert domain.tasks == ("depth", "normals", "segmentation") and domain.num_classes == 13
    splits = {s: domain.dataset(s).items for s in ("train", "val", "test")}
    assert sum(map(len, splits.values())) == 6 and not set(splits["train"]) & set(splits["test"])
    sample = domain.dataset("train")[0]
    k = int(splits["train"][0].split("_")[1])
    assert sample["depth"][0, 0] == 0 and sample["depth"][3, 3] == pytest.approx(1.5 + 0.1 * k)
    np.testing.assert_allclose(sample["normals"][0, 0], [0, 0, -1], atol=0.01)
    np.testing.assert_allclose(sample["normals"][-1, 0], [0, -1, 0], atol=0.01)
    assert sample["segmentation"][0, 0] == 255 and sample["segmentation"][5, 5] == 11 and sample["segmentation"][-1, 5] == 4


def test_folder_split_files_missing_labels_and_out_of_range(tmp_path):
    root = fx.write_folder(tmp_path / "mine", count=4, classes=("a", "b", "c"))
    (root / "splits").mkdir()
    (root / "splits" / "test.txt").write_text("frame_000\nframe_001\n")
    (root / "depth" / "frame_001.png").unlink()
    domain = FolderDomain(root=str(root), name="mine", image_size=(fx.FOLDER_H, fx.FOLDER_W))
    assert domain.dataset("test").items == ["frame_000", "frame_001"]
    assert set(domain.dataset("train").items) | set(domain.dataset("val").items) == {"frame_002", "frame_003"}
    with pytest.warns(UserWarning) as record:
        sample = domain.dataset("test")[1]
    messages = [str(w.message) for w in record]
    assert any("no depth file" in m for m in messages) and (sample["depth"] == 0).all()
    assert any("outside" in m for m in messages)  # class IDs 11 and 4 >= 3 classes -> ignore, reported once
    assert (sample["segmentation"] == 255).all() and domain.mapper.unmapped_pixels > 0 and domain.missing["depth"] == 1


# ----------------------------------------------------------------------------------------------- bad input


def test_missing_data_root_names_the_fix(monkeypatch):
    monkeypatch.delenv("DATA_ROOT", raising=False)
    with pytest.raises(DatasetNotFoundError) as info:
        Cityscapes()
    assert "DATA_ROOT" in str(info.value) and "leftImg8bit" in str(info.value) and "cityscapes-dataset.com" in str(info.value)


def test_missing_root_names_path_layout_and_source(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    for reader, folder, layout_word, source_word in (
        (lambda: GTA5(), "GTA5", "labels/", "Playing for Data"),
        (lambda: SynthiaRandCityscapes(), "RAND_CITYSCAPES", "GT/LABELS", "synthia-dataset.net"),
        (lambda: NYUDv2MTAN(), "NYUDv2_MTAN", "normal/0.npy", "mtan"),
        (lambda: Office31(domain="amazon"), "Office31", "images/<class>", "Office-31"),
        (lambda: FolderDomain(name="my_sim"), "my_sim", "classes.txt", "your own data"),
    ):
        with pytest.raises(DatasetNotFoundError) as info:
            reader()
        message = str(info.value)
        assert str(tmp_path / folder) in message and layout_word in message and source_word in message, message
        assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)


def test_corrupt_image_names_the_file_or_is_skipped_and_counted(tmp_path):
    root = fx.write_gta5(tmp_path / "GTA5")
    bad = root / "images" / "00002.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    domain = GTA5(root=str(root), image_size=(fx.GTA_H, fx.GTA_W))
    with pytest.raises(CorruptFileError, match="00002.png"):
        domain.dataset("train")[1]
    skipping = GTA5(root=str(root), image_size=(fx.GTA_H, fx.GTA_W), skip_bad_files=True)
    with pytest.warns(UserWarning, match="skipped unreadable file .*00002.png"):
        sample = skipping.dataset("train")[1]
    np.testing.assert_array_equal(sample["segmentation"], label_id_table(19)[0][fx.gta5_labels(2)])  # the next one
    assert list(skipping.dataset("train").skipped) == [str(bad)]


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


def test_domains_pickle_for_workers(env):
    import pickle

    domain = NYUDv2(crop=None, image_size=(fx.NYU_H, fx.NYU_W))
    domain.dataset("train")[0]  # opens the HDF5 file in this process
    clone = pickle.loads(pickle.dumps(domain.dataset("train")))
    np.testing.assert_allclose(clone[0]["depth"], fx.nyud_depth(0))


def test_gta5_label_of_another_size_is_resized_and_reported(tmp_path):
    root = fx.write_gta5(tmp_path / "GTA5")
    fx._png8(root / "labels" / "00001.png", np.kron(fx.gta5_labels(0), np.ones((2, 2), np.uint8)))  # twice the size
    domain = GTA5(root=str(root), image_size=(fx.GTA_H, fx.GTA_W))
    with pytest.warns(UserWarning, match="differs from its image"):
        sample = domain.dataset("train")[0]
    np.testing.assert_array_equal(sample["segmentation"], label_id_table(19)[0][fx.gta5_labels(0)])
    assert domain.resized_labels == [str(root / "labels" / "00001.png")]
