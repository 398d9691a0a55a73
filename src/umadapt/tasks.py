"""Tasks: how each prediction is produced from a head's raw output, how it is trained and how it is scored.

A task's name is its batch key (see :mod:`umadapt.samples`), and metric names are ``stage/domain/<task>/<metric>``.

================  ==============================  ==================================  =============================
task              prediction (from the raw head)  loss                                metrics
================  ==============================  ==================================  =============================
``depth``         softplus -> positive metres     L1 over valid pixels (target > 0)   :class:`DepthMetrics`
``normals``       L2-normalised -> unit vectors   mean ``1 - cos`` over valid pixels  :class:`NormalMetrics`
``segmentation``  logits ``[B,C,H,W]``            cross-entropy, ignore index 255     :class:`SegmentationMetrics`
``label``         logits ``[B,C]``                cross-entropy                       :class:`ClassificationMetrics`
``parity``        logits ``[B,2]``                cross-entropy                       :class:`ClassificationMetrics`
``magnitude``     logits ``[B,2]``                cross-entropy                       :class:`ClassificationMetrics`
================  ==============================  ==================================  =============================

``parity`` and ``magnitude`` are per-image binary tasks derived from a digit label (see :mod:`umadapt.samples`):
even/odd and 0-4/5-9, a multi-task classification stand-in on the digits (as CIFAR-100's coarse/fine tasks are used
for multi-task classification). Their heads and metrics have 2 classes whatever the data's ``num_classes``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from umadapt.metrics import ClassificationMetrics, DepthMetrics, NormalMetrics, SegmentationMetrics
from umadapt.ops import channel_norm, normalize_channels, resize_bilinear
from umadapt.samples import IGNORE_INDEX, native_key


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the ``valid`` pixels; ``values[valid].mean()`` without the slow boolean indexing."""
    return torch.where(valid, values, values.new_zeros(())).sum() / valid.sum()


def _depth_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    valid = target > 0
    if not valid.any():
        return pred.sum() * 0.0
    return _masked_mean((pred - target).abs(), valid)


def _normals_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    valid = channel_norm(target) > 0.5
    if not valid.any():
        return pred.sum() * 0.0
    cosine = (pred * target).sum(dim=1)
    return _masked_mean(1.0 - cosine, valid)


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
        metric: ``metric(num_classes, **options) -> torchmetrics.Metric`` whose ``compute()`` returns a dict; the
            options are the metric class's keyword arguments (``model.metric_options``, e.g. depth's
            ``reduction``/``max_depth``).
        labelled: ``labelled(target) -> bool [B]``: which samples carry at least one valid label.
        categorical: class logits (see the attribute).
    """

    name: str
    dense: bool
    channels: int | None
    activate: Callable[[torch.Tensor], torch.Tensor]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    metric: Callable[..., Metric]
    labelled: Callable[[torch.Tensor], torch.Tensor]
    categorical: bool = False
    """Whether the prediction is class logits (segmentation and the per-image class tasks): an output-level
    adversary sees their softmax, and uncertainty weighting treats them as classification."""
    unit_vectors: bool = False
    """Whether the prediction is unit vectors (normals): re-normalised after resizing."""

    def out_channels(self, num_classes: int | None) -> int:
        if self.channels is not None:
            return self.channels
        if not num_classes:
            raise ValueError(
                f"Task {self.name!r} needs the number of classes, but the data gives num_classes={num_classes}."
            )
        return num_classes


def _unit_vectors(x: torch.Tensor) -> torch.Tensor:
    return normalize_channels(x, eps=1e-6)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _classification_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(pred.float(), target)


def _depth_metric(num_classes: int | None, **options: Any) -> Metric:
    return DepthMetrics(**options)


def _normals_metric(num_classes: int | None, **options: Any) -> Metric:
    return NormalMetrics(**options)


def _segmentation_metric(num_classes: int | None, **options: Any) -> Metric:
    return SegmentationMetrics(num_classes=num_classes, **options)


def _classification_metric(num_classes: int | None, **options: Any) -> Metric:
    return ClassificationMetrics(num_classes=num_classes, **options)


BINARY_CLASSES = 2
"""Classes of the derived binary per-image tasks (``parity``, ``magnitude``)."""


def _binary_classification_metric(num_classes: int | None, **options: Any) -> Metric:
    """:class:`ClassificationMetrics` over :data:`BINARY_CLASSES` classes; the data's ``num_classes`` (the digit
    classes) does not apply to a binary task derived from the label."""
    return ClassificationMetrics(num_classes=BINARY_CLASSES, **options)


def _depth_labelled(target: torch.Tensor) -> torch.Tensor:
    return (target > 0).flatten(1).any(dim=1)


def _normals_labelled(target: torch.Tensor) -> torch.Tensor:
    return (channel_norm(target) > 0.5).flatten(1).any(dim=1)


def _segmentation_labelled(target: torch.Tensor) -> torch.Tensor:
    return (target != IGNORE_INDEX).flatten(1).any(dim=1)


def _classification_labelled(target: torch.Tensor) -> torch.Tensor:
    return target >= 0


def _binary_task(name: str) -> Task:
    """A per-image task of :data:`BINARY_CLASSES` classes derived from a label (``parity``, ``magnitude``)."""
    return Task(
        name,
        False,
        BINARY_CLASSES,
        _identity,
        _classification_loss,
        _binary_classification_metric,
        _classification_labelled,
        categorical=True,
    )


# Named functions, not lambdas: models hold their tasks and must pickle (ddp_spawn, DataLoader workers).
TASKS: dict[str, Task] = {
    "depth": Task("depth", True, 1, F.softplus, _depth_loss, _depth_metric, _depth_labelled),
    "normals": Task(
        "normals", True, 3, _unit_vectors, _normals_loss, _normals_metric, _normals_labelled, unit_vectors=True
    ),
    "segmentation": Task(
        "segmentation",
        True,
        None,
        _identity,
        _segmentation_loss,
        _segmentation_metric,
        _segmentation_labelled,
        categorical=True,
    ),
    "label": Task(
        "label",
        False,
        None,
        _identity,
        _classification_loss,
        _classification_metric,
        _classification_labelled,
        categorical=True,
    ),
    "parity": _binary_task("parity"),
    "magnitude": _binary_task("magnitude"),
}


def get_task(name: str) -> Task:
    """The :class:`Task` called ``name``; a clear error lists the known tasks otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"Unknown task {name!r}. Known tasks: {sorted(TASKS)}.") from None


def eval_pairs(
    task: Task, prediction: torch.Tensor, batch: Mapping[str, Any]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The ``(prediction, target)`` pairs ``task``'s metric is updated with for one evaluation batch.

    Without a native-resolution target (:func:`~umadapt.samples.native_key`): ``[(prediction.float(),
    batch[task])]``, as always. With one, the float prediction is upsampled bilinearly to the target's size
    (:func:`~umadapt.ops.resize_bilinear`; segmentation logits before any argmax, normals re-normalised) and paired
    with it: one pair for a stacked ``[B, ...]`` target, one per sample for a list of differently sized ones.
    """
    native = batch.get(native_key(task.name))
    if native is None:
        return [(prediction.float(), batch[task.name])]
    if isinstance(native, torch.Tensor):
        native = [native]
        predictions = [prediction]
    else:
        predictions = [prediction[i : i + 1] for i in range(len(native))]
        native = [target[None] for target in native]
    return [
        (resize_bilinear(p.float(), target.shape[-2:], task.unit_vectors), target)
        for p, target in zip(predictions, native)
    ]
