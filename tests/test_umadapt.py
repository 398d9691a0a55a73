"""UM-Adapt: the cross-task energy, the energy adversary's losses, phases, frozen stages, checkpoints, bad input."""

from __future__ import annotations

import copy
import json

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from data_modules import PairedDataModule
from tests.conftest import ToyDomain
from tests.test_cli import BASE, EXPERIMENTS, SMALL_DATA, _args
from umadapt.cli import main
from umadapt.errors import ConfigError
from umadapt.methods import UMAdapt
from umadapt.nn import CrossTaskDistillation, CrossTaskNet, ResNetEncoder
from umadapt.nn.cross_task import energy_discriminator_loss, energy_generator_loss, task_distance

TASKS = ["depth", "normals", "segmentation"]


# -- the energy ------------------------------------------------------------------------------------------------
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


# -- configuration errors ------------------------------------------------------------------------------------------
def _model(**kwargs) -> UMAdapt:
    kwargs.setdefault("tasks", TASKS)
    encoder = ResNetEncoder(arch="resnet10", width=8, small_input=True)
    return UMAdapt(encoder=encoder, num_classes=2, image_size=(32, 32), **kwargs)


def test_cross_task_configuration_errors_name_the_problem():
    with pytest.raises(ConfigError, match=r"at least two tasks.*\['depth'\]"):
        _model(cross_tasks=["depth"])
    with pytest.raises(ConfigError, match="'segmentation'"):
        _model(tasks=["depth", "normals"], cross_tasks=["depth", "segmentation"])
    with pytest.raises(ConfigError, match="'flow'"):
        _model(phases={"source": 1, "flow": 1})
    with pytest.raises(ConfigError, match="phases.ccr"):
        _model(ccr_weight=0.0, phases={"source": 1, "ccr": 1, "adapt": 1})
    with pytest.raises(ConfigError, match="adapt_stages"):
        _model(adapt_stages=[4])
    # Two tasks are enough.
    model = _model(tasks=["depth", "segmentation"])
    assert sorted(model.distillation.nets) == ["depth", "segmentation"]


def test_phase_schedule_follows_relative_lengths():
    model = _model(phases={"source": 12, "ccr": 1, "adapt": 3})
    assert model.phases == {"source": 0.75, "ccr": 0.0625, "adapt": 0.1875}
    assert model.phase_at(0.0) == ("source", 0.0)
    assert model.phase_at(0.375) == ("source", 0.5)
    assert model.phase_at(0.78)[0] == "ccr"
    phase, within = model.phase_at(0.8125 + 0.1875 / 2)
    assert phase == "adapt" and within == pytest.approx(0.5)
    assert model.phase_at(1.0) == ("adapt", 1.0)
    skipping = _model(phases={"source": 1, "adapt": 1}, ccr_weight=0.0)
    assert skipping.phase_at(0.6)[0] == "adapt" and skipping.contour_decoder is None


# -- training --------------------------------------------------------------------------------------------------
def _data(**kwargs) -> PairedDataModule:
    kwargs.setdefault("image_edges", "canny")
    return PairedDataModule(ToyDomain(0, size=8), ToyDomain(1, size=8, shift=0.3), batch_size=4, **kwargs)


def _trainer(tmp_path, callbacks=(), **kwargs) -> pl.Trainer:
    kwargs.setdefault("logger", False)
    kwargs.setdefault("enable_checkpointing", False)
    return pl.Trainer(
        default_root_dir=tmp_path, accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, callbacks=list(callbacks), **kwargs,
    )  # fmt: skip


class _AdaptStepProbe(pl.Callback):
    """Snapshots the state before the first adaptation step and after it."""

    def __init__(self) -> None:
        self.before: dict[str, torch.Tensor] | None = None
        self.after: dict[str, torch.Tensor] | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.before is None and pl_module.phase_at(pl_module.progress(batch_idx))[0] == "adapt":
            self.before = copy.deepcopy(pl_module.state_dict())
            self._armed = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if getattr(self, "_armed", False) and self.after is None:
            self.after = copy.deepcopy(pl_module.state_dict())


@pytest.mark.parametrize("adversarial", [True, False])
def test_only_the_chosen_stages_change_in_an_adaptation_step(tmp_path, adversarial):
    pl.seed_everything(0)
    model = _model(phases={"source": 1, "ccr": 1, "adapt": 1}, adapt_stages=[-1], adversarial=adversarial)
    probe = _AdaptStepProbe()
    _trainer(tmp_path, [probe], max_epochs=3, limit_train_batches=1).fit(model, _data())
    assert probe.before is not None and probe.after is not None
    learning = ("encoder.layer4.", "distillation.") if adversarial else ("encoder.layer4.",)
    changed = {k for k in probe.before if not torch.equal(probe.before[k], probe.after[k])}
    assert changed, "the adaptation step changed nothing"
    assert all(k.startswith(learning) for k in changed), sorted(k for k in changed if not k.startswith(learning))
    assert any(k.startswith("encoder.layer4.") and k.endswith("weight") for k in changed)
    assert any(k.startswith("distillation.") for k in changed) == adversarial
    # Frozen parts, BatchNorm statistics included, are bitwise unchanged.
    for key in probe.before:
        frozen = ("encoder.conv1", "encoder.bn1", "encoder.layer1", "encoder.layer2", "encoder.layer3", "heads.")
        if key.startswith((*frozen, "contour_decoder.")):
            assert torch.equal(probe.before[key], probe.after[key]), key


