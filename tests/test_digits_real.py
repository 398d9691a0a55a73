"""The real digit formats (MNIST IDX, MNIST-M folders, SVHN .mat, USPS LIBSVM/HDF5) on tiny fixtures written here in
the exact distributed formats, their errors, and every config of experiments/digits_real run on those fixtures."""

from __future__ import annotations

import bz2
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_modules.digits import MNIST, MNISTM, SVHN, USPS, DigitDataError, MissingDigitFile
from data_modules.digits.formats import read_idx, read_mnist, read_mnist_m, read_svhn, read_usps

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "experiments" / "digits_real"
METHODS = ROOT / "experiments" / "digits"
SIZES = {"train": 12, "test": 6}


def _labels(split: str) -> np.ndarray:
    return np.arange(SIZES[split], dtype=np.uint8) % 10


def _images(split: str, size: int, channels: int = 0) -> np.ndarray:
    rng = np.random.default_rng(SIZES[split] + size)
    shape = (SIZES[split], size, size) + ((channels,) if channels else ())
    return rng.integers(0, 256, shape, dtype=np.uint8)


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def write_mnist(root: Path, compress: bool = False) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        suffix = ".gz" if compress else ""
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", _images(split, 28), compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", _labels(split), compress)


def write_mnist_m(root: Path) -> None:
    for split in ("train", "test"):
        folder = root / f"mnist_m_{split}"
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for i, (image, label) in enumerate(zip(_images(split, 28, 3), _labels(split))):
            Image.fromarray(image).save(folder / f"{i:08d}.png")
            lines.append(f"{i:08d}.png {label}")
        (root / f"mnist_m_{split}_labels.txt").write_text("\n".join(lines) + "\n")


def write_svhn(root: Path) -> None:
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        x = np.transpose(_images(split, 32, 3), (1, 2, 3, 0))  # 32 x 32 x 3 x N
        y = _labels(split).astype(np.uint8)
        y[y == 0] = 10  # SVHN: 10 means digit 0
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x, "y": y[:, None]})


def _usps_values(split: str) -> np.ndarray:
    return _images(split, 16).reshape(SIZES[split], 256).astype(np.float64) / 127.5 - 1.0


def write_usps(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "usps.bz2"), ("test", "usps.t.bz2")):
        rows = [
            f"{label + 1} " + " ".join(f"{j + 1}:{v:.6f}" for j, v in enumerate(values) if v != 0)
            for values, label in zip(_usps_values(split), _labels(split))
        ]
        (root / name).write_bytes(bz2.compress(("\n".join(rows) + "\n").encode()))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("digit_data")
    write_mnist(root / "mnist", compress=True)
    write_mnist_m(root / "mnist_m")
    write_svhn(root / "svhn")
    write_usps(root / "usps")
    return root


# -- readers ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx(tmp_path, compress):
    write_mnist(tmp_path, compress)
    images, labels = read_mnist(tmp_path, "train")
    assert images.shape == (12, 28, 28) and np.array_equal(images, _images("train", 28))
    assert labels.dtype == np.int64 and np.array_equal(labels, _labels("train"))
    assert read_mnist(tmp_path, "test")[0].shape == (6, 28, 28)


def test_mnist_m_folders(data_root):
    images, labels = read_mnist_m(data_root / "mnist_m", "train")
    assert len(images) == 12 and np.array_equal(images[3], _images("train", 28, 3)[3])
    assert np.array_equal(labels, _labels("train"))


def test_svhn_mat_maps_10_to_0(data_root):
    images, labels = read_svhn(data_root / "svhn", "test")
    assert images.shape == (6, 32, 32, 3) and np.array_equal(images, _images("test", 32, 3))
    assert np.array_equal(labels, _labels("test")) and labels[0] == 0


def test_usps_libsvm_and_h5(data_root, tmp_path):
    images, labels = read_usps(data_root / "usps", "train")
    expected = np.round((_usps_values("train") + 1.0) * 127.5).reshape(12, 16, 16)
    assert images.shape == (12, 16, 16) and np.abs(images.astype(int) - expected).max() <= 1
    assert np.array_equal(labels, _labels("train"))
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "usps.h5", "w") as handle:
        for split in ("train", "test"):
            group = handle.create_group(split)
            group["data"] = (_usps_values(split) + 1.0) / 2.0
            group["target"] = _labels(split)
    h5_images, h5_labels = read_usps(tmp_path, "test")
    assert np.abs(h5_images.astype(int) - np.round((_usps_values("test") + 1) * 127.5).reshape(6, 16, 16)).max() <= 1
    assert np.array_equal(h5_labels, _labels("test"))


