"""AdaBN (:mod:`umadapt.methods.adabn`): each evaluation split is scored with its own domain's BatchNorm statistics,
the target ones estimated from target training images only, and the model holds the source statistics after."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from data_modules import PairedDataModule
from tests.helpers import ToyDomain, tiny_model, tiny_trainer
from umadapt.errors import ConfigError
from umadapt.methods import AdaBN
from umadapt.nn import DigitEncoder
from umadapt.nn.batchnorm import batchnorm_statistics, reestimate_batchnorm


def _data() -> PairedDataModule:
    return PairedDataModule(ToyDomain(0, size=8), ToyDomain(1, size=8, shift=0.5), batch_size=4)


class _StatisticsProbe(pl.Callback):
    """The first BatchNorm layer's running statistics when it first runs on a test batch of each domain (a forward
    pre-hook: the module's own batch-start hook runs after the callbacks')."""

    def __init__(self, layer: torch.nn.Module) -> None:
        self.seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.domain = ""
        layer.register_forward_pre_hook(self._record)

    def _record(self, layer, args):
        self.seen.setdefault(self.domain, (layer.running_mean.clone(), layer.running_var.clone()))

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.domain = pl_module.eval_domains[dataloader_idx]


def test_each_split_is_scored_with_its_domains_statistics(tmp_path):
    pl.seed_everything(0)
    model = tiny_model(AdaBN)
    data = _data()
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    trainer.fit(model, data)
    source = batchnorm_statistics(model)["encoder.bn1"][:2]

    expected = tiny_model(AdaBN)
    expected.load_state_dict(model.state_dict())
    images = torch.stack([data.images_dataset("target")[i]["image"] for i in range(8)])
    reestimate_batchnorm(expected, [images[:4], images[4:]], expected)  # the 8 target training images, batches of 4
    target = batchnorm_statistics(expected)["encoder.bn1"][:2]

    probe = _StatisticsProbe(model.encoder.bn1)
    tiny_trainer(tmp_path, [probe]).test(model, data)
    assert all(torch.equal(a, b) for a, b in zip(probe.seen["source"], source))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(probe.seen["target"], target))
    assert not torch.allclose(target[0], source[0], atol=1e-3)  # the target look shifts the statistics
    after = batchnorm_statistics(model)["encoder.bn1"][:2]
    assert all(torch.equal(a, b) for a, b in zip(after, source)), "the model must hold the source statistics after"


def test_target_statistics_read_images_only():
    sample = _data().images_dataset("target", "train")[0]
    assert set(sample) == {"image"}


def test_a_model_without_batchnorm_is_refused_naming_the_fix():
    encoder = DigitEncoder(channels=[4, 4], batch_norm=False)
    with pytest.raises(ConfigError, match="no BatchNorm layer.*batch_norm: true"):
        tiny_model(AdaBN, tasks=["label"], encoder=encoder, image_size=(28, 28), num_classes=10)
    with pytest.raises(ConfigError, match="statistics_batches"):
        tiny_model(AdaBN, statistics_batches=0)
