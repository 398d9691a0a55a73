"""Progressive networks trained task by task (:mod:`umadapt.callbacks.progressive`): the phase split, earlier
tasks left bit-identical, the learning rate restarted per phase, and the encoder it needs."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from data_modules import PairedDataModule
from tests.helpers import tiny_model, tiny_trainer
from umadapt.callbacks import ProgressiveTraining
from umadapt.callbacks.progressive import progressive_phase
from umadapt.errors import ConfigError
from umadapt.nn import ProgressiveEncoder, ResNetEncoder


def _backbone() -> ResNetEncoder:
    return ResNetEncoder("resnet10", 4, small_input=True)


def test_progressive_phase_split():
    assert progressive_phase(0.0, 3) == (0, 0.0)
    assert progressive_phase(0.5, 3)[0] == 1 and progressive_phase(0.5, 3)[1] == pytest.approx(0.5)
    assert progressive_phase(1.0, 3) == (2, 1.0)


class _Snapshot(pl.Callback):
    """Records the depth (first task) outputs on fixed images when the second phase starts."""

    def __init__(self, images: torch.Tensor, progressive: ProgressiveTraining) -> None:
        self.images, self.progressive, self.at_switch, self.lr_at_switch = images, progressive, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.progressive.phase == 1 and self.at_switch is None:
            self.at_switch = _eval_outputs(pl_module, self.images)
            self.lr_at_switch = trainer.optimizers[0].param_groups[0]["lr"]


def _eval_outputs(model, images):
    modes = {name: m.training for name, m in model.named_modules()}
    model.eval()
    with torch.no_grad():
        out = {k: v.clone() for k, v in model(images).items()}
    for name, m in model.named_modules():  # restore every module's own mode (frozen parts stay in eval)
        m.training = modes[name]
    return out


@pytest.mark.slow
def test_progressive_training_leaves_old_tasks_bit_identical(tmp_path, toy_domains):
    pl.seed_everything(0)
    tasks = ["depth", "segmentation"]
    model = tiny_model(encoder=ProgressiveEncoder(_backbone()), tasks=tasks, lr_schedule="cosine")
    images = torch.rand(3, 3, 32, 32)
    progressive = ProgressiveTraining()
    # the snapshot runs after ProgressiveTraining's hook (callbacks run in order), i.e. once phase 1 has begun
    snapshot = _Snapshot(images, progressive)
    start = _eval_outputs(model, images)
    trainer = tiny_trainer(tmp_path, [progressive, snapshot], max_steps=6, limit_val_batches=1, val_check_interval=2)
    trainer.fit(model, PairedDataModule(*toy_domains, batch_size=2))
    end = _eval_outputs(model, images)
    assert snapshot.at_switch is not None
    assert not torch.equal(snapshot.at_switch["depth"], start["depth"])  # phase 0 trained depth
    assert torch.equal(end["depth"], snapshot.at_switch["depth"])  # phase 1 left depth bit-identical
    assert not torch.equal(end["segmentation"], snapshot.at_switch["segmentation"])  # and trained segmentation
    assert snapshot.lr_at_switch == pytest.approx(1e-3)  # the cosine schedule restarts (globally it is at 0.5e-3)
    assert model.encoder.active is None and all(p.requires_grad for p in model.parameters())  # released at the end


def test_progressive_training_needs_a_progressive_encoder(tmp_path, toy_domains):
    model = tiny_model(encoder=_backbone())
    trainer = tiny_trainer(tmp_path, [ProgressiveTraining()], max_steps=1)
    with pytest.raises(ConfigError, match="ProgressiveEncoder"):
        trainer.fit(model, PairedDataModule(*toy_domains, batch_size=2))
