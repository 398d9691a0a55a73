"""The real digit formats (:mod:`data_modules.digits.formats`): MNIST IDX, MNIST-M folders, SVHN .mat and USPS
LIBSVM/HDF5 read from tiny fixtures written in the exact distributed formats (tests/helpers/digit_fixtures.py), and
their errors: missing files named with the layout, truncated files named with what was expected."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from data_modules.digits import SVHN, DigitDataError, MissingDigitFile
from data_modules.digits.formats import read_idx, read_mnist, read_mnist_m, read_svhn, read_usps
from tests.helpers import digit_fixtures as dfx

# -- readers ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx(tmp_path, compress):
    dfx.write_mnist(tmp_path, compress)
    images, labels = read_mnist(tmp_path, "train")
    assert images.shape == (12, 28, 28) and np.array_equal(images, dfx.images("train", 28))
    assert labels.dtype == np.int64 and np.array_equal(labels, dfx.labels("train"))
    assert read_mnist(tmp_path, "test")[0].shape == (6, 28, 28)


def test_mnist_m_folders(data_root):
    images, labels = read_mnist_m(data_root / "mnist_m", "train")
    assert len(images) == 12 and np.array_equal(images[3], dfx.images("train", 28, 3)[3])
    assert np.array_equal(labels, dfx.labels("train"))


def test_svhn_mat_maps_10_to_0(data_root):
    images, labels = read_svhn(data_root / "svhn", "test")
    assert images.shape == (6, 32, 32, 3) and np.array_equal(images, dfx.images("test", 32, 3))
    assert np.array_equal(labels, dfx.labels("test")) and labels[0] == 0


def test_usps_libsvm_and_h5(data_root, tmp_path):
    images, labels = read_usps(data_root / "usps", "train")
    expected = np.round((dfx.usps_values("train") + 1.0) * 127.5).reshape(12, 16, 16)
    assert images.shape == (12, 16, 16) and np.abs(images.astype(int) - expected).max() <= 1
    assert np.array_equal(labels, dfx.labels("train"))
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "usps.h5", "w") as handle:
        for split in ("train", "test"):
            group = handle.create_group(split)
            group["data"] = (dfx.usps_values(split) + 1.0) / 2.0
            group["target"] = dfx.labels(split)
    h5_images, h5_labels = read_usps(tmp_path, "test")
    assert np.abs(h5_images.astype(int) - np.round((dfx.usps_values("test") + 1) * 127.5).reshape(6, 16, 16)).max() <= 1
    assert np.array_equal(h5_labels, dfx.labels("test"))


# -- errors -------------------------------------------------------------------------------------------------------


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
    root = tmp_path / "copy"
    shutil.copytree(data_root, root)
    dfx.write_mnist(root / "mnist_raw")
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


def test_no_root_and_no_data_root_names_the_variable(monkeypatch):
    monkeypatch.delenv("DATA_ROOT", raising=False)
    with pytest.raises(DigitDataError, match=r"DATA_ROOT.*\$DATA_ROOT/svhn.*train_32x32.mat"):
        SVHN()
