"""Office-31 and Office-Home (:mod:`data_modules.real.office`): classes, labels, seeded validation splits, bad
domains and incomplete class folders named."""

from __future__ import annotations

import pytest

from data_modules.real import (
    DatasetNotFoundError,
    Office31,
    OfficeHome,
)
from tests.helpers import real_fixtures as fx


def test_office31_classes_labels_and_splits(env):
    domain = Office31(domain="dslr", image_size=8)
    assert domain.num_classes == 31 and domain.class_names == tuple(sorted(fx.OFFICE31_CLASSES))
    train, test, val = domain.dataset("train"), domain.dataset("test"), domain.dataset("val")
    assert len(train) == len(test) == 31 and len(val) == 3 and set(val.items) <= set(train.items)
    for index in (0, 17, 30):
        sample = train[index]
        label = sample["label"]
        assert abs(sample["image"].mean() * 255 - 3 * label) < 2  # the fixture's grey level encodes the class
    other = Office31(domain="webcam", image_size=8, seed=1)
    assert (
        other.class_names == domain.class_names
        and other.dataset("val").items != Office31(domain="webcam", image_size=8).dataset("val").items
    )


def test_officehome_real_world_and_bad_domain(env, tmp_path):
    domain = OfficeHome(domain="Real World", image_size=8)
    assert domain.num_classes == 65 and len(domain.dataset("test")) == 65
    with pytest.raises(ValueError, match="valid domains"):
        OfficeHome(domain="Sketch")
    with pytest.raises(DatasetNotFoundError, match="Found 3 class folders"):
        root = tmp_path / "tiny_office"
        for name in ("a", "b", "c"):
            (root / "amazon" / "images" / name).mkdir(parents=True, exist_ok=True)
        Office31(domain="amazon", root=str(root))
