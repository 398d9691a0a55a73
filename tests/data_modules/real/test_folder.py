"""The folder format's two layouts on fixtures written as docs/real_datasets.md documents them: classification as
class folders (``<domain>/<class>/<image>``) through configuration alone, layout detection that says what it
found, and errors about a user's own files that say to fix that file."""

from __future__ import annotations

import numpy as np
import pytest

from data_modules.real import CorruptFileError, DatasetNotFoundError, FolderDomain
from tests.helpers import real_fixtures as fx


@pytest.fixture
def classes_root(tmp_path):
    return fx.write_own_data(tmp_path, layout="classes") / "my_sim"


def test_class_folders_are_a_folder_domain(classes_root):
    domain = FolderDomain(root=str(classes_root), name="my_sim", image_size=8)
    assert domain.layout == "classes" and domain.tasks == ("label",)
    assert domain.class_names == tuple(sorted(fx.OWN_CLASSES)) and domain.num_classes == 3
    splits = {s: domain.dataset(s).items for s in ("train", "val", "test")}
    assert sorted(n for names in splits.values() for n in names) == sorted(domain.images)  # disjoint, complete
    assert len(domain.images) == 6
    assert all(name.count("/") == 1 for name in domain.images)  # <class>/<image file>
    for name in domain.images:
        sample = domain.load(name)
        label = domain.class_names.index(name.split("/")[0])
        assert sample["label"] == label and abs(sample["image"].mean() * 255 - 3 * label) < 3  # grey level: class


def test_class_folders_split_files_and_class_list(classes_root):
    (classes_root / "splits").mkdir()
    (classes_root / "splits" / "test.txt").write_text("mug/frame_0000.jpg\nplate/frame_0001.jpg\n")
    (classes_root / "classes.txt").write_text("plate\nmug\ncup\nbowl\n")  # its order wins; bowl has no folder yet
    domain = FolderDomain(root=str(classes_root), name="my_sim", layout="classes", image_size=8)
    assert domain.dataset("test").items == ["mug/frame_0000.jpg", "plate/frame_0001.jpg"]  # "splits" is no class
    assert domain.class_names == ("plate", "mug", "cup", "bowl") and domain.load("mug/frame_0000.jpg")["label"] == 1
    (classes_root / "classes.txt").write_text("plate\nmug\n")
    with pytest.raises(CorruptFileError, match=r"classes.txt.*does not list the class folder\(s\) \['cup'\]"):
        FolderDomain(root=str(classes_root), name="my_sim", image_size=8)


def test_layout_detection_is_explicit_in_errors(tmp_path, classes_root):
    with pytest.raises(ValueError, match="layout: auto found no images/ folder.*task label only"):
        FolderDomain(root=str(classes_root), name="my_sim", tasks=["depth"])
    empty = tmp_path / "empty"
    (empty / "depth").mkdir(parents=True)  # a dense folder without images/: not mistaken for a class named depth
    with pytest.raises(DatasetNotFoundError) as info:
        FolderDomain(root=str(empty), name="empty")
    message = str(info.value)
    assert "neither images/" in message and "layout: dense" in message and "<class>/<image>" in message, message
    with pytest.raises(ValueError, match="layout must be one of"):
        FolderDomain(root=str(classes_root), layout="imagefolder")
    dense = fx.write_folder(tmp_path / "dense", count=2)
    assert FolderDomain(root=str(dense), image_size=8).layout == "dense"


@pytest.mark.parametrize("layout", ["dense", "classes"])
def test_bad_own_file_says_fix_that_file(tmp_path, layout):
    root = fx.write_own_data(tmp_path, layout=layout) / "my_sim"
    bad = min((root / "images").glob("*.png") if layout == "dense" else root.glob("cup/*.jpg"))
    fx.write_garbage(bad)
    domain = FolderDomain(root=str(root), image_size=8)
    name = bad.stem if layout == "dense" else f"cup/{bad.name}"
    with pytest.raises(CorruptFileError) as info:
        domain.load(name)
    message = str(info.value)
    assert str(bad) in message and "Fix or remove that file" in message and "original download" not in message
    assert info.value.path == str(bad)


def test_dense_label_of_wrong_size_names_the_file(tmp_path):
    root = fx.write_folder(tmp_path / "mine", count=2)
    fx._png16(root / "depth" / "frame_001.png", np.ones((4, 4), np.uint16))
    with pytest.raises(CorruptFileError, match=r"frame_001.png: its depth is 4x4, but the image is 16x24\. Fix"):
        FolderDomain(root=str(root), image_size=8).load("frame_001")


# -- the dense layout's values ------------------------------------------------------------------------------------
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
    assert (
        sample["segmentation"][0, 0] == 255
        and sample["segmentation"][5, 5] == 11
        and sample["segmentation"][-1, 5] == 4
    )


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
