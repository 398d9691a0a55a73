"""``eval_resolution`` of the real-data readers: with ``native`` the val/test samples also carry every dense target
at its stored size (after the reader's own crop; with ``fit: crop`` the region the image keeps), train samples never
do, the default is unchanged, and the paired data module batches them (as a list when sizes differ)."""

from __future__ import annotations

import inspect
import shutil

import numpy as np
import pytest
import torch

from data_modules import PairedDataModule
from data_modules.real import GTA5, Cityscapes, FolderDomain, NYUDv2, NYUDv2MTAN, SynthiaRandCityscapes
from data_modules.real.cityscapes_labels import label_id_table
from data_modules.real.io import FileDataset, native_box
from data_modules.real.nyud import class_table
from tests.helpers import real_fixtures as fx
from tests.helpers import tiny_model, tiny_trainer
from umadapt.samples import collate_samples

READERS = (NYUDv2, NYUDv2MTAN, Cityscapes, GTA5, SynthiaRandCityscapes, FolderDomain)


def _png(path, array):
    from PIL import Image

    Image.fromarray(array).save(path)


def test_native_targets_have_the_stored_size_and_equal_the_raw_labels(env):
    domain = Cityscapes(image_size=(4, 8), eval_resolution="native")
    sample = domain.dataset("test")[0]  # frankfurt: fixture frame k=0
    assert sample["segmentation"].shape == sample["depth"].shape == (4, 8)
    np.testing.assert_array_equal(sample["native/segmentation"], label_id_table(19)[0][fx.cityscapes_labels(0)])
    np.testing.assert_array_equal(sample["native/depth"], domain.load(domain.dataset("test").items[0])["depth"])
    assert sample["native/depth"].shape == (fx.CS_H, fx.CS_W) and sample["native/depth"].dtype == np.float32


def test_nyud_native_targets_are_the_cropped_stored_labels(env):
    domain = NYUDv2(crop=(1, 5, 2, 7), image_size=(2, 3), eval_resolution="native")
    sample = domain.dataset("test")[0]  # testNdxs[0] = 2 (1-based): image 1
    np.testing.assert_array_equal(sample["native/depth"], fx.nyud_depth(1)[1:5, 2:7])
    np.testing.assert_array_equal(sample["native/segmentation"], class_table(40)[0][fx.nyud_labels(1)][1:5, 2:7])
    assert sample["depth"].shape == (2, 3)
    mtan = NYUDv2MTAN(image_size=(12, 16), eval_resolution="native").dataset("test")
    served = mtan[0]
    assert served["normals"].shape == (12, 16, 3)
    np.testing.assert_array_equal(served["native/normals"], mtan.load(mtan.items[0])["normals"])
    assert served["native/depth"].shape == served["native/segmentation"].shape == (fx.MTAN_H, fx.MTAN_W)


def test_default_is_unchanged_and_training_samples_never_carry_native_targets(env):
    default = Cityscapes(image_size=(4, 8))
    native = Cityscapes(image_size=(4, 8), eval_resolution="native")
    for split in ("train", "val", "test"):
        for index in range(len(default.dataset(split))):
            plain, extended = default.dataset(split)[index], native.dataset(split)[index]
            assert not [k for k in plain if k.startswith("native/")]
            for key, value in plain.items():
                assert value.dtype == extended[key].dtype and np.array_equal(value, extended[key])
            extra = sorted(set(extended) - set(plain))
            assert extra == ([] if split == "train" else ["native/depth", "native/segmentation"])
    assert default.describe()["eval_resolution"] == "image_size"


def test_native_box_hand_computed():
    assert native_box((10, 40), (10, 20), "stretch") == (0, 10, 0, 40)
    assert native_box((10, 40), (10, 20), "crop") == (0, 10, 10, 30)  # scale 1: the centre 20 columns
    assert native_box((10, 18), (4, 16), "crop") == (2, 7, 0, 18)  # scaled to 9x16, rows 2..5 -> 2.2..6.7
    assert native_box((1052, 1914), (512, 1024), "crop") == (47, 1003, 0, 1914)  # GTA5 -> 512x1024
    assert native_box((8, 16), (8, 16), "crop") == (0, 8, 0, 16)


def test_fit_crop_native_target_is_the_centre_region_of_the_image_crop():
    rng = np.random.default_rng(0)
    raw = {
        "image": rng.random((10, 40, 3)).astype(np.float32),
        "segmentation": np.arange(400).reshape(10, 40) % 7,
        "depth": rng.random((10, 40)).astype(np.float32),
    }
    sample = FileDataset([0], lambda _: raw, (10, 20), "crop", native=True)[0]
    np.testing.assert_array_equal(sample["image"], raw["image"][:, 10:30])  # scale 1: a pure centre crop
    np.testing.assert_array_equal(sample["native/segmentation"], raw["segmentation"][:, 10:30])
    np.testing.assert_array_equal(sample["native/depth"], raw["depth"][:, 10:30])
    np.testing.assert_array_equal(sample["segmentation"], sample["native/segmentation"])


