"""Experiment operations: non-finite losses stop the run, each run records its config and identity in its own
folder, a killed run resumes to the same result, checkpoints of another method are refused, DDP (ddp_spawn in
process, ddp_cpu.yaml through the CLI) matches a single process, and every method runs under bf16-mixed."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from data_modules import PairedDataModule
from tests.test_cli import CONFIG_SETS, NEEDS_TEACHERS, SMALL_DATA
from umadapt.callbacks import NonFiniteLossError, NonFiniteLossGuard
from umadapt.cli import main
from umadapt.methods import SourceOnly
from umadapt.nn import ResNetEncoder

ROOT = Path(__file__).resolve().parents[1]
SYNTH = ROOT / "experiments" / "synthrooms"
SOURCE_ONLY = [str(SYNTH / "base.yaml"), str(SYNTH / "source_only.yaml")]
DDP_CPU = ROOT / "experiments" / "trainer" / "ddp_cpu.yaml"
SIZES = [
    f"--data.init_args.{role}.init_args.{size}={n}"
    for role in ("source", "target")
    for size, n in (("train_size", 16), ("val_size", 4), ("test_size", 4))
] + ["--data.init_args.batch_size=4"]


def _configs(paths: list[str]) -> list[str]:
    return [arg for p in paths for arg in ("--config", p)]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "umadapt", *args], capture_output=True, text=True, cwd=cwd, env=env)


def _model() -> SourceOnly:
    encoder = ResNetEncoder(arch="resnet10", width=8, small_input=True)
    return SourceOnly(encoder=encoder, tasks=["depth", "normals", "segmentation"], num_classes=2, image_size=(32, 32))


def _last_val(metrics_csv: Path) -> dict[str, float]:
    rows = [r for r in csv.DictReader(metrics_csv.open()) if r.get("val/target/depth/rmse")]
    return {k: float(v) for k, v in rows[-1].items() if k.startswith("val/") and v}


# -- non-finite losses ---------------------------------------------------------------------------------------------
def test_non_finite_loss_stops_the_run_naming_loss_and_step(tmp_path, toy_domains):
    model = _model()
    model.loss_weights["depth"] = math.nan
    trainer = pl.Trainer(
        default_root_dir=tmp_path, accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, callbacks=[NonFiniteLossGuard()],
    )
    with pytest.raises(NonFiniteLossError, match=r"epoch 0, batch 0 .*train/source/loss = nan"):
        trainer.fit(model, PairedDataModule(*toy_domains, batch_size=4))


def test_non_finite_loss_can_warn_instead(tmp_path, toy_domains):
    model = _model()
    model.loss_weights["depth"] = math.inf
    trainer = pl.Trainer(
        default_root_dir=tmp_path, accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, limit_val_batches=0, callbacks=[NonFiniteLossGuard(mode="warn")],
    )
    with pytest.warns(RuntimeWarning, match="Non-finite training loss"):
        trainer.fit(model, PairedDataModule(*toy_domains, batch_size=4))
    with pytest.raises(ValueError, match="valid modes"):
        NonFiniteLossGuard(mode="sometimes")


# -- reproducibility records ---------------------------------------------------------------------------------------
def test_run_folder_holds_config_and_record(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", *_configs(SOURCE_ONLY), *SIZES, "--trainer.max_steps=1", "--trainer.logger.init_args.version=r",
          "--seed_everything=7", "--trainer.limit_val_batches=0"])
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
    wandb_yaml = str(ROOT / "experiments" / "loggers" / "wandb.yaml")
    try:
        for _ in range(2):
            main(["fit", *_configs([*SOURCE_ONLY, wandb_yaml]), *SIZES, "--trainer.max_steps=1",
                  "--trainer.limit_val_batches=0"])
            wandb.finish()
    finally:
        wandb.finish()
    configs = sorted(tmp_path.rglob("config.yaml"))
    assert len(configs) == 2 and configs[0].parent != configs[1].parent
    assert not (tmp_path / "config.yaml").exists() and not (tmp_path / "logs" / "wandb" / "config.yaml").exists()
    assert all((c.parent / "run_record.json").is_file() for c in configs)


# -- fault tolerance -----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path):
    kill = tmp_path / "kill.yaml"
    kill.write_text("trainer:\n  callbacks:\n    - class_path: tests.kill.KillAtStep\n      init_args: {step: 6}\n")
    common = [*_configs(SOURCE_ONLY), *SIZES, "--data.init_args.batch_size=4", "--trainer.max_epochs=2",
              "--trainer.deterministic=true", "--trainer.limit_val_batches=1"]
    assert _cli("fit", *common, "--trainer.logger.init_args.version=a", cwd=tmp_path).returncode == 0
    killed = _cli("fit", *common, "--config", str(kill), "--trainer.logger.init_args.version=b", cwd=tmp_path)
    assert killed.returncode == 17, killed.stderr[-2000:]
    resumed = _cli("fit", *common, "--trainer.logger.init_args.version=b", "--ckpt_path=last", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    runs = tmp_path / "logs" / "umadapt"
    a = torch.load(runs / "a" / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(runs / "b" / "checkpoints" / "last.ckpt", weights_only=False)
    assert a["global_step"] == b["global_step"] == 8
    for key, value in a["state_dict"].items():
        assert torch.allclose(value.float(), b["state_dict"][key].float(), atol=1e-6), key
    assert _last_val(runs / "a" / "metrics.csv") == pytest.approx(_last_val(runs / "b" / "metrics.csv"), rel=1e-5)


def test_checkpoint_of_another_method_is_refused(tmp_path):
    assert _cli("fit", *_configs(SOURCE_ONLY), *SIZES, "--trainer.max_steps=1", "--trainer.limit_val_batches=0",
                "--trainer.logger.init_args.version=so", cwd=tmp_path).returncode == 0
    ckpt = tmp_path / "logs" / "umadapt" / "so" / "checkpoints" / "last.ckpt"
    oracle = _cli("fit", *_configs([SOURCE_ONLY[0], str(SYNTH / "oracle.yaml")]), *SIZES, f"--ckpt_path={ckpt}",
                  "--trainer.max_steps=2", cwd=tmp_path)
    assert oracle.returncode == 2, oracle.stderr[-2000:]
    assert "holds a 'SourceOnly' model, but the config asks for 'TargetOracle'" in oracle.stderr
    assert "Traceback" not in oracle.stderr


def test_checkpoint_of_another_task_set_is_refused(tmp_path):
    assert _cli("fit", *_configs(SOURCE_ONLY), *SIZES, "--trainer.max_steps=1", "--trainer.limit_val_batches=0",
                "--trainer.logger.init_args.version=so", cwd=tmp_path).returncode == 0
    ckpt = tmp_path / "logs" / "umadapt" / "so" / "checkpoints" / "last.ckpt"
    fewer = _cli("fit", *_configs(SOURCE_ONLY), *SIZES, f"--ckpt_path={ckpt}", "--trainer.max_steps=2",
                 "--data.init_args.tasks=[depth,segmentation]", cwd=tmp_path)
    assert fewer.returncode == 2, fewer.stderr[-2000:]
    assert "trained for tasks ['depth', 'normals', 'segmentation'], but data.tasks is ['depth', 'segmentation']" in fewer.stderr


# -- multi-process -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ddp_spawn_validation_matches_single_process(tmp_path, toy_domains):
    pl.seed_everything(0)
    model = _model()
    results = {}
    for name, kwargs in {"single": {"devices": 1}, "ddp_spawn": {"devices": 2, "strategy": "ddp_spawn"}}.items():
        trainer = pl.Trainer(default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_progress_bar=False, **kwargs)
        results[name] = trainer.validate(model, PairedDataModule(*toy_domains, batch_size=4, eval_batch_size=2))[0]
    single = {k.replace("/dataloader_idx_0", "").replace("/dataloader_idx_1", ""): v for k, v in results["single"].items()}
    spawned = {k.replace("/dataloader_idx_0", "").replace("/dataloader_idx_1", ""): v for k, v in results["ddp_spawn"].items()}
    assert {k for k in single if "/target/" in k} and single.keys() == spawned.keys()
    assert spawned == pytest.approx(single, rel=1e-4)


@pytest.mark.slow
def test_ddp_cpu_profile_trains_and_evaluates_like_one_process(tmp_path):
    """`ddp` through the CLI (plain ddp re-launches sys.argv, so not in process): training runs on two processes,
    and evaluating its checkpoint on two processes gives the metrics of one process on the same data."""
    common = [*_configs(SOURCE_ONLY), *SIZES, "--data.init_args.eval_batch_size=2", "--trainer.enable_progress_bar=false"]
    ddp = ["--config", str(DDP_CPU)]
    fit = _cli("fit", *common, *ddp, "--trainer.max_epochs=1", "--trainer.logger.init_args.version=fit", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpt = tmp_path / "logs" / "umadapt" / "fit" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=False)["global_step"] == 2  # 16 samples / (2 processes x batch 4)
    metrics = {}
    for name, extra in {"single": ["--trainer.devices=1"], "ddp": ddp}.items():
        run = _cli("validate", *common, *extra, f"--ckpt_path={ckpt}", f"--trainer.logger.init_args.version={name}",
                   cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        metrics[name] = _last_val(tmp_path / "logs" / "umadapt" / name / "metrics.csv")
    assert {k for k in metrics["single"] if "/target/" in k} and metrics["ddp"].keys() == metrics["single"].keys()
    assert metrics["ddp"] == pytest.approx(metrics["single"], rel=1e-4)


# -- mixed precision -----------------------------------------------------------------------------------------------
METHOD_CONFIGS = sorted(n for n in CONFIG_SETS if not n.startswith(("trainer/", "loggers/")) and not n.endswith("base.yaml"))
METHOD_CONFIGS = [n for n in METHOD_CONFIGS if n not in NEEDS_TEACHERS]  # bf16 with tiny teachers: tests/test_mtl.py


@pytest.mark.slow
@pytest.mark.parametrize("name", METHOD_CONFIGS)
def test_every_method_runs_under_bf16_mixed(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [*_configs([str(p) for p in CONFIG_SETS[name]]), *SMALL_DATA, "--trainer.fast_dev_run=true",
            "--trainer.accelerator=cpu", "--trainer.precision=bf16-mixed"]
    main(["fit", *args])
