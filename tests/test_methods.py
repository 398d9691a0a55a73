"""The base multi-task method, source-only and oracle: forward, losses, metric names, clear errors."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from data_modules import PairedDataModule
from umadapt.methods import SourceOnly, TargetOracle
from umadapt.nn import ResNetEncoder

TASKS = ["depth", "normals", "segmentation"]


def _model(cls=SourceOnly, **kwargs):
    encoder = ResNetEncoder(arch="resnet10", width=8, small_input=True)
    return cls(encoder=encoder, tasks=TASKS, num_classes=2, image_size=(32, 32), **kwargs)


def test_forward_outputs_follow_the_task_conventions():
    model = _model().eval()
    out = model(torch.rand(2, 3, 32, 32))
    assert out["depth"].shape == (2, 1, 32, 32) and (out["depth"] > 0).all()
    assert torch.allclose(out["normals"].norm(dim=1), torch.ones(2, 32, 32), atol=1e-4)
    assert out["segmentation"].shape == (2, 2, 32, 32)


def test_image_size_incompatible_with_stride_names_both_numbers():
    encoder = ResNetEncoder(arch="resnet10", width=8, small_input=False)
    with pytest.raises(ValueError, match=r"60x60.*32"):
        SourceOnly(encoder=encoder, tasks=TASKS, num_classes=2, image_size=(60, 60))


def test_unknown_task_and_loss_weight_key_are_named():
    with pytest.raises(ValueError, match="'dpeth'"):
        SourceOnly(encoder=ResNetEncoder("resnet10", 8), tasks=["dpeth"], num_classes=2)
    with pytest.raises(ValueError, match="'normal'"):
        _model(loss_weights={"normal": 2.0})


def _trainer(tmp_path, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, **kwargs,
    )


def test_fit_logs_metrics_per_stage_domain_task(tmp_path, toy_domains):
    pl.seed_everything(0)
    dm = PairedDataModule(*toy_domains, batch_size=4)
    model = _model()
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=2)
    trainer.fit(model, dm)
    names = set(trainer.callback_metrics)
    trainer.test(model, dm)
    names |= set(trainer.callback_metrics)
    for stage in ("val", "test"):
        for domain in ("source", "target"):
            assert f"{stage}/{domain}/depth/rmse" in names
            assert f"{stage}/{domain}/normals/mean" in names
            assert f"{stage}/{domain}/segmentation/miou" in names
    assert "train/source/loss" in names and "train/target/loss" not in names


def test_training_step_reduces_source_loss(tmp_path, toy_domains):
    pl.seed_everything(0)
    dm = PairedDataModule(*toy_domains, batch_size=8, augmentation="none")
    model = _model()
    batch = next(iter(dm.train_dataloader()))[0]
    before = model.weighted_sum(model.task_losses(model(batch["source"]["image"]), batch["source"])).item()
    _trainer(tmp_path, max_steps=30, limit_val_batches=0).fit(model, dm)
    model.eval()
    after = model.weighted_sum(model.task_losses(model(batch["source"]["image"]), batch["source"])).item()
    assert after < 0.7 * before


def test_oracle_refuses_to_train_without_target_labels(tmp_path, toy_domains):
    dm = PairedDataModule(*toy_domains, batch_size=4)
    with pytest.raises(ValueError, match="target_labels: true"):
        _trainer(tmp_path, fast_dev_run=True).fit(_model(TargetOracle), dm)
    dm = PairedDataModule(*toy_domains, batch_size=4, target_labels=True)
    trainer = _trainer(tmp_path, fast_dev_run=True)
    trainer.fit(_model(TargetOracle), dm)
    assert "train/target/loss" in trainer.callback_metrics


def test_model_task_the_data_does_not_provide_is_named(tmp_path, toy_domains):
    dm = PairedDataModule(*toy_domains, tasks=["depth", "segmentation"], batch_size=4)
    with pytest.raises(ValueError, match=r"\['normals'\]"):
        _trainer(tmp_path, fast_dev_run=True).fit(_model(), dm)
