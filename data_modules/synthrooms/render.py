"""Vectorized ray casting of a :class:`~data_modules.synthrooms.scene.Scene`: exact per-pixel geometry.

Rays use unnormalized directions ``R @ ((u - cx) / fx, (v - cy) / fy, 1)``, so the ray parameter ``t`` of a hit *is*
its z-depth along the optical axis. Surface ids: ``0..5`` the room faces (``2 * axis + side``, side 0 for the plane
at 0 and 1 for the plane at ``room[axis]``), then 6 per box (``6 + 6k + 2 * axis + side`` in the box frame), then one
per sphere.

Segmentation uses :data:`CLASS_NAMES` for basic scenes (every box "furniture", every sphere "object") and
:data:`~.scene.RICH_CLASS_NAMES` for rich ones (each box or sphere its kind's class; see :mod:`.scene`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .scene import Boxes, Scene, Spheres

CLASS_NAMES = ("floor", "wall", "ceiling", "furniture", "object")
FLOOR, WALL, CEILING, FURNITURE, OBJECT = range(5)
ROOM_FACE_CLASS = np.array([WALL, WALL, WALL, WALL, FLOOR, CEILING])
ROOM_FACE_MATERIAL = np.array([1, 1, 1, 1, 0, 2])  # floor 0, walls 1, ceiling 2; then boxes, then spheres
_TANGENTS = np.array([[1, 2], [0, 2], [0, 1]])  # the two in-plane axes of a face normal to each axis
_EPS = 1e-6


@dataclass
class GBuffer:
    """Per-pixel geometry of one view; flat arrays of ``N = H * W`` pixels in row-major order."""

    height: int
    width: int
    depth: np.ndarray  # (N,) z-depth, metres
    points: np.ndarray  # (N, 3) world hit points
    directions: np.ndarray  # (N, 3) unnormalized world ray directions (camera z-component 1)
    normals: np.ndarray  # (N, 3) unit world normals, facing the camera
    surface: np.ndarray  # (N,) surface id (see the module docstring)
    material: np.ndarray  # (N,) 0 floor, 1 walls, 2 ceiling, 3 + k box k, 3 + K + j sphere j
    segmentation: np.ndarray  # (N,) class index into CLASS_NAMES (basic) or RICH_CLASS_NAMES (rich)
    uv: np.ndarray  # (N, 2) in-plane surface coordinates in metres (texture mapping)


@lru_cache(maxsize=8)
def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return u.ravel(), v.ravel()


def camera_rays(scene: Scene, height: int, width: int) -> np.ndarray:
    """``(N, 3)`` world ray directions with unit z-component in the camera frame."""
    fx, fy, cx, cy = scene.camera.intrinsics(height, width)
    u, v = _pixel_grid(height, width)
    rot = scene.camera.rotation
    x, y = (u - cx) / fx, (v - cy) / fy
    return np.stack([rot[i, 0] * x + rot[i, 1] * y + rot[i, 2] for i in range(3)], axis=1)


def _safe_inverse(d: np.ndarray) -> np.ndarray:
    return 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)


def box_hits(origin: np.ndarray, d: np.ndarray, boxes: Boxes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slab test of rays against all boxes at once.

    ``origin`` is ``(3,)`` or ``(N, 3)``, ``d`` is ``(N, 3)``. Returns ``t`` ``(K, N)`` (``inf`` on a miss), the entry
    axis ``(K, N)`` in the box frame and the box-frame directions ``(3, K, N)``.
    """
    c, s = np.cos(boxes.yaw)[:, None], np.sin(boxes.yaw)[:, None]
    o = np.asarray(origin)
    ox = (o[..., 0] if o.ndim == 1 else o[:, 0])[None] - boxes.center[:, 0:1]
    oy = (o[..., 1] if o.ndim == 1 else o[:, 1])[None] - boxes.center[:, 1:2]
    oz = (o[..., 2] if o.ndim == 1 else o[:, 2])[None] - boxes.center[:, 2:3]
    local_o = (c * ox + s * oy, -s * ox + c * oy, oz)
    local_d = (
        c * d[None, :, 0] + s * d[None, :, 1],
        -s * d[None, :, 0] + c * d[None, :, 1],
        np.broadcast_to(d[None, :, 2], (len(boxes.yaw), len(d))),
    )
    t_near, t_far = [], []
    for axis in range(3):
        inv = _safe_inverse(local_d[axis])
        h = boxes.half[:, axis : axis + 1]
        t1, t2 = (-h - local_o[axis]) * inv, (h - local_o[axis]) * inv
        t_near.append(np.minimum(t1, t2))
        t_far.append(np.maximum(t1, t2))
    enter = np.maximum(np.maximum(t_near[0], t_near[1]), t_near[2])
    leave = np.minimum(np.minimum(t_far[0], t_far[1]), t_far[2])
    axis = np.where(t_near[0] >= np.maximum(t_near[1], t_near[2]), 0, np.where(t_near[1] >= t_near[2], 1, 2))
    t = np.where((enter <= leave) & (enter > _EPS), enter, np.inf)
    return t, axis, np.stack(local_d)


