"""The real digit domains (:mod:`data_modules.digits.real`): train split into train and validation, the sample
conventions, grey digits as three equal channels."""

from __future__ import annotations

import numpy as np

from data_modules.digits import MNIST, MNISTM, SVHN, USPS


def test_domains_split_train_into_train_and_val(data_root, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", str(data_root))
    for cls, channels in ((MNIST, 1), (MNISTM, 3), (SVHN, 3), (USPS, 1)):
        domain = cls(image_size=32, val_size=3)
        train, val, test = (domain.dataset(s) for s in ("train", "val", "test"))
        assert (len(train), len(val), len(test)) == (9, 3, 6), cls
        assert not set(train.indices) & set(val.indices)
        sample = train[0]
        assert (
            sample["image"].shape == (32, 32, 3) and sample["image"].dtype == np.float32 and 0 <= sample["label"] <= 9
        )
        if channels == 1:
            assert np.array_equal(sample["image"][..., 0], sample["image"][..., 2])
