"""Self-training (:mod:`umadapt.methods.self_training`): the teacher's loading and checks, pseudo-labels from target
images only, the EMA and round updates of the teacher, the no-pseudo control; and every self-training YAML through
the CLI (tests/test_cli.py leaves them here, tests/config_owners.yaml: they need a teacher checkpoint)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import (
    EXPERIMENTS,
    config_args,
    fit_test_predict,
    small_data,
    stack_id,
    tiny_model,
    tiny_trainer,
)
from umadapt.cli import main
from umadapt.errors import ConfigError
from umadapt.methods import SelfTraining, SourceOnly

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SYNTHROOMS, DIGITS = EXPERIMENTS / "synthrooms", EXPERIMENTS / "digits"
CONFIGS = [
    (SYNTHROOMS / "base.yaml", SYNTHROOMS / "self_training.yaml"),
    (SYNTHROOMS / "base.yaml", SYNTHROOMS / "self_training.yaml", SYNTHROOMS / "self_training_ema.yaml"),
    (SYNTHROOMS / "base.yaml", SYNTHROOMS / "self_training.yaml", SYNTHROOMS / "self_training_no_pseudo.yaml"),
    (SYNTHROOMS / "base.yaml", SYNTHROOMS / "self_training.yaml", SYNTHROOMS / "self_training_bn_only.yaml"),
    (DIGITS / "base.yaml", DIGITS / "self_training.yaml"),
    (DIGITS / "base.yaml", DIGITS / "self_training.yaml", DIGITS / "self_training_no_pseudo.yaml"),
]
TINY = [*small_data(train_size=4), "--trainer.accelerator=cpu"]


def _teacher_run(root: Path, base: Path, source_only: Path) -> Path:
    main(
        [
            "fit",
            *config_args(base, source_only),
            *TINY,
            "--trainer.max_steps=1",
            "--trainer.max_epochs=1",
            "--trainer.limit_val_batches=0",
            f"--trainer.logger.init_args.save_dir={root}",
            "--trainer.logger.init_args.version=teacher",
        ]
    )
    (checkpoint,) = root.rglob("last.ckpt")
    return checkpoint


@pytest.fixture(scope="module")
def teachers(tmp_path_factory) -> dict[str, Path]:
    """One-step source-only runs of SynthRooms and Digits on tiny data: teachers of each benchmark's configs."""
    return {
        name: _teacher_run(tmp_path_factory.mktemp(name), folder / "base.yaml", folder / "source_only.yaml")
        for name, folder in (("synthrooms", SYNTHROOMS), ("digits", DIGITS))
    }


