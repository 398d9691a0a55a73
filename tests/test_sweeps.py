"""Every W&B sweep file is validated offline: its command shape, every swept key parses as the agent would pass
it, and its metric is one the method really logs (and uses no target labels unless declared an oracle sweep)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.test_cli import SMALL_DATA
from umadapt.cli import build_cli
from umadapt.sweeps import agent_arguments, command_arguments, load_sweep, validate_sweep

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "experiments" / "sweeps").glob("*.yaml"))


def test_there_are_sweeps():
    assert SWEEPS


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_is_valid(path):
    assert validate_sweep(path, root=ROOT) == []


@pytest.mark.slow
@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_metric_is_logged(path, tmp_path, monkeypatch):
    sweep = load_sweep(path)
    args = [a if not a.endswith(".yaml") else str(ROOT / a) for a in command_arguments(sweep)]
    monkeypatch.chdir(tmp_path)
    cli = build_cli([*args, *agent_arguments(sweep), *SMALL_DATA, "--trainer.fast_dev_run=true"], run=False)
    cli.trainer.fit(cli.model, cli.datamodule)
    assert sweep["metric"]["name"] in cli.trainer.callback_metrics


def _variant(tmp_path: Path, change) -> Path:
    sweep = load_sweep(SWEEPS[0])
    change(sweep)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_validator_names_a_key_that_is_not_a_config_key(tmp_path):
    path = _variant(tmp_path, lambda s: s["parameters"].update({"model.init_args.learning_rat": {"values": [0.1]}}))
    problems = validate_sweep(path, root=ROOT)
    assert problems and "learning_rat" in problems[0]


def test_validator_requires_args_last_and_label_free_metrics(tmp_path):
    path = _variant(tmp_path, lambda s: s["command"].append("--trainer.max_epochs=1"))
    assert any("${args}" in p for p in validate_sweep(path, root=ROOT))
    path = _variant(tmp_path, lambda s: s["metric"].update(name="val/target/segmentation/miou"))
    assert any("target labels" in p for p in validate_sweep(path, root=ROOT))
