"""The two looks of a SynthRooms view: flat-shaded "synthetic" (source) and textured, noisy "real" (target).

Both take the scene, its :class:`~data_modules.synthrooms.render.GBuffer` and a generator for the look's own
randomness, and return a float32 ``(H, W, 3)`` image in ``[0, 1]``. In rich scenes (see :mod:`.scene`) each object
kind has its own cue: a small palette of its own in the synthetic look, preferred photographs in the real look.
"""

from __future__ import annotations

import cv2
import numpy as np

from .render import CEILING, FLOOR, FURNITURE, OBJECT, WALL, GBuffer, box_hits, sphere_hits
from .scene import BALL, BED, CABINET, CRATE, GLOBE, PAINTING, RUG, TABLE, Scene
from .textures import BLUR_SIGMAS, PHOTOS, SIZE, texture_bank

LOOKS = ("synthetic", "real")

# Synthetic palette: one base colour per class; furniture and objects draw one of several.
_SYNTH_ROOM = {FLOOR: (0.55, 0.40, 0.26), WALL: (0.80, 0.78, 0.70), CEILING: (0.93, 0.93, 0.93)}
_SYNTH_FURNITURE = np.array([(0.45, 0.30, 0.20), (0.30, 0.36, 0.55), (0.58, 0.22, 0.20), (0.35, 0.52, 0.35)])
_SYNTH_OBJECT = np.array([(0.88, 0.66, 0.15), (0.20, 0.60, 0.82), (0.82, 0.30, 0.60)])

# Real look: textures each class tends to get (70 % of the time; any photograph otherwise).
_PREFERRED = {
    FLOOR: ("gravel", "brick", "grass", "moon"),
    WALL: ("brick", "camera", "moon", "coins"),
    CEILING: ("moon", "gravel", "coins"),
    FURNITURE: ("coffee", "chelsea", "astronaut", "rocket", "camera", "immunohistochemistry"),
    OBJECT: ("hubble_deep_field", "immunohistochemistry", "coffee", "chelsea", "astronaut"),
}
_PREFERRED_IDS = {k: np.array([PHOTOS.index(n) for n in v]) for k, v in _PREFERRED.items()}

# Rich scenes: each object kind its own palette (hues apart from each other and from the room's) ...
_SYNTH_RICH = {
    TABLE: np.array([(0.30, 0.50, 0.28), (0.42, 0.56, 0.22)]),  # greens
    CABINET: np.array([(0.24, 0.30, 0.62), (0.32, 0.38, 0.72)]),  # blues
    BED: np.array([(0.72, 0.24, 0.24), (0.78, 0.40, 0.46)]),  # reds, pinks
    CRATE: np.array([(0.82, 0.55, 0.18), (0.72, 0.48, 0.12)]),  # oranges
    RUG: np.array([(0.50, 0.24, 0.56), (0.40, 0.20, 0.48)]),  # purples
    PAINTING: np.array([(0.16, 0.58, 0.58), (0.12, 0.48, 0.54)]),  # teals
    BALL: np.array([(0.92, 0.86, 0.20), (0.96, 0.76, 0.10)]),  # yellows
    GLOBE: np.array([(0.56, 0.76, 0.96), (0.46, 0.66, 0.90)]),  # light blues
}
# ... and its own preferred photographs in the real look (room classes as in basic scenes).
_PREFERRED_RICH = {
    **{k: _PREFERRED[k] for k in (FLOOR, WALL, CEILING)},
    TABLE: ("coffee", "camera"),
    CABINET: ("rocket", "brick"),
    BED: ("immunohistochemistry", "chelsea"),
    CRATE: ("gravel", "coins"),
    RUG: ("grass", "astronaut"),
    PAINTING: ("astronaut", "chelsea", "coffee"),
    BALL: ("hubble_deep_field", "coins"),
    GLOBE: ("moon", "hubble_deep_field"),
}
_PREFERRED_RICH_IDS = {k: np.array([PHOTOS.index(n) for n in v]) for k, v in _PREFERRED_RICH.items()}


def _material_classes(scene: Scene) -> np.ndarray:
    """Class of each material: floor, walls, ceiling, then one per box and one per sphere (rich: their kinds)."""
    if scene.rich:
        return np.concatenate([[FLOOR, WALL, CEILING], scene.boxes.kind, scene.spheres.kind]).astype(np.int64)
    n_box, n_sph = len(scene.boxes.yaw), len(scene.spheres.radius)
    return np.array([FLOOR, WALL, CEILING] + [FURNITURE] * n_box + [OBJECT] * n_sph)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def shade_synthetic(scene: Scene, g: GBuffer, rng: np.random.Generator) -> np.ndarray:
    """Flat per-material colours (class colour + small jitter), one point light, ambient + Lambertian."""
    albedo = []
    for cls in _material_classes(scene):
        if cls in _SYNTH_ROOM:
            base = np.array(_SYNTH_ROOM[cls])
        elif scene.rich:
            base = _SYNTH_RICH[cls][rng.integers(len(_SYNTH_RICH[cls]))]
        else:
            palette = _SYNTH_FURNITURE if cls == FURNITURE else _SYNTH_OBJECT
            base = palette[rng.integers(len(palette))]
        albedo.append(np.clip(base + rng.uniform(-0.04, 0.04, 3), 0.0, 1.0))
    albedo = np.array(albedo)[g.material]
    to_light = _unit(scene.lights.position[0] - g.points)
    lambert = np.maximum((g.normals * to_light).sum(axis=1), 0.0)
    ambient = rng.uniform(0.3, 0.4)
    image = albedo * (ambient + (1.0 - ambient) * lambert)[:, None]
    return np.clip(image, 0.0, 1.0).reshape(g.height, g.width, 3).astype(np.float32)


