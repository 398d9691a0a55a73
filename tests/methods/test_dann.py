"""The DANN method (:mod:`umadapt.methods.dann`): bad configuration named, every adversary level trains, task
loss weightings, bf16, an effect on target accuracy against source-only, and the checkpoint round trip."""

from __future__ import annotations

import math
from functools import partial

import pytest
import pytorch_lightning as pl
import torch

from data_modules import PairedDataModule
from data_modules.digits import Digits, DigitsM
from tests.helpers import EXPERIMENTS, config_args, small_data, tiny_model, tiny_trainer
from umadapt.methods import DANN
from umadapt.nn import (
    DigitEncoder,
    FeatureDiscriminator,
    MLPClassificationHead,
    OutputDiscriminator,
    SpatialDiscriminator,
)


def _digits_dann(**kwargs) -> DANN:
    return DANN(
        encoder=DigitEncoder(batch_norm=True),
        tasks=["label"],
        num_classes=10,
        image_size=(32, 32),
        classification_head=partial(MLPClassificationHead, hidden=[32]),
        adversary=partial(FeatureDiscriminator, hidden=[16], pool_size=2),
        **kwargs,
    )


def test_dann_bad_configuration_is_named():
    with pytest.raises(ValueError, match="Valid names.*'constant'.*'dann'.*'linear_warmup'"):
        _digits_dann(grl_schedule="ramp")
    with pytest.raises(ValueError, match="declares level 'features'"):
        _digits_dann(adversary_input="outputs")
    with pytest.raises(ValueError, match="adversary_input"):
        DANN(
            encoder=DigitEncoder(),
            tasks=["label"],
            num_classes=10,
            adversary=lambda channels: FeatureDiscriminator(channels),
        )


@pytest.mark.parametrize(
    "adversary",
    [
        partial(FeatureDiscriminator, hidden=[16]),
        partial(SpatialDiscriminator, hidden=[8], feature_index=-2),
        partial(OutputDiscriminator, hidden=[8]),
    ],
    ids=["feature", "spatial", "output"],
)
def test_dann_trains_dense_tasks_with_every_adversary(adversary, tmp_path, toy_domains):
    pl.seed_everything(0)
    dm = PairedDataModule(*toy_domains, batch_size=4)
    model = tiny_model(DANN, adversary=adversary)
    before = {k: v.clone() for k, v in model.adversary.state_dict().items()}
    trainer = tiny_trainer(tmp_path, max_steps=3, limit_val_batches=0)
    trainer.fit(model, dm)
    metrics = trainer.callback_metrics
    for key in (
        "train/domain/loss",
        "train/domain/accuracy",
        "train/grl/lambda",
        "train/lr",
        "train/source/depth/loss",
    ):
        assert key in metrics, key
    # the last of 3 steps runs at progress p = 2/3, where the DANN schedule gives 2 / (1 + exp(-10 p)) - 1
    assert float(metrics["train/grl/lambda"]) == pytest.approx(2.0 / (1.0 + math.exp(-10.0 * 2 / 3)) - 1.0, rel=1e-6)
    assert any(not torch.equal(before[k], v) for k, v in model.adversary.state_dict().items())


