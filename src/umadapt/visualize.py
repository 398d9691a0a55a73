"""Turning predictions and targets into pictures a person can read: RGB tiles (uint8 ``[H, W, 3]``), annotated grids
(column headers, one depth colour scale with a colour bar in metres, a class legend with names) and the raw files of
a prediction folder (16-bit depth PNGs in millimetres, class-ID PNGs)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

# A 9-stop approximation of matplotlib's "viridis" (no matplotlib dependency).
_VIRIDIS = np.array(
    [
        [68, 1, 84],
        [71, 44, 122],
        [59, 81, 139],
        [44, 113, 142],
        [33, 144, 141],
        [39, 173, 129],
        [92, 200, 99],
        [170, 220, 50],
        [253, 231, 37],
    ],
    dtype=np.float32,
)
_FIRST_COLOURS = [
    [128, 64, 128],
    [70, 70, 70],
    [220, 220, 0],
    [0, 130, 180],
    [220, 20, 60],
    [152, 251, 152],
    [255, 127, 14],
    [107, 142, 35],
    [119, 11, 32],
    [0, 0, 142],
    [190, 153, 153],
    [250, 170, 30],
    [102, 102, 156],
    [44, 160, 44],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
]


def _voc_colour(index: int) -> list[int]:
    """PASCAL VOC's colour of ``index`` (bits of the index spread over R, G, B): distinct for every index < 256."""
    rgb = [0, 0, 0]
    for bit in range(8):
        for channel in range(3):
            rgb[channel] |= ((index >> (3 * bit + channel)) & 1) << (7 - bit)
    return rgb


_PALETTE = np.array(_FIRST_COLOURS + [_voc_colour(i) for i in range(len(_FIRST_COLOURS), 256)], dtype=np.uint8)
"""Class ``k`` is drawn in ``_PALETTE[k]`` (256 distinct colours); the ignore index 255 is drawn black."""

