"""The ``umadapt`` command end to end: every YAML under experiments/ is parsed and run, checkpoints round-trip,
and bad input fails with a message that names the problem."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from umadapt.cli import main
from umadapt.methods import SourceOnly

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
BASE = EXPERIMENTS / "synthrooms" / "base.yaml"
SOURCE_ONLY = EXPERIMENTS / "synthrooms" / "source_only.yaml"

SMALL_DATA = [
    f"--data.init_args.{role}.init_args.{size}={n}"
    for role in ("source", "target")
    for size, n in (("train_size", 8), ("val_size", 4), ("test_size", 4))
] + ["--data.init_args.batch_size=4"]


NEEDS_DATASET_FIXTURES = {
    folder: "tests/test_real_configs.py"
    for folder in ("gta5_cityscapes", "synthia_cityscapes", "nyud", "office31", "officehome")
}
"""experiments/ folders whose configs read real datasets under DATA_ROOT: skipped here, run on tiny fixture copies
of the datasets by the named test (which checks that it covers every YAML in them)."""
NEEDS_DATASET_FIXTURES["digits_real"] = "tests/test_digits_real.py"  # MNIST, MNIST-M, SVHN, USPS formats
NOT_CLI_CONFIGS = {"sweeps": "tests/test_sweeps.py"}
"""experiments/ folders of W&B sweep files (not CLI configs): validated by the named test."""


def _config_sets() -> dict[str, list[Path]]:
    """Every YAML under experiments/, each with the configs it composes with to make a runnable experiment."""
    sets: dict[str, list[Path]] = {}
    for path in sorted(EXPERIMENTS.rglob("*.yaml")):
        rel = path.relative_to(EXPERIMENTS).as_posix()
        if rel.split("/")[0] in NEEDS_DATASET_FIXTURES or rel.split("/")[0] in NOT_CLI_CONFIGS:
            continue
        if path.name == "base.yaml":
            method = path.parent / "source_only.yaml"
            sets[rel] = [path, method] if method.is_file() else [path]  # a base without source_only runs alone
        elif path.parent.name in ("trainer", "loggers"):
            sets[rel] = [BASE, SOURCE_ONLY, path]
        else:
            sets[rel] = [path.parent / "base.yaml", path]
    return sets


CONFIG_SETS = _config_sets()
NEEDS_GPU = {"trainer/gpu.yaml", "trainer/ddp.yaml", "trainer/multinode.yaml", "trainer/fp16.yaml"}
"""Profiles that need CUDA: parsed everywhere, run only where a GPU is present."""
SUBPROCESS_ONLY = {"trainer/ddp_cpu.yaml": "tests/test_operations.py"}
"""Plain ``ddp`` re-launches ``sys.argv`` (pytest's), so these run through a CLI subprocess in the named test."""
NEEDS_TEACHERS = {"mtl/universal.yaml": "tests/test_mtl.py"}
"""Configs that distil from teacher checkpoints: parsed here, run with tiny teachers trained first by the named test."""


def _args(configs: list[Path]) -> list[str]:
    return [arg for config in configs for arg in ("--config", str(config))]


def test_every_experiment_yaml_is_covered():
    assert "synthrooms/source_only.yaml" in CONFIG_SETS and "synthrooms/oracle.yaml" in CONFIG_SETS
    for configs in CONFIG_SETS.values():
        assert all(c.is_file() for c in configs), configs


@pytest.mark.parametrize("name", sorted(CONFIG_SETS))
def test_print_config(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *_args(CONFIG_SETS[name]), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "class_path" in printed and "model:" in printed


def test_dataset_fixture_folders_are_run_elsewhere():
    for folder, test_file in NEEDS_DATASET_FIXTURES.items():
        assert (EXPERIMENTS / folder / "base.yaml").is_file(), folder
        assert f'"{folder}"' in (ROOT / test_file).read_text(), f"{test_file} does not cover experiments/{folder}"


def test_sweep_files_are_validated_elsewhere():
    for folder, test_file in NOT_CLI_CONFIGS.items():
        assert (EXPERIMENTS / folder).is_dir() and f'"{folder}"' in (ROOT / test_file).read_text()


def test_subprocess_only_configs_are_run_elsewhere():
    for name, test_file in SUBPROCESS_ONLY.items():
        assert name in CONFIG_SETS and Path(name).name in (ROOT / test_file).read_text()


def test_teacher_configs_are_run_elsewhere():
    for name, test_file in NEEDS_TEACHERS.items():
        assert name in CONFIG_SETS and Path(name).name in (ROOT / test_file).read_text()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(CONFIG_SETS) - NEEDS_GPU - set(SUBPROCESS_ONLY) - set(NEEDS_TEACHERS)))
