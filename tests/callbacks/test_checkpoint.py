"""A run killed mid-training resumes from its ``last.ckpt`` (:class:`~umadapt.callbacks.RunCheckpoint` keeps it
current every epoch) to the result of an uninterrupted run, keeping its ``metrics.csv`` history
(:func:`~umadapt.callbacks.checkpoint.keep_csv_history`)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from tests.helpers import BASE, SOURCE_ONLY, config_args, run_cli, small_data


def _validation_rows(metrics_csv: Path) -> list[dict[str, str]]:
    return [r for r in csv.DictReader(metrics_csv.open()) if r.get("val/target/depth/rmse")]


def _last_val(metrics_csv: Path) -> dict[str, float]:
    return {k: float(v) for k, v in _validation_rows(metrics_csv)[-1].items() if k.startswith("val/") and v}


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path):
    """Killed in epoch 2 of 2 (step 6 of 8), the run resumes from the end of epoch 1 (step 4), trains only the
    remaining 4 steps, keeps its metrics.csv history and ends with the weights of an uninterrupted run."""
    kill = tmp_path / "kill.yaml"
    kill.write_text(
        "trainer:\n  callbacks:\n    - class_path: tests.helpers.kill.KillAtStep\n      init_args: {step: 6}\n"
    )
    start = tmp_path / "start.yaml"
    start.write_text(
        "trainer:\n  callbacks:\n    - class_path: tests.helpers.kill.RecordStartStep\n"
        f"      init_args: {{path: {tmp_path / 'start_step.txt'}}}\n"
    )
    common = [
        *config_args(BASE, SOURCE_ONLY),
        *small_data(train_size=16),
        "--trainer.max_epochs=2",
        "--trainer.deterministic=true",
        "--trainer.limit_val_batches=1",
    ]
    assert run_cli("fit", *common, "--trainer.logger.init_args.version=a", cwd=tmp_path).returncode == 0
    killed = run_cli("fit", *common, *config_args(kill), "--trainer.logger.init_args.version=b", cwd=tmp_path)
    assert killed.returncode == 17, killed.stderr[-2000:]
    runs = tmp_path / "logs" / "umadapt"
    assert torch.load(runs / "b" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    history = _validation_rows(runs / "b" / "metrics.csv")
    resumed = run_cli(
        "fit", *common, *config_args(start), "--trainer.logger.init_args.version=b", "--ckpt_path=last", cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (tmp_path / "start_step.txt").read_text() == "4"  # restored, not retrained from step 0
    a = torch.load(runs / "a" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(runs / "b" / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 8
    for key, value in a["state_dict"].items():
        assert torch.allclose(value.float(), b["state_dict"][key].float(), atol=1e-6), key
    assert _last_val(runs / "a" / "metrics.csv") == pytest.approx(_last_val(runs / "b" / "metrics.csv"), rel=1e-5)
    rows_a, rows_b = _validation_rows(runs / "a" / "metrics.csv"), _validation_rows(runs / "b" / "metrics.csv")
    assert len(history) == 1 and len(rows_b) == len(rows_a) == 2  # epoch 1's validation kept, epoch 2's appended
