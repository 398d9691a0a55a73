"""Per-task encoders: cross-stitch units and progressive networks, and how MultiTaskModel uses them."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from data_modules import PairedDataModule
from umadapt.callbacks import ProgressiveTraining
from umadapt.callbacks.progressive import progressive_phase
from umadapt.errors import ConfigError
from umadapt.methods import SourceOnly
from umadapt.nn import CrossStitchEncoder, CrossStitchUnit, ProgressiveEncoder, ResNetEncoder
from umadapt.nn.multitask import _run_stage

TASKS = ["depth", "normals", "segmentation"]


def _backbone() -> ResNetEncoder:
    return ResNetEncoder("resnet10", 4, small_input=True)


def test_cross_stitch_unit_mixes_by_alpha():
    unit = CrossStitchUnit(2, channels=3, init_self=0.9)
    assert torch.allclose(unit.alpha, torch.tensor([[0.9, 0.1], [0.1, 0.9]]))
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        unit.alpha.copy_(torch.tensor([[0.7, 0.3], [-1.0, 2.0]]))
    out = unit([a, b])
    assert torch.allclose(out[0], 0.7 * a + 0.3 * b, atol=1e-6) and torch.allclose(out[1], -a + 2 * b, atol=1e-6)
    per_channel = CrossStitchUnit(3, channels=5, init_self=0.8, channel_wise=True)
    assert per_channel.alpha.shape == (3, 3, 5) and torch.allclose(per_channel.alpha.sum(1), torch.ones(3, 5))


def test_identity_cross_stitch_reproduces_independent_columns():
    torch.manual_seed(0)
    encoder = CrossStitchEncoder(_backbone(), init_self=1.0, tasks=TASKS).eval()
    for column in encoder.columns:  # make the columns differ, so mixing would show
        with torch.no_grad():
            for p in column.parameters():
                p.add_(0.1 * torch.randn_like(p))
    x = torch.rand(2, 3, 16, 16)
    features = encoder(x)
    for task, column in zip(TASKS, encoder.columns):
        alone = column(x)
        assert all(torch.equal(f, g) for f, g in zip(features[task], alone)), task
    with torch.no_grad():
        encoder.units[1].alpha.copy_(torch.full((3, 3), 1 / 3))
    mixed = encoder(x)
    assert torch.equal(mixed["depth"][0], features["depth"][0]) and not torch.equal(mixed["depth"][1], features["depth"][1])


def test_per_task_encoder_in_a_model():
    model = SourceOnly(encoder=CrossStitchEncoder(_backbone()), tasks=TASKS, num_classes=2, image_size=(16, 16))
    assert model.encoder.tasks == TASKS and len(model.encoder.columns) == 3
    out = model(torch.rand(2, 3, 16, 16))
    assert out["depth"].shape == (2, 1, 16, 16) and out["segmentation"].shape == (2, 2, 16, 16)
    with pytest.raises(ConfigError, match=r"built for the tasks \['depth', 'normals'\]"):
        SourceOnly(encoder=CrossStitchEncoder(_backbone(), tasks=["depth", "normals"]), tasks=TASKS, num_classes=2)
    with pytest.raises(ConfigError, match="4-stage umadapt.nn.ResNetEncoder"):
        CrossStitchEncoder(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="60x60"):
        SourceOnly(encoder=CrossStitchEncoder(ResNetEncoder("resnet10", 4)), tasks=TASKS, num_classes=2, image_size=(60, 60))


def test_progressive_laterals_read_earlier_columns_only():
    torch.manual_seed(0)
    encoder = ProgressiveEncoder(_backbone(), tasks=TASKS).eval()
    x = torch.rand(2, 3, 16, 16)
    before = encoder(x)
    for k, column in enumerate(encoder.columns):  # zero-initialised adapters: every column starts independent
        assert all(torch.equal(f, g) for f, g in zip(before[TASKS[k]], column(x)))
    with torch.no_grad():
        encoder.laterals[2][0][0].weight.fill_(0.05)  # U_2^(2:0): column 0 -> column 2, into stage 2
        for p in encoder.columns[1].parameters():
            p.add_(0.1)
    after = encoder(x)
    assert all(torch.equal(f, g) for f, g in zip(after["depth"], before["depth"]))  # column 0 reads nobody
    assert not torch.equal(after["normals"][0], before["normals"][0])  # column 1 changed itself
    assert not torch.equal(after["segmentation"][1], before["segmentation"][1])  # column 2 reads column 0
    assert torch.equal(after["segmentation"][0], before["segmentation"][0])  # stage 1 has no laterals
    manual = _run_stage(encoder.columns[2], 1, before["segmentation"][0] + encoder.laterals[2][0][0](before["depth"][0]))
    assert torch.allclose(after["segmentation"][1], manual)


def test_progressive_set_active_freezes_the_other_columns():
    encoder = ProgressiveEncoder(_backbone(), tasks=TASKS).train()
    with pytest.raises(ConfigError, match="ProgressiveTraining"):
        encoder(torch.rand(2, 3, 16, 16))
    encoder.set_active("normals")
    assert [all(p.requires_grad for p in c.parameters()) for c in encoder.columns] == [False, True, False]
    assert [c.training for c in encoder.columns] == [False, True, False]
    encoder.train()  # what Lightning does between validation and training
    assert [c.training for c in encoder.columns] == [False, True, False]
    assert list(encoder.shared_parameters()) == []


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
    model = SourceOnly(
        encoder=ProgressiveEncoder(_backbone()), tasks=tasks, num_classes=2, image_size=(32, 32), lr_schedule="cosine"
    )
    images = torch.rand(3, 3, 32, 32)
    progressive = ProgressiveTraining()
    # the snapshot runs after ProgressiveTraining's hook (callbacks run in order), i.e. once phase 1 has begun
    snapshot = _Snapshot(images, progressive)
    start = _eval_outputs(model, images)
    trainer = pl.Trainer(
        default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, max_steps=6, limit_val_batches=1, val_check_interval=2,
        callbacks=[progressive, snapshot],
    )
    trainer.fit(model, PairedDataModule(*toy_domains, batch_size=2))
    end = _eval_outputs(model, images)
    assert snapshot.at_switch is not None
    assert not torch.equal(snapshot.at_switch["depth"], start["depth"])  # phase 0 trained depth
    assert torch.equal(end["depth"], snapshot.at_switch["depth"])  # phase 1 left depth bit-identical
    assert not torch.equal(end["segmentation"], snapshot.at_switch["segmentation"])  # and trained segmentation
    assert snapshot.lr_at_switch == pytest.approx(1e-3)  # the cosine schedule restarts (globally it is at 0.5e-3)
    assert model.encoder.active is None and all(p.requires_grad for p in model.parameters())  # released at the end


def test_progressive_training_needs_a_progressive_encoder(tmp_path, toy_domains):
    model = SourceOnly(encoder=_backbone(), tasks=TASKS, num_classes=2, image_size=(32, 32))
    trainer = pl.Trainer(
        default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, max_steps=1, callbacks=[ProgressiveTraining()],
    )
    with pytest.raises(ConfigError, match="ProgressiveEncoder"):
        trainer.fit(model, PairedDataModule(*toy_domains, batch_size=2))
