"""What the weighting tests share: a small model to weight, a fixed batch for it, a minimal stand-in model a weighting
binds to, and a manual-optimization method whose optimizer leaves the weighting out."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from tests.helpers import tiny_model
from umadapt.methods import SourceOnly


@pytest.fixture
def make_model():
    """``make_model(weighting=..., **kwargs)``: a width-4 SourceOnly on 16x16 inputs."""
    return partial(tiny_model, width=4, image_size=(16, 16))


@pytest.fixture
def batch() -> dict:
    g = torch.Generator().manual_seed(0)
    n, size = 2, 16
    return {
        "image": torch.rand(n, 3, size, size, generator=g),
        "depth": torch.rand(n, 1, size, size, generator=g) + 0.5,
        "normals": torch.nn.functional.normalize(torch.randn(n, 3, size, size, generator=g), dim=1),
        "segmentation": torch.randint(0, 2, (n, size, size), generator=g),
    }


class Bound(nn.Module):
    """A minimal 'model' for a weighting: tasks, loss weights, a shared parameter and train mode."""

    def __init__(self, tasks, epoch: int = 0) -> None:
        super().__init__()
        self.tasks, self.loss_weights, self.current_epoch = list(tasks), {t: 1.0 for t in tasks}, epoch
        self.encoder = nn.Linear(2, 1, bias=False)


@pytest.fixture
def bound() -> type[Bound]:
    """``bound(tasks, epoch=0)``: see :class:`Bound`."""
    return Bound


class ManualTwoPlayers(SourceOnly):
    """A manual-optimization method whose optimizer holds only the encoder and heads (like adversarial methods)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.automatic_optimization = False

    def configure_optimizers(self):
        return torch.optim.SGD([*self.encoder.parameters(), *self.heads.parameters()], lr=0.01)

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        loss = self.supervised_loss(batch["source"], "source")
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()


@pytest.fixture
def manual_two_players() -> type[ManualTwoPlayers]:
    return ManualTwoPlayers
