"""SYNTHIA-RAND-CITYSCAPES (:mod:`data_modules.real.synthia`): its IDs mapped to the Cityscapes protocols, labels
from the first channel, depth in centimetres."""

from __future__ import annotations

import numpy as np

from data_modules.real import (
    SynthiaRandCityscapes,
)
from data_modules.real.cityscapes_labels import label_id_table
from data_modules.real.synthia import SYNTHIA_TO_TRAIN_ID
from tests.helpers import real_fixtures as fx


def test_synthia_and_protocols():
    assert sorted(SYNTHIA_TO_TRAIN_ID.values()) == list(range(19))
    table16, names16 = label_id_table(16)
    table13, names13 = label_id_table(13)
    assert "terrain" not in names16 and "truck" not in names16 and "train" not in names16 and len(names16) == 16
    assert not {"wall", "fence", "pole"} & set(names13) and len(names13) == 13
    assert table16[26] == names16.index("car") and table13[26] == names13.index("car") and table16[22] == 255


def test_synthia_first_channel_and_depth(env):
    domain = SynthiaRandCityscapes(image_size=(fx.SYN_H, fx.SYN_W))
    sample = domain.dataset("train")[2]
    ids = fx.synthia_ids(2)
    # 3 road -> 0, 8 car -> 12, 21 wall -> 3, 16 terrain -> ignore (16-class), 0 void, 22 lanemarking -> ignore
    expected = {3: 0, 8: 12, 21: 3, 16: 255, 0: 255, 22: 255}
    np.testing.assert_array_equal(sample["segmentation"], np.vectorize(expected.get)(ids))
    np.testing.assert_allclose(sample["depth"], fx.synthia_depth_cm(2) / 100.0, rtol=1e-6)
    thirteen = SynthiaRandCityscapes(num_classes=13, tasks=["segmentation"], image_size=(fx.SYN_H, fx.SYN_W))
    assert set(np.unique(thirteen.dataset("train")[2]["segmentation"])) == {0, 9, 255}  # wall is not in the 13
