"""Semantic-segmentation metrics from an accumulated confusion matrix, DDP-safe."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from umadapt.ops import channel_argmax
from umadapt.samples import IGNORE_INDEX

__all__ = ["SegmentationMetrics", "SEGMENTATION_KEYS", "per_class_iou", "confusion_matrix_scores"]

SEGMENTATION_KEYS = ("miou", "pixel_acc", "mean_acc")
"""The keys of :meth:`SegmentationMetrics.compute`, in order."""


def per_class_iou(confmat: Tensor) -> Tensor:
    """IoU of each class from a ``[C, C]`` confusion matrix (rows = target, columns = prediction), float64.

    ``IoU_c = TP_c / (TP_c + FP_c + FN_c)``; a class that appears in neither the target nor the prediction
    (union 0) gets ``NaN``.
    """
    confmat = confmat.to(torch.float64)
    tp = torch.diagonal(confmat)
    union = confmat.sum(dim=0) + confmat.sum(dim=1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


def confusion_matrix_scores(confmat: Tensor) -> dict[str, Tensor]:
    """``miou``, ``pixel_acc`` and ``mean_acc`` (float64 scalars) of a ``[C, C]`` confusion matrix (rows = target).

    ``miou`` averages the IoU over classes with union > 0, ``mean_acc`` averages the per-class recall over classes
    present in the target; both (and ``pixel_acc``) are ``NaN`` for an empty matrix.
    """
    confmat = confmat.to(torch.float64)
    tp = torch.diagonal(confmat)
    support = confmat.sum(dim=1)
    iou = per_class_iou(confmat)
    present = support > 0
    return {
        "miou": iou[~torch.isnan(iou)].mean(),  # mean of an empty tensor is NaN
        "pixel_acc": tp.sum() / confmat.sum(),
        "mean_acc": (tp[present] / support[present]).mean(),
    }


class SegmentationMetrics(Metric):
    """Mean IoU, pixel accuracy and mean class accuracy over a whole evaluation set.

    ``update(preds, target)``: ``preds`` is either logits/scores ``[B, C, H, W]`` (``C == num_classes``; the argmax
    over ``C`` is taken) or predicted labels ``[B, H, W]``; ``target`` is int ``[B, H, W]`` where ``ignore_index``
    marks pixels to skip (see :mod:`umadapt.samples`). Any other target value, and any predicted label, must lie in
    ``[0, num_classes)``, else a ``ValueError`` is raised.

    The state is a ``[num_classes, num_classes]`` int64 confusion matrix (rows = target, columns = prediction) with
    ``dist_reduce_fx="sum"``. ``compute()`` returns scalar tensors:

    * ``miou``: mean IoU over the classes that appear in the target *or* the prediction (union > 0); classes seen in
      neither are left out rather than counted as 0 or 1.
    * ``pixel_acc``: correctly labelled valid pixels / valid pixels.
    * ``mean_acc``: mean per-class recall over the classes present in the target.

    All three are fractions in ``[0, 1]`` and ``NaN`` when no valid pixel has been seen (no exception).
    :meth:`per_class_iou` gives the ``[num_classes]`` IoU vector (``NaN`` for union-0 classes). With ``class_names``
    (``model.metric_options: {segmentation: {class_names: [...]}}``), ``compute()`` also returns ``iou_<name>`` for
    every class with union > 0, so per-class IoUs reach the logs and the benchmark tables.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = IGNORE_INDEX,
        class_names: list[str] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(class_names)} names but the model has num_classes={num_classes}; "
                "give one name per class."
            )
        self.class_names = None if class_names is None else [str(n) for n in class_names]
        if ignore_index is not None and 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index={ignore_index} collides with a class id in [0, {num_classes}).")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.add_state("confmat", torch.zeros(num_classes, num_classes, dtype=torch.int64), dist_reduce_fx="sum")

    def _labels(self, preds: Tensor, target: Tensor) -> Tensor:
        name = type(self).__name__
        if target.ndim != 3:
            raise ValueError(f"{name}: expected target of shape [B, H, W], got {tuple(target.shape)}.")
        if target.is_floating_point() or target.is_complex():
            raise ValueError(f"{name}: expected an integer target, got dtype {target.dtype}.")
        b, h, w = target.shape
        if preds.ndim == 4:
            if preds.shape != (b, self.num_classes, h, w):
                raise ValueError(
                    f"{name}: expected logits of shape [B, C, H, W] = {(b, self.num_classes, h, w)} "
                    f"(target {tuple(target.shape)}, num_classes={self.num_classes}), got {tuple(preds.shape)}."
                )
            return channel_argmax(preds)
        if preds.ndim == 3:
            if preds.shape != target.shape:
                raise ValueError(
                    f"{name}: expected predicted labels of shape {tuple(target.shape)} (= target), "
                    f"got {tuple(preds.shape)}."
                )
            if preds.is_floating_point() or preds.is_complex():
                raise ValueError(f"{name}: expected integer predicted labels [B, H, W], got dtype {preds.dtype}.")
            return preds
        raise ValueError(
            f"{name}: expected preds of shape [B, C, H, W] (logits) or [B, H, W] (labels), got {tuple(preds.shape)}."
        )

    def update(self, preds: Tensor, target: Tensor) -> None:  # type: ignore[override]
        labels = self._labels(preds.detach(), target).long()
        target = target.detach().long()
        valid = (
            target != self.ignore_index if self.ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
        )
        t = target[valid]
        p = labels[valid]
        if t.numel():
            c = self.num_classes
            if bool(((t < 0) | (t >= c)).any()):
                bad = torch.unique(t[(t < 0) | (t >= c)])[:10].tolist()
                raise ValueError(
                    f"{type(self).__name__}: target values must be in [0, {c}) or ignore_index={self.ignore_index}, "
                    f"got {bad}."
                )
            if bool(((p < 0) | (p >= c)).any()):
                bad = torch.unique(p[(p < 0) | (p >= c)])[:10].tolist()
                raise ValueError(f"{type(self).__name__}: predicted labels must be in [0, {c}), got {bad}.")
            self.confmat = self.confmat + torch.bincount(t * c + p, minlength=c * c).reshape(c, c)

    def compute(self) -> dict[str, Tensor]:
        scores = confusion_matrix_scores(self.confmat)
        out = {key: scores[key].to(torch.float32) for key in SEGMENTATION_KEYS}
        if self.class_names is not None:
            iou = per_class_iou(self.confmat).to(torch.float32)
            out.update({f"iou_{n}": iou[i] for i, n in enumerate(self.class_names) if not torch.isnan(iou[i])})
        return out

    def per_class_iou(self) -> Tensor:
        """IoU per class, ``[num_classes]`` float32, ``NaN`` where the union is 0; synced across processes like
        :meth:`compute`."""
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=self._should_unsync
        ):
            return per_class_iou(self.confmat).to(torch.float32).clone()
