"""experiments/own_data (the "your own data" configs of docs/real_datasets.md) run as written (fit one batch, test
its checkpoint, predict) on tiny fixtures written in the documented folder layouts under a temporary DATA_ROOT.

tests/test_cli.py leaves the folder to this module (tests/config_owners.yaml), which covers every YAML in it. The
runs shrink the image size and the encoder and use no DataLoader workers (CPU budget); everything else is the config
as shipped.
"""

from __future__ import annotations

import pytest

from tests.helpers import EXPERIMENTS, ROOT, config_args, fit_test_predict
from tests.helpers import real_fixtures as fx

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FOLDER = "own_data"
CONFIGS = {"base.yaml": "dense", "classification.yaml": "classes"}
"""Each YAML of experiments/own_data, a complete config on its own, with the folder layout it reads."""
DOC = ROOT / "docs" / "real_datasets.md"
SMALL = [
    *(f"--data.init_args.{key}" for key in ("batch_size=2", "eval_batch_size=2", "num_workers=0")),
    *(f"--data.init_args.{role}.init_args.image_size=[32,32]" for role in ("source", "target")),
    *(f"--model.init_args.encoder.init_args.{key}" for key in ("arch=resnet18", "width=4")),
    "--trainer.accelerator=cpu",
]


def test_every_yaml_is_covered_and_documented():
    folder = EXPERIMENTS / FOLDER
    assert {p.name for p in folder.glob("*.yaml")} == set(CONFIGS)
    doc = DOC.read_text()
    for name in CONFIGS:
        text = (folder / name).read_text()
        assert f"experiments/{FOLDER}/{name}" in doc and "root:" not in text  # paths come from DATA_ROOT
        assert f"--config experiments/{FOLDER}/{name}" in text  # the header says how to run it


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(f"{FOLDER}/{name}" for name in CONFIGS))
def test_fit_test_predict(name, tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", str(fx.write_own_data(tmp_path / "data", layout=CONFIGS[name.split("/")[1]])))
    monkeypatch.chdir(tmp_path)
    fit_test_predict([*config_args(EXPERIMENTS / name), *SMALL], tmp_path)