def _mean_energy(model: UMAdapt, images: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return model.distillation.energy(model(images)).mean().item()


@pytest.mark.slow
def test_a_short_adaptation_lowers_the_target_energy(tmp_path):
    pl.seed_everything(0)
    data = _data(augmentation="none")
    target_images = torch.stack([data.train_dataset("target")[i]["image"] for i in range(8)])
    model = _model(phases={"source": 3, "adapt": 0}, ccr_weight=0.0)
    _trainer(tmp_path, max_epochs=3).fit(model, data)
    checkpoint = tmp_path / "source.ckpt"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    before = _mean_energy(model, target_images)

    # Chained phases: adaptation alone, from the source-phase checkpoint, with the distillation networks fixed so
    # the energy before and after is measured by the same function.
    adapted = _model(
        phases={"source": 0, "adapt": 1}, ccr_weight=0.0, adversarial=False, adapt_source_weight=0.0,
        adapt_stages=[2, 3], source_checkpoint=str(checkpoint), adapt_optimizer=lambda p: torch.optim.Adam(p, lr=3e-3),
    )  # fmt: skip
    _trainer(tmp_path, max_epochs=4).fit(adapted, data)
    fixed = {k: v for k, v in model.state_dict().items() if k.startswith("distillation.")}
    assert all(torch.equal(adapted.state_dict()[k], v) for k, v in fixed.items())
    after = _mean_energy(adapted, target_images)
    assert after < 0.9 * before, (before, after)


def test_adaptation_without_its_source_checkpoint_names_the_file(tmp_path):
    missing = tmp_path / "nowhere" / "last.ckpt"
    model = _model(phases={"source": 0, "ccr": 1, "adapt": 1}, source_checkpoint=str(missing))
    with pytest.raises(ConfigError, match="nowhere/last.ckpt"):
        _trainer(tmp_path, max_epochs=1).fit(model, _data())
    with pytest.raises(ConfigError, match="source_checkpoint"):
        _trainer(tmp_path, max_epochs=1).fit(_model(phases={"adapt": 1}), _data())


def test_a_checkpoint_without_distillation_networks_is_refused(tmp_path):
    checkpoint = tmp_path / "source_only.ckpt"
    state = {k: v for k, v in _model().state_dict().items() if not k.startswith("distillation.")}
    torch.save({"state_dict": state}, checkpoint)
    model = _model(phases={"ccr": 1, "adapt": 1}, source_checkpoint=str(checkpoint))
    with pytest.raises(ConfigError, match="distillation"):
        _trainer(tmp_path, max_epochs=1).fit(model, _data())


def test_ccr_without_edges_in_the_data_is_named(tmp_path):
    with pytest.raises(ConfigError, match="image_edges"):
        _trainer(tmp_path, max_epochs=1).fit(_model(), _data(image_edges=None))


@pytest.mark.slow
def test_semi_supervised_run_under_bf16_with_clipping(tmp_path):
    pl.seed_everything(0)
    model = _model(phases={"source": 1, "ccr": 1, "adapt": 1}, gradient_clip_val=1.0)
    trainer = _trainer(tmp_path, max_epochs=3, limit_train_batches=1, precision="bf16-mixed")
    trainer.fit(model, _data(target_label_fraction=0.5))
    metrics = trainer.callback_metrics
    expected = (
        "train/target_labelled/depth/loss", "train/energy/target", "train/discriminator/loss", "train/ccr/target/loss"
    )  # fmt: skip
    for key in expected:
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert metrics["train/phase"] == 2.0
    assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.slow
def test_cli_checkpoint_round_trip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = [
        *_args([BASE, EXPERIMENTS / "synthrooms" / "umadapt_semi.yaml"]), *SMALL_DATA, "--trainer.accelerator=cpu",
        "--trainer.logger.init_args.version=run", "--trainer.limit_val_batches=1",
    ]  # fmt: skip
    phases = "--model.init_args.phases={source: 1, ccr: 1, adapt: 2}"
    main(["fit", *common, "--trainer.max_epochs=4", "--trainer.limit_train_batches=1", phases])
    checkpoint = tmp_path / "logs" / "umadapt" / "run" / "checkpoints" / "last.ckpt"
    restored = UMAdapt.load_from_checkpoint(checkpoint)
    assert restored.phases == {"source": 0.25, "ccr": 0.25, "adapt": 0.5} and restored.adapt_stages == [0, 1, 2, 3]
    assert restored.cross_tasks == TASKS and restored.contour_decoder is not None
    state = torch.load(checkpoint, weights_only=False)["state_dict"]
    assert all(torch.equal(v, restored.state_dict()[k]) for k, v in state.items())

    results = tmp_path / "results.json"
    main(["test", *common, f"--ckpt_path={checkpoint}", f"--results.path={results}"])
    record = json.loads(results.read_text())
    assert record["method"] == "UMAdapt" and "test/target/depth/rmse" in record["metrics"]


@pytest.mark.slow
def test_all_phases_run_under_ddp_with_two_processes(tmp_path):
    """Manual optimization with several backward passes per batch and frozen parts works under DDP (CPU, gloo)."""
    pl.seed_everything(0)
    model = _model(phases={"source": 1, "ccr": 1, "adapt": 1}, gradient_clip_val=1.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = _trainer(
        tmp_path, max_epochs=3, limit_train_batches=1, devices=2, strategy="ddp_spawn_find_unused_parameters_true"
    )
    trainer.fit(model, _data())
    after = model.state_dict()  # ddp_spawn hands the trained weights back to this process
    for part in ("encoder.layer1.", "encoder.layer4.", "heads.", "distillation.", "contour_decoder."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(part)), part


def test_plain_ddp_is_refused_with_the_strategy_to_use(tmp_path):
    trainer = _trainer(tmp_path, max_epochs=1, devices=1, strategy=pl.strategies.DDPStrategy())
    try:
        with pytest.raises(ConfigError, match="ddp_find_unused_parameters_true"):
            trainer.fit(_model(), _data())
    finally:  # the one-process group DDP set up must not leak into later tests
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
