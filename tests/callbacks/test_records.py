"""Each run records its resolved config and identity (seed, stage, git commit, packages, data) in its own folder
(:class:`~umadapt.callbacks.RunConfigSaver`, :func:`~umadapt.callbacks.records.run_record`), W&B runs included."""

from __future__ import annotations

import json

from tests.helpers import BASE, EXPERIMENTS, SOURCE_ONLY, config_args, small_data
from umadapt.cli import main


def test_run_folder_holds_config_and_record(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            *config_args(BASE, SOURCE_ONLY),
            *small_data(train_size=16),
            "--trainer.max_steps=1",
            "--trainer.logger.init_args.version=r",
            "--seed_everything=7",
            "--trainer.limit_val_batches=0",
        ]
    )
    run = tmp_path / "logs" / "umadapt" / "r"
    assert (run / "config.yaml").is_file() and not (tmp_path / "config.yaml").exists()
    record = json.loads((run / "run_record.json").read_text())
    assert record["seed"] == "7" and record["stage"] == "fit" and "git_commit" in record
    assert record["packages"]["torch"] and record["packages"]["pytorch-lightning"]
    data = record["data"]
    assert data["source"]["name"] == "synthrooms-synthetic" and data["target"]["name"] == "synthrooms-real"
    assert data["source"]["seed"] == 0 and data["target"]["seed"] == 1 and data["source"]["sizes"]["train"] == 16


def test_wandb_runs_write_config_into_their_own_folders(tmp_path, monkeypatch):
    import wandb

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    configs = config_args(BASE, SOURCE_ONLY, EXPERIMENTS / "loggers" / "wandb.yaml")
    try:
        for _ in range(2):
            main(
                ["fit", *configs, *small_data(train_size=16), "--trainer.max_steps=1", "--trainer.limit_val_batches=0"]
            )
            wandb.finish()
    finally:
        wandb.finish()
    saved = sorted(tmp_path.rglob("config.yaml"))
    assert len(saved) == 2 and saved[0].parent != saved[1].parent
    assert not (tmp_path / "config.yaml").exists() and not (tmp_path / "logs" / "wandb" / "config.yaml").exists()
    assert all((c.parent / "run_record.json").is_file() for c in saved)
