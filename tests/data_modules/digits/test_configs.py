"""Every config of experiments/digits_real (real digit datasets under DATA_ROOT) parsed and run, with each setting
and each method of experiments/digits once, on the tiny fixtures of tests/helpers/digit_fixtures.py; tests/test_cli.py
leaves these files to this module (tests/config_owners.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import EXPERIMENTS, config_args, fit_test_predict, stack_id
from umadapt.cli import main

FOLDER = EXPERIMENTS / "digits_real"
METHODS = EXPERIMENTS / "digits"
SETTINGS = {"mnist_mnistm": [], "svhn_mnist": [FOLDER / "svhn_mnist.yaml"], "mnist_usps": [FOLDER / "mnist_usps.yaml"]}
TINY = [
    *(f"--data.init_args.{r}.init_args.val_size=2" for r in ("source", "target")),
    "--data.init_args.batch_size=4",
    "--data.init_args.num_workers=0",
    "--trainer.accelerator=cpu",
]


def _stack(setting: str, method: str) -> list[Path]:
    return [FOLDER / "base.yaml", *SETTINGS[setting], METHODS / f"{method}.yaml"]


RUNS = [_stack(s, m) for s, m in (("mnist_mnistm", "dann"), ("svhn_mnist", "source_only"), ("mnist_usps", "oracle"))]
"""Each setting and each method once."""


def test_every_yaml_of_the_folder_is_covered():
    covered = {"base.yaml"} | {p.name for extra in SETTINGS.values() for p in extra}
    assert {p.name for p in FOLDER.glob("*.yaml")} == covered, "a new file in experiments/digits_real needs a test here"


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_print_config(setting, data_root, monkeypatch, capsys):
    monkeypatch.setenv("DATA_ROOT", str(data_root))
    with pytest.raises(SystemExit) as info:
        main(["fit", *config_args(*_stack(setting, "dann")), "--print_config"])
    assert info.value.code in (0, None) and "class_path: data_modules.digits." in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("stack", RUNS, ids=stack_id)
def test_fit_test_predict(stack, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", str(data_root))
    monkeypatch.chdir(tmp_path)
    record = fit_test_predict([*config_args(*stack), *TINY], tmp_path)
    assert set(record["metrics"]) >= {"test/target/label/accuracy", "test/source/label/accuracy"}


def test_missing_data_through_the_cli_is_a_clean_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["fit", *config_args(*_stack("svhn_mnist", "dann")), *TINY, "--trainer.fast_dev_run=true"])
    assert info.value.code == 2
    assert "train_32x32.mat not found" in capsys.readouterr().err
