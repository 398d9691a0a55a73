"""The Cityscapes label table (label ID -> 19 training IDs) and the 19/16/13-class protocols used by GTA5 -> Cityscapes
and SYNTHIA -> Cityscapes.

``LABEL_TABLE`` is the ``(name, id, trainId)`` columns of the official table in cityscapesScripts
(``cityscapesscripts/helpers/labels.py``, M. Cordts et al., "The Cityscapes Dataset for Semantic Urban Scene
Understanding", CVPR 2016), embedded here so that reading needs no extra dependency;
``tests/data_modules/real/test_cityscapes.py`` checks it entry for entry against the installed cityscapesScripts.
Label IDs 0-33 exist in the ``*_labelIds.png`` files; ``license plate`` (id -1) never appears in them.

The 16- and 13-class protocols (SYNTHIA -> Cityscapes; Tsai et al. CVPR 2018 report 13, Vu et al. CVPR 2019 and
later work report both) keep the classes SYNTHIA annotates: 16 drops terrain, truck and train; 13 also drops wall,
fence and pole. Class indices are renumbered 0..C-1 in the order of the 19 training IDs.
"""

from __future__ import annotations

import numpy as np

from umadapt.samples import IGNORE_INDEX

LABEL_TABLE: tuple[tuple[str, int, int], ...] = (
    ("unlabeled", 0, 255),
    ("ego vehicle", 1, 255),
    ("rectification border", 2, 255),
    ("out of roi", 3, 255),
    ("static", 4, 255),
    ("dynamic", 5, 255),
    ("ground", 6, 255),
    ("road", 7, 0),
    ("sidewalk", 8, 1),
    ("parking", 9, 255),
    ("rail track", 10, 255),
    ("building", 11, 2),
    ("wall", 12, 3),
    ("fence", 13, 4),
    ("guard rail", 14, 255),
    ("bridge", 15, 255),
    ("tunnel", 16, 255),
    ("pole", 17, 5),
    ("polegroup", 18, 255),
    ("traffic light", 19, 6),
    ("traffic sign", 20, 7),
    ("vegetation", 21, 8),
    ("terrain", 22, 9),
    ("sky", 23, 10),
    ("person", 24, 11),
    ("rider", 25, 12),
    ("car", 26, 13),
    ("truck", 27, 14),
    ("bus", 28, 15),
    ("caravan", 29, 255),
    ("trailer", 30, 255),
    ("train", 31, 16),
    ("motorcycle", 32, 17),
    ("bicycle", 33, 18),
    ("license plate", -1, -1),
)
"""``(name, label id, train id)`` exactly as cityscapesScripts lists them (255 = ignored in training)."""

TRAIN_CLASSES: tuple[str, ...] = tuple(
    name for name, _, train_id in sorted((row for row in LABEL_TABLE if 0 <= row[2] < 255), key=lambda row: row[2])
)
"""The 19 training classes, in training-ID order (road, sidewalk, building, ..., bicycle)."""

PROTOCOL_TRAIN_IDS: dict[int, tuple[int, ...]] = {
    19: tuple(range(19)),
    16: (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18),
    13: (0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18),
}
"""Training IDs kept by each protocol; class ``k`` of a protocol is training ID ``PROTOCOL_TRAIN_IDS[C][k]``."""


def protocol(num_classes: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(table, names)``: ``table[train_id]`` (256 entries) is the protocol's class index or 255."""
    if num_classes not in PROTOCOL_TRAIN_IDS:
        raise ValueError(
            f"num_classes must be one of {sorted(PROTOCOL_TRAIN_IDS)} (Cityscapes protocols), got {num_classes}."
        )
    kept = PROTOCOL_TRAIN_IDS[num_classes]
    table = np.full(256, IGNORE_INDEX, dtype=np.int64)
    table[list(kept)] = np.arange(len(kept))
    return table, tuple(TRAIN_CLASSES[t] for t in kept)


def label_id_table(num_classes: int = 19) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(table, names)``: ``table[label_id]`` for label IDs 0..33 is the protocol's class index or 255."""
    remap, names = protocol(num_classes)
    table = np.full(34, IGNORE_INDEX, dtype=np.int64)
    for _, label_id, train_id in LABEL_TABLE:
        if label_id >= 0:
            table[label_id] = remap[train_id] if 0 <= train_id < 255 else IGNORE_INDEX
    return table, names
