"""Cross-task consistency (:mod:`umadapt.nn.cross_task`): the energy is zero when predictions agree with the
distillation networks, distances are float32 under bf16, the energy adversary's margin losses have the right sign
and gradient, and the distillation network keeps the size and ignores the batch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.helpers import TASKS
from umadapt.nn import CrossTaskDistillation, CrossTaskNet
from umadapt.nn.cross_task import energy_discriminator_loss, energy_generator_loss, task_distance


class _Constant(nn.Module):
    """A stand-in distillation network whose raw output is a fixed vector at every pixel."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.linspace(-1.0, 2.0, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return self.value.view(1, -1, 1, 1).expand(b, -1, h, w)


def test_energy_is_zero_when_predictions_agree_with_the_distillation_networks():
    distillation = CrossTaskDistillation(TASKS, num_classes=4, net=_Constant)
    shape = (2, 1, 8, 8)
    predictions = {
        t: distillation.specs[t].activate(distillation.nets[t].value.view(1, -1, 1, 1).expand(2, -1, 8, 8))
        for t in TASKS
    }
    assert predictions["segmentation"].shape == (2, 4, 8, 8) and predictions["depth"].shape == shape
    energy = distillation.energy(predictions)
    assert energy.shape == (2,) and energy.dtype == torch.float32
    assert torch.allclose(energy, torch.zeros(2), atol=1e-6)

    disagreeing = dict(predictions, depth=predictions["depth"] + 0.5)
    distances = distillation.distances(disagreeing)
    assert torch.allclose(distances["depth"], torch.full((2,), 0.5), atol=1e-6)
    assert torch.allclose(distances["normals"], torch.zeros(2), atol=1e-6)
    assert torch.allclose(distances["segmentation"], torch.zeros(2), atol=1e-6)
    assert torch.allclose(distillation.energy(disagreeing), torch.full((2,), 0.5), atol=1e-6)


def test_distances_are_float32_under_bf16_and_positive_when_inconsistent():
    a = torch.randn(2, 5, 4, 4, dtype=torch.bfloat16)
    b = torch.randn(2, 5, 4, 4, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d = task_distance("segmentation", a, b)
    assert d.dtype == torch.float32 and (d > 0).all()
    n = nn.functional.normalize(torch.randn(2, 3, 4, 4), dim=1)
    assert torch.allclose(task_distance("normals", n, n), torch.zeros(2), atol=1e-6)
    assert torch.allclose(task_distance("normals", n, -n), torch.full((2,), 2.0), atol=1e-5)


def test_margin_term_has_the_right_sign_and_gradient():
    margin = 1.0
    source = torch.tensor([0.2, 0.4], requires_grad=True)
    target = torch.tensor([0.3, 1.5], requires_grad=True)  # first below the margin, second above
    loss = energy_discriminator_loss(source, target, margin)
    assert loss.item() == pytest.approx(0.3 + (1.0 - 0.3) / 2)
    loss.backward()
    # The discriminator lowers source energy and raises target energy, but only below the margin.
    assert torch.allclose(source.grad, torch.tensor([0.5, 0.5]))
    assert torch.allclose(target.grad, torch.tensor([-0.5, 0.0]))
    # The generator lowers the target energy.
    target.grad = None
    energy_generator_loss(target).backward()
    assert (target.grad > 0).all()
    with pytest.raises(ValueError, match="margin"):
        energy_discriminator_loss(source, target, -1.0)


def test_cross_task_net_keeps_the_size_and_is_batch_independent():
    net = CrossTaskNet(4, 3, hidden=8, downsample=4).eval()
    x = torch.randn(3, 4, 32, 32)
    out = net(x)
    assert out.shape == (3, 3, 32, 32)
    assert torch.allclose(net(x[:1]), out[:1], atol=1e-5)  # GroupNorm: a sample's output ignores its batch