def test_fast_dev_run_fit_test_predict(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [*_args(CONFIG_SETS[name]), *SMALL_DATA, "--trainer.fast_dev_run=true", "--trainer.accelerator=cpu"]
    for subcommand in ("fit", "test", "predict"):
        main([subcommand, *args])


@pytest.mark.parametrize("name", sorted(NEEDS_GPU))
def test_gpu_profiles_need_a_gpu_or_run(name, tmp_path, monkeypatch):
    """GPU profiles parse everywhere; on a machine without a GPU they fail with Lightning's clear message."""
    monkeypatch.chdir(tmp_path)
    args = ["fit", *_args(CONFIG_SETS[name]), *SMALL_DATA, "--trainer.fast_dev_run=true", "--trainer.devices=1"]
    if torch.cuda.is_available():
        main(args)
    else:
        with pytest.raises(Exception, match="(?i)gpu|cuda"):
            main(args)


@pytest.mark.slow
def test_checkpoint_round_trip_and_outputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = [*_args([BASE, SOURCE_ONLY]), *SMALL_DATA, "--trainer.accelerator=cpu", "--trainer.logger.init_args.version=run"]
    main(["fit", *common, "--trainer.max_steps=2", "--trainer.max_epochs=1"])
    run = tmp_path / "logs" / "umadapt" / "run"
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and (run / "config.yaml").is_file()
    assert sorted((run / "images").glob("val_target_epoch*.png")), "the image grid callback wrote nothing"

    model = SourceOnly.load_from_checkpoint(ckpt).eval()
    assert model.tasks == ["depth", "normals", "segmentation"] and model.num_classes == 5
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())

    results = tmp_path / "results.json"
    main(["test", *common, f"--ckpt_path={ckpt}", f"--results.path={results}"])
    record = json.loads(results.read_text())
    assert record["method"] == "SourceOnly" and record["global_step"] == 2
    assert {"test/target/depth/rmse", "test/source/segmentation/miou", "test/target/normals/median"} <= set(record["metrics"])

    out = tmp_path / "predictions"
    main(["predict", *common, f"--ckpt_path={ckpt}", f"--predictions.output_dir={out}"])
    for key in ("image", "depth", "normals", "segmentation"):
        assert (out / f"00000_{key}.png").is_file()
    assert len(list(out.glob("*_depth.png"))) == 4


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "umadapt", *args], capture_output=True, text=True, cwd=cwd)


def test_help_and_version(tmp_path):
    result = _cli("--help", cwd=tmp_path)
    assert result.returncode == 0 and all(s in result.stdout for s in ("fit", "validate", "test", "predict"))
    result = _cli("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("umadapt ")


def test_unknown_config_key_is_named(tmp_path):
    result = _cli("fit", *_args([BASE, SOURCE_ONLY]), "--model.init_args.learning_rat=0.1", cwd=tmp_path)
    assert result.returncode != 0 and "learning_rat" in result.stderr


def test_incompatible_image_size_names_both_numbers(tmp_path):
    sizes = [f"--data.init_args.{r}.init_args.image_size=60" for r in ("source", "target")]
    result = _cli("fit", *_args([BASE, SOURCE_ONLY]), *SMALL_DATA, *sizes, "--trainer.fast_dev_run=true", cwd=tmp_path)
    assert result.returncode == 2
    assert "60x60" in result.stderr and "32" in result.stderr and "Traceback" not in result.stderr


def test_missing_checkpoint_is_named(tmp_path):
    result = _cli("test", *_args([BASE, SOURCE_ONLY]), "--ckpt_path=nowhere/last.ckpt", cwd=tmp_path)
    assert result.returncode == 2 and "nowhere/last.ckpt" in result.stderr and "Traceback" not in result.stderr


def test_task_the_data_does_not_provide_is_named(tmp_path):
    result = _cli("fit", *_args([BASE, SOURCE_ONLY]), *SMALL_DATA, "--data.init_args.tasks=[depth,label]", cwd=tmp_path)
    assert result.returncode != 0 and "'label'" in result.stderr and "Traceback" not in result.stderr
