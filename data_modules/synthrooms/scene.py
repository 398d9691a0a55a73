"""Random SynthRooms scenes, each a pure function of a :class:`numpy.random.Generator`.

World frame: ``x`` and ``y`` horizontal, ``z`` up; the room is the box ``[0, size]`` (floor at ``z = 0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Boxes:
    """Furniture: ``K`` boxes standing on the floor, each rotated by ``yaw`` about its vertical axis."""

    center: np.ndarray  # (K, 3) world
    half: np.ndarray  # (K, 3) half extents in the box frame
    yaw: np.ndarray  # (K,) radians


@dataclass(frozen=True)
class Spheres:
    """Objects: ``J`` spheres resting on the floor or on top of a box."""

    center: np.ndarray  # (J, 3)
    radius: np.ndarray  # (J,)


@dataclass(frozen=True)
class Lights:
    """Point lights; the first one is the main light (the only one of the synthetic look)."""

    position: np.ndarray  # (L, 3)
    intensity: np.ndarray  # (L,)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: ``rotation`` maps camera-frame vectors (x right, y down, z forward) to the world."""

    position: np.ndarray  # (3,)
    rotation: np.ndarray  # (3, 3), columns: right, down, forward in world coordinates
    hfov: float  # horizontal field of view, radians

    def intrinsics(self, height: int, width: int) -> tuple[float, float, float, float]:
        """``(fx, fy, cx, cy)`` in pixels; square pixels, pixel ``(u, v)`` centre at integer coordinates."""
        fx = (width / 2.0) / np.tan(self.hfov / 2.0)
        return float(fx), float(fx), (width - 1) / 2.0, (height - 1) / 2.0


@dataclass(frozen=True)
class Scene:
    room: np.ndarray  # (3,) width (x), depth (y), height (z) in metres
    boxes: Boxes
    spheres: Spheres
    lights: Lights
    camera: Camera


def camera_rotation(yaw: float, pitch: float) -> np.ndarray:
    """Camera-to-world rotation for a camera looking along ``yaw`` (about ``z``), tilted up by ``pitch``."""
    forward = np.array([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)])
    right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=1)


def _inside_box(point: np.ndarray, boxes: Boxes, margin: float) -> bool:
    """Whether ``point`` lies within ``margin`` of any box."""
    for center, half, yaw in zip(boxes.center, boxes.half, boxes.yaw):
        dx, dy, dz = point - center
        c, s = np.cos(yaw), np.sin(yaw)
        local = np.array([c * dx + s * dy, -s * dx + c * dy, dz])
        if np.all(np.abs(local) < half + margin):
            return True
    return False


def _sample_boxes(rng: np.random.Generator, room: np.ndarray) -> Boxes:
    centers, halves, yaws = [], [], []
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(20):
            half = rng.uniform([0.2, 0.2, 0.2], [1.0, 0.6, 1.0])
            if rng.random() < 0.5:  # against a wall, facing into the room
                wall = int(rng.integers(4))
                axis = wall // 2  # the axis the wall is normal to
                yaw = np.pi / 2 if axis == 0 else 0.0  # local y (the short side) along the wall normal
                along = 1 - axis
                center = np.zeros(3)
                center[axis] = half[1] + 0.02 if wall % 2 == 0 else room[axis] - half[1] - 0.02
                center[along] = rng.uniform(half[0] + 0.05, room[along] - half[0] - 0.05)
            else:
                yaw = rng.uniform(-np.pi / 2, np.pi / 2) if rng.random() < 0.6 else 0.0
                radius = np.hypot(half[0], half[1]) + 0.05
                center = np.array([rng.uniform(radius, room[0] - radius), rng.uniform(radius, room[1] - radius), 0.0])
            center[2] = half[2]
            free = all(
                np.hypot(*(center[:2] - c[:2])) > 0.8 * (np.hypot(*half[:2]) + np.hypot(*h[:2]))
                for c, h in zip(centers, halves)
            )
            if free:
                break
        centers.append(center)
        halves.append(half)
        yaws.append(yaw)
    return Boxes(np.array(centers), np.array(halves), np.array(yaws, dtype=np.float64))


