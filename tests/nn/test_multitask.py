"""Per-task encoders (:mod:`umadapt.nn.multitask`): cross-stitch units and progressive networks, and how
MultiTaskModel uses them. Training a progressive network phase by phase: tests/callbacks/test_progressive.py."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import EXPERIMENTS, SMALL_DATA, TASKS, config_args, fit_test_predict, tiny_model
from umadapt.errors import ConfigError
from umadapt.methods import SourceOnly
from umadapt.nn import CrossStitchEncoder, CrossStitchUnit, ProgressiveEncoder, ResNetEncoder
from umadapt.nn.multitask import run_stage


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
    assert torch.equal(mixed["depth"][0], features["depth"][0]) and not torch.equal(
        mixed["depth"][1], features["depth"][1]
    )


def test_per_task_encoder_in_a_model():
    model = tiny_model(encoder=CrossStitchEncoder(_backbone()), image_size=(16, 16))
    assert model.encoder.tasks == TASKS and len(model.encoder.columns) == 3
    out = model(torch.rand(2, 3, 16, 16))
    assert out["depth"].shape == (2, 1, 16, 16) and out["segmentation"].shape == (2, 2, 16, 16)
    with pytest.raises(ConfigError, match=r"built for the tasks \['depth', 'normals'\]"):
        SourceOnly(encoder=CrossStitchEncoder(_backbone(), tasks=["depth", "normals"]), tasks=TASKS, num_classes=2)
    with pytest.raises(ConfigError, match="4-stage umadapt.nn.ResNetEncoder"):
        CrossStitchEncoder(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="60x60"):
        SourceOnly(
            encoder=CrossStitchEncoder(ResNetEncoder("resnet10", 4)), tasks=TASKS, num_classes=2, image_size=(60, 60)
        )


def _mtl_cross_stitch(columns_from: dict | None = None, width: int = 16) -> SourceOnly:
    """A cross-stitch model with experiments/mtl/'s backbone (so the single-task checkpoints fit its columns)."""
    backbone = ResNetEncoder("resnet10", width, small_input=False)
    encoder = CrossStitchEncoder(backbone, columns_from={t: str(p) for t, p in (columns_from or {}).items()})
    return SourceOnly(encoder=encoder, tasks=TASKS, num_classes=5)


def test_cross_stitch_columns_start_from_the_single_task_encoders(single_task_checkpoints):
    model = _mtl_cross_stitch(single_task_checkpoints)
    singles = {
        t: {
            k[len("encoder.") :]: v
            for k, v in torch.load(p, weights_only=True)["state_dict"].items()
            if "encoder." in k
        }
        for t, p in single_task_checkpoints.items()
    }
    assert set(singles["depth"]) == set(model.encoder.columns[0].state_dict())

    def same(column, weights):
        return all(torch.equal(v, weights[k]) for k, v in column.state_dict().items())

    assert not any(same(c, singles[t]) for t, c in zip(TASKS, model.encoder.columns))
    model.setup("test")  # evaluation does not read the single-task checkpoints
    assert not any(same(c, singles[t]) for t, c in zip(TASKS, model.encoder.columns))
    model.setup("fit")
    assert all(same(c, singles[t]) for t, c in zip(TASKS, model.encoder.columns))
    assert not same(model.encoder.columns[0], singles["normals"])  # each column from its own task's network


def test_cross_stitch_initialisation_mistakes_are_named(single_task_checkpoints, tmp_path):
    with pytest.raises(ConfigError, match=r"one checkpoint per task .* lacks \['segmentation'\]"):
        _mtl_cross_stitch({t: single_task_checkpoints[t] for t in ("depth", "normals")})
    narrow = tmp_path / "narrow.ckpt"  # a single-task model of another encoder width
    other = SourceOnly(encoder=ResNetEncoder("resnet10", 8, small_input=False), tasks=["normals"], num_classes=5)
    torch.save({"state_dict": other.state_dict()}, narrow)
    wrong_width = r"has 'encoder\.conv1\.weight' of shape .* another architecture\. Point it at a single-task run"
    with pytest.raises(ConfigError, match=wrong_width + " trained with the same backbone"):
        _mtl_cross_stitch({**single_task_checkpoints, "normals": narrow}).setup("fit")
    with pytest.raises(ConfigError, match="columns_from.depth not found"):
        _mtl_cross_stitch({**single_task_checkpoints, "depth": tmp_path / "gone.ckpt"}).setup("fit")


@pytest.mark.slow
@pytest.mark.parametrize("config", ["mtl/cross_stitch.yaml+mtl/cross_stitch_init.yaml"])
def test_cross_stitch_init_yaml_runs_from_tiny_single_task_runs(config, single_task_checkpoints, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = json.dumps({t: str(p) for t, p in single_task_checkpoints.items()})
    stack = [EXPERIMENTS / "mtl" / "base.yaml", *(EXPERIMENTS / name for name in config.split("+"))]
    args = [*config_args(*stack), *SMALL_DATA, "--trainer.accelerator=cpu"]
    record = fit_test_predict([*args, f"--model.init_args.encoder.init_args.columns_from={paths}"], tmp_path)
    assert record["method"] == "SourceOnly"


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
    manual = run_stage(encoder.columns[2], 1, before["segmentation"][0] + encoder.laterals[2][0][0](before["depth"][0]))
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