def _in_shadow(scene: Scene, g: GBuffer, light: np.ndarray) -> np.ndarray:
    """Whether the segment from each hit point to ``light`` is blocked by a box or a sphere (hard shadows)."""
    origin = g.points + 1e-4 * g.normals
    d = light - origin  # t in (0, 1) spans the segment
    blocked = np.zeros(len(d), dtype=bool)
    if len(scene.boxes.yaw):  # rich scenes may have no boxes or no spheres
        blocked |= box_hits(origin, d, scene.boxes)[0].min(axis=0) < 1.0
    if len(scene.spheres.radius):
        blocked |= sphere_hits(origin, d, scene.spheres).min(axis=0) < 1.0
    return blocked


def _albedo_real(scene: Scene, g: GBuffer, rng: np.random.Generator, fx: float) -> np.ndarray:
    classes = _material_classes(scene)
    n_mat = len(classes)
    preferred = _PREFERRED_RICH_IDS if scene.rich else _PREFERRED_IDS
    texture = np.array([rng.choice(preferred[c]) if rng.random() < 0.7 else rng.integers(len(PHOTOS)) for c in classes])
    texels_per_metre = SIZE / rng.uniform(0.6, 2.5, n_mat)
    offset = rng.uniform(0, 2 * SIZE, (n_mat, 2))
    tint = rng.uniform(0.55, 1.0, (n_mat, 3)) * rng.uniform(0.7, 1.3, (n_mat, 1))

    m = g.material
    scale = texels_per_metre[m]
    # Mip level from the pixel footprint in texels (depth / fx metres per pixel, stretched at grazing angles).
    view = _unit(g.directions)
    cos_view = np.maximum(np.abs((g.normals * view).sum(axis=1)), 0.25)
    footprint = scale * g.depth / fx / cos_view
    level = np.clip(np.ceil(np.log2(np.maximum(footprint, 1e-3))), 0, len(BLUR_SIGMAS) - 1).astype(np.intp)
    coords = np.floor(np.stack([-g.uv[:, 1], g.uv[:, 0]], axis=1) * scale[:, None] + offset[m]).astype(np.intp)
    coords %= 2 * SIZE
    coords = np.where(coords >= SIZE, 2 * SIZE - 1 - coords, coords)  # mirrored tiling: no seams
    texel = texture_bank()[level, texture[m], coords[:, 0], coords[:, 1]]
    return np.clip(texel * 1.6 * tint[m], 0.0, 1.0)


def shade_real(scene: Scene, g: GBuffer, rng: np.random.Generator, fx: float) -> np.ndarray:
    """Textured surfaces, several coloured lights (ambient + Lambertian + Blinn-Phong, hard shadows from the main
    light), then a camera: auto-exposure, white balance, blur, vignetting, sensor noise and gamma."""
    albedo = _albedo_real(scene, g, rng, fx)
    n_mat = len(_material_classes(scene))
    ks = rng.uniform(0.0, 0.35, n_mat)[g.material]
    shininess = rng.uniform(8.0, 64.0, n_mat)[g.material]
    view = -_unit(g.directions)
    n_light = len(scene.lights.intensity)
    light_colour = np.stack([np.ones(n_light), rng.uniform(0.85, 1.0, n_light), rng.uniform(0.65, 1.0, n_light)], 1)
    diffuse = np.zeros_like(albedo)
    specular = np.zeros_like(albedo)
    for i, (position, intensity) in enumerate(zip(scene.lights.position, scene.lights.intensity)):
        to_light = position - g.points
        dist2 = (to_light * to_light).sum(axis=1)
        to_light /= np.sqrt(dist2)[:, None]
        lambert = np.maximum((g.normals * to_light).sum(axis=1), 0.0)
        power = intensity * 6.0 / (1.0 + dist2)
        if i == 0:
            power = np.where(_in_shadow(scene, g, position), 0.0, power)
        half = _unit(to_light + view)
        highlight = np.maximum((g.normals * half).sum(axis=1), 0.0) ** shininess * (lambert > 0)
        diffuse += (lambert * power)[:, None] * light_colour[i]
        specular += (ks * highlight * power)[:, None] * light_colour[i]
    ambient = rng.uniform(0.15, 0.3) * rng.uniform(0.85, 1.0, 3)
    radiance = albedo * (ambient + diffuse) + specular
    return _camera(radiance.reshape(g.height, g.width, 3), rng)


def _camera(radiance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sensor and optics applied to linear ``(H, W, 3)`` radiance."""
    h, w, _ = radiance.shape
    image = radiance * (rng.uniform(0.18, 0.32) / max(float(radiance.mean()), 1e-6))  # auto-exposure
    balance = rng.uniform(0.8, 1.2, 3)
    image = image * (balance / balance.mean())  # white-balance error: a colour cast
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), rng.uniform(0.4, 0.8))
    yy, xx = np.ogrid[0:h, 0:w]
    r2 = ((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2) / ((h / 2) ** 2 + (w / 2) ** 2)
    image = image * (1.0 - rng.uniform(0.2, 0.5) * r2)[..., None]  # vignetting
    shot, read = rng.uniform(0.0005, 0.003), rng.uniform(0.002, 0.008)
    sigma = np.sqrt(shot * np.maximum(image, 0.0) + read * read)
    image = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    image = np.clip(image, 0.0, 1.0) ** (1.0 / rng.uniform(1.8, 2.4))  # gamma
    return image.astype(np.float32)