def sphere_hits(origin: np.ndarray, d: np.ndarray, spheres: Spheres) -> np.ndarray:
    """Nearest positive hit ``t`` ``(J, N)`` of rays from ``origin`` (``(3,)`` or ``(N, 3)``) with each sphere."""
    o = np.asarray(origin)
    oc = (o - spheres.center)[:, None, :] if o.ndim == 1 else o[None] - spheres.center[:, None, :]
    b = (d[None] * oc).sum(axis=-1)
    a = (d * d).sum(axis=1)[None]
    cc = (oc * oc).sum(axis=-1) - spheres.radius[:, None] ** 2
    disc = b * b - a * cc
    t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    return np.where((disc > 0) & (t > _EPS), t, np.inf)


def cast(scene: Scene, height: int, width: int) -> GBuffer:
    """Cast one ray per pixel and return the nearest hit's geometry (every ray hits: the room is closed)."""
    o = scene.camera.position
    d = camera_rays(scene, height, width)
    n_pix = len(d)
    n_box = len(scene.boxes.yaw)
    n_sph = len(scene.spheres.radius)  # rich scenes may have no boxes or no spheres: then nothing is hit

    # Room (inside of an axis-aligned box): the exit distance along each axis.
    inv = _safe_inverse(d)
    positive = inv > 0
    t_axes = (np.where(positive, scene.room, 0.0) - o) * inv
    room_axis = t_axes.argmin(axis=1)
    pix = np.arange(n_pix)
    depth = t_axes[pix, room_axis]
    surface = 2 * room_axis + positive[pix, room_axis]

    if n_box:
        box_t, box_axis, box_d = box_hits(o, d, scene.boxes)
    else:
        box_t, box_axis, box_d = np.full((1, n_pix), np.inf), np.zeros((1, n_pix), np.intp), np.ones((3, 1, n_pix))
    nearest_box = box_t.argmin(axis=0)
    t = box_t[nearest_box, pix]
    hit_box = t < depth
    depth = np.where(hit_box, t, depth)
    box_axis_n = box_axis[nearest_box, pix]
    box_d_axis = box_d[box_axis_n, nearest_box, pix]
    surface = np.where(hit_box, 6 + 6 * nearest_box + 2 * box_axis_n + (box_d_axis < 0), surface)

    sph_t = sphere_hits(o, d, scene.spheres) if n_sph else np.full((1, n_pix), np.inf)
    nearest_sph = sph_t.argmin(axis=0)
    t = sph_t[nearest_sph, pix]
    hit_sph = t < depth
    depth = np.where(hit_sph, t, depth)
    hit_box &= ~hit_sph
    surface = np.where(hit_sph, 6 + 6 * n_box + nearest_sph, surface)
    points = o + depth[:, None] * d

    # Normals and in-plane coordinates, per kind of surface.
    normals = np.zeros((n_pix, 3))
    local = points.copy()  # room: world coordinates
    axis = room_axis.copy()
    room = ~(hit_box | hit_sph)
    normals[room, room_axis[room]] = np.where(positive[room, room_axis[room]], -1.0, 1.0)
    if hit_box.any():
        k = nearest_box[hit_box]
        ax = box_axis_n[hit_box]
        c, s = np.cos(scene.boxes.yaw[k]), np.sin(scene.boxes.yaw[k])
        sign = np.where(box_d_axis[hit_box] > 0, -1.0, 1.0)  # outward normal of the entry face
        n_local = np.zeros((len(k), 3))
        n_local[np.arange(len(k)), ax] = sign
        normals[hit_box] = np.stack(
            [c * n_local[:, 0] - s * n_local[:, 1], s * n_local[:, 0] + c * n_local[:, 1], n_local[:, 2]], axis=1
        )
        rel = points[hit_box] - scene.boxes.center[k]
        local[hit_box] = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], axis=1)
        axis[hit_box] = ax
    if hit_sph.any():
        j = nearest_sph[hit_sph]
        rel = points[hit_sph] - scene.spheres.center[j]
        normals[hit_sph] = rel / scene.spheres.radius[j, None]
        local[hit_sph] = rel
        axis[hit_sph] = np.abs(rel).argmax(axis=1)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    facing = (normals * d).sum(axis=1) > 0
    normals[facing] *= -1.0  # defensive: every visible surface faces the camera
    uv = np.take_along_axis(local, _TANGENTS[axis], axis=1)

    if scene.rich:
        surface_class = np.concatenate([ROOM_FACE_CLASS, np.repeat(scene.boxes.kind, 6), scene.spheres.kind])
    else:
        surface_class = np.concatenate([ROOM_FACE_CLASS, np.full(6 * n_box, FURNITURE), np.full(n_sph, OBJECT)])
    surface_material = np.concatenate(
        [ROOM_FACE_MATERIAL, np.repeat(3 + np.arange(n_box), 6), 3 + n_box + np.arange(n_sph)]
    )
    material = surface_material[surface]
    return GBuffer(height, width, depth, points, d, normals, surface, material, surface_class[surface], uv)


