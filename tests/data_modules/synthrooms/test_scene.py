"""SynthRooms scenes (:mod:`data_modules.synthrooms.scene`): varied rooms in which every class shows up."""

from __future__ import annotations

import numpy as np

from data_modules.synthrooms import CLASS_NAMES, render_sample


def test_scenes_are_varied_rooms():
    classes = np.zeros(len(CLASS_NAMES))
    for i in range(12):
        sample, _ = render_sample(1, "test", i)
        classes += np.bincount(sample["segmentation"].ravel(), minlength=len(CLASS_NAMES)) > 0
    assert (classes >= 3).all(), classes  # every class shows up in several views
