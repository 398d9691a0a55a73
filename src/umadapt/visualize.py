"""Turning predictions and targets into RGB images (uint8 ``[H, W, 3]``) for grids and prediction folders."""

from __future__ import annotations

import numpy as np
import torch

# A 9-stop approximation of matplotlib's "viridis" (no matplotlib dependency).
_VIRIDIS = np.array(
    [
        [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
        [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
    ],
    dtype=np.float32,
)
_PALETTE = np.array(
    [
        [128, 64, 128], [70, 70, 70], [220, 220, 0], [0, 130, 180], [220, 20, 60], [152, 251, 152], [255, 127, 14],
        [107, 142, 35], [119, 11, 32], [0, 0, 142], [190, 153, 153], [250, 170, 30], [102, 102, 156], [44, 160, 44],
        [148, 103, 189], [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
    ],
    dtype=np.uint8,
)


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def image_to_rgb(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[3, H, W]`` float in [0, 1] -> uint8 ``[H, W, 3]``."""
    return (np.clip(_numpy(image).transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)


def depth_to_rgb(depth: torch.Tensor | np.ndarray, max_depth: float | None = None) -> np.ndarray:
    """``[1, H, W]`` metres -> viridis colours (near = dark); invalid (0) pixels are black."""
    d = _numpy(depth).reshape(_numpy(depth).shape[-2:])
    valid = d > 0
    top = max_depth if max_depth else (float(d[valid].max()) if valid.any() else 1.0)
    t = np.clip(d / max(top, 1e-6), 0, 1) * (len(_VIRIDIS) - 1)
    low = np.floor(t).astype(int)
    high = np.minimum(low + 1, len(_VIRIDIS) - 1)
    frac = (t - low)[..., None]
    rgb = _VIRIDIS[low] * (1 - frac) + _VIRIDIS[high] * frac
    rgb[~valid] = 0
    return rgb.round().astype(np.uint8)


def normals_to_rgb(normals: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[3, H, W]`` unit vectors -> ``(n + 1) / 2`` as RGB; invalid (zero) vectors are black."""
    n = _numpy(normals).transpose(1, 2, 0)
    rgb = (np.clip((n + 1) / 2, 0, 1) * 255).round().astype(np.uint8)
    rgb[np.linalg.norm(n, axis=-1) < 0.5] = 0
    return rgb


def segmentation_to_rgb(segmentation: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[H, W]`` class ids, or ``[C, H, W]`` logits, -> palette colours; the ignore index is black."""
    s = _numpy(segmentation)
    labels = s.argmax(0) if s.ndim == 3 else s.astype(np.int64)
    rgb = _PALETTE[np.mod(labels, len(_PALETTE))]
    rgb[(labels < 0) | (labels == 255)] = 0
    return rgb


def contours_to_rgb(contours: torch.Tensor | np.ndarray) -> np.ndarray:
    c = np.clip(_numpy(contours).reshape(_numpy(contours).shape[-2:]), 0, 1)
    return np.repeat((c[..., None] * 255).round().astype(np.uint8), 3, axis=-1)


RENDERERS = {
    "image": image_to_rgb,
    "depth": depth_to_rgb,
    "normals": normals_to_rgb,
    "segmentation": segmentation_to_rgb,
    "contours": contours_to_rgb,
}


def render(key: str, value: torch.Tensor | np.ndarray) -> np.ndarray | None:
    """RGB rendering of one sample's ``key``, or ``None`` for keys that are not images (e.g. ``label``)."""
    renderer = RENDERERS.get(key)
    return renderer(value) if renderer is not None else None


def grid(rows: list[list[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Tile equally sized RGB tiles into one image, rows by columns, with white padding."""
    height, width = rows[0][0].shape[:2]
    columns = max(len(r) for r in rows)
    out = np.full((len(rows) * (height + pad) + pad, columns * (width + pad) + pad, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            y, x = pad + i * (height + pad), pad + j * (width + pad)
            out[y : y + height, x : x + width] = tile
    return out
