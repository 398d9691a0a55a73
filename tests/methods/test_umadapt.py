"""The UM-Adapt method (:mod:`umadapt.methods.umadapt`): configuration errors, phases, frozen stages in an adaptation
step, a lower target energy after adaptation, checkpoints, bf16 and DDP. The energy itself:
tests/nn/test_cross_task.py."""

from __future__ import annotations

import copy
import json
from functools import partial

import pytest
import pytorch_lightning as pl
import torch

from data_modules import PairedDataModule
from tests.helpers import BASE, SMALL_DATA, SYNTHROOMS, TASKS, ToyDomain, config_args, tiny_model, tiny_trainer
from umadapt.cli import main
from umadapt.errors import ConfigError
from umadapt.methods import UMAdapt

# -- configuration errors ------------------------------------------------------------------------------------------
_model = partial(tiny_model, UMAdapt)


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
    assert model.phase_schedule.at(0.0) == ("source", 0.0)
    assert model.phase_schedule.at(0.375) == ("source", 0.5)
    assert model.phase_schedule.at(0.78)[0] == "ccr"
    phase, within = model.phase_schedule.at(0.8125 + 0.1875 / 2)
    assert phase == "adapt" and within == pytest.approx(0.5)
    assert model.phase_schedule.at(1.0) == ("adapt", 1.0)
    skipping = _model(phases={"source": 1, "adapt": 1}, ccr_weight=0.0)
    assert skipping.phase_schedule.at(0.6)[0] == "adapt" and skipping.contour_decoder is None


# -- training --------------------------------------------------------------------------------------------------
def _data(**kwargs) -> PairedDataModule:
    kwargs.setdefault("image_edges", "canny")
    return PairedDataModule(ToyDomain(0, size=8), ToyDomain(1, size=8, shift=0.3), batch_size=4, **kwargs)


_trainer = partial(tiny_trainer, limit_val_batches=0)


class _AdaptStepProbe(pl.Callback):
    """Snapshots the state before the first adaptation step and after it."""

    def __init__(self) -> None:
        self.before: dict[str, torch.Tensor] | None = None
        self.after: dict[str, torch.Tensor] | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.before is None and pl_module.phase_schedule.at(pl_module.progress(batch_idx))[0] == "adapt":
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


class _PhaseRecorder(pl.Callback):
    """The phase each training batch ran in."""

    def __init__(self) -> None:
        self.phases: list[str] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.phases.append(pl_module.phase_schedule.at(pl_module.progress(batch_idx))[0])


@pytest.mark.parametrize("bound", ["max_steps", "max_epochs"])
def test_phases_follow_batches_under_max_steps_as_under_max_epochs(tmp_path, bound):
    """Equal phases over 6 batches are 2 batches each whether the run is bounded by epochs (3 epochs of 2 batches)
    or by optimizer steps: the source and adaptation phases step two players per batch, CCR one, so 6 batches are
    2*2 + 2*1 + 2*2 = 10 steps. Counting progress in optimizer steps ran source 2, ccr 3, adapt 2 batches."""
    pl.seed_everything(0)
    model = _model(phases={"source": 1, "ccr": 1, "adapt": 1})
    recorder = _PhaseRecorder()
    limits = {"max_steps": 10, "max_epochs": -1} if bound == "max_steps" else {"max_epochs": 3}
    trainer = _trainer(tmp_path, [recorder], **limits)
    trainer.fit(model, _data())
    assert recorder.phases == ["source", "source", "ccr", "ccr", "adapt", "adapt"]
    assert trainer.global_step == 10


@pytest.mark.parametrize("method", ["UMAdapt", "DANN"])
def test_a_run_bounded_only_by_time_is_refused_naming_the_fix(tmp_path, method):
    """With ``max_epochs: -1`` and only ``max_time``, progress stays 0: DANN's reversal coefficient would stay 0 and
    UM-Adapt would never leave its source phase."""
    from umadapt.methods import DANN

    model = _model() if method == "UMAdapt" else tiny_model(DANN)
    trainer = _trainer(tmp_path, max_epochs=-1, max_time={"seconds": 30})
    with pytest.raises(ConfigError, match=r"known length.*set trainer.max_epochs or trainer.max_steps"):
        trainer.fit(model, _data())


def test_the_extra_training_control_adapts_on_source_images_alone(tmp_path):
    """``adapt_with_target: false``: the adaptation step's forward pass holds the 4 source images only (8 with
    target images), and it refuses the target terms it could not compute."""
    pl.seed_everything(0)
    control = {"phases": {"source": 1, "adapt": 1}, "ccr_weight": 0.0, "energy_weight": 0.0}
    with pytest.raises(ConfigError, match="adapt_with_target: false.*energy_weight"):
        _model(phases={"source": 1, "adapt": 1}, ccr_weight=0.0, adapt_with_target=False)
    sizes = {}
    for with_target in (True, False):
        model = _model(**control, adapt_with_target=with_target)
        seen = []
        model.encoder.register_forward_pre_hook(lambda module, args, seen=seen: seen.append(args[0].shape[0]))
        _trainer(tmp_path, max_epochs=2, limit_train_batches=1).fit(model, _data(image_edges=None))
        sizes[with_target] = seen[-1]  # the adaptation step (the second epoch's batch)
    assert sizes == {True: 8, False: 4}


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
        phases={"source": 0, "adapt": 1},
        ccr_weight=0.0,
        adversarial=False,
        adapt_source_weight=0.0,
        adapt_stages=[2, 3],
        source_checkpoint=str(checkpoint),
        adapt_optimizer=lambda p: torch.optim.Adam(p, lr=3e-3),
    )
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
        "train/target_labelled/depth/loss",
        "train/energy/target",
        "train/discriminator/loss",
        "train/ccr/target/loss",
    )
    for key in expected:
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert metrics["train/phase"] == 2.0
    assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.slow
def test_cli_checkpoint_round_trip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = [
        *config_args(BASE, SYNTHROOMS / "umadapt.yaml", SYNTHROOMS / "umadapt_semi.yaml"),  # a delta
        *SMALL_DATA,
        "--trainer.accelerator=cpu",
        "--trainer.logger.init_args.version=run",
        "--trainer.limit_val_batches=1",
    ]
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
