"""Shared reading helpers (:mod:`data_modules.real.io`): fitting a sample to the input size, and a missing dataset
root named with its path, layout and where to get it, for every reader."""

from __future__ import annotations

import numpy as np
import pytest

from data_modules.real import (
    GTA5,
    DatasetNotFoundError,
    FolderDomain,
    NYUDv2MTAN,
    Office31,
    SynthiaRandCityscapes,
    fit_sample,
)


def test_crop_fit_keeps_aspect_ratio():
    image = np.zeros((4, 8, 3), np.float32)
    depth = np.tile(np.arange(8, dtype=np.float32), (4, 1))
    out = fit_sample({"image": image, "depth": depth}, (4, 4), "crop")
    np.testing.assert_array_equal(out["depth"][0], [2, 3, 4, 5])  # centre crop, no rescale needed
    out = fit_sample({"image": image, "depth": depth}, (2, 2), "crop")
    np.testing.assert_array_equal(out["depth"][0], [3, 5])  # centres 2.5 and 4.5 of the crop, ties upwards


def test_missing_root_names_path_layout_and_source(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    for reader, folder, layout_word, source_word in (
        (lambda: GTA5(), "GTA5", "labels/", "Playing for Data"),
        (lambda: SynthiaRandCityscapes(), "RAND_CITYSCAPES", "GT/LABELS", "synthia-dataset.net"),
        (lambda: NYUDv2MTAN(), "NYUDv2_MTAN", "normal/0.npy", "mtan"),
        (lambda: Office31(domain="amazon"), "Office31", "images/<class>", "Office-31"),
        (lambda: FolderDomain(name="my_sim"), "my_sim", "classes.txt", "your own data"),
    ):
        with pytest.raises(DatasetNotFoundError) as info:
            reader()
        message = str(info.value)
        assert str(tmp_path / folder) in message and layout_word in message and source_word in message, message
        assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)
