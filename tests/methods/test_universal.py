"""Universal representations (:mod:`umadapt.methods.universal`): teachers, adapters, the distillation loss, checks;
the benchmark's summary: tests/bench.

Also runs experiments/mtl/universal.yaml (fit/test/predict), which tests/test_cli.py leaves to this module
(tests/config_owners.yaml) because it needs teacher checkpoints: tiny teachers are trained here first, with the
single-task configs.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.helpers import EXPERIMENTS, TASKS, config_args, fit_test_predict, small_data, tiny_model, tiny_trainer
from umadapt.cli import main
from umadapt.errors import ConfigError
from umadapt.methods import SourceOnly, UniversalRepresentations
from umadapt.methods.universal import FeatureAdapter, feature_distillation_loss
from umadapt.nn import ResNetEncoder

MTL = EXPERIMENTS / "mtl"
TINY = [*small_data(train_size=4), "--trainer.accelerator=cpu"]


def _config(*names: str) -> list[str]:
    return config_args(*(MTL / f"{name}.yaml" for name in ("base", *names)))


def _teacher_arg(paths: dict[str, Path]) -> str:
    return "--model.init_args.teachers=" + json.dumps({t: str(p) for t, p in paths.items()})


@pytest.fixture
def teachers(single_task_checkpoints) -> dict[str, Path]:
    """The one-step single-task networks of tests/conftest.py, as teachers."""
    return single_task_checkpoints


def _student(**kwargs) -> UniversalRepresentations:
    return tiny_model(UniversalRepresentations, width=4, image_size=(16, 16), **kwargs)


# -- the loss -----------------------------------------------------------------------------------------------------
def test_distillation_loss_is_zero_for_equal_features_and_positive_otherwise():
    a = torch.randn(2, 8, 4, 4)
    assert feature_distillation_loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert feature_distillation_loss(3.0 * a, a).item() == pytest.approx(0.0, abs=1e-6)  # positive scale per position
    assert feature_distillation_loss(-a, a).item() == pytest.approx(4.0, abs=1e-5)  # opposite unit vectors: |2u|^2
    b = torch.randn(2, 8, 4, 4)
    expected = (a / a.norm(dim=1, keepdim=True) - b / b.norm(dim=1, keepdim=True)).pow(2).sum(1).mean()
    assert feature_distillation_loss(a, b).item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="differ in shape"):
        feature_distillation_loss(a, torch.randn(2, 8, 2, 2))


def test_student_distillation_is_zero_when_its_adapted_features_equal_the_teachers():
    student = _student(adapter=lambda i, o: FeatureAdapter(i, o, identity_init=True)).eval()
    student.set_teachers(
        {t: SourceOnly(encoder=copy.deepcopy(student.encoder), tasks=[t], num_classes=2) for t in TASKS}
    )
    image = torch.rand(2, 3, 16, 16)
    losses = student.distillation_losses(student.features(image), image)
    assert set(losses) == set(TASKS) and all(v.item() == pytest.approx(0.0, abs=1e-6) for v in losses.values())
    with torch.no_grad():
        student.adapters["normals"][0].conv.weight.mul_(-1.0)
    losses = student.distillation_losses(student.features(image), image)
    assert losses["normals"].item() > 0.5 and losses["depth"].item() == pytest.approx(0.0, abs=1e-6)


# -- bad input ----------------------------------------------------------------------------------------------------
def test_teacher_of_another_task_or_feature_size_is_named():
    student = _student()
    with pytest.raises(ConfigError, match=r"teacher for 'depth' \(teacher\) was trained for \['normals'\]"):
        student.check_teacher(
            "depth", SourceOnly(encoder=ResNetEncoder("resnet10", 4, small_input=True), tasks=["normals"])
        )
    wider = SourceOnly(encoder=ResNetEncoder("resnet10", 8, small_input=True), tasks=["depth"])
    with pytest.raises(
        ConfigError, match="Feature size mismatch for 'depth'.*64 channels at feature level 3, the student 32"
    ):
        student.check_teacher("depth", wider)
    strided = SourceOnly(encoder=ResNetEncoder("resnet10", 4, small_input=False), tasks=["depth"])
    with pytest.raises(ConfigError, match="32 stride at feature level 3, the student 8"):
        _student(feature_levels=[-1]).check_teacher("depth", strided)


def test_teachers_must_match_the_students_tasks():
    with pytest.raises(ConfigError, match=r"missing \['segmentation'\].*\['label'\] are not among"):
        _student(teachers={"depth": "a.ckpt", "normals": "b.ckpt", "label": "c.ckpt"})
    with pytest.raises(ConfigError, match="needs model.init_args.teachers"):
        _student().load_teachers()
    with pytest.raises(ConfigError, match=r"not found: 'nowhere/d.ckpt'"):
        _student(teachers={t: f"nowhere/{t[0]}.ckpt" for t in TASKS}).load_teachers()
    with pytest.raises(ConfigError, match=r"feature_levels \[7\]"):
        _student(feature_levels=[7])
    with pytest.raises(ConfigError, match="shared encoder"):
        from umadapt.nn import CrossStitchEncoder

        UniversalRepresentations(encoder=CrossStitchEncoder(ResNetEncoder("resnet10", 4)), tasks=TASKS, num_classes=2)


# -- end to end through the CLI -----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("config", ["mtl/universal.yaml", "mtl/universal.yaml+mtl/universal_fast_adapters.yaml"])
def test_universal_yaml_runs_with_tiny_teachers(config, teachers, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stack = [MTL / "base.yaml", *(EXPERIMENTS / name for name in config.split("+"))]
    args = [*config_args(*stack), *TINY, _teacher_arg(teachers)]
    record = fit_test_predict(args, tmp_path)
    assert record["method"] == "UniversalRepresentations"
    # bf16, as tests/test_cli.py::test_every_method_runs_under_bf16_mixed does for the other method configs
    main(["fit", *args, "--trainer.fast_dev_run=true", "--trainer.precision=bf16-mixed"])


@pytest.mark.slow
def test_wrong_teacher_is_named_by_the_cli(teachers, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    swapped = {**teachers, "depth": teachers["normals"]}
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *_config("universal"), *TINY, _teacher_arg(swapped), "--trainer.fast_dev_run=true"])
    assert exit_info.value.code == 2
    assert "teacher for 'depth'" in capsys.readouterr().err


@pytest.mark.slow
def test_student_checkpoint_round_trip_without_teachers(teachers, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    copies = {t: tmp_path / f"{t}.ckpt" for t in TASKS}  # the teachers are not needed after training
    for t, path in copies.items():
        shutil.copy(teachers[t], path)
    common = [*_config("universal"), *TINY, _teacher_arg(copies), "--trainer.logger.init_args.version=run"]
    main(["fit", *common, "--trainer.max_epochs=1", "--trainer.limit_val_batches=0"])
    ckpt = tmp_path / "logs" / "umadapt" / "run" / "checkpoints" / "last.ckpt"
    for path in copies.values():
        path.unlink()
    model = UniversalRepresentations.load_from_checkpoint(ckpt)
    assert model.distill_weights == {"depth": 1.0, "normals": 2.0, "segmentation": 1.0}
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    assert any(k.startswith("adapters.") for k in state) and not any("teacher" in k for k in state)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    results = tmp_path / "results.json"
    main(["test", *common, f"--ckpt_path={ckpt}", f"--results.path={results}"])
    assert "test/target/normals/mean" in json.loads(results.read_text())["metrics"]


def test_adapters_get_their_own_learning_rate_and_weight_decay(tmp_path):
    """The authors train adapters with Adam 1e-2 and weight decay 5e-4, the student with 1e-4: with adapter_lr /
    adapter_weight_decay the adapters form their own parameter group (every parameter in exactly one group), and the
    learning-rate schedule scales both groups."""
    student = _student(
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-4),
        adapter_lr=1e-2,
        adapter_weight_decay=5e-4,
        lr_schedule="cosine",
    )
    student.trainer = tiny_trainer(tmp_path)
    optimizer = student.configure_optimizers()["optimizer"]
    base, adapters = optimizer.param_groups
    assert (base["lr"], base["weight_decay"]) == (1e-4, 0) and (adapters["lr"], adapters["weight_decay"]) == (
        1e-2,
        5e-4,
    )
    assert {id(p) for p in adapters["params"]} == {id(p) for p in student.adapters.parameters()}
    grouped = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in student.parameters())
    default = _student()
    default.trainer = tiny_trainer(tmp_path)
    assert len(default.configure_optimizers()["optimizer"].param_groups) == 1  # as before: one group
    with pytest.raises(ConfigError, match="adapter_lr must be >= 0"):
        _student(adapter_lr=-1.0)