def camera_normals(gbuffer: GBuffer, scene: Scene) -> np.ndarray:
    """``(H, W, 3)`` unit normals in the camera frame (x right, y down, z forward)."""
    return (gbuffer.normals @ scene.camera.rotation).reshape(gbuffer.height, gbuffer.width, 3)


def contours(gbuffer: GBuffer, normals: np.ndarray, depth_jump: float = 0.05, crease_deg: float = 30.0) -> np.ndarray:
    """``(H, W)`` float32 {0, 1} map of geometric edges between neighbouring pixels on different surfaces.

    An edge is a class boundary, an occlusion (relative depth jump > ``depth_jump``) or a crease (normals more
    than ``crease_deg`` apart). Both pixels of an edge are marked (flip-equivariant, 2 pixels thick).
    """
    h, w = gbuffer.height, gbuffer.width
    sid = gbuffer.surface.reshape(h, w)
    seg = gbuffer.segmentation.reshape(h, w)
    z = gbuffer.depth.reshape(h, w)
    cos_crease = np.cos(np.deg2rad(crease_deg))
    out = np.zeros((h, w), dtype=bool)
    for a, b in (((slice(None), slice(0, -1)), (slice(None), slice(1, None))), ((slice(0, -1),), (slice(1, None),))):
        jump = np.abs(z[a] - z[b]) > depth_jump * np.minimum(z[a], z[b])
        crease = (normals[a] * normals[b]).sum(axis=-1) < cos_crease
        edge = (sid[a] != sid[b]) & ((seg[a] != seg[b]) | jump | crease)
        out[a] |= edge
        out[b] |= edge
    return out.astype(np.float32)
