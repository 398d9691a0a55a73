"""Image-classification accuracy, DDP-safe."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from umadapt.ops import channel_argmax

__all__ = ["ClassificationMetrics", "CLASSIFICATION_KEYS"]

CLASSIFICATION_KEYS = ("accuracy", "mean_acc")
"""The keys of :meth:`ClassificationMetrics.compute`, in order."""


class ClassificationMetrics(Metric):
    """Overall accuracy and mean per-class accuracy over a whole evaluation set.

    ``update(preds, target)``: ``preds`` is either logits/scores ``[B, C]`` (``C == num_classes``; argmax over
    ``C``) or predicted labels ``[B]``; ``target`` is int ``[B]`` with values in ``[0, num_classes)`` (samples equal
    to ``ignore_index``, if one is given, are skipped; there is none by default, since 255 can be a real class).

    States: per-class ``correct`` and ``support`` int64 vectors, ``dist_reduce_fx="sum"``. ``compute()`` returns:

    * ``accuracy``: correct / total, a fraction in ``[0, 1]``.
    * ``mean_acc``: mean per-class recall over the classes present in the target (balanced accuracy).

    Both are ``NaN`` when no sample has been seen (no exception).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.add_state("correct", torch.zeros(num_classes, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("support", torch.zeros(num_classes, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:  # type: ignore[override]
        name = type(self).__name__
        if target.ndim != 1 or target.is_floating_point() or target.is_complex():
            raise ValueError(
                f"{name}: expected an integer target of shape [B], got {tuple(target.shape)} {target.dtype}."
            )
        (b,) = target.shape
        preds = preds.detach()
        if preds.ndim == 2:
            if preds.shape != (b, self.num_classes):
                raise ValueError(
                    f"{name}: expected logits of shape [B, C] = {(b, self.num_classes)}, got {tuple(preds.shape)}."
                )
            labels = channel_argmax(preds)
        elif preds.ndim == 1:
            if preds.shape != target.shape:
                raise ValueError(
                    f"{name}: expected predicted labels of shape {(b,)} (= target), got {tuple(preds.shape)}."
                )
            if preds.is_floating_point() or preds.is_complex():
                raise ValueError(f"{name}: expected integer predicted labels [B], got dtype {preds.dtype}.")
            labels = preds.long()
        else:
            raise ValueError(
                f"{name}: expected preds of shape [B, C] (logits) or [B] (labels), got {tuple(preds.shape)}."
            )
        target = target.detach().long()
        if self.ignore_index is not None:
            keep = target != self.ignore_index
            target, labels = target[keep], labels[keep]
        if target.numel() and bool(((target < 0) | (target >= self.num_classes)).any()):
            bad = torch.unique(target[(target < 0) | (target >= self.num_classes)])[:10].tolist()
            raise ValueError(f"{name}: target values must be in [0, {self.num_classes}), got {bad}.")
        self.support = self.support + torch.bincount(target, minlength=self.num_classes)
        self.correct = self.correct + torch.bincount(target[labels == target], minlength=self.num_classes)

    def compute(self) -> dict[str, Tensor]:
        correct = self.correct.to(torch.float64)
        support = self.support.to(torch.float64)
        present = support > 0
        out = {
            "accuracy": correct.sum() / support.sum(),
            "mean_acc": (correct[present] / support[present]).mean(),
        }
        return {key: out[key].to(torch.float32) for key in CLASSIFICATION_KEYS}