# -- every YAML, through the CLI ----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("stack", CONFIGS, ids=stack_id)
def test_self_training_yaml_runs_from_a_teacher(stack, teachers, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    teacher = teachers[stack[0].parent.name]
    record = fit_test_predict(
        [*config_args(*stack), *TINY, f"--model.init_args.teacher_checkpoint={teacher}"], tmp_path
    )
    assert record["method"] == "SelfTraining"
    if stack[-1].name == "self_training.yaml" and stack[0].parent.name == "synthrooms":  # as test_cli does for others
        main(
            [
                "fit",
                *config_args(*stack),
                *TINY,
                f"--model.init_args.teacher_checkpoint={teacher}",
                "--trainer.fast_dev_run=true",
                "--trainer.precision=bf16-mixed",
            ]
        )


def test_a_teacher_of_another_task_set_is_named(teachers, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [*config_args(SYNTHROOMS / "base.yaml", SYNTHROOMS / "self_training.yaml"), *TINY]
    args += [f"--model.init_args.teacher_checkpoint={teachers['synthrooms']}", "--data.init_args.tasks=[depth]"]
    args += ["--model.init_args.loss_weights={depth: 1.0}"]
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--trainer.fast_dev_run=true"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "['depth', 'normals', 'segmentation']" in error and "['depth']" in error and "Traceback" not in error


def test_offline_self_training_needs_a_teacher():
    with pytest.raises(ConfigError, match="teacher_checkpoint"):
        tiny_model(SelfTraining)


def test_a_dense_model_refuses_a_zoom_at_construction(tmp_path):
    with pytest.raises(ConfigError, match="zoom:1.5 cannot be inverted for the dense task 'depth'"):
        tiny_model(SelfTraining, teacher_checkpoint=str(tmp_path / "t.ckpt"), transforms=["identity", "zoom:1.5"])


# -- in process ----------------------------------------------------------------------------------------------------
def _saved_teacher(tmp_path: Path) -> Path:
    torch.manual_seed(3)
    teacher = tiny_model(width=4)
    path = tmp_path / "teacher.ckpt"
    torch.save({"state_dict": teacher.state_dict(), "umadapt": teacher.identity()}, path)
    return path


def _data(toy_domains, **kwargs):
    from data_modules import PairedDataModule

    return PairedDataModule(*toy_domains, batch_size=4, **{"augmentation": "none", **kwargs})


def test_student_and_teacher_start_from_the_checkpoint_and_the_optimizer_skips_the_teacher(toy_domains, tmp_path):
    path = _saved_teacher(tmp_path)
    model = tiny_model(SelfTraining, width=4, teacher_checkpoint=str(path))
    trainer = tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(model, datamodule=_data(toy_domains))
    saved = torch.load(path, weights_only=True)["state_dict"]
    teacher = model.teacher.state_dict()
    assert all(torch.equal(teacher[k], v) for k, v in saved.items() if k.startswith(("encoder.", "heads.")))
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not any(id(p) in optimized for p in model.teacher.parameters())
    assert any(id(p) in optimized for p in model.encoder.parameters())


def test_online_teacher_is_the_moving_average_of_the_student(toy_domains, tmp_path):
    path = _saved_teacher(tmp_path)
    model = tiny_model(SelfTraining, width=4, teacher_checkpoint=str(path), mode="online", ema_decay=0.75)
    trainer = tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(model, datamodule=_data(toy_domains))
    start = torch.load(path, weights_only=True)["state_dict"]
    student = model.student().state_dict()
    for name, value in model.teacher.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.75 * start[name] + 0.25 * student[name])


def test_offline_rounds_hand_the_student_to_the_teacher(toy_domains, tmp_path):
    path = _saved_teacher(tmp_path)
    model = tiny_model(SelfTraining, width=4, teacher_checkpoint=str(path), rounds=2)
    snapshots = []

    original = model._teacher_changed

    def spy() -> None:
        snapshots.append({k: v.clone() for k, v in model.teacher.state_dict().items()})
        snapshots[-1]["student"] = {k: v.clone() for k, v in model.student().state_dict().items()}
        original()

    model._teacher_changed = spy
    trainer = tiny_trainer(tmp_path, max_epochs=2, limit_val_batches=0)  # 2 batches per epoch: rounds at 0 and 2
    trainer.fit(model, datamodule=_data(toy_domains))
    assert len(snapshots) == 2 and model.round == 1
    second = snapshots[1]
    assert all(torch.equal(second[k], v) for k, v in second["student"].items())  # the student became the teacher
    first = snapshots[0]
    assert not all(torch.equal(first[k], second[k]) for k in second["student"])


def test_pseudo_labels_read_the_target_image_only(toy_domains, tmp_path):
    """The target training batch holds the image alone; and even when it carries labels (target_labels: true),
    the loss does not change: nothing but the image is read."""
    path = _saved_teacher(tmp_path)
    seen = []

    class Recording(SelfTraining):
        def training_step(self, batch, batch_idx):
            seen.append(sorted(batch["target"]))
            torch.manual_seed(0)
            loss = super().training_step(batch, batch_idx)
            poisoned = {**batch["target"], "segmentation": torch.zeros_like(batch["source"]["segmentation"])}
            poisoned["depth"] = torch.full_like(batch["source"]["depth"], 7.0)
            torch.manual_seed(0)
            assert torch.equal(super().training_step({**batch, "target": poisoned}, batch_idx), loss)
            return loss

    model = tiny_model(Recording, width=4, teacher_checkpoint=str(path))
    tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(model, datamodule=_data(toy_domains))
    assert seen == [["image"]]


def test_the_no_pseudo_control_never_reads_a_target_image(toy_domains, tmp_path):
    path = _saved_teacher(tmp_path)
    model = tiny_model(SelfTraining, width=4, teacher_checkpoint=str(path), pseudo_weight=0.0)
    model.pseudo_labels = None  # called, it would fail
    tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(model, datamodule=_data(toy_domains))
    assert model.global_step == 2 and not model.calibration.thresholds


def test_a_checkpoint_of_another_architecture_is_named(toy_domains, tmp_path):
    torch.manual_seed(0)
    other = tiny_model(SourceOnly, width=8)
    path = tmp_path / "wide.ckpt"
    torch.save({"state_dict": other.state_dict(), "umadapt": other.identity()}, path)
    model = tiny_model(SelfTraining, width=4, teacher_checkpoint=str(path))
    with pytest.raises(ConfigError, match="another architecture"):
        tiny_trainer(tmp_path, max_steps=1).fit(model, datamodule=_data(toy_domains))


def test_target_batchnorm_teacher_reestimates_its_statistics_on_target_images(toy_domains, tmp_path):
    path = _saved_teacher(tmp_path)
    model = tiny_model(SelfTraining, width=4, teacher_checkpoint=str(path), teacher_batchnorm="target")
    tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(model, datamodule=_data(toy_domains))
    saved = torch.load(path, weights_only=True)["state_dict"]
    teacher = model.teacher.state_dict()
    means = [k for k in teacher if k.endswith("running_mean")]
    assert means and all(not torch.equal(teacher[k], saved[k]) for k in means)  # re-estimated
    weights = [k for k in teacher if k.endswith(".weight")]
    assert all(torch.equal(teacher[k], saved[k]) for k in weights)  # the weights are the checkpoint's


def test_a_scratch_student_keeps_the_loaded_teacher(toy_domains, tmp_path):
    path = _saved_teacher(tmp_path)
    model = tiny_model(SelfTraining, width=4, teacher_checkpoint=str(path), student_init="scratch")
    scratch = {k: v.clone() for k, v in model.student().state_dict().items()}
    model.trainer = tiny_trainer(tmp_path)  # setup reads the trainer's (absent) data module
    model.setup("fit")
    saved = torch.load(path, weights_only=True)["state_dict"]
    teacher, student = model.teacher.state_dict(), model.student().state_dict()
    assert all(torch.equal(teacher[k], saved[k]) for k in teacher)
    assert all(torch.equal(student[k], scratch[k]) for k in student)


def test_an_adabn_teacher_needs_target_batchnorm(toy_domains, tmp_path):
    path = _saved_teacher(tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["umadapt"]["method"] = "AdaBN"
    torch.save(checkpoint, path)
    model = tiny_model(SelfTraining, width=4, teacher_checkpoint=str(path))
    with pytest.raises(ConfigError, match="teacher_batchnorm: target"):
        tiny_trainer(tmp_path, max_steps=1).fit(model, datamodule=_data(toy_domains))


def test_augmentation_beyond_flips_in_the_data_module_is_refused(toy_domains, tmp_path):
    path = _saved_teacher(tmp_path)
    model = tiny_model(SelfTraining, width=4, teacher_checkpoint=str(path))
    with pytest.raises(ConfigError, match="augmentation is 'standard'"):
        tiny_trainer(tmp_path, max_steps=1).fit(model, datamodule=_data(toy_domains, augmentation="standard"))


def test_batchnorm_only_control_lets_the_student_batchnorm_see_target_images(toy_domains, tmp_path):
    path = _saved_teacher(tmp_path)
    means = {}
    for control in (False, True):
        torch.manual_seed(0)
        model = tiny_model(
            SelfTraining, width=4, teacher_checkpoint=str(path), pseudo_weight=0.0, control_target_batchnorm=control
        )
        model.pseudo_labels = None  # never called: no pseudo-label is made
        tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(model, datamodule=_data(toy_domains))
        means[control] = model.encoder.state_dict()["bn1.running_mean"].clone()
    assert not torch.equal(means[False], means[True])
    with pytest.raises(ConfigError, match="control of pseudo_weight: 0"):
        tiny_model(SelfTraining, teacher_checkpoint=str(path), control_target_batchnorm=True)


def test_online_teacher_moves_once_per_optimizer_step_under_gradient_accumulation(toy_domains, tmp_path):
    path = _saved_teacher(tmp_path)
    model = tiny_model(SelfTraining, width=4, teacher_checkpoint=str(path), mode="online", ema_decay=0.75)
    trainer = tiny_trainer(tmp_path, max_steps=1, accumulate_grad_batches=2, limit_val_batches=0)
    trainer.fit(model, datamodule=_data(toy_domains))  # two batches, one optimizer step
    start = torch.load(path, weights_only=True)["state_dict"]
    student = model.student().state_dict()
    for name, value in model.teacher.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.75 * start[name] + 0.25 * student[name])


def test_pseudo_labels_do_not_depend_on_the_trainers_autocast(toy_domains, tmp_path):
    """Calibration runs outside autocast and pseudo-labels inside the training step's: the teacher is float32 in
    both, so thresholds and labels come from the same predictions."""
    path = _saved_teacher(tmp_path)
    threshold = {"segmentation": {"kind": "threshold", "value": 0.5}}  # depth, normals: all (a single view)
    model = tiny_model(
        SelfTraining, width=4, teacher_checkpoint=str(path), transforms=["identity"], confidence=threshold
    )
    model.trainer = tiny_trainer(tmp_path)
    model.setup("fit")
    images = torch.rand(2, 3, 32, 32)
    plain, _ = model.pseudo_labels(images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed, _ = model.pseudo_labels(images)
    for task in plain:
        assert mixed[task].dtype == plain[task].dtype and torch.equal(mixed[task], plain[task]), task
