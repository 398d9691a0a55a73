"""Every output of a run lands in that run's own folder, whatever the logger: W&B sweep runs must not overwrite each
other's image grids, ``results.json``, ``config.yaml`` or ``run_record.json``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl

from tests.helpers import BASE, EXPERIMENTS, SMALL_DATA, SOURCE_ONLY, config_args
from umadapt.callbacks.run_folder import run_folder
from umadapt.cli import main

WANDB = EXPERIMENTS / "loggers" / "wandb.yaml"
SHORT = [
    "--trainer.accelerator=cpu",
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=2",
    "--trainer.enable_progress_bar=false",
]


def _new(root: Path, pattern: str, seen: set[Path]) -> Path:
    """The one file matching ``pattern`` written since ``seen`` was taken (and adds it to ``seen``)."""
    new = set(root.rglob(pattern)) - seen
    assert len(new) == 1, f"expected one new {pattern}, found {sorted(new)}"
    seen |= new
    return new.pop()


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    wandb = pytest.importorskip("wandb")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    yield wandb
    wandb.finish()


@pytest.mark.slow
def test_wandb_runs_keep_their_outputs_in_their_own_folders(tmp_path, offline_wandb):
    common = [*config_args(BASE, SOURCE_ONLY, WANDB), *SMALL_DATA, *SHORT]
    seen: set[Path] = set()
    runs = []
    for _ in range(2):
        main(["fit", *common])
        offline_wandb.finish()
        fit, ckpt = _new(tmp_path, "config.yaml", seen).parent, _new(tmp_path, "last.ckpt", seen)
        main(["test", *common, f"--ckpt_path={ckpt}"])
        offline_wandb.finish()
        runs.append((fit, _new(tmp_path, "config.yaml", seen).parent, ckpt))

    folders = [folder for fit, test, _ in runs for folder in (fit, test)]
    assert len(set(folders)) == 4, folders
    for fit, test, ckpt in runs:  # checked after both runs: nothing of the first run was overwritten or moved
        assert sorted((fit / "images").glob("val_target_epoch*.png")), f"no image grid in {fit}"
        assert json.loads((fit / "run_record.json").read_text())["stage"] == "fit"
        assert json.loads((test / "run_record.json").read_text())["stage"] == "test"
        assert json.loads((test / "results.json").read_text())["ckpt_path"] == str(ckpt)
        assert ckpt == fit / "checkpoints" / "last.ckpt", "the checkpoint sits apart from the run's other outputs"
    shared = tmp_path / "logs" / "wandb"
    assert not any((shared / name).exists() for name in ("images", "results.json", "config.yaml", "run_record.json"))


@pytest.mark.slow
def test_csv_runs_keep_their_version_folders(tmp_path, monkeypatch):
    """CSV: fit writes into ``version_0``; testing its checkpoint starts ``version_1``, which gets the results."""
    monkeypatch.chdir(tmp_path)
    common = [*config_args(BASE, SOURCE_ONLY), *SMALL_DATA, *SHORT]
    main(["fit", *common])
    fit, test = tmp_path / "logs" / "umadapt" / "version_0", tmp_path / "logs" / "umadapt" / "version_1"
    ckpt = fit / "checkpoints" / "last.ckpt"
    main(["test", *common, f"--ckpt_path={ckpt}"])
    assert sorted((fit / "images").glob("val_target_epoch*.png")) and (fit / "config.yaml").is_file()
    assert json.loads((test / "results.json").read_text())["ckpt_path"] == str(ckpt)
    assert (test / "config.yaml").is_file() and (test / "run_record.json").is_file()


def test_without_a_logger_the_run_folder_is_the_default_root_dir(tmp_path):
    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, accelerator="cpu")
    assert run_folder(trainer) == tmp_path


def test_a_non_version_folder_logger_gets_a_folder_per_version(tmp_path):
    """Loggers without a version folder of their own (W&B, MLflow, ...) get ``<save_dir>/<name>/<version>``, the
    folder Lightning puts their ``checkpoints/`` in, never their shared ``save_dir``."""

    class Logger(pl.loggers.Logger):
        def __init__(self, version: str) -> None:
            super().__init__()
            self._version = version

        name = property(lambda self: "project")
        version = property(lambda self: self._version)
        save_dir = property(lambda self: str(tmp_path / "shared"))
        log_hyperparams = log_metrics = lambda self, *args, **kwargs: None

    for version in ("run-a", "run-b"):
        trainer = pl.Trainer(default_root_dir=tmp_path, logger=Logger(version), accelerator="cpu")
        assert run_folder(trainer) == tmp_path / "shared" / "project" / version