def test_domains_split_train_into_train_and_val(data_root, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", str(data_root))
    for cls, channels in ((MNIST, 1), (MNISTM, 3), (SVHN, 3), (USPS, 1)):
        domain = cls(image_size=32, val_size=3)
        train, val, test = (domain.dataset(s) for s in ("train", "val", "test"))
        assert (len(train), len(val), len(test)) == (9, 3, 6), cls
        assert not set(train.indices) & set(val.indices)
        sample = train[0]
        assert sample["image"].shape == (32, 32, 3) and sample["image"].dtype == np.float32 and 0 <= sample["label"] <= 9
        if channels == 1:
            assert np.array_equal(sample["image"][..., 0], sample["image"][..., 2])


# -- errors -------------------------------------------------------------------------------------------------------


def test_no_root_and_no_data_root_names_the_variable(monkeypatch):
    monkeypatch.delenv("DATA_ROOT", raising=False)
    with pytest.raises(DigitDataError, match=r"DATA_ROOT.*\$DATA_ROOT/svhn.*train_32x32.mat"):
        SVHN()


@pytest.mark.parametrize(
    "dataset, reader, missing, layout",
    [
        ("mnist", read_mnist, "train-images-idx3-ubyte", "IDX"),
        ("mnist_m", read_mnist_m, "mnist_m_train", "mnist_m_train_labels.txt"),
        ("svhn", read_svhn, "train_32x32.mat", "32x32x3xN"),
        ("usps", read_usps, "usps.bz2", "LIBSVM"),
    ],
)
def test_missing_files_are_named_with_the_layout(tmp_path, dataset, reader, missing, layout):
    with pytest.raises(MissingDigitFile, match=missing) as info:
        reader(tmp_path, "train")
    assert layout in str(info.value) and isinstance(info.value, FileNotFoundError)


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_files_are_named(data_root, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(data_root, root)
    write_mnist(root / "mnist_raw")
    _truncate(root / "mnist_raw" / "train-images-idx3-ubyte")
    with pytest.raises(DigitDataError, match=r"train-images-idx3-ubyte is truncated.*\(12, 28, 28\)"):
        read_mnist(root / "mnist_raw", "train")
    _truncate(root / "mnist" / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DigitDataError, match="t10k-labels-idx1-ubyte.gz.*gzip"):
        read_mnist(root / "mnist", "test")
    _truncate(root / "svhn" / "train_32x32.mat")
    with pytest.raises(DigitDataError, match=r"train_32x32.mat.*X uint8 32x32x3xN"):
        read_svhn(root / "svhn", "train")
    _truncate(root / "usps" / "usps.t.bz2")
    with pytest.raises(DigitDataError, match="usps.t.bz2.*truncated"):
        read_usps(root / "usps", "test")
    listing = root / "mnist_m" / "mnist_m_test_labels.txt"
    listing.write_text(listing.read_text()[:-4])  # cut inside the last line
    with pytest.raises(DigitDataError, match=r"mnist_m_test_labels.txt, line 6.*'<filename> <label>'"):
        read_mnist_m(root / "mnist_m", "test")
    (root / "mnist_m" / "mnist_m_train" / "00000011.png").unlink()
    with pytest.raises(MissingDigitFile, match="00000011.png.*mnist_m_train_labels.txt"):
        read_mnist_m(root / "mnist_m", "train")


def test_not_an_idx_file(tmp_path):
    (tmp_path / "x").write_bytes(b"PK\x03\x04 something else")
    with pytest.raises(DigitDataError, match="is not an IDX file"):
        read_idx(tmp_path / "x")


# -- configs ------------------------------------------------------------------------------------------------------

SETTINGS = {"mnist_mnistm": [], "svhn_mnist": [FOLDER / "svhn_mnist.yaml"], "mnist_usps": [FOLDER / "mnist_usps.yaml"]}


def test_every_yaml_of_the_folder_is_covered():
    covered = {"base.yaml"} | {p.name for extra in SETTINGS.values() for p in extra}
    assert {p.name for p in FOLDER.glob("*.yaml")} == covered, 'a new file in experiments/digits_real needs a test here'


def _config_args(setting: str, method: str) -> list[str]:
    files = [FOLDER / "base.yaml", *SETTINGS[setting], METHODS / f"{method}.yaml"]
    return [arg for f in files for arg in ("--config", str(f))]


TINY = [f"--data.init_args.{r}.init_args.val_size=2" for r in ("source", "target")] + [
    "--data.init_args.batch_size=4",
    "--data.init_args.num_workers=0",
    "--trainer.accelerator=cpu",
]


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_print_config(setting, data_root, monkeypatch, capsys):
    from umadapt.cli import main

    monkeypatch.setenv("DATA_ROOT", str(data_root))
    with pytest.raises(SystemExit) as info:
        main(["fit", *_config_args(setting, "dann"), "--print_config"])
    assert info.value.code in (0, None) and "class_path: data_modules.digits." in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize(
    "setting, method",
    [("mnist_mnistm", "dann"), ("svhn_mnist", "source_only"), ("mnist_usps", "oracle")],  # each setting and method once
)
def test_fast_dev_run_fit_test_predict(setting, method, data_root, tmp_path, monkeypatch):
    from umadapt.cli import main

    monkeypatch.setenv("DATA_ROOT", str(data_root))
    monkeypatch.chdir(tmp_path)
    args = [*_config_args(setting, method), *TINY, "--trainer.fast_dev_run=true"]
    for subcommand in ("fit", "test", "predict"):
        main([subcommand, *args])


def test_missing_data_through_the_cli_is_a_clean_error(tmp_path, monkeypatch, capsys):
    from umadapt.cli import main

    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["fit", *_config_args("svhn_mnist", "dann"), *TINY, "--trainer.fast_dev_run=true"])
    assert info.value.code == 2
    assert "train_32x32.mat not found" in capsys.readouterr().err
