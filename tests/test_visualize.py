"""What a person looking at an image grid or a prediction folder checks: headers, one depth scale with a colour bar,
class names, a readable size, and raw files that give back the values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from umadapt import visualize

SIDE, PAD, TILE = 32, 2, visualize.MIN_TILE
MAGENTA = np.array([255, 0, 255], dtype=np.uint8)


def _depth(left: float, right: float) -> torch.Tensor:
    depth = torch.full((1, SIDE, SIDE), left)
    depth[..., SIDE // 2 :] = right
    return depth


def _logits(ids: torch.Tensor, classes: int = 3) -> torch.Tensor:
    return torch.nn.functional.one_hot(ids, classes).permute(2, 0, 1).float()


def _grid(rows: int = 2, tasks: tuple[str, ...] = ("depth", "segmentation"), **overrides: object) -> np.ndarray:
    images = [torch.tensor([1.0, 0.0, 1.0])[:, None, None].expand(3, SIDE, SIDE) for _ in range(rows)]
    truth = {"depth": _depth(2.0, 4.0), "segmentation": torch.zeros(SIDE, SIDE, dtype=torch.int64)}
    prediction = {"depth": _depth(2.0, 8.0), "segmentation": _logits(torch.ones(SIDE, SIDE, dtype=torch.int64))}
    truth.update(overrides.get("truth", {}))  # type: ignore[arg-type]
    prediction.update(overrides.get("prediction", {}))  # type: ignore[arg-type]
    return visualize.task_grid(images, tasks, [truth] * rows, [prediction] * rows, ("floor", "wall", "ceiling"))


def _tile(grid: np.ndarray, row: int, column: int) -> np.ndarray:
    """The tile at ``row``, ``column`` of the grid's body (found below the headers by the magenta input)."""
    top = int(np.argmax((grid[:, PAD + 1] == MAGENTA).all(axis=-1)))
    y, x = top + row * (TILE + PAD), PAD + column * (TILE + PAD)
    return grid[y : y + TILE, x : x + TILE]


def test_small_tiles_are_enlarged_and_headers_name_every_column(drawn_text):
    grid = _grid(rows=2)
    assert grid.shape[1] >= 5 * TILE, "32-pixel tiles are enlarged to at least 128 pixels"
    assert (_tile(grid, 0, 0) == MAGENTA).all() and (_tile(grid, 1, 0) == MAGENTA).all()
    assert int(np.argmax((grid[:, PAD + 1] == MAGENTA).all(-1))) > 20, "a header strip above the tiles"
    assert grid.shape[0] > 2 * (TILE + PAD) + PAD + 50, "headers and colour bar add height to the rows of tiles"
    for header in ("input", "depth", "segmentation", "ground truth", "prediction"):
        assert header in drawn_text, f"no {header!r} header in {drawn_text}"


def test_ground_truth_and_prediction_share_one_depth_scale_with_a_colour_bar(drawn_text):
    grid = _grid(rows=1)
    truth, prediction = _tile(grid, 0, 1), _tile(grid, 0, 2)
    # 2 m on the left of both: the same colour, although the prediction's far half is twice as far.
    assert (truth[:, : TILE // 2] == prediction[:, : TILE // 2]).all()
    assert not (truth[:, TILE // 2 :] == truth[:, : TILE // 2]).all(), "4 m and 2 m are told apart"
    below = grid[int(np.argmax((grid[:, PAD + 1] == MAGENTA).all(-1))) + TILE :]
    for end in (visualize._VIRIDIS[0], visualize._VIRIDIS[-1]):  # the colour bar runs from near to far
        assert (below == end.astype(np.uint8)).all(-1).any()
    assert "depth (m)" in drawn_text and {"2.0", "4.0"} <= set(drawn_text), "the bar's ticks read in metres"


def test_invalid_depth_is_black_and_the_scale_ignores_it():
    truth = _depth(2.0, 4.0)
    truth[..., :4, :] = 0.0
    low, high = visualize.depth_range([truth])
    assert (low, high) == (2.0, 4.0)
    assert (visualize.depth_to_rgb(truth, high, low)[:4] == 0).all()
    assert visualize.depth_range([torch.full((1, 4, 4), 4.0)]) == (0.0, 4.0), "a flat wall still gets a readable bar"


def test_the_legend_names_the_classes_drawn(drawn_text):
    truth = torch.zeros(SIDE, SIDE, dtype=torch.int64)
    truth[:4] = 255
    _grid(rows=1, truth={"segmentation": truth})  # the prediction is all "wall"
    assert {"floor", "wall", "no label"} <= set(drawn_text) and "ceiling" not in drawn_text


def test_classification_rows_show_class_names(drawn_text):
    label = {"truth": {"label": torch.tensor(2)}, "prediction": {"label": torch.tensor([0.0, 0.0, 5.0])}}
    grid = _grid(rows=1, tasks=("label",), **label)
    assert "ceiling" in drawn_text and any(t.startswith("p = ") for t in drawn_text)
    assert (_tile(grid, 0, 2)[5, 5] == visualize.RIGHT).all(), "a right prediction is marked green"


def test_missing_ground_truth_keeps_the_columns_aligned(drawn_text):
    grid = visualize.task_grid([torch.ones(3, SIDE, SIDE)], ["depth"], [{}], [{"depth": _depth(1.0, 2.0)}])
    assert grid.shape[1] == 3 * (TILE + PAD) + PAD and "n/a" in drawn_text


def test_depth_png_round_trips_to_millimetres(tmp_path: Path):
    depth = torch.tensor([[[1.2345, 0.0, float("nan")], [70.0, 0.0001, 3.0]]])
    path = tmp_path / "depth.png"
    Image.fromarray(visualize.depth_to_millimetres(depth)).save(path)
    read = np.asarray(Image.open(path))
    assert read.dtype == np.uint16
    assert read.tolist() == [[1234, 0, 0], [65535, 1, 3000]], "mm, 0 = invalid, clipped, a valid depth is never 0"


def test_class_id_png_is_the_argmax(tmp_path: Path):
    logits = torch.randn(5, 6, 7)
    path = tmp_path / "segmentation.png"
    Image.fromarray(visualize.class_id_image(logits)).save(path)
    read = np.asarray(Image.open(path))
    assert read.dtype == np.uint8 and (read == logits.argmax(0).numpy()).all()
    assert visualize.class_id_image(torch.randn(300, 2, 2)).dtype == np.uint16
