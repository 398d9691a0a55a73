"""Freezing (:mod:`umadapt.nn.freeze`): a frozen part gets no gradient and keeps its BatchNorm statistics bitwise,
unfreezing gives both back, and ``train_only`` leaves exactly the chosen sub-modules learning."""

from __future__ import annotations

import torch
from torch import nn

from umadapt.nn.freeze import freeze, train_only


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2))


def test_a_frozen_part_gets_no_gradient_and_keeps_its_batchnorm_statistics():
    net = _net().train()
    freeze(net[:2])
    statistics = {k: v.clone() for k, v in net[1].state_dict().items()}
    net(torch.randn(4, 3, 8, 8)).square().mean().backward()
    assert all(p.grad is None for p in net[:2].parameters())
    assert all(p.grad is not None for p in net[3:].parameters())
    assert all(torch.equal(v, net[1].state_dict()[k]) for k, v in statistics.items()), "running stats moved"
    assert not net[1].training and net[4].training
    freeze(net[:2], frozen=False)
    assert all(p.requires_grad for p in net[:2].parameters()) and net[1].training
    freeze(net[:2], frozen=False, training=False)
    assert all(p.requires_grad for p in net[:2].parameters()) and not net[1].training


def test_train_only_leaves_exactly_the_chosen_modules_learning():
    net = _net()
    outer = nn.Sequential(net, nn.Linear(2, 2))
    for _ in range(2):  # idempotent: Lightning puts the model back in train mode around validation
        outer.train()
        train_only(outer, [net[3]])
        learning = {name for name, p in outer.named_parameters() if p.requires_grad}
        assert learning == {"0.3.weight", "0.3.bias"}
        assert net[3].training and outer.training and net.training  # the path down to the trainable part
        assert not net[1].training and not net[4].training and not outer[1].training
