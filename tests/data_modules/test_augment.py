"""Tests of data_modules.augment: joint, geometry-consistent augmentation of raw samples."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from data_modules.augment import AUGMENTATION_PRESETS, Augmentation, build_augmentation
from umadapt.samples import IGNORE_INDEX, to_tensor_sample

H, W = 24, 32
GEOMETRIC = ("standard", "strong")


def make_sample(seed: int = 0, h: int = H, w: int = W) -> dict:
    """Random image, planar depth (all values distinct), a fixed unit normal field with an invalid (zero) patch,
    segmentation with classes 0-4 and a 255 region, binary contours and a label."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    depth = (1.0 + 0.01 * xs + 0.37 * ys + 0.001 * seed).astype(np.float32)  # planar, injective in (y, x)
    depth[:2, :3] = 0.0  # some invalid pixels
    raw = np.stack([np.sin(xs / 7.0), np.cos(ys / 5.0), -np.ones_like(xs) - 0.1 * xs / w], axis=-1)
    normals = (raw / np.linalg.norm(raw, axis=-1, keepdims=True)).astype(np.float32)
    normals[-3:, -4:] = 0.0  # invalid normals
    segmentation = ((xs // 8 + ys // 6) % 5).astype(np.int64)
    segmentation[h // 2 :, : w // 4] = IGNORE_INDEX
    contours = (rng.random((h, w)) < 0.1).astype(np.float32)
    return {
        "image": rng.random((h, w, 3), dtype=np.float32),
        "depth": depth,
        "normals": normals,
        "segmentation": segmentation,
        "contours": contours,
        "label": 3,
    }


def assert_normals_ok(normals: np.ndarray) -> None:
    norm = np.linalg.norm(normals, axis=-1)
    zero = np.all(normals == 0, axis=-1)
    assert np.allclose(norm[~zero], 1.0, atol=1e-5)


def is_flipped(out: dict, sample: dict) -> bool:
    if np.array_equal(out["depth"], sample["depth"]):
        return False
    assert np.array_equal(out["depth"], sample["depth"][:, ::-1])
    return True


# ---------------------------------------------------------------------------------------------------- flip
def test_hflip_flips_every_target_and_negates_normal_x():
    sample = make_sample()
    aug = build_augmentation("hflip", seed=0)
    seen = set()
    for _ in range(20):
        out = aug(sample)
        flipped = is_flipped(out, sample)
        seen.add(flipped)
        if not flipped:
            for key in ("image", "depth", "normals", "segmentation", "contours"):
                assert np.array_equal(out[key], sample[key]), key
            continue
        assert np.array_equal(out["image"], sample["image"][:, ::-1])
        assert np.array_equal(out["segmentation"], sample["segmentation"][:, ::-1])
        assert np.array_equal(out["contours"], sample["contours"][:, ::-1])
        expected = sample["normals"][:, ::-1].copy()
        expected[..., 0] *= -1
        np.testing.assert_allclose(out["normals"], expected, atol=1e-6)
        np.testing.assert_allclose(out["normals"][..., 1:], sample["normals"][:, ::-1, 1:], atol=1e-6)
        assert_normals_ok(out["normals"])
        assert np.all(out["normals"][-3:, :4] == 0)  # the invalid patch moved left and stayed zero
        assert out["label"] == 3
    assert seen == {True, False}  # p=0.5: both outcomes happen


@pytest.mark.parametrize("name", ["light", "standard", "strong"])
def test_flip_negates_normal_x_in_geometric_presets(name):
    """A normal field constant in each half: after any augmentation, each valid output normal is the input normal
    of a source pixel, with n_x negated when the sample was flipped."""
    sample = make_sample()
    left, right = np.array([0.6, 0.0, -0.8], np.float32), np.array([0.0, 0.6, -0.8], np.float32)
    normals = np.where((np.arange(W) < W // 2)[None, :, None], left, right).astype(np.float32)
    sample["normals"] = np.broadcast_to(normals, (H, W, 3)).copy()
    aug = build_augmentation(name, seed=1)
    mirrored = np.array([-0.6, 0.0, -0.8], np.float32)
    saw_mirrored = False
    for _ in range(20):
        out = aug(sample)
        valid = ~np.all(out["normals"] == 0, axis=-1)
        vecs = out["normals"][valid]
        is_known = [np.isclose(vecs, v, atol=1e-6).all(-1) for v in (left, right, mirrored)]
        assert np.all(is_known[0] | is_known[1] | is_known[2])
        assert not (is_known[0].any() and is_known[2].any())  # never both flipped and unflipped
        saw_mirrored |= bool(is_known[2].any())
        # Mirrored normals appear on the right side of the image (the left half moved there).
        if is_known[2].any():
            cols = np.nonzero(valid)[1][is_known[2]]
            cols_right = np.nonzero(valid)[1][is_known[1]]
            if cols_right.size:
                assert cols.mean() > cols_right.mean()
    assert saw_mirrored


# ---------------------------------------------------------------------------------------------------- crops
@pytest.mark.parametrize("name", GEOMETRIC)
def test_geometric_resampling_is_nearest(name):
    sample = make_sample()
    depth_values = set(np.unique(sample["depth"]).tolist()) | {0.0}
    seg_values = set(np.unique(sample["segmentation"]).tolist()) | {IGNORE_INDEX}
    aug = build_augmentation(name, seed=2)
    for _ in range(15):
        out = aug(sample)
        assert set(np.unique(out["depth"]).tolist()) <= depth_values
        assert set(np.unique(out["segmentation"]).tolist()) <= seg_values
        assert set(np.unique(out["contours"]).tolist()) <= {0.0, 1.0}
        assert_normals_ok(out["normals"])
        # Depth and labels come from the same source pixel: the (depth -> label) map of the input is respected.
        lookup = {float(d): int(s) for d, s in zip(sample["depth"].ravel(), sample["segmentation"].ravel()) if d > 0}
        d, s = out["depth"].ravel(), out["segmentation"].ravel()
        for value, label in zip(d[d > 0][:200], s[d > 0][:200]):
            assert lookup[float(value)] == label
        assert 0.0 <= out["image"].min() and out["image"].max() <= 1.0


def test_standard_crop_zooms_in_with_output_size():
    sample = make_sample()
    aug = build_augmentation("standard", image_size=(16, 20), seed=3)
    zoomed = False
    for _ in range(10):
        out = aug(sample)
        assert out["image"].shape == (16, 20, 3)
        assert out["depth"].shape == out["segmentation"].shape == out["contours"].shape == (16, 20)
        assert out["normals"].shape == (16, 20, 3)
        zoomed |= len(np.unique(out["depth"])) < 16 * 20
    assert zoomed


def test_padding_is_invalid_everywhere():
    """``strong`` zooms out sometimes: the padded border must be depth 0, ignore label, zero normals/contours."""
    sample = make_sample()
    sample["depth"][sample["depth"] == 0] = 5.0  # no invalid input pixels: any depth 0 is padding
    sample["normals"][np.all(sample["normals"] == 0, axis=-1)] = [0.0, 0.0, -1.0]
    sample["segmentation"][sample["segmentation"] == IGNORE_INDEX] = 1
    sample["contours"][:] = 1.0
    aug = build_augmentation("strong", seed=4)
    padded_seen = False
    for _ in range(30):
        out = aug(sample)
        pad = out["depth"] == 0
        if not pad.any():
            continue
        padded_seen = True
        assert np.all(out["segmentation"][pad] == IGNORE_INDEX)
        assert np.all(out["normals"][pad] == 0)
        assert np.all(out["contours"][pad] == 0)
        valid = ~pad
        assert np.all(out["segmentation"][valid] != IGNORE_INDEX)
        assert np.all(out["contours"][valid] == 1)
        assert_normals_ok(out["normals"][valid])
        assert np.all(np.any(out["normals"][valid] != 0, axis=-1))
    assert padded_seen


def test_resize_to_image_size_uses_nearest_for_targets():
    sample = make_sample()
    out = build_augmentation("none", image_size=(48, 64))(sample)
    assert out["image"].shape == (48, 64, 3)
    assert set(np.unique(out["depth"]).tolist()) <= set(np.unique(sample["depth"]).tolist())
    assert set(np.unique(out["segmentation"]).tolist()) <= set(np.unique(sample["segmentation"]).tolist())
    assert_normals_ok(out["normals"])


# ---------------------------------------------------------------------------------------------------- photometric
def test_photometric_changes_touch_only_the_image():
    """``light`` has no geometry besides the flip: unflipped outputs keep every target identical."""
    sample = make_sample()
    aug = build_augmentation("light", seed=5)
    changed = False
    for _ in range(20):
        out = aug(sample)
        if is_flipped(out, sample):
            continue
        for key in ("depth", "normals", "segmentation", "contours"):
            assert np.array_equal(out[key], sample[key]), key
        changed |= not np.array_equal(out["image"], sample["image"])
    assert changed


def test_none_is_identity():
    sample = make_sample()
    out = build_augmentation("none")(sample)
    assert out.keys() == sample.keys()
    for key in sample:
        assert out[key] is sample[key]


# ---------------------------------------------------------------------------------------------------- generic
@pytest.mark.parametrize("name", AUGMENTATION_PRESETS)
def test_dtypes_shapes_and_keys_preserved(name):
    aug = build_augmentation(name, seed=6)
    for seed in range(5):
        sample = make_sample(seed)
        out = aug(sample)
        assert list(out) == list(sample)
        for key in ("image", "depth", "normals", "segmentation", "contours"):
            assert out[key].dtype == sample[key].dtype, key
            assert out[key].shape == sample[key].shape, key
        assert out["label"] == sample["label"]
        assert out["image"].min() >= 0.0 and out["image"].max() <= 1.0
        to_tensor_sample(out)  # the output follows the conventions


@pytest.mark.parametrize("name", AUGMENTATION_PRESETS)
def test_image_only_and_partial_samples(name):
    aug = build_augmentation(name, image_size=(20, 28), seed=7)
    sample = make_sample()
    out = aug({"image": sample["image"]})
    assert list(out) == ["image"]
    assert out["image"].shape == (20, 28, 3) and out["image"].dtype == np.float32
    out = aug({"image": sample["image"], "segmentation": sample["segmentation"]})
    assert list(out) == ["image", "segmentation"]
    assert out["segmentation"].dtype == np.int64 and out["segmentation"].shape == (20, 28)


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError) as info:
        build_augmentation("nope")
    for name in AUGMENTATION_PRESETS:
        assert name in str(info.value)
    assert {"none", "hflip", "light", "standard"} <= set(AUGMENTATION_PRESETS)


def test_unknown_key_and_mismatched_shape_raise():
    aug = build_augmentation("hflip", seed=0)
    sample = make_sample()
    with pytest.raises(KeyError):
        aug({**sample, "mystery": 1})
    with pytest.raises(ValueError):
        aug({**sample, "depth": np.zeros((H + 1, W), np.float32)})


def test_seeded_runs_are_reproducible():
    sample = make_sample()
    a = build_augmentation("standard", seed=11)
    b = build_augmentation("standard", seed=11)
    for _ in range(5):
        out_a, out_b = a(sample), b(sample)
        for key in ("image", "depth", "normals", "segmentation"):
            assert np.array_equal(out_a[key], out_b[key])
    a.reseed(11)
    b.reseed(11)
    assert np.array_equal(a(sample)["image"], b(sample)["image"])


@pytest.mark.parametrize("name", AUGMENTATION_PRESETS)
def test_pickle_round_trip(name):
    sample = make_sample()
    aug = build_augmentation(name, seed=12)
    aug(sample)  # populate the internal cache before pickling
    clone = pickle.loads(pickle.dumps(aug))
    assert isinstance(clone, Augmentation) and clone.name == name
    out_a, out_b = aug(sample), clone(sample)  # same generator state -> same result
    for key in ("image", "depth", "normals", "segmentation", "contours"):
        assert np.array_equal(out_a[key], out_b[key]), key


class _Repeat(Dataset):
    def __init__(self, aug):
        self.aug = aug
        self.sample = make_sample()

    def __len__(self):
        return 16

    def __getitem__(self, index):
        out = self.aug(self.sample)
        return torch.tensor(float(is_flipped(out, self.sample)))


def test_dataloader_workers_draw_different_augmentations():
    torch.manual_seed(0)
    loader = DataLoader(_Repeat(build_augmentation("hflip", seed=0)), batch_size=8, num_workers=2)
    first, second = (batch for batch in loader)  # worker 0 makes batch 0, worker 1 batch 1
    assert not torch.equal(first, second)
