"""The readers' errors cross process boundaries intact: pickled, and re-raised by torch's DataLoader from a worker
(``num_workers > 0``, as every real-data config uses) as the same error naming the file, which the ``umadapt``
command prints as one ``umadapt: error:`` line."""

from __future__ import annotations

import pickle

import pytest
from torch.utils.data import DataLoader

from data_modules.real import CorruptFileError, DatasetNotFoundError, FolderDomain
from tests.helpers import EXPERIMENTS
from tests.helpers import real_fixtures as fx
from umadapt.cli import main


def test_errors_pickle_with_their_message_and_path():
    error = CorruptFileError("/data/my_sim/images/a.png", "not a readable image")
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is CorruptFileError and str(clone) == str(error) and clone.path == error.path
    missing = DatasetNotFoundError("folder dataset 'x'", "/data/x", "  <root>/images/", "your own data", hint="Set it.")
    clone = pickle.loads(pickle.dumps(missing))
    assert str(clone) == str(missing) and isinstance(clone, FileNotFoundError) and isinstance(clone, ValueError)


def test_corrupt_image_in_a_dataloader_worker_is_a_corrupt_file_error(tmp_path):
    root = fx.write_folder(tmp_path / "mine", count=4)
    domain = FolderDomain(root=str(root), image_size=8)
    bad = fx.write_garbage(domain.images[domain.dataset("train").items[-1]])
    with pytest.raises(CorruptFileError) as info:
        for _ in DataLoader(domain.dataset("train"), batch_size=1, num_workers=2):
            pass
    message = str(info.value)
    assert message.startswith(f"Cannot read {bad}: not a readable image") and "\n" not in message, message
    assert info.value.path == str(bad) and "Fix or remove that file" in message and "Traceback" not in message


@pytest.mark.slow
def test_corrupt_image_during_fit_with_workers_is_one_error_line(tmp_path, monkeypatch, capfd):
    data_root = fx.write_own_data(tmp_path / "data")
    for path in (data_root / "my_sim" / "images").iterdir():
        fx.write_garbage(path)
    monkeypatch.setenv("DATA_ROOT", str(data_root))
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(EXPERIMENTS / "own_data" / "base.yaml"), "--trainer.fast_dev_run=true"]
    args += ["--trainer.accelerator=cpu", "--data.init_args.num_workers=2", "--data.init_args.batch_size=2"]
    args += [f"--data.init_args.{role}.init_args.image_size=[32,32]" for role in ("source", "target")]
    args += ["--model.init_args.encoder.init_args.arch=resnet18", "--model.init_args.encoder.init_args.width=4"]
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capfd.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "umadapt: error:" in line]
    assert len(errors) == 1 and f"Cannot read {data_root / 'my_sim' / 'images'}" in errors[0], err
