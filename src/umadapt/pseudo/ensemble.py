"""Multi-transform inference: a model's predictions of each transformed view, mapped back to the original frame
(:mod:`umadapt.pseudo.transforms`), ensembled, and how much the views disagree.

Class tasks (``segmentation``, ``label``) are ensembled as the mean of the views' softmax probabilities (data
distillation averages heatmaps/probabilities, Radosavovic et al. 2018); depth as the per-pixel mean or median of
the views' metres; normals as the per-pixel mean or per-component median of the views' unit vectors, renormalised.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from umadapt.errors import ConfigError
from umadapt.ops import channel_norm, normalize_channels
from umadapt.pseudo.transforms import ViewTransform

__all__ = ["CLASS_TASKS", "REDUCTIONS", "combine_views", "predict_views", "view_disagreement"]

CLASS_TASKS = ("segmentation", "label")
REDUCTIONS = ("mean", "median")


@torch.no_grad()
def predict_views(
    forward: Callable[[Tensor], Mapping[str, Tensor]],
    images: Tensor,
    transforms: Sequence[ViewTransform],
    tasks: Sequence[str],
    multiple: int = 1,
) -> dict[str, list[Tensor]]:
    """``{task: [prediction of each transform's view, in the original frame]}`` in float32: probabilities for class
    tasks, metres for depth, unit vectors for normals. ``forward`` maps images to activated predictions (a
    model's ``forward``); ``multiple``: rescaled sides are rounded to a multiple of it (the encoder's stride)."""
    size = tuple(images.shape[-2:])
    views: dict[str, list[Tensor]] = {t: [] for t in tasks}
    for transform in transforms:
        outputs = forward(transform.apply(images, multiple))
        for t in tasks:
            prediction = outputs[t].float()
            if t in CLASS_TASKS:
                prediction = prediction.softmax(dim=1)
            views[t].append(transform.invert(t, prediction, size))  # type: ignore[arg-type]
    return views


def combine_views(task: str, views: Sequence[Tensor], reduction: str = "mean") -> Tensor:
    """The ensemble of ``views`` (one task's predictions in the original frame): class probabilities averaged (the
    ``reduction`` applies to depth and normals only); depth's mean or median; normals' mean or per-component median,
    renormalised to unit length."""
    if reduction not in REDUCTIONS:
        raise ConfigError(f"Unknown ensemble reduction {reduction!r}; valid: {list(REDUCTIONS)}.")
    stack = torch.stack(list(views))
    if task in CLASS_TASKS or reduction == "mean":
        combined = stack.mean(dim=0)
    else:  # the median of an even count is the mean of the two middle values
        ordered, half = stack.sort(dim=0).values, len(views) // 2
        combined = ordered[half] if len(views) % 2 else 0.5 * (ordered[half - 1] + ordered[half])
    return normalize_channels(combined, eps=1e-6) if task == "normals" else combined


def view_disagreement(task: str, views: Sequence[Tensor], ensemble: Tensor) -> Tensor:
    """How far the views lie from their ensemble, per pixel ``[N, H, W]`` (per image ``[N]`` for ``label``); 0 for
    a single view. Depth: mean ``|log d_v - log d|`` (relative, unitless); normals: mean angle to the ensemble in
    degrees; class tasks: mean total variation ``0.5 Σ_k |p_v,k - p_k|``."""
    if task == "depth":
        reference = ensemble.clamp_min(1e-6).log()
        values = [(v.clamp_min(1e-6).log() - reference).abs()[:, 0] for v in views]
    elif task == "normals":
        values = [
            ((v * ensemble).sum(dim=1) / (channel_norm(v) * channel_norm(ensemble)).clamp_min(1e-12))
            .clamp(-1.0, 1.0)
            .acos()
            * (180.0 / math.pi)
            for v in views
        ]
    else:
        values = [0.5 * (v - ensemble).abs().sum(dim=1) for v in views]
    return torch.stack(values).mean(dim=0)