@pytest.mark.parametrize("weighting", ["uncertainty", "pcgrad"])
def test_dann_combines_its_task_losses_with_a_weighting(weighting, tmp_path, toy_domains):
    """Loss weighting is selectable for DANN too; a gradient method (PCGrad) works beside the reversed gradient."""
    from umadapt.weighting import PCGrad, UncertaintyWeighting

    pl.seed_everything(0)
    chosen = UncertaintyWeighting() if weighting == "uncertainty" else PCGrad()
    model = tiny_model(
        DANN, tasks=["depth", "segmentation"], adversary=partial(FeatureDiscriminator, hidden=[8]), weighting=chosen
    )
    adversary_before = {k: v.clone() for k, v in model.adversary.state_dict().items()}
    trainer = tiny_trainer(tmp_path, max_steps=3, limit_val_batches=0)
    trainer.fit(model, PairedDataModule(*toy_domains, batch_size=4))
    metrics = trainer.callback_metrics
    assert model.weighting is chosen
    for key in ("train/weights/depth", "train/weights/segmentation", "train/domain/loss"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert any(not torch.equal(adversary_before[k], v) for k, v in model.adversary.state_dict().items())
    if weighting == "uncertainty":  # its log-variances are trained by the same optimizer
        assert any(bool(p.abs().sum() > 0) for p in model.weighting.parameters())  # moved from their init 0


def test_dann_step_under_bf16_mixed_precision(tmp_path):
    pl.seed_everything(0)
    dm = PairedDataModule(
        Digits(train_size=8), DigitsM(train_size=8), tasks=["label"], batch_size=4, augmentation="none"
    )
    model = _digits_dann()
    trainer = tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0, precision="bf16-mixed")
    trainer.fit(model, dm)
    assert torch.isfinite(trainer.callback_metrics["train/domain/loss"])
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.slow
def test_reversed_gradient_keeps_the_domains_hard_to_tell_apart(tmp_path):
    """Same seed, data, model and steps, with and without the reversed gradient reaching the encoder (``grl_max`` 1
    vs 0): with it, the encoder works against the adversary, whose domain loss stays higher and accuracy lower over
    the last epoch; without it the adversary separates Digits from Digits-M better. (The target accuracy of three
    tiny epochs is near chance either way, so it cannot show the difference.)"""

    class Recorder(pl.Callback):
        def __init__(self) -> None:
            self.loss, self.accuracy = [], []

        def on_train_batch_end(self, trainer, *args) -> None:
            self.loss.append(float(trainer.callback_metrics["train/domain/loss"]))
            self.accuracy.append(float(trainer.callback_metrics["train/domain/accuracy"]))

    last_epoch = {}
    for grl_max in (1.0, 0.0):
        pl.seed_everything(0)
        dm = PairedDataModule(
            Digits(train_size=128), DigitsM(train_size=128), tasks=["label"], batch_size=32, augmentation="none"
        )
        model = _digits_dann(
            optimizer=lambda params: torch.optim.SGD(params, lr=0.03, momentum=0.9), lr_schedule="dann", grl_max=grl_max
        )
        recorder = Recorder()
        trainer = tiny_trainer(tmp_path, [recorder], max_epochs=3, limit_val_batches=0, log_every_n_steps=1)
        trainer.fit(model, dm)  # log_every_n_steps=1: the recorder reads every step's values
        steps = len(recorder.loss) // 3  # the last of 3 epochs
        last_epoch[grl_max] = (sum(recorder.loss[-steps:]) / steps, sum(recorder.accuracy[-steps:]) / steps)
    (loss, accuracy), (loss_without, accuracy_without) = last_epoch[1.0], last_epoch[0.0]
    assert loss > loss_without and accuracy < accuracy_without, last_epoch


@pytest.mark.slow
def test_dann_checkpoint_round_trip(tmp_path, monkeypatch):
    from umadapt.cli import main

    monkeypatch.chdir(tmp_path)
    args = [
        *config_args(EXPERIMENTS / "digits" / "base.yaml", EXPERIMENTS / "digits" / "dann.yaml"),
        *small_data(train_size=8, val_size=8, test_size=8),
        "--trainer.accelerator=cpu",
        "--trainer.logger.init_args.version=run",
        "--model.init_args.grl_schedule=linear_warmup",
        "--model.init_args.grl_schedule_args={warmup: 0.5}",
    ]
    main(["fit", *args, "--trainer.max_steps=2", "--trainer.max_epochs=1"])
    ckpt = tmp_path / "logs" / "umadapt" / "run" / "checkpoints" / "last.ckpt"
    model = DANN.load_from_checkpoint(ckpt).eval()
    assert isinstance(model.adversary, FeatureDiscriminator) and isinstance(model.encoder, DigitEncoder)
    assert model.adversary_input == "features" and model.grl_schedule(0.25) == 0.5
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert model(torch.rand(2, 3, 32, 32))["label"].shape == (2, 10)
