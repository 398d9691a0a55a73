"""Evaluation at the labels' native resolution (``native/<task>`` batch keys, served by real-data readers with
``eval_resolution: native``): predictions are upsampled bilinearly to the label before scoring (segmentation logits
before the argmax, normals re-normalised), sample by sample when the sizes differ; without native labels nothing
changes. The numbers are hand-checkable: a prediction of 1x2 pixels against a label of 1x4."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import tiny_model
from umadapt.tasks import eval_pairs, get_task

BLEND = torch.tensor([0.75, 0.25, 0.0]) / math.hypot(0.75, 0.25)
"""The normal 1/4 of the way from (1, 0, 0) to (0, 1, 0): what bilinear upsampling puts in output column 1."""


def _predictions(batch: int = 1) -> dict[str, torch.Tensor]:
    """1x2 predictions: depth 1 | 3; normals (1, 0, 0) | (0, 1, 0); class logits [2, 0, 1.8] | [0, 2, 1.8] (argmax
    0 | 1, but upsampled the two middle columns of four blend to class 2)."""
    depth = torch.tensor([1.0, 3.0]).reshape(1, 1, 1, 2)
    normals = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]).reshape(1, 3, 1, 2)
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.8, 1.8]]).reshape(1, 3, 1, 2)
    one = {"depth": depth, "normals": normals, "segmentation": logits}
    return {k: v.repeat(batch, 1, 1, 1) for k, v in one.items()}


def _native_labels() -> dict[str, torch.Tensor]:
    """1x4 labels that the upsampled predictions match exactly."""
    normals = torch.stack([torch.tensor([1.0, 0, 0]), BLEND, BLEND[[1, 0, 2]], torch.tensor([0, 1.0, 0])], dim=1)
    return {
        "depth": torch.tensor([1.0, 1.5, 2.5, 3.0]).reshape(1, 1, 4),
        "normals": normals.reshape(3, 1, 4),
        "segmentation": torch.tensor([[0, 2, 2, 1]]),
    }


def _image_size_labels(native: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same labels at the 1x2 image size, as the readers resize them (nearest: columns 1 and 3)."""
    return {k: v[..., [1, 3]][None] for k, v in native.items()}


def _scores(batch: dict, batch_size: int = 1) -> dict[str, float]:
    model = tiny_model(tasks=["depth", "normals", "segmentation"], num_classes=3, image_size=None)
    model.eval_forward = lambda image, domain, stage: _predictions(batch_size)
    model._eval_step("val", {"image": torch.zeros(batch_size, 3, 1, 2), **batch}, 0)
    metrics = model.metrics["val_source"]
    values = {f"{t}/{k}": float(v) for t in model.tasks for k, v in metrics[t].compute().items()}
    values["depth/pixels"] = float(metrics["depth"].count)
    return values


def test_native_labels_are_scored_with_upsampled_predictions():
    native = _native_labels()
    at_image_size = _scores(_image_size_labels(native))
    assert at_image_size["depth/abs_err"] == pytest.approx(0.25)  # |1 - 1.5| and |3 - 3|
    assert at_image_size["segmentation/pixel_acc"] == pytest.approx(0.5)  # 0 | 1 against 2 | 1
    assert at_image_size["normals/mean"] == pytest.approx(math.degrees(math.atan(1 / 3)) / 2)  # BLEND vs (1, 0, 0)
    at_native = _scores({**_image_size_labels(native), **{f"native/{k}": v[None] for k, v in native.items()}})
    assert at_native["depth/abs_err"] == pytest.approx(0.0, abs=1e-6) and at_native["depth/pixels"] == 4
    assert at_native["segmentation/pixel_acc"] == 1.0  # logits upsampled before the argmax: 0 2 2 1
    assert at_native["normals/mean"] == pytest.approx(0.0, abs=0.05)


def test_native_labels_of_different_sizes_are_scored_sample_by_sample():
    native = _native_labels()
    small = {k: v[..., [0, 3]] for k, v in native.items()}  # sample 2's label has the prediction's size
    batch = {f"native/{k}": [native[k], small[k]] for k in native}
    batch.update({k: torch.cat([_image_size_labels(native)[k]] * 2) for k in native})
    scores = _scores(batch, batch_size=2)
    assert scores["depth/pixels"] == 4 + 2 and scores["depth/abs_err"] == pytest.approx(0.0, abs=1e-6)
    assert scores["segmentation/pixel_acc"] == 1.0


def test_eval_pairs_without_native_labels_pass_the_batch_through():
    prediction, target = torch.rand(2, 1, 4, 4, dtype=torch.float64), torch.rand(2, 1, 4, 4)
    ((scored, label),) = eval_pairs(get_task("depth"), prediction.to(torch.bfloat16), {"depth": target})
    assert label is target and scored.dtype == torch.float32 and scored.shape == (2, 1, 4, 4)


def test_eval_pairs_renormalise_upsampled_normals():
    ((scored, label),) = eval_pairs(
        get_task("normals"), _predictions()["normals"], {"native/normals": _native_labels()["normals"][None]}
    )
    assert scored.shape == label.shape == (1, 3, 1, 4)
    assert torch.allclose(scored.norm(dim=1), torch.ones(1, 1, 4)) and torch.allclose(scored, label, atol=1e-6)
