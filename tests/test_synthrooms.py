"""SynthRooms: renderer invariants, determinism, the domain gap between the looks, and argument checking."""

from __future__ import annotations

import numpy as np
import pytest

from data_modules.domain import SPLITS, Domain
from data_modules.synthrooms import CLASS_NAMES, SynthRooms, render_sample
from umadapt.samples import IMAGE, LABEL_KEYS, to_tensor_sample

KEYS = {"image", "depth", "normals", "segmentation", "contours"}
LOOKS = ("synthetic", "real")
INDICES = range(6)


@pytest.fixture(scope="module")
def rendered() -> list[tuple[dict, object]]:
    return [render_sample(7, "train", i, "synthetic", 64) for i in INDICES]


def _view_rays(camera, height: int, width: int) -> np.ndarray:
    """Camera-frame rays ``((u - cx) / fx, (v - cy) / fy, 1)``: z-depth times this is the camera-frame point."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones_like(u)], axis=-1)


@pytest.mark.parametrize("look", LOOKS)
@pytest.mark.parametrize("size", [64, (48, 80)])
def test_sample_keys_shapes_dtypes_ranges(look, size):
    sample, camera = render_sample(0, "val", 3, look, size)
    h, w = (size, size) if isinstance(size, int) else size
    assert set(sample) == KEYS and KEYS <= {IMAGE, *LABEL_KEYS}
    assert sample["image"].shape == (h, w, 3) and sample["image"].dtype == np.float32
    assert sample["depth"].shape == (h, w) and sample["depth"].dtype == np.float32
    assert sample["normals"].shape == (h, w, 3) and sample["normals"].dtype == np.float32
    assert sample["segmentation"].shape == (h, w) and sample["segmentation"].dtype == np.int64
    assert sample["contours"].shape == (h, w) and sample["contours"].dtype == np.float32
    assert 0.0 <= sample["image"].min() and sample["image"].max() <= 1.0
    assert camera.fx == camera.fy > 0 and camera.cx == (w - 1) / 2 and camera.cy == (h - 1) / 2
    batch = to_tensor_sample(sample)
    assert batch["image"].shape == (3, h, w) and batch["depth"].shape == (1, h, w)


def test_depth_positive_finite_and_labels_valid(rendered):
    for sample, _ in rendered:
        assert np.isfinite(sample["depth"]).all() and (sample["depth"] > 0).all()
        assert sample["depth"].max() < 12.0  # rooms are at most 7 x 7 x 3.2 m
        seg = sample["segmentation"]
        assert seg.min() >= 0 and seg.max() < len(CLASS_NAMES)
        assert set(np.unique(sample["contours"])) == {0.0, 1.0}


def test_normals_unit_and_facing_the_camera(rendered):
    for sample, camera in rendered:
        n = sample["normals"].astype(np.float64)
        np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-5)
        rays = _view_rays(camera, *sample["depth"].shape)
        assert ((n * rays).sum(axis=-1) < 0).all()


def test_normals_agree_with_back_projected_depth(rendered):
    """Finite-difference normals of the z-depth point cloud match the rendered ones inside smooth regions."""
    angles = []
    for sample, camera in rendered:
        depth, seg, edges = sample["depth"].astype(np.float64), sample["segmentation"], sample["contours"]
        points = _view_rays(camera, *depth.shape) * depth[..., None]
        du = points[1:-1, 2:] - points[1:-1, :-2]
        dv = points[2:, 1:-1] - points[:-2, 1:-1]
        n = np.cross(du, dv)
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        n *= -np.sign((n * points[1:-1, 1:-1]).sum(axis=-1, keepdims=True))  # face the camera
        smooth = np.ones_like(seg[1:-1, 1:-1], dtype=bool)
        h, w = seg.shape
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                window = (slice(1 + dy, h - 1 + dy), slice(1 + dx, w - 1 + dx))
                smooth &= (seg[window] == seg[1:-1, 1:-1]) & (edges[window] == 0)
        assert smooth.mean() > 0.5
        cos = np.clip((n * sample["normals"][1:-1, 1:-1]).sum(axis=-1), -1, 1)[smooth]
        angles.append(np.degrees(np.arccos(cos)))
    angles = np.concatenate(angles)
    assert np.median(angles) < 1.0
    assert np.percentile(angles, 90) < 5.0


def test_normals_agree_with_classes(rendered):
    """In the world frame (z up) floors face up, ceilings down and walls sideways."""
    for sample, camera in rendered:
        world = sample["normals"].astype(np.float64) @ camera.rotation.T
        seg = sample["segmentation"]
        assert np.abs(world[seg == 0] - [0, 0, 1]).max(initial=0) < 1e-5
        assert np.abs(world[seg == 2] - [0, 0, -1]).max(initial=0) < 1e-5
        assert np.abs(world[seg == 1][:, 2]).max(initial=0) < 1e-5


def test_contours_are_on_label_and_depth_discontinuities(rendered):
    for sample, camera in rendered:
        edges, seg, depth = sample["contours"], sample["segmentation"], sample["depth"]
        assert 0.005 < edges.mean() < 0.4
        boundary = seg[:, 1:] != seg[:, :-1]
        assert (edges[:, 1:][boundary] == 1).all() and (edges[:, :-1][boundary] == 1).all()
        # Depth steps between vertical neighbours; a plane seen at grazing incidence legitimately has large ones.
        rays = _view_rays(camera, *depth.shape)
        facing = -(sample["normals"] * rays).sum(axis=-1) / np.linalg.norm(rays, axis=-1) > 0.3
        pairs = facing[1:] & facing[:-1]
        step = np.abs(depth[1:] - depth[:-1]) / np.minimum(depth[1:], depth[:-1])
        assert (edges[1:][pairs & (step > 0.2)] == 1).all()  # occlusions are contours
        quiet = (edges[1:] == 0) & (edges[:-1] == 0)
        assert step[pairs & quiet].max() < 0.2  # away from contours depth is smooth


def test_scenes_are_varied_rooms():
    classes = np.zeros(len(CLASS_NAMES))
    for i in range(12):
        sample, _ = render_sample(1, "test", i)
        classes += np.bincount(sample["segmentation"].ravel(), minlength=len(CLASS_NAMES)) > 0
    assert (classes >= 3).all(), classes  # every class shows up in several views


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


def _colour_histogram(images: np.ndarray, bins: int = 8) -> np.ndarray:
    q = np.minimum((images * bins).astype(int), bins - 1).reshape(-1, 3)
    counts = np.bincount((q[:, 0] * bins + q[:, 1]) * bins + q[:, 2], minlength=bins**3)
    return counts / counts.sum()


def test_real_look_differs_from_synthetic():
    synthetic = np.stack([render_sample(11, "test", i, "synthetic")[0]["image"] for i in range(16)])
    real = np.stack([render_sample(11, "test", i, "real")[0]["image"] for i in range(16)])

    def high_frequency(images: np.ndarray) -> float:  # mean |Laplacian| of the grey images
        g = images.mean(axis=-1)
        lap = 4 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1] - g[:, 1:-1, :-2] - g[:, 1:-1, 2:]
        return float(np.median(np.abs(lap)))

    assert high_frequency(real) > 5 * high_frequency(synthetic)
    assert 0.5 * np.abs(_colour_histogram(real) - _colour_histogram(synthetic)).sum() > 0.3
    assert synthetic.std() > 1.15 * real.std()  # flat colours under one light vs. textured, lower-contrast photos


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


def test_preview_and_generation_rate(tmp_path, capsys):
    from PIL import Image

    from data_modules.synthrooms import measure_generation_rate
    from data_modules.synthrooms.__main__ import main

    assert measure_generation_rate("real", 32, num_images=3) > 0
    out = tmp_path / "preview.png"
    main(["--out", str(out), "--n", "2", "--zoom", "1", "--rate-count", "2"])
    assert Image.open(out).size == (2 * 64, 6 * 64)
    printed = capsys.readouterr().out
    assert "synthetic look" in printed and "real look" in printed and "images/s" in printed
