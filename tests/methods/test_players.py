"""Manual optimization with several players (:mod:`umadapt.methods.players`) under ``16-mixed``, through UM-Adapt's
source phase (two players, the base network and the distillation networks, on one backward pass): gradients are
clipped after unscaling, and the loss scale changes once per update, so both players are unscaled with the scale
their backward pass used."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import MixedPrecision

from data_modules import PairedDataModule
from tests.helpers import ToyDomain, tiny_model, tiny_trainer
from umadapt.methods import UMAdapt

INIT_SCALE = 2.0**10
BATCHES = 2

pytestmark = pytest.mark.filterwarnings("ignore:.*autocast.*")


class _StepGradients(pl.Callback):
    """The gradient norm of every optimizer at the moment its parameters are updated (after unscaling, clipping)."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_fit_start(self, trainer, pl_module):
        for optimizer in trainer.optimizers:
            optimizer.register_step_pre_hook(self._record)

    def _record(self, optimizer, args, kwargs):
        grads = [p.grad.norm() for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack(grads))))


def _fit_source_phase(tmp_path: Path, gradient_clip_val: float) -> tuple[_StepGradients, torch.amp.GradScaler]:
    """``BATCHES`` source-phase batches under ``16-mixed`` on the CPU with a scale that doubles on every update."""
    pl.seed_everything(0)
    model = tiny_model(
        UMAdapt, image_size=(16, 16), phases={"source": 1}, ccr_weight=0.0, gradient_clip_val=gradient_clip_val
    )
    scaler = torch.amp.GradScaler("cpu", init_scale=INIT_SCALE, growth_factor=2.0, growth_interval=1)
    probe = _StepGradients()
    trainer = tiny_trainer(
        tmp_path,
        [probe],
        max_epochs=1,
        limit_train_batches=BATCHES,
        limit_val_batches=0,
        plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
    )
    data = PairedDataModule(ToyDomain(0, 16, size=8), ToyDomain(1, 16, size=8, shift=0.3), batch_size=4)
    trainer.fit(model, data)
    return probe, scaler


def test_clipping_under_16_mixed_acts_on_unscaled_gradients(tmp_path):
    """Every player's step sees its gradient norm clipped to 1e-3 (the toy gradients are far larger). Clipping
    before ``optimizer.step()`` clipped the scaled gradients: the step then saw 1e-3 / 1024."""
    probe, _ = _fit_source_phase(tmp_path, gradient_clip_val=1e-3)
    assert len(probe.norms) == 2 * BATCHES  # two players per batch, no step skipped for an overflow
    assert probe.norms == pytest.approx([1e-3] * len(probe.norms), rel=1e-3)


def test_the_loss_scale_updates_once_per_update_of_several_players(tmp_path):
    """Two batches, two players each: the scale doubles twice (once per backward pass), not four times."""
    _, scaler = _fit_source_phase(tmp_path, gradient_clip_val=1.0)
    assert scaler.get_scale() == INIT_SCALE * 2**BATCHES


def test_held_fixed_passes_gradients_through_a_player_without_training_it():
    from umadapt.methods.players import held_fixed

    other = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    other[0].bias.requires_grad_(False)  # a parameter frozen beforehand stays frozen after the block
    x = torch.randn(4, 3, requires_grad=True)
    with held_fixed(other):
        other(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in other.parameters())
    assert [p.requires_grad for p in other.parameters()] == [True, False, True, True]
