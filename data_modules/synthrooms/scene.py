"""Random SynthRooms scenes, each a pure function of a :class:`numpy.random.Generator`.

World frame: ``x`` and ``y`` horizontal, ``z`` up; the room is the box ``[0, size]`` (floor at ``z = 0``).

Two class sets: ``"basic"`` (:func:`sample_scene`: anonymous boxes and spheres, classes "furniture" and "object",
which nearly every view shows) and ``"rich"`` (:func:`sample_rich_scene`: eight object kinds, :data:`RICH_CLASS_NAMES`,
each present in only some rooms, so image-level class tags carry information, as weak-label adaptation needs, Paul et
al., ECCV 2020). The rich sampler is a separate code path: basic scenes draw exactly the random numbers they always did.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASS_SETS = ("basic", "rich")
RICH_CLASS_NAMES = (
    "floor", "wall", "ceiling", "table", "cabinet", "bed", "crate", "rug", "painting", "ball", "globe",
)  # fmt: skip
TABLE, CABINET, BED, CRATE, RUG, PAINTING, BALL, GLOBE = range(3, 11)  # rich class ids (0-2: floor, wall, ceiling)
BOX_KINDS = (BED, CABINET, TABLE, CRATE, PAINTING, RUG)  # in placement order: big floor pieces first
SPHERE_KINDS = (BALL, GLOBE)


@dataclass(frozen=True)
class Boxes:
    """Furniture: ``K`` boxes, each rotated by ``yaw`` about its vertical axis (basic: all standing on the floor)."""

    center: np.ndarray  # (K, 3) world
    half: np.ndarray  # (K, 3) half extents in the box frame
    yaw: np.ndarray  # (K,) radians
    kind: np.ndarray | None = None  # (K,) rich class ids (TABLE...PAINTING); None in basic scenes


@dataclass(frozen=True)
class Spheres:
    """Objects: ``J`` spheres resting on the floor or on top of a box."""

    center: np.ndarray  # (J, 3)
    radius: np.ndarray  # (J,)
    kind: np.ndarray | None = None  # (J,) rich class ids (BALL, GLOBE); None in basic scenes


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

    @property
    def rich(self) -> bool:
        """Whether the scene uses the rich class set (its boxes and spheres carry kinds)."""
        return self.boxes.kind is not None


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
    return _aim_camera(rng, position, room)


def _aim_camera(rng: np.random.Generator, position: np.ndarray, room: np.ndarray) -> Camera:
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


# Rich scenes: a separate code path, so basic scenes keep their exact random draws.

RICH_FREQUENCY = {  # kind: (probability a room has it, probability of a second one), tuned for 20-70 % of views
    BED: (0.65, 0.1),
    CABINET: (0.65, 0.3),
    TABLE: (0.6, 0.25),
    CRATE: (0.7, 0.5),
    PAINTING: (0.8, 0.6),
    RUG: (0.75, 0.15),
    BALL: (0.75, 0.5),
    GLOBE: (0.7, 0.15),
}
_SUPPORTS = (TABLE, BED, CRATE, CABINET)  # kinds whose top can hold a ball


def _rects_apart(c1, h1, yaw1, c2, h2, yaw2, margin: float) -> bool:
    """Whether two oriented rectangles (centres, half extents, yaws) are more than ``margin`` apart (separating
    axis test)."""
    axes1 = np.array([[np.cos(yaw1), np.sin(yaw1)], [-np.sin(yaw1), np.cos(yaw1)]])
    axes2 = np.array([[np.cos(yaw2), np.sin(yaw2)], [-np.sin(yaw2), np.cos(yaw2)]])
    gap = np.asarray(c1[:2]) - np.asarray(c2[:2])
    for axis in np.concatenate([axes1, axes2]):
        reach = np.abs(axes1 @ axis) @ h1[:2] + np.abs(axes2 @ axis) @ h2[:2]
        if abs(gap @ axis) > reach + margin:
            return True
    return False


def _box_clear(center: np.ndarray, half: np.ndarray, yaw: float, placed: list, margin: float = 0.05) -> bool:
    """Whether a box keeps ``margin`` from every placed ``(center, half, yaw, kind)`` box (apart in plan or height)."""
    for c, h, y, _kind in placed:
        if abs(center[2] - c[2]) > half[2] + h[2] + margin:
            continue
        if not _rects_apart(center, half, yaw, c, h, y, margin):
            return False
    return True


def _against_wall(
    rng: np.random.Generator, room: np.ndarray, half: np.ndarray, normal: int, gap: float
) -> tuple[np.ndarray, float] | None:
    """A floor-plan pose against a random wall with the box's local axis ``normal`` (0: x, 1: y) along the wall
    normal, ``gap`` metres from the wall; ``None`` if the wall is too short."""
    wall = int(rng.integers(4))
    axis, along, tangent = wall // 2, 1 - wall // 2, 1 - normal
    yaw = (np.pi / 2 if axis == 0 else 0.0) if normal == 1 else (0.0 if axis == 0 else np.pi / 2)
    low, high = half[tangent] + 0.05, room[along] - half[tangent] - 0.05
    if low >= high:
        return None
    center = np.zeros(3)
    center[axis] = half[normal] + gap if wall % 2 == 0 else room[axis] - half[normal] - gap
    center[along] = rng.uniform(low, high)
    return center, yaw


def _free_standing(
    rng: np.random.Generator, room: np.ndarray, half: np.ndarray, yaw: float
) -> tuple[np.ndarray, float] | None:
    """A floor-plan pose anywhere in the room with the given yaw, 5 cm clear of the walls."""
    c, s = abs(np.cos(yaw)), abs(np.sin(yaw))
    extent = np.array([c * half[0] + s * half[1], s * half[0] + c * half[1]]) + 0.05
    if np.any(2 * extent >= room[:2]):
        return None
    return np.array([*rng.uniform(extent, room[:2] - extent), 0.0]), yaw


def _random_yaw(rng: np.random.Generator) -> float:
    return float(rng.uniform(-np.pi / 2, np.pi / 2)) if rng.random() < 0.6 else 0.0


def _rich_box_pose(rng: np.random.Generator, room: np.ndarray, kind: int):
    """``(half, (center, yaw) or None)`` for a new box of ``kind``; standing boxes get their centre height here."""
    if kind == TABLE:
        half = rng.uniform([0.45, 0.3, 0.3], [0.9, 0.55, 0.45])
        pose = _free_standing(rng, room, half, _random_yaw(rng))
    elif kind == CABINET:  # tall and narrow, usually against a wall
        half = rng.uniform([0.3, 0.2, 0.7], [0.6, 0.35, 1.0])
        wall = rng.random() < 0.8
        pose = _against_wall(rng, room, half, 1, 0.02) if wall else _free_standing(rng, room, half, _random_yaw(rng))
    elif kind == BED:  # long and low, usually with its head (a short side) against a wall
        half = rng.uniform([0.8, 0.45, 0.18], [1.1, 0.75, 0.3])
        wall = rng.random() < 0.7
        pose = _against_wall(rng, room, half, 0, 0.02) if wall else _free_standing(rng, room, half, _random_yaw(rng))
    elif kind == CRATE:  # small, cube-ish, anywhere
        half = np.clip(rng.uniform(0.15, 0.3) * rng.uniform(0.85, 1.15, 3), 0.15, 0.3)
        wall = rng.random() < 0.3
        yaw = float(rng.uniform(-np.pi / 4, np.pi / 4))
        pose = _against_wall(rng, room, half, 1, 0.02) if wall else _free_standing(rng, room, half, yaw)
    elif kind == RUG:  # a thin slab on the floor: its top 1-2 cm up, above the floor's plane (no z-fighting)
        half = np.array([rng.uniform(0.6, 1.2), rng.uniform(0.5, 0.9), rng.uniform(0.005, 0.01)])
        pose = _free_standing(rng, room, half, _random_yaw(rng))
    else:  # PAINTING: a thin slab hung on a wall, local y along the wall normal
        half = np.array([rng.uniform(0.15, 0.4), rng.uniform(0.01, 0.015), rng.uniform(0.125, 0.3)])
        pose = _against_wall(rng, room, half, 1, 0.001)
        if pose is not None:
            pose[0][2] = min(rng.uniform(1.2, 1.9), room[2] - half[2] - 0.1)
        return half, pose
    if pose is not None:
        pose[0][2] = half[2]  # standing on the floor
    return half, pose


def _sample_rich_boxes(rng: np.random.Generator, room: np.ndarray) -> Boxes:
    placed: list = []
    for kind in BOX_KINDS:
        present, second = RICH_FREQUENCY[kind]
        if rng.random() >= present:
            continue
        for _ in range(2 if rng.random() < second else 1):
            for _attempt in range(20):  # dropped if no free spot turns up
                half, pose = _rich_box_pose(rng, room, kind)
                if pose is not None and _box_clear(pose[0], half, pose[1], placed):
                    placed.append((pose[0], half, pose[1], kind))
                    break
    if not placed:
        return Boxes(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros(0, dtype=np.int64))
    centers, halves, yaws, kinds = zip(*placed)
    return Boxes(np.array(centers), np.array(halves), np.array(yaws, dtype=np.float64), np.array(kinds))


def _sphere_clear(center: np.ndarray, radius: float, boxes: Boxes, skip: int | None, placed: list) -> bool:
    """Whether a sphere keeps 2 cm from every box but ``skip`` (the one it rests on) and every placed sphere."""
    others = np.arange(len(boxes.yaw)) != (-1 if skip is None else skip)
    near = Boxes(boxes.center[others], boxes.half[others], boxes.yaw[others])
    return not _inside_box(center, near, radius + 0.02) and all(
        np.linalg.norm(center - c) > radius + r + 0.02 for c, r, _kind in placed
    )


def _sample_rich_spheres(rng: np.random.Generator, room: np.ndarray, boxes: Boxes) -> Spheres:
    supports = np.flatnonzero(np.isin(boxes.kind, _SUPPORTS))
    placed: list = []
    for kind in SPHERE_KINDS:
        present, second = RICH_FREQUENCY[kind]
        if rng.random() >= present:
            continue
        for _ in range(2 if rng.random() < second else 1):
            radius = rng.uniform(0.1, 0.2) if kind == BALL else rng.uniform(0.3, 0.45)
            for _attempt in range(20):  # dropped if no free spot turns up
                skip = None
                if kind == BALL and len(supports) and rng.random() < 0.5:  # on top of a table, bed, crate or cabinet
                    skip = int(supports[rng.integers(len(supports))])
                    half, yaw = boxes.half[skip], boxes.yaw[skip]
                    lx, ly = rng.uniform(-1, 1, size=2) * np.maximum(half[:2] - radius * 0.6, 0.0)
                    c, s = np.cos(yaw), np.sin(yaw)
                    xy = boxes.center[skip, :2] + np.array([c * lx - s * ly, s * lx + c * ly])
                    center = np.array([xy[0], xy[1], boxes.center[skip, 2] + half[2] + radius])
                    if np.any(half[:2] <= radius * 0.6) or center[2] + radius > room[2] - 0.05:
                        continue
                else:  # on the floor
                    center = np.array([*rng.uniform(radius + 0.05, room[:2] - radius - 0.05), radius])
                if _sphere_clear(center, radius, boxes, skip, placed):
                    placed.append((center, radius, kind))
                    break
    if not placed:
        return Spheres(np.zeros((0, 3)), np.zeros(0), np.zeros(0, dtype=np.int64))
    centers, radii, kinds = zip(*placed)
    return Spheres(np.array(centers), np.array(radii), np.array(kinds))


def _sample_rich_camera(rng: np.random.Generator, room: np.ndarray, boxes: Boxes, spheres: Spheres) -> Camera:
    """As :func:`_sample_camera`, relaxing the clearance in crowded rooms rather than ending up inside an object."""
    for box_margin, sphere_margin, attempts in ((0.7, 0.4, 60), (0.4, 0.25, 60), (0.15, 0.15, 200)):
        for _attempt in range(attempts):
            position = np.array([*rng.uniform(0.3, room[:2] - 0.3), rng.uniform(1.0, min(2.0, room[2] - 0.3))])
            near_sphere = np.any(np.linalg.norm(spheres.center - position, axis=1) < spheres.radius + sphere_margin)
            if not near_sphere and not _inside_box(position, boxes, box_margin):
                return _aim_camera(rng, position, room)
    return _aim_camera(rng, position, room)


def _sample_rich_lights(rng: np.random.Generator, room: np.ndarray, boxes: Boxes, spheres: Spheres) -> Lights:
    """As :func:`_sample_lights`, redrawn while a light sits inside (or within 10 cm of) an object."""
    for _attempt in range(20):
        lights = _sample_lights(rng, room)
        clear = all(
            not _inside_box(p, boxes, 0.1) and np.all(np.linalg.norm(spheres.center - p, axis=1) > spheres.radius + 0.1)
            for p in lights.position
        )
        if clear:
            break
    return lights


def sample_rich_scene(rng: np.random.Generator) -> Scene:
    """A random room with the rich class set: each object kind present with its own probability
    (:data:`RICH_FREQUENCY`, 1-2 instances, none overlapping), 2-3 lights and a camera clear of the objects."""
    room = rng.uniform([3.0, 3.0, 2.4], [7.0, 7.0, 3.2])
    boxes = _sample_rich_boxes(rng, room)
    spheres = _sample_rich_spheres(rng, room, boxes)
    lights = _sample_rich_lights(rng, room, boxes, spheres)
    camera = _sample_rich_camera(rng, room, boxes, spheres)
    return Scene(room, boxes, spheres, lights, camera)
