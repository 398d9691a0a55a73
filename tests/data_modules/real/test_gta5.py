"""GTA5 (:mod:`data_modules.real.gta5`): palette indices to train IDs, resizing per key, corrupt images named or
skipped and counted, labels of another size resized and reported."""

from __future__ import annotations

import numpy as np
import pytest

from data_modules.real import (
    GTA5,
    CorruptFileError,
    fit_sample,
)
from data_modules.real.cityscapes_labels import label_id_table
from tests.helpers import real_fixtures as fx


def test_gta5_reads_palette_indices_and_resizes_per_key(env):
    domain = GTA5(image_size=(fx.GTA_H, fx.GTA_W), val_fraction=0.5)
    assert len(domain.dataset("train")) == 4 and len(domain.dataset("val")) == 2
    assert domain.dataset("val").items == domain.dataset("test").items
    raw = fx.gta5_labels(0)
    sample = domain.dataset("train")[0]
    np.testing.assert_array_equal(sample["segmentation"], label_id_table(19)[0][raw])
    # Resizing: labels nearest (only values that exist), image interpolated.
    small = fit_sample(sample, (5, 9), "stretch")
    assert set(np.unique(small["segmentation"])) <= set(np.unique(sample["segmentation"]))
    np.testing.assert_array_equal(small["segmentation"], sample["segmentation"][1::2, 1::2])
    holdout = GTA5(image_size=(fx.GTA_H, fx.GTA_W), val_fraction=0.5, holdout=True)
    assert not set(holdout.dataset("train").items) & set(holdout.dataset("val").items)


def test_corrupt_image_names_the_file_or_is_skipped_and_counted(tmp_path):
    root = fx.write_gta5(tmp_path / "GTA5")
    bad = root / "images" / "00002.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    domain = GTA5(root=str(root), image_size=(fx.GTA_H, fx.GTA_W))
    with pytest.raises(CorruptFileError, match="00002.png"):
        domain.dataset("train")[1]
    skipping = GTA5(root=str(root), image_size=(fx.GTA_H, fx.GTA_W), skip_bad_files=True)
    with pytest.warns(UserWarning, match="skipped unreadable file .*00002.png"):
        sample = skipping.dataset("train")[1]
    np.testing.assert_array_equal(sample["segmentation"], label_id_table(19)[0][fx.gta5_labels(2)])  # the next one
    assert list(skipping.dataset("train").skipped) == [str(bad)]


def test_gta5_label_of_another_size_is_resized_and_reported(tmp_path):
    root = fx.write_gta5(tmp_path / "GTA5")
    fx._png8(root / "labels" / "00001.png", np.kron(fx.gta5_labels(0), np.ones((2, 2), np.uint8)))  # twice the size
    domain = GTA5(root=str(root), image_size=(fx.GTA_H, fx.GTA_W))
    with pytest.warns(UserWarning, match="differs from its image"):
        sample = domain.dataset("train")[0]
    np.testing.assert_array_equal(sample["segmentation"], label_id_table(19)[0][fx.gta5_labels(0)])
    assert domain.resized_labels == [str(root / "labels" / "00001.png")]
