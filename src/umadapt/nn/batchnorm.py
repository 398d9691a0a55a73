"""BatchNorm statistics as state of their own: read them, put them back, and re-estimate them on other data (the
mechanism of AdaBN, :class:`umadapt.methods.AdaBN`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    "BatchNormStatistics",
    "batchnorm_layers",
    "batchnorm_statistics",
    "load_batchnorm_statistics",
    "reestimate_batchnorm",
]

BatchNormStatistics = dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
"""``{layer name: (running_mean, running_var, num_batches_tracked)}`` (copies)."""


def batchnorm_layers(model: nn.Module) -> dict[str, _BatchNorm]:
    """Every BatchNorm layer of ``model`` that tracks running statistics, by name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, _BatchNorm) and m.track_running_stats}


def batchnorm_statistics(model: nn.Module) -> BatchNormStatistics:
    """A copy of every BatchNorm layer's running statistics."""
    return {
        name: (layer.running_mean.clone(), layer.running_var.clone(), layer.num_batches_tracked.clone())
        for name, layer in batchnorm_layers(model).items()
    }


def load_batchnorm_statistics(model: nn.Module, statistics: BatchNormStatistics) -> None:
    """Put ``statistics`` (from :func:`batchnorm_statistics` of the same architecture) back into ``model``."""
    for name, layer in batchnorm_layers(model).items():
        mean, var, tracked = statistics[name]
        layer.running_mean.copy_(mean)
        layer.running_var.copy_(var)
        layer.num_batches_tracked.copy_(tracked)


@torch.no_grad()
def reestimate_batchnorm(
    model: nn.Module, batches: Iterable[torch.Tensor], forward: Callable[[torch.Tensor], object]
) -> int:
    """Replace every BatchNorm layer's running statistics by their average over ``batches`` (each passed to
    ``forward``): the layers run in training mode with a cumulative average (``momentum=None``), everything else in
    eval mode (no dropout), no gradients. The weights are untouched; the mode and momentum are restored. Returns
    the number of batches seen (0 leaves the statistics as they were)."""
    layers = list(batchnorm_layers(model).values())
    before = batchnorm_statistics(model)
    was_training, momenta = model.training, [layer.momentum for layer in layers]
    model.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
        layer.train()
    seen = 0
    try:
        for images in batches:
            forward(images)
            seen += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        model.train(was_training)
    if seen == 0:
        load_batchnorm_statistics(model, before)
    return seen