def test_gta5_fit_crop_native_labels_are_the_unresampled_centre_rows(env):
    domain = GTA5(image_size=(4, 16), fit="crop", eval_resolution="native")
    dataset = domain.dataset("val")
    k = int(dataset.items[0].stem) - 1
    sample = dataset[0]
    np.testing.assert_array_equal(sample["native/segmentation"], label_id_table(19)[0][fx.gta5_labels(k)][2:7])
    assert sample["segmentation"].shape == (4, 16)
    synthia = SynthiaRandCityscapes(image_size=(12, 10), fit="crop", eval_resolution="native").dataset("test")[0]
    assert synthia["native/depth"].shape == (fx.SYN_H, 10)  # 12x20 frame -> centre 12x10, not resampled


@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.__name__)
def test_every_reader_takes_the_option_and_names_the_allowed_values(reader, env):
    parameter = inspect.signature(reader.__init__).parameters["eval_resolution"]
    assert parameter.default == "image_size"  # jsonargparse reads the signature
    options = {"name": "sim_nyud"} if reader is FolderDomain else {}
    if reader is NYUDv2:
        options["crop"] = None
    with pytest.raises(ValueError, match=r"^eval_resolution must be one of \('image_size', 'native'\), got 'full'"):
        reader(image_size=(4, 8), eval_resolution="full", **options)


def test_paired_module_serves_native_targets_for_evaluation_only(env):
    source = GTA5(image_size=(8, 16), eval_resolution="native")
    target = Cityscapes(tasks=["segmentation"], image_size=(8, 16), eval_resolution="native")
    dm = PairedDataModule(source, target, tasks=["segmentation"], batch_size=2, augmentation="none")
    val = next(iter(dm.test_dataloader()[1]))  # the two official val frames
    assert val["segmentation"].shape == (2, 8, 16) and val["native/segmentation"].shape == (2, fx.CS_H, fx.CS_W)
    assert val["native/segmentation"].dtype == torch.int64
    train = next(iter(dm.train_dataloader()))[0]
    assert sorted(train["source"]) == ["image", "segmentation"] and sorted(train["target"]) == ["image"]
    assert sorted(next(iter(dm.predict_dataloader()))) == ["image", "segmentation"]


def test_collate_keeps_differently_sized_native_targets_as_a_list():
    samples = [
        {"image": torch.zeros(3, 2, 2), "native/depth": torch.ones(1, 4, 6)},
        {"image": torch.zeros(3, 2, 2), "native/depth": torch.ones(1, 5, 6)},
    ]
    batch = collate_samples(samples)
    assert batch["image"].shape == (2, 3, 2, 2)
    assert [t.shape for t in batch["native/depth"]] == [(1, 4, 6), (1, 5, 6)]
    same = collate_samples([samples[0], samples[0]])
    assert same["native/depth"].shape == (2, 1, 4, 6)


def test_frames_of_different_sizes_are_evaluated_sample_by_sample(tmp_path, env):
    root = shutil.copytree(env / "GTA5", tmp_path / "GTA5")
    _png(root / "images" / "00002.png", fx._rgb(12, 20, 3))
    big = np.asarray(fx.CS_IDS, dtype=np.uint8)[np.arange(12 * 20).reshape(12, 20) % len(fx.CS_IDS)]
    _png(root / "labels" / "00002.png", big)
    source = GTA5(root=str(root), image_size=(32, 32), val_fraction=1.0, eval_resolution="native")
    target = Cityscapes(tasks=["segmentation"], image_size=(32, 32), eval_resolution="native")
    dm = PairedDataModule(source, target, tasks=["segmentation"], batch_size=2, eval_batch_size=4)
    batch = next(iter(dm.val_dataloader()[0]))
    # fit: crop to a square: the centre 10x10 of the 10x18 frames, 12x12 of the 12x20 one
    assert sorted(tuple(t.shape) for t in batch["native/segmentation"]) == [(10, 10)] * 3 + [(12, 12)]
    model = tiny_model(tasks=["segmentation"], num_classes=19)
    metrics = tiny_trainer(tmp_path).validate(model, dm, verbose=False)[0]
    assert model.label_counts["val/source/segmentation"] == {"labelled": 4, "unlabelled": 0}
    correct = valid = 0
    model.eval()
    with torch.no_grad():  # by hand: each prediction upsampled to its own label
        for image, labels in zip(batch["image"], batch["native/segmentation"]):
            logits = torch.nn.functional.interpolate(
                model(image[None])["segmentation"], size=labels.shape, mode="bilinear", align_corners=False
            )
            known = labels != 255
            correct += int((logits.argmax(1)[0] == labels)[known].sum())
            valid += int(known.sum())
    assert metrics["val/source/segmentation/pixel_acc"] == pytest.approx(correct / valid)
