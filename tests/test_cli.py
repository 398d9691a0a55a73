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


def _config_sets() -> dict[str, list[Path]]:
    """Every YAML under experiments/, each with the configs it composes with to make a runnable experiment."""
    sets: dict[str, list[Path]] = {}
    for path in sorted(EXPERIMENTS.rglob("*.yaml")):
        rel = path.relative_to(EXPERIMENTS).as_posix()
        if path.name == "base.yaml":
            sets[rel] = [path, path.parent / "source_only.yaml"]
        elif path.parent.name in ("trainer", "loggers"):
            sets[rel] = [BASE, SOURCE_ONLY, path]
        else:
            sets[rel] = [path.parent / "base.yaml", path]
    return sets


CONFIG_SETS = _config_sets()
NEEDS_GPU = {"trainer/gpu.yaml"}


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


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(CONFIG_SETS) - NEEDS_GPU))
def test_fast_dev_run_fit_test_predict(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [*_args(CONFIG_SETS[name]), *SMALL_DATA, "--trainer.fast_dev_run=true", "--trainer.accelerator=cpu"]
    for subcommand in ("fit", "test", "predict"):
        main([subcommand, *args])


def test_gpu_profile_needs_a_gpu_or_runs(tmp_path, monkeypatch):
    """The GPU profile parses everywhere; on a machine without a GPU it fails with Lightning's clear message."""
    monkeypatch.chdir(tmp_path)
    args = ["fit", *_args(CONFIG_SETS["trainer/gpu.yaml"]), *SMALL_DATA, "--trainer.fast_dev_run=true"]
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
