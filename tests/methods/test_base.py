"""The base multi-task method (:class:`~umadapt.methods.MultiTaskModel`): forward, losses, metric names, clear
errors, encoders a method cannot use, and validation under DDP that matches one process."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from data_modules import PairedDataModule
from tests.helpers import TASKS, tiny_model, tiny_trainer
from umadapt.callbacks.guards import NonFiniteLossGuard
from umadapt.errors import ConfigError
from umadapt.methods import SourceOnly
from umadapt.nn import ResNetEncoder


def test_forward_outputs_follow_the_task_conventions():
    model = tiny_model().eval()
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
        tiny_model(loss_weights={"normal": 2.0})


def test_fit_logs_metrics_per_stage_domain_task(tmp_path, toy_domains):
    pl.seed_everything(0)
    dm = PairedDataModule(*toy_domains, batch_size=4)
    model = tiny_model()
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_train_batches=2)
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
    model = tiny_model()
    batch = next(iter(dm.train_dataloader()))[0]
    before = model.weighted_sum(model.task_losses(model(batch["source"]["image"]), batch["source"])).item()
    tiny_trainer(tmp_path, max_steps=30, limit_val_batches=0).fit(model, dm)
    model.eval()
    after = model.weighted_sum(model.task_losses(model(batch["source"]["image"]), batch["source"])).item()
    assert after < 0.7 * before


def test_model_task_the_data_does_not_provide_is_named(tmp_path, toy_domains):
    dm = PairedDataModule(*toy_domains, tasks=["depth", "segmentation"], batch_size=4)
    with pytest.raises(ValueError, match=r"\['normals'\]"):
        tiny_trainer(tmp_path, fast_dev_run=True).fit(tiny_model(), dm)


def test_methods_that_read_shared_features_refuse_per_task_encoders():
    """DANN's feature adversary and UM-Adapt's stages/CCR need one feature map; each error names the fix, and
    DANN with an output-level adversary accepts a per-task encoder."""
    from umadapt.methods import DANN, UMAdapt
    from umadapt.nn import CrossStitchEncoder, OutputDiscriminator, ProgressiveEncoder

    with pytest.raises(
        ConfigError, match=r"DANN with a feature-level adversary.*CrossStitchEncoder.*OutputDiscriminator"
    ):
        DANN(encoder=CrossStitchEncoder(ResNetEncoder("resnet10", 4)), tasks=TASKS, num_classes=2)
    with pytest.raises(ConfigError, match=r"UMAdapt .*ProgressiveEncoder gives each task its own features"):
        UMAdapt(encoder=ProgressiveEncoder(ResNetEncoder("resnet10", 4)), tasks=TASKS, num_classes=2)
    model = DANN(
        encoder=CrossStitchEncoder(ResNetEncoder("resnet10", 4)),
        tasks=TASKS,
        num_classes=2,
        adversary=OutputDiscriminator,
    )
    assert set(model(torch.rand(2, 3, 32, 32))) == set(TASKS)


@pytest.mark.slow
def test_ddp_spawn_validation_matches_single_process(tmp_path, toy_domains):
    pl.seed_everything(0)
    model = tiny_model()
    results = {}
    for name, kwargs in {"single": {"devices": 1}, "ddp_spawn": {"devices": 2, "strategy": "ddp_spawn"}}.items():
        trainer = tiny_trainer(tmp_path, **kwargs)
        results[name] = trainer.validate(model, PairedDataModule(*toy_domains, batch_size=4, eval_batch_size=2))[0]
    single, spawned = (
        {k.replace("/dataloader_idx_0", "").replace("/dataloader_idx_1", ""): v for k, v in results[name].items()}
        for name in ("single", "ddp_spawn")
    )
    assert {k for k in single if "/target/" in k} and single.keys() == spawned.keys()
    assert spawned == pytest.approx(single, rel=1e-4)


def test_channels_last_converts_weights_and_input_and_keeps_the_numbers():
    torch.manual_seed(0)
    plain = tiny_model()
    fast = tiny_model(channels_last=True)
    fast.load_state_dict(plain.state_dict())
    for model in (plain, fast):
        model.setup("fit")
    convs = [m.weight for m in fast.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not any(
        m.weight.is_contiguous(memory_format=torch.channels_last)
        for m in plain.modules()
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)
    )
    image = torch.rand(2, 3, 32, 32)
    seen = []
    fast.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    out_plain, out_fast = plain(image), fast(image)
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    for task in plain.tasks:
        assert torch.allclose(out_plain[task], out_fast[task], atol=1e-4), task  # unit normals: ~1e-5 rounding


@pytest.mark.parametrize("every", [3, 1])
def test_training_values_are_logged_on_the_steps_a_logger_receives(tmp_path, toy_domains, monkeypatch, every):
    """8 samples, batch 1: 8 steps. With log_every_n_steps=3 the step values are logged on steps 2 and 5 (Lightning
    writes those), on the epoch's last step 7, and on step 4, whose loss is NaN (so the guard sees it); with 1,
    on every step."""
    logged: dict[int, set[str]] = {}
    original = pl.LightningModule.log

    def spy(self, name, value, *args, **kwargs):
        logged.setdefault(self.global_step, set()).add(name)
        return original(self, name, value, *args, **kwargs)

    monkeypatch.setattr(pl.LightningModule, "log", spy)
    model = tiny_model()
    task_losses = model.task_losses

    def nan_on_step_4(predictions, batch):
        losses = task_losses(predictions, batch)
        if model.global_step != 4:
            return losses
        return {t: v + v.detach() * float("nan") for t, v in losses.items()}  # NaN values, finite gradients

    model.task_losses = nan_on_step_4
    dm = PairedDataModule(*toy_domains, batch_size=1, augmentation="none")
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_val_batches=0, log_every_n_steps=every)
    with pytest.warns(RuntimeWarning, match="Non-finite training loss"):
        trainer.callbacks.append(NonFiniteLossGuard(mode="warn"))
        trainer.fit(model, dm)
    expected = set(range(8)) if every == 1 else {2, 4, 5, 7}
    assert {step for step, names in logged.items() if "train/source/loss" in names} == expected
    assert "train/source/depth/loss" in logged[4]


def test_metric_options_reach_the_task_metrics_and_mistakes_are_named():
    model = tiny_model(metric_options={"depth": {"reduction": "images", "max_depth": 10.0}})
    depth = model.metrics["test_target"]["depth"]
    assert depth.reduction == "images" and depth.max_depth == 10.0
    assert model.metrics["test_source"]["segmentation"] is not None
    with pytest.raises(ConfigError, match=r"metric_options names \['flow'\]"):
        tiny_model(metric_options={"flow": {}})
    with pytest.raises(ConfigError, match=r"metric_options.depth .*reduction"):
        tiny_model(metric_options={"depth": {"reduction": "image"}})
    with pytest.raises(ConfigError, match=r"metric_options.depth .*max_dept"):
        tiny_model(metric_options={"depth": {"max_dept": 10.0}})


def test_lr_multipliers_give_named_parameters_their_own_learning_rate(tmp_path):
    """Cross-stitch units at 100x the columns' learning rate, in a group of their own; the schedule scales both; a
    prefix that names no parameter is an error naming the real ones."""
    from umadapt.nn import CrossStitchEncoder, ResNetEncoder

    encoder = CrossStitchEncoder(ResNetEncoder("resnet10", 4, small_input=True))
    model = tiny_model(encoder=encoder, lr_multipliers={"encoder.units": 100.0}, lr_schedule="cosine")
    model.trainer = tiny_trainer(tmp_path)
    optimizer = model.configure_optimizers()["optimizer"]
    rest, units = optimizer.param_groups
    assert units["lr"] == pytest.approx(100 * rest["lr"])
    assert {id(p) for p in units["params"]} == {id(p) for p in encoder.units.parameters()}
    assert len(rest["params"]) + len(units["params"]) == len(list(model.parameters()))
    wrong = tiny_model(lr_multipliers={"encoder.stitch": 10.0})
    wrong.trainer = tiny_trainer(tmp_path)
    with pytest.raises(ConfigError, match=r"no parameter name starts with \['encoder.stitch'\].*'encoder'"):
        wrong.configure_optimizers()
    with pytest.raises(ConfigError, match="must be >= 0"):
        tiny_model(lr_multipliers={"encoder": -1.0})