def _sample_spheres(rng: np.random.Generator, room: np.ndarray, boxes: Boxes) -> Spheres:
    centers, radii = [], []
    for _ in range(int(rng.integers(1, 4))):
        radius = rng.uniform(0.12, 0.45)
        center = None
        if rng.random() < 0.5:  # on top of a piece of furniture
            k = int(rng.integers(len(boxes.yaw)))
            half, yaw = boxes.half[k], boxes.yaw[k]
            if np.all(half[:2] > radius * 0.6):
                lx, ly = rng.uniform(-1, 1, size=2) * np.maximum(half[:2] - radius * 0.6, 0.0)
                c, s = np.cos(yaw), np.sin(yaw)
                xy = boxes.center[k, :2] + np.array([c * lx - s * ly, s * lx + c * ly])
                center = np.array([xy[0], xy[1], 2 * half[2] + radius])
        if center is None:  # on the floor, away from furniture and other spheres
            for _attempt in range(20):
                center = np.array([*rng.uniform(radius + 0.05, room[:2] - radius - 0.05), radius])
                clear = not _inside_box(center, boxes, radius + 0.02) and all(
                    np.linalg.norm(center - c) > radius + r for c, r in zip(centers, radii)
                )
                if clear:
                    break
        centers.append(center)
        radii.append(radius)
    return Spheres(np.array(centers), np.array(radii))


def _room_faces_seen(position: np.ndarray, rotation: np.ndarray, hfov: float, room: np.ndarray) -> int:
    """How many room faces a 3x3 grid of rays (corners, edge midpoints, centre of a square view) hits first."""
    t = np.tan(hfov / 2.0) * np.array([-1.0, 0.0, 1.0])
    x, y = np.meshgrid(t, t)
    d = np.stack([x.ravel(), y.ravel(), np.ones(9)], axis=1) @ rotation.T
    d = np.where(np.abs(d) < 1e-12, 1e-12, d)
    exit_t = (np.where(d > 0, room, 0.0) - position) / d
    axis = exit_t.argmin(axis=1)
    return len(np.unique(2 * axis + (d[np.arange(9), axis] > 0)))


def _sample_camera(rng: np.random.Generator, room: np.ndarray, boxes: Boxes, spheres: Spheres) -> Camera:
    for _attempt in range(100):
        position = np.array([*rng.uniform(0.3, room[:2] - 0.3), rng.uniform(1.0, min(2.0, room[2] - 0.3))])
        near_sphere = np.any(np.linalg.norm(spheres.center - position, axis=1) < spheres.radius + 0.4)
        if not near_sphere and not _inside_box(position, boxes, 0.7):
            break
    for _attempt in range(10):  # re-aim until the view shows some room structure, not one blank wall
        # Look across the room, like a photographer: aim at the farthest of a few random points on the floor plan.
        targets = rng.uniform(0.0, 1.0, size=(4, 2)) * room[:2] - position[:2]
        target = targets[np.argmax(np.hypot(targets[:, 0], targets[:, 1]))]
        yaw = np.arctan2(target[1], target[0]) + rng.uniform(-0.3, 0.3)
        pitch = np.deg2rad(rng.uniform(-25.0, 10.0))
        hfov = float(np.deg2rad(rng.uniform(50.0, 75.0)))
        rotation = camera_rotation(yaw, pitch)
        if _room_faces_seen(position, rotation, hfov, room) >= 2:
            break
    return Camera(position, rotation, hfov)


def _sample_lights(rng: np.random.Generator, room: np.ndarray) -> Lights:
    count = int(rng.integers(2, 4))
    xy = rng.uniform(0.15, 0.85, size=(count, 2)) * room[:2]
    z = room[2] - rng.uniform(0.1, 0.5, size=(count, 1))
    intensity = rng.uniform(0.6, 1.0, size=count)
    intensity[0] = 1.0
    return Lights(np.concatenate([xy, z], axis=1), intensity)


def sample_scene(rng: np.random.Generator) -> Scene:
    """A random room with 1-4 boxes, 1-3 spheres, 2-3 lights and a camera inside it, clear of the objects."""
    room = rng.uniform([3.0, 3.0, 2.4], [7.0, 7.0, 3.2])
    boxes = _sample_boxes(rng, room)
    spheres = _sample_spheres(rng, room, boxes)
    lights = _sample_lights(rng, room)
    camera = _sample_camera(rng, room, boxes, spheres)
    return Scene(room, boxes, spheres, lights, camera)