IGNORE_INDEX = 255
MIN_TILE = 128
"""Grid tiles smaller than this (pixels, shorter side) are enlarged by an integer factor, nearest neighbour."""
BACKGROUND, INK, MISSING = (255, 255, 255), (20, 20, 20), (225, 225, 225)
RIGHT, WRONG = (200, 235, 200), (245, 200, 200)
_PAD, _GAP = 2, 8


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _plane(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[H, W]`` from ``[1, H, W]`` or ``[H, W]``."""
    a = _numpy(x)
    return a.reshape(a.shape[-2:])


# -- tiles ------------------------------------------------------------------------------------------------------------
def image_to_rgb(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[3, H, W]`` float in [0, 1] -> uint8 ``[H, W, 3]``."""
    return (np.clip(_numpy(image).transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)


def _viridis(t: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> viridis colours (float ``[..., 3]``)."""
    t = np.clip(t, 0, 1) * (len(_VIRIDIS) - 1)
    low = np.floor(t).astype(int)
    high = np.minimum(low + 1, len(_VIRIDIS) - 1)
    frac = (t - low)[..., None]
    return _VIRIDIS[low] * (1 - frac) + _VIRIDIS[high] * frac


def depth_to_rgb(
    depth: torch.Tensor | np.ndarray, max_depth: float | None = None, min_depth: float = 0.0
) -> np.ndarray:
    """``[1, H, W]`` metres -> viridis colours, ``min_depth`` (near) dark to ``max_depth`` (far, default: the map's
    largest depth) yellow, clipped outside; invalid (0 or non-finite) pixels are black. Pass the same range to the
    ground truth and the prediction so equal metres get equal colours."""
    d = _plane(depth)
    valid = np.isfinite(d) & (d > 0)
    top = max_depth if max_depth else (float(d[valid].max()) if valid.any() else 1.0)
    rgb = _viridis((np.where(valid, d, 0) - min_depth) / max(top - min_depth, 1e-6))
    rgb[~valid] = 0
    return rgb.round().astype(np.uint8)


def normals_to_rgb(normals: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[3, H, W]`` unit vectors -> ``(n + 1) / 2`` as RGB; invalid (zero) vectors are black."""
    n = _numpy(normals).transpose(1, 2, 0)
    rgb = (np.clip((n + 1) / 2, 0, 1) * 255).round().astype(np.uint8)
    rgb[np.linalg.norm(n, axis=-1) < 0.5] = 0
    return rgb


def class_ids(segmentation: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[H, W]`` class ids from ids or from ``[C, H, W]`` logits (argmax), as int64."""
    s = _numpy(segmentation)
    return s.argmax(0) if s.ndim == 3 else s.astype(np.int64)


def segmentation_to_rgb(segmentation: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[H, W]`` class ids, or ``[C, H, W]`` logits, -> palette colours; the ignore index is black."""
    labels = class_ids(segmentation)
    rgb = _PALETTE[np.mod(labels, len(_PALETTE))]
    rgb[(labels < 0) | (labels == IGNORE_INDEX)] = 0
    return rgb


def contours_to_rgb(contours: torch.Tensor | np.ndarray) -> np.ndarray:
    c = np.clip(_plane(contours), 0, 1)
    return np.repeat((c[..., None] * 255).round().astype(np.uint8), 3, axis=-1)


RENDERERS = {
    "image": image_to_rgb,
    "depth": depth_to_rgb,
    "normals": normals_to_rgb,
    "segmentation": segmentation_to_rgb,
    "contours": contours_to_rgb,
    "translated": image_to_rgb,  # an image translator's output (umadapt.methods.CyCADATranslator)
}


def render(key: str, value: torch.Tensor | np.ndarray) -> np.ndarray | None:
    """RGB rendering of one sample's ``key``, or ``None`` for keys that are not images (e.g. ``label``)."""
    renderer = RENDERERS.get(key)
    return renderer(value) if renderer is not None else None


def upscale(tile: np.ndarray, min_side: int = MIN_TILE) -> np.ndarray:
    """Enlarge by the smallest integer factor that makes the shorter side at least ``min_side`` (nearest)."""
    factor = max(1, math.ceil(min_side / min(tile.shape[:2])))
    return tile if factor == 1 else tile.repeat(factor, axis=0).repeat(factor, axis=1)


# -- raw prediction files -------------------------------------------------------------------------------------------
def depth_to_millimetres(depth: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[1, H, W]`` metres -> uint16 ``[H, W]`` millimetres for a 16-bit PNG: 0 = invalid (0 or non-finite input),
    valid depths clipped to 1..65535 mm (so a valid depth never reads as invalid)."""
    d = _plane(depth)
    valid = np.isfinite(d) & (d > 0)
    mm = np.clip(np.round(np.where(valid, d, 0) * 1000.0), 1, 65535)
    return np.where(valid, mm, 0).astype(np.uint16)


def class_id_image(segmentation: torch.Tensor | np.ndarray) -> np.ndarray:
    """Class ids (argmax of ``[C, H, W]`` logits, or ids) as uint8 ``[H, W]`` when they fit (at most 256 classes),
    else uint16."""
    s = _numpy(segmentation)
    ids = class_ids(s)
    classes = s.shape[0] if s.ndim == 3 else int(ids.max(initial=0)) + 1
    return ids.astype(np.uint8 if classes <= 256 else np.uint16)


# -- text and annotations -------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def font(size: int = 14) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """PIL's default font at ``size`` pixels (Pillow >= 10.1); its fixed-size bitmap font on older Pillow."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def _text_size(text: str, size: int = 14) -> tuple[int, int]:
    box = ImageDraw.Draw(Image.new("RGB", (1, 1))).multiline_textbbox((0, 0), text, font(size))
    return box[2], box[3]


def class_name(index: int, class_names: Sequence[str]) -> str:
    """The name of class ``index``; ``class <index>`` when the data name no class that far."""
    return class_names[index] if 0 <= index < len(class_names) else f"class {index}"


def text_tile(text: str, shape: tuple[int, int], background: tuple[int, ...] = MISSING, size: int = 14) -> np.ndarray:
    """A ``shape`` (H, W) tile with ``text`` centred on ``background``; what does not fit is cut."""
    canvas = Image.new("RGB", (shape[1], shape[0]), background)
    ImageDraw.Draw(canvas).multiline_text(
        (shape[1] / 2, shape[0] / 2), text, fill=INK, font=font(size), anchor="mm", align="center"
    )
    return np.asarray(canvas)


def _strip(width: int, height: int) -> Image.Image:
    return Image.new("RGB", (width, height), BACKGROUND)


def _nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values inside ``[low, high]``, about ``count`` of them."""
    raw = max(high - low, 1e-6) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= 0.75 * raw)
    first = math.ceil(low / step - 1e-9) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def colour_bar(low: float, high: float, width: int, label: str = "depth (m)") -> np.ndarray:
    """A horizontal viridis bar from ``low`` to ``high`` metres with tick labels, ``label`` on its left."""
    label, note = f"{label}  ", "black: no depth\nbeyond: end colours"
    label_width, note_width = _text_size(label)[0], _text_size(note, 12)[0]
    bar_width = max(64, min(width - label_width - note_width - 3 * _GAP, 480))
    canvas = _strip(label_width + bar_width + note_width + 3 * _GAP, 44)
    draw = ImageDraw.Draw(canvas)
    draw.text((_GAP, 4), label, fill=INK, font=font())
    x0 = _GAP + label_width
    bar = _viridis(np.linspace(0, 1, bar_width))[None].repeat(14, axis=0).round().astype(np.uint8)
    canvas.paste(Image.fromarray(bar), (x0, 4))
    ticks = _nice_ticks(low, high)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 0.1
    decimals = next(d for d in range(7) if abs(round(step, d) - step) < 1e-9 * max(1.0, step) or d == 6)
    for value in ticks:
        x = x0 + round((value - low) / max(high - low, 1e-6) * (bar_width - 1))
        draw.line([(x, 18), (x, 22)], fill=INK)
        draw.text((x, 24), f"{value:.{decimals}f}", fill=INK, font=font(12), anchor="mt")
    draw.multiline_text((x0 + bar_width + _GAP, 2), note, fill=INK, font=font(12))
    return np.asarray(canvas)


def class_legend(ids: Iterable[int], class_names: Sequence[str], width: int) -> np.ndarray:
    """Colour swatches with class names (``class k`` when unnamed) for ``ids``, wrapped into lines ``width`` wide;
    the ignore index is listed as ``no label``."""
    line, x, places = 0, _GAP, []
    for i in sorted({int(i) for i in ids}):
        colour = _PALETTE[i % len(_PALETTE)] if i != IGNORE_INDEX else np.zeros(3, np.uint8)
        name = "no label" if i == IGNORE_INDEX else class_name(i, class_names)
        item = 16 + _text_size(name)[0] + 2 * _GAP
        if x + item > width and x > _GAP:
            line, x = line + 1, _GAP
        places.append((x, line, colour, name))
        x += item
    canvas = _strip(width, 20 * (line + 1) + 4)
    draw = ImageDraw.Draw(canvas)
    for x, row, colour, name in places:
        y = 4 + 20 * row
        draw.rectangle([x, y + 1, x + 12, y + 13], fill=tuple(int(c) for c in colour), outline=INK)
        draw.text((x + 16, y), name, fill=INK, font=font())
    return np.asarray(canvas)


def normals_key(side: int = 48) -> np.ndarray:
    """A sphere seen by the camera, coloured like :func:`normals_to_rgb`: which colour faces which way."""
    v, u = np.mgrid[-1 : 1 : side * 1j, -1 : 1 : side * 1j]
    inside = u**2 + v**2 <= 1
    normals = np.stack([u, v, -np.sqrt(np.clip(1 - u**2 - v**2, 0, 1))]) * inside
    rgb = normals_to_rgb(normals)
    rgb[~inside] = BACKGROUND
    return rgb


def _stack(parts: Sequence[np.ndarray], width: int) -> np.ndarray:
    """Parts one below the other, left-aligned on a white canvas ``width`` wide (wider parts widen it)."""
    width = max([width, *(p.shape[1] for p in parts)])
    out = np.full((sum(p.shape[0] for p in parts), width, 3), 255, dtype=np.uint8)
    y = 0
    for part in parts:
        out[y : y + part.shape[0], : part.shape[1]] = part
        y += part.shape[0]
    return out


def _side_by_side(parts: Sequence[np.ndarray]) -> np.ndarray:
    height = max(p.shape[0] for p in parts)
    out = np.full((height, sum(p.shape[1] for p in parts) + _GAP * (len(parts) - 1), 3), 255, dtype=np.uint8)
    x = 0
    for part in parts:
        out[: part.shape[0], x : x + part.shape[1]] = part
        x += part.shape[1] + _GAP
    return out


# -- grids ----------------------------------------------------------------------------------------------------------
def grid(rows: list[list[np.ndarray]], pad: int = _PAD) -> np.ndarray:
    """Tile equally sized RGB tiles into one image, rows by columns, with white padding."""
    height, width = rows[0][0].shape[:2]
    columns = max(len(r) for r in rows)
    out = np.full((len(rows) * (height + pad) + pad, columns * (width + pad) + pad, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            y, x = pad + i * (height + pad), pad + j * (width + pad)
            out[y : y + height, x : x + width] = tile
    return out


def headers(titles: Sequence[str], tile_width: int, pad: int = _PAD) -> np.ndarray:
    """A white strip with one centred (multi-line) title above each grid column."""
    height = max(_text_size(t)[1] for t in titles) + 10
    canvas = _strip(len(titles) * (tile_width + pad) + pad, height)
    draw = ImageDraw.Draw(canvas)
    for j, title in enumerate(titles):
        x = pad + j * (tile_width + pad) + tile_width / 2
        draw.multiline_text((x, height / 2), title, fill=INK, font=font(), anchor="mm", align="center")
    return np.asarray(canvas)


def depth_range(
    depths: Iterable[torch.Tensor | np.ndarray], percentiles: tuple[float, float] = (1, 99)
) -> tuple[float, float]:
    """One ``(low, high)`` colour range in metres for several depth maps: the given percentiles of all their valid
    pixels (robust to a few far or broken pixels); ``(0, high)`` when they span under 5 % of ``high`` (a flat wall)."""
    values = [d[np.isfinite(d) & (d > 0)] for d in (_plane(x).ravel() for x in depths)]
    values = np.concatenate(values) if values else np.zeros(0)
    if values.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(values, percentiles))
    return (low, high) if high - low >= 0.05 * high else (0.0, high)


def _label_tile(label: Any, shape: tuple[int, int], class_names: Sequence[str], truth: Any = None) -> np.ndarray:
    """A class label as text: an id (ground truth), or logits (prediction: name, probability, green when it equals
    ``truth``, red when not)."""
    value = _numpy(label)
    if value.ndim == 0:
        return text_tile(class_name(int(value), class_names), shape, BACKGROUND)
    probabilities = np.exp(value - value.max())
    probabilities /= probabilities.sum()
    best = int(probabilities.argmax())
    background = MISSING if truth is None else (RIGHT if best == int(_numpy(truth)) else WRONG)
    return text_tile(f"{class_name(best, class_names)}\np = {probabilities[best]:.2f}", shape, background)


def task_grid(
    images: Sequence[torch.Tensor | np.ndarray],
    tasks: Sequence[str],
    truths: Sequence[Mapping[str, Any]],
    predictions: Sequence[Mapping[str, Any]],
    class_names: Sequence[str] = (),
    title: str | None = None,
    min_side: int = MIN_TILE,
) -> np.ndarray:
    """The picture of a few samples: one row per image; columns ``input``, then ground truth and prediction for each
    task (a grey ``n/a`` tile where one is missing); column headers above; below, the depth colour bar (one range in
    metres for every depth tile of the grid, from its ground truth, or its predictions when no ground truth is valid),
    the normals colour key and a legend naming every class drawn. Tiles are enlarged to ``min_side`` (nearest)."""
    depth_maps = [t["depth"] for t in truths if "depth" in t] or [p["depth"] for p in predictions if "depth" in p]
    low, high = depth_range(depth_maps) if "depth" in tasks else (0.0, 1.0)
    seen_classes: set[int] = set()

    def tile(task: str, source: Mapping[str, Any], truth: Mapping[str, Any], shape: tuple[int, int]) -> np.ndarray:
        if task not in source:
            return text_tile("n/a", shape)
        if task == "label":
            return _label_tile(source[task], shape, class_names, truth.get(task) if source is not truth else None)
        if task == "depth":
            return upscale(depth_to_rgb(source[task], max_depth=high, min_depth=low), min_side)
        if task == "segmentation":
            seen_classes.update(np.unique(class_ids(source[task])).tolist())
        rendered = render(task, source[task])
        return upscale(rendered, min_side) if rendered is not None else text_tile("n/a", shape)

    rows = []
    for image, truth, prediction in zip(images, truths, predictions):
        first = upscale(image_to_rgb(image), min_side)
        rows.append([first] + [tile(t, s, truth, first.shape[:2]) for t in tasks for s in (truth, prediction)])
    titles = ["input"] + [f"{t}\n{kind}" for t in tasks for kind in ("ground truth", "prediction")]
    body = grid(rows)
    parts = [headers(titles, rows[0][0].shape[1]), body]
    if title:
        parts.insert(0, text_tile(title, (_text_size(title, 16)[1] + 12, body.shape[1]), BACKGROUND, size=16))
    keys = []
    if "depth" in tasks:
        keys.append(colour_bar(low, high, body.shape[1] - (80 if "normals" in tasks else 0)))
    if "normals" in tasks:
        caption = text_tile("normals", (18, 64), BACKGROUND, size=12)
        keys.append(_stack([caption, np.pad(normals_key(), ((0, 4), (8, 8), (0, 0)), constant_values=255)], 64))
    if keys:
        parts.append(_side_by_side(keys))
    if "segmentation" in tasks and seen_classes:
        parts.append(class_legend(seen_classes, class_names, body.shape[1]))
    return _stack(parts, body.shape[1])


def image_grid(
    columns: Mapping[str, Sequence[torch.Tensor | np.ndarray]], title: str | None = None, min_side: int = MIN_TILE
) -> np.ndarray:
    """Images side by side: one column per ``columns`` entry (its key the header, e.g. ``input``, ``translated``,
    ``reconstructed``), one row per image; tiles enlarged to ``min_side`` (nearest)."""
    names = list(columns)
    rows = [
        [upscale(image_to_rgb(columns[name][i]), min_side) for name in names] for i in range(len(columns[names[0]]))
    ]
    body = grid(rows)
    parts = [headers(names, rows[0][0].shape[1]), body]
    if title:
        parts.insert(0, text_tile(title, (_text_size(title, 16)[1] + 12, body.shape[1]), BACKGROUND, size=16))
    return _stack(parts, body.shape[1])
