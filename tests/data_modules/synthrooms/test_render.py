"""The SynthRooms renderer (:mod:`data_modules.synthrooms.render`): sample keys, shapes and ranges, positive depth,
unit normals facing the camera and agreeing with the back-projected depth and the classes, contours on
discontinuities."""

from __future__ import annotations

import numpy as np
import pytest

from data_modules.synthrooms import CLASS_NAMES, render_sample
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
