"""What every loss weighting shares (:mod:`umadapt.weighting.base`): it trains a real model, its binding checks
(several tasks and shared parameters for gradient methods, loss weights only with fixed weighting, learned weights
held by an optimizer), and weights logged and restored from checkpoints."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from data_modules import PairedDataModule
from tests.helpers import TASKS, tiny_model, tiny_trainer
from umadapt.errors import ConfigError
from umadapt.methods import SourceOnly
from umadapt.nn import ProgressiveEncoder, ResNetEncoder
from umadapt.weighting import (
    DynamicWeightAveraging,
    GradNorm,
    PCGrad,
    UncertaintyWeighting,
)


@pytest.mark.parametrize("weighting", [UncertaintyWeighting, DynamicWeightAveraging, GradNorm, PCGrad])
def test_every_weighting_trains_a_real_model(weighting, make_model, batch):
    model = make_model(weighting=weighting())
    loss = model.weighted_sum(model.task_losses(model(batch["image"]), batch))
    loss.backward()
    assert torch.isfinite(loss) and set(model.weighting.last_weights) == set(TASKS)
    assert all(p.grad is not None for p in model.encoder.parameters())
    model.eval()
    with torch.no_grad():  # evaluation: plain weighted sum with the current weights, no side effects
        assert torch.isfinite(model.weighted_sum(model.task_losses(model(batch["image"]), batch)))


@pytest.mark.parametrize("weighting", [GradNorm, PCGrad])
def test_gradient_weighting_needs_several_tasks(weighting, make_model):
    with pytest.raises(ConfigError, match=r"single task \['depth'\]"):
        make_model(weighting=weighting(), tasks=["depth"])


@pytest.mark.parametrize("weighting", [GradNorm, PCGrad])
def test_gradient_weighting_needs_shared_parameters(weighting, make_model):
    encoder = ProgressiveEncoder(ResNetEncoder("resnet10", 4, small_input=True))
    with pytest.raises(ConfigError, match="ProgressiveEncoder shares no trainable parameter"):
        make_model(weighting=weighting(), encoder=encoder)


def test_loss_weights_only_go_with_fixed_weighting(make_model):
    with pytest.raises(ConfigError, match="apply only to FixedWeighting.*UncertaintyWeighting"):
        make_model(weighting=UncertaintyWeighting(), loss_weights={"depth": 2.0})


def test_learned_weights_outside_the_optimizers_are_an_error(tmp_path, toy_domains, manual_two_players):
    model = tiny_model(
        manual_two_players,
        width=4,
        weighting=UncertaintyWeighting(),
    )
    with pytest.raises(ConfigError, match="optimizers holds model.weighting's parameters"):
        tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(
            model, PairedDataModule(*toy_domains, batch_size=4)
        )


@pytest.mark.slow
def test_weights_are_logged_and_restored_from_checkpoints(tmp_path, toy_domains, make_model):
    pl.seed_everything(0)
    model = make_model(weighting=UncertaintyWeighting(), image_size=(32, 32))
    trainer = tiny_trainer(tmp_path, max_steps=3, limit_val_batches=0)
    trainer.fit(model, PairedDataModule(*toy_domains, batch_size=4))
    assert {f"train/weights/{t}" for t in TASKS} <= set(trainer.callback_metrics)
    assert not torch.equal(model.weighting.log_variance.detach(), torch.zeros(3))  # learned by the model's optimizer
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    restored = SourceOnly.load_from_checkpoint(path, weights_only=False)  # hparams hold modules (no CLI here)
    assert isinstance(restored.weighting, UncertaintyWeighting)
    assert torch.equal(restored.weighting.log_variance, model.weighting.log_variance)
