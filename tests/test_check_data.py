"""``umadapt check-data``: the data module of a config built as ``fit`` builds it, every sample of every split read
once, every bad file listed together (path and reason, one line each), exit code 0 or 2."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import EXPERIMENTS
from tests.helpers import real_fixtures as fx
from umadapt import check_data
from umadapt.cli import main as cli_main

OWN_DATA = EXPERIMENTS / "own_data"


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_ROOT", str(tmp_path / "data"))
    return tmp_path


def _run(config: str, capsys, *extra: str) -> tuple[int, str, str]:
    code = check_data.main(["--config", str(OWN_DATA / config), *extra])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("config", "layout"), [("base.yaml", "dense"), ("classification.yaml", "classes")])
def test_clean_data_reads_every_split_and_exits_0(config, layout, in_tmp, capsys):
    data = fx.write_own_data(in_tmp / "data", layout=layout)
    code, out, err = _run(config, capsys)
    assert code == 0 and not err, err
    assert f"source my_sim ({data / 'my_sim'}): train 4, val 1, test 1 samples" in out, out
    assert f"target my_camera ({data / 'my_camera'}): train 4, val 1, test 1 samples" in out
    assert sorted(p.name for p in in_tmp.iterdir()) == ["data"]  # writes nothing


def test_every_bad_file_is_listed_once_with_its_reason(in_tmp, capsys):
    data = fx.write_own_data(in_tmp / "data")
    sim, camera = data / "my_sim", data / "my_camera"
    fx.write_garbage(sim / "images" / "frame_000.png")  # unreadable image (its labels are still checked)
    fx._png16(sim / "depth" / "frame_001.png", np.ones((4, 4), np.uint16))  # wrong size
    fx._png8(sim / "segmentation" / "frame_002.png", np.full((fx.FOLDER_H, fx.FOLDER_W), 20))  # >= 13 classes
    fx._png16(sim / "depth" / "frame_07.png", np.ones((fx.FOLDER_H, fx.FOLDER_W), np.uint16))  # no partner image
    fx._png8(camera / "normals" / "frame_003.png", np.zeros((fx.FOLDER_H, fx.FOLDER_W)))  # grey, not RGB
    fx.write_garbage(camera / "segmentation" / "frame_003.png")  # a second bad file of the same sample
    (camera / "depth" / "frame_004.png").unlink()  # a missing label: allowed (partial annotation), only noted
    code, out, err = _run("base.yaml", capsys)
    assert code == 2
    expected = {
        sim / "images" / "frame_000.png": "not a readable image",
        sim / "depth" / "frame_001.png": "its depth is 4x4, but the image is 16x24",
        sim
        / "segmentation"
        / "frame_002.png": "384 pixels have label IDs outside classes.txt (13 classes) (values [20]",
        sim / "depth" / "frame_07.png": "a depth file without an image",
        camera / "normals" / "frame_003.png": "normal PNGs must be RGB",
        camera / "segmentation" / "frame_003.png": "not a readable PNG",
    }
    lines = err.splitlines()
    for path, reason in expected.items():
        assert sum(line.startswith(f"{path}: ") for line in lines) == 1 and f"{path}: {reason}" in err, err
    assert lines[-1].startswith("umadapt: error: 6 unreadable or inconsistent file(s)") and len(lines) == 7, err
    assert "train 4, val 1, test 1" in out and "1 sample(s) have no depth file" in out


def test_classification_files_and_class_names(in_tmp, capsys):
    data = fx.write_own_data(in_tmp / "data", layout="classes")
    bad = fx.write_garbage(data / "my_camera" / "cup" / "frame_0001.jpg")
    (data / "my_camera" / "plate").rename(data / "my_camera" / "plates")  # same count, other names
    code, _, err = _run("classification.yaml", capsys)
    assert code == 2 and f"{bad}: not a readable image" in err, err
    assert (
        f"{data / 'my_camera'}: the target's classes differ from the source's (only in the source: ['plate'], " in err
    )


def test_config_errors_are_one_line(in_tmp, capsys):
    code, _, err = _run("base.yaml", capsys)  # no data under DATA_ROOT
    assert code == 2 and err.startswith(f"umadapt: error: folder dataset 'my_sim': not found: {in_tmp / 'data'}")
    fx.write_own_data(in_tmp / "data")
    code, _, err = _run("base.yaml", capsys, "--data.init_args.batch_sise=2")
    assert code == 2 and err.count("\n") == 1 and err.startswith("umadapt: error: ") and "batch_sise" in err, err
    assert check_data.main(["--help"]) == 0 and "usage: umadapt check-data" in capsys.readouterr().out


def test_umadapt_check_data_command(in_tmp, capsys):
    fx.write_own_data(in_tmp / "data")
    fx.write_garbage(in_tmp / "data" / "my_sim" / "images" / "frame_005.png")
    with pytest.raises(SystemExit) as info:
        cli_main(["check-data", "--config", str(OWN_DATA / "base.yaml")])
    assert info.value.code == 2 and "frame_005.png: not a readable image" in capsys.readouterr().err
