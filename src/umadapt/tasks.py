"""Tasks: how each prediction is produced from a head's raw output, how it is trained and how it is scored.

A task's name is its batch key (see :mod:`umadapt.samples`), and metric names are ``stage/domain/<task>/<metric>``.

=================  ==================================  ===================================  ====================
task               prediction (from the raw head)      loss                                 metrics
=================  ==================================  ===================================  ====================
``depth``          softplus -> positive metres          L1 over valid pixels (target > 0)    :class:`DepthMetrics`
``normals``        L2-normalised -> unit vectors        mean ``1 - cos`` over valid pixels    :class:`NormalMetrics`
``segmentation``   logits ``[B,C,H,W]``                 cross-entropy, ignore index 255      :class:`SegmentationMetrics`
``label``          logits ``[B,C]``                     cross-entropy                        :class:`ClassificationMetrics`
=================  ==================================  ===================================  ====================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from umadapt.metrics import ClassificationMetrics, DepthMetrics, NormalMetrics, SegmentationMetrics
from umadapt.samples import IGNORE_INDEX


def _depth_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    valid = target > 0
    if not valid.any():
        return pred.sum() * 0.0
    return (pred - target).abs()[valid].mean()


def _normals_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    valid = target.norm(dim=1) > 0.5
    if not valid.any():
        return pred.sum() * 0.0
    cosine = (pred * target).sum(dim=1)
    return (1.0 - cosine)[valid].mean()


def _segmentation_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if not (target != IGNORE_INDEX).any():
        return pred.sum() * 0.0
    return F.cross_entropy(pred.float(), target, ignore_index=IGNORE_INDEX)


@dataclass(frozen=True)
class Task:
    """One prediction task.

    Attributes:
        name: the batch key it predicts.
        dense: ``True`` for per-pixel tasks (built with the dense head), ``False`` for per-image tasks.
        channels: output channels, or ``None`` when it equals the number of classes.
        activate: maps the head's raw output to the prediction.
        loss: ``loss(prediction, target) -> scalar``.
        metric: ``metric(num_classes) -> torchmetrics.Metric`` whose ``compute()`` returns a dict.
    """

    name: str
    dense: bool
    channels: int | None
    activate: Callable[[torch.Tensor], torch.Tensor]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    metric: Callable[[int | None], Metric]

    def out_channels(self, num_classes: int | None) -> int:
        if self.channels is not None:
            return self.channels
        if not num_classes:
            raise ValueError(f"Task {self.name!r} needs the number of classes, but the data gives num_classes={num_classes}.")
        return num_classes


def _unit_vectors(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=1, eps=1e-6)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _classification_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(pred.float(), target)


def _depth_metric(num_classes: int | None) -> Metric:
    return DepthMetrics()


def _normals_metric(num_classes: int | None) -> Metric:
    return NormalMetrics()


def _segmentation_metric(num_classes: int | None) -> Metric:
    return SegmentationMetrics(num_classes=num_classes)


def _classification_metric(num_classes: int | None) -> Metric:
    return ClassificationMetrics(num_classes=num_classes)


# Named functions, not lambdas: models hold their tasks and must pickle (ddp_spawn, DataLoader workers).
TASKS: dict[str, Task] = {
    "depth": Task("depth", True, 1, F.softplus, _depth_loss, _depth_metric),
    "normals": Task("normals", True, 3, _unit_vectors, _normals_loss, _normals_metric),
    "segmentation": Task("segmentation", True, None, _identity, _segmentation_loss, _segmentation_metric),
    "label": Task("label", False, None, _identity, _classification_loss, _classification_metric),
}


def get_task(name: str) -> Task:
    """The :class:`Task` called ``name``; a clear error lists the known tasks otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"Unknown task {name!r}. Known tasks: {sorted(TASKS)}.") from None
