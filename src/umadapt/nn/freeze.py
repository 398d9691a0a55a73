"""Freezing parts of a network: no gradient *and* eval mode, so BatchNorm running statistics stay bitwise unchanged
(``requires_grad=False`` alone still updates them in train mode)."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

__all__ = ["freeze", "train_only"]


def freeze(module: nn.Module, frozen: bool = True, training: bool = True) -> nn.Module:
    """Freeze ``module`` (``requires_grad=False``, eval mode) or, with ``frozen=False``, unfreeze it
    (``requires_grad=True``, train mode when ``training``). Returns the module."""
    module.requires_grad_(not frozen)
    module.train(not frozen and training)
    return module


def train_only(root: nn.Module, trainable: Iterable[nn.Module]) -> None:
    """Freeze every part of ``root`` except the ``trainable`` sub-modules: their parameters get
    ``requires_grad=True`` and they are in train mode; every other parameter gets ``requires_grad=False`` and every
    sub-module holding no trainable part is in eval mode (the modules that contain a trainable part, ``root``
    included, stay in train mode). Idempotent: call it every step, since Lightning puts the whole model back in train
    mode around validation."""
    trainable = list(trainable)
    learning = {id(p) for module in trainable for p in module.parameters()}
    for parameter in root.parameters():
        parameter.requires_grad_(id(parameter) in learning)
    inside = {id(m) for module in trainable for m in module.modules()}

    def visit(module: nn.Module) -> bool:
        if id(module) in inside:
            module.train()
            return True
        holds = [visit(child) for child in module.children()]
        if any(holds):
            module.training = True
            return True
        module.eval()
        return False

    visit(root)
