"""Universal representations (teachers, adapters, distillation loss, checks) and the multi-task benchmark's summary.

Also runs experiments/mtl/universal.yaml (fit/test/predict fast_dev_run), which tests/test_cli.py skips because it
needs teacher checkpoints: tiny teachers are trained here first, with the single-task configs.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch

from umadapt.bench_mtl import REFERENCE, single_task_reference, summarise
from umadapt.cli import main
from umadapt.errors import ConfigError
from umadapt.methods import SourceOnly, UniversalRepresentations
from umadapt.methods.universal import FeatureAdapter, feature_distillation_loss
from umadapt.nn import ResNetEncoder

ROOT = Path(__file__).resolve().parents[1]
MTL = ROOT / "experiments" / "mtl"
TASKS = ["depth", "normals", "segmentation"]
TINY = [
    f"--data.init_args.{role}.init_args.{size}={n}"
    for role in ("source", "target")
    for size, n in (("train_size", 4), ("val_size", 4), ("test_size", 4))
] + ["--data.init_args.batch_size=4", "--trainer.accelerator=cpu"]


def _config(*names: str) -> list[str]:
    return [arg for name in ("base", *names) for arg in ("--config", str(MTL / f"{name}.yaml"))]


def _teacher_arg(paths: dict[str, Path]) -> str:
    return "--model.init_args.teachers=" + json.dumps({t: str(p) for t, p in paths.items()})


@pytest.fixture(scope="module")
def teachers(tmp_path_factory) -> dict[str, Path]:
    """One-step single-task teachers trained with experiments/mtl/single_<task>.yaml."""
    root = tmp_path_factory.mktemp("teachers")
    paths = {}
    for task in TASKS:
        main([
            "fit", *_config(f"single_{task}"), *TINY, "--trainer.max_epochs=1", "--trainer.limit_val_batches=0",
            f"--trainer.logger.init_args.save_dir={root}", f"--trainer.logger.init_args.name={task}",
            "--trainer.logger.init_args.version=v",
        ])
        paths[task] = root / task / "v" / "checkpoints" / "last.ckpt"
        assert paths[task].is_file()
    return paths


def _student(**kwargs) -> UniversalRepresentations:
    encoder = ResNetEncoder("resnet10", 4, small_input=True)
    return UniversalRepresentations(encoder=encoder, tasks=TASKS, num_classes=2, image_size=(16, 16), **kwargs)


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
    student.set_teachers({t: SourceOnly(encoder=copy.deepcopy(student.encoder), tasks=[t], num_classes=2) for t in TASKS})
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
        student.check_teacher("depth", SourceOnly(encoder=ResNetEncoder("resnet10", 4, small_input=True), tasks=["normals"]))
    wider = SourceOnly(encoder=ResNetEncoder("resnet10", 8, small_input=True), tasks=["depth"])
    with pytest.raises(ConfigError, match="Feature size mismatch for 'depth'.*64 channels at feature level 3, the student 32"):
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


def test_methods_that_read_shared_features_refuse_per_task_encoders():
    """DANN's feature adversary and UM-Adapt's stages/CCR need one feature map; each error names the fix, and
    DANN with an output-level adversary accepts a per-task encoder."""
    from umadapt.methods import DANN, UMAdapt
    from umadapt.nn import CrossStitchEncoder, OutputDiscriminator, ProgressiveEncoder

    with pytest.raises(ConfigError, match=r"DANN with a feature-level adversary.*CrossStitchEncoder.*OutputDiscriminator"):
        DANN(encoder=CrossStitchEncoder(ResNetEncoder("resnet10", 4)), tasks=TASKS, num_classes=2)
    with pytest.raises(ConfigError, match=r"UMAdapt .*ProgressiveEncoder gives each task its own features"):
        UMAdapt(encoder=ProgressiveEncoder(ResNetEncoder("resnet10", 4)), tasks=TASKS, num_classes=2)
    model = DANN(encoder=CrossStitchEncoder(ResNetEncoder("resnet10", 4)), tasks=TASKS, num_classes=2,
                 adversary=OutputDiscriminator)  # fmt: skip
    assert set(model(torch.rand(2, 3, 32, 32))) == set(TASKS)


# -- end to end through the CLI -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_universal_yaml_runs_with_tiny_teachers(teachers, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [*_config("universal"), *TINY, _teacher_arg(teachers), "--trainer.fast_dev_run=true"]
    for subcommand in ("fit", "test", "predict"):
        main([subcommand, *args])
    main(["fit", *args, "--trainer.precision=bf16-mixed"])  # what tests/test_operations.py does for other configs


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


# -- the benchmark's summary --------------------------------------------------------------------------------------
def _record(metrics: dict[str, float]) -> dict:
    return {"metrics": {f"test/{d}/{k}": v for d in ("source", "target") for k, v in metrics.items()}, "seed": "0"}


def test_bench_summary_uses_the_three_single_task_runs_as_reference():
    single = {
        "single_depth": [_record({"depth/abs_err": 0.5, "depth/rmse": 1.0})],
        "single_normals": [_record({"normals/mean": 20.0})],
        "single_segmentation": [_record({"segmentation/miou": 0.4})],
    }
    shared = _record({"depth/abs_err": 0.4, "depth/rmse": 1.0, "normals/mean": 22.0, "segmentation/miou": 0.5})
    reference = single_task_reference(single)
    assert reference[0]["metrics"]["test/source/depth/abs_err"] == 0.5 and len(reference[0]["metrics"]) == 8
    summary = summarise({**single, "hard_fixed": [shared]})
    assert set(summary["source"]) == {REFERENCE, "hard_fixed"}
    # headline: depth abs_err +20 %, normals mean -10 %, segmentation miou +25 %  -> +11.67 %
    assert summary["source"]["hard_fixed"]["delta"][0] == pytest.approx((20 - 10 + 25) / 3)
    assert summary["target"]["hard_fixed"]["delta_all"][0] == pytest.approx((20 + 0 - 10 + 25) / 4)
    assert summary["source"][REFERENCE]["delta"][0] == pytest.approx(0.0)
