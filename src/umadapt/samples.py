"""The sample and batch conventions every dataset, method and metric in umadapt shares.

A *raw sample* is what a dataset returns before augmentation: NumPy arrays, channels last.

=================  =========================  ============================================================
key                raw sample (NumPy)         batch (torch)
=================  =========================  ============================================================
``image``          float32 ``[H, W, 3]``, 0-1  float32 ``[B, 3, H, W]``
``depth``          float32 ``[H, W]``, metres  float32 ``[B, 1, H, W]``; ``0`` marks an invalid pixel
``normals``        float32 ``[H, W, 3]``       float32 ``[B, 3, H, W]``; unit vectors, ``0`` = invalid
``segmentation``   int64 ``[H, W]``            int64 ``[B, H, W]``; :data:`IGNORE_INDEX` = ignore
``contours``       float32 ``[H, W]``, 0-1     float32 ``[B, 1, H, W]``
``edges``          float32 ``[H, W]``, 0-1     float32 ``[B, 1, H, W]``; a classical edge map of the *image*
                                              (``data_modules.edges``), not a label: unlabelled samples may hold it
``label``          int                         int64 ``[B]``
``parity``         int                         int64 ``[B]``; of a digit label: 0 even, 1 odd
``magnitude``      int                         int64 ``[B]``; of a digit label: 0 for 0-4, 1 for 5-9
``tags``           float32 ``[C]``, 0/1        float32 ``[B, C]``; image-level class tags (multi-hot): which
                                              classes the image shows, the weak label of WDA
``points``         int64 ``[H, W]``            int64 ``[B, H, W]``; a sparse segmentation: one labelled pixel
                                              per class present, :data:`IGNORE_INDEX` everywhere else
=================  =========================  ============================================================

Normals are expressed in the **camera frame**: ``x`` points right in the image, ``y`` points down, ``z`` points
forward (away from the camera, the OpenCV convention). Visible surfaces therefore have ``n_z < 0``. A horizontal
flip of the image negates ``n_x``; a vertical flip negates ``n_y``.

A training batch is ``{"source": {...}, "target": {...}}``; in unsupervised mode the target part holds ``image``
only (the dataset never returns the labels). With weak target supervision (``data.target_weak_labels``) it holds
``image`` and ``tags`` or ``points``, never the dense masks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

IGNORE_INDEX = 255
IMAGE = "image"
CLASS_KEYS = ("label", "parity", "magnitude")
"""Per-image class indices: an int in a raw sample, int64 ``[B]`` in a batch."""
LABEL_KEYS = ("depth", "normals", "segmentation", "contours", *CLASS_KEYS)
"""Keys that carry supervision; an unlabelled sample holds none of them."""
WEAK_LABEL_KEYS = ("tags", "points")
"""Keys of weak supervision (image-level tags, point clicks): what a weakly labelled target sample adds."""


def to_tensor_sample(sample: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Convert a raw (NumPy, channels-last) sample into the batch conventions above (channels-first tensors)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sample.items():
        if key in (IMAGE, "normals"):
            array = np.ascontiguousarray(np.asarray(value, dtype=np.float32).transpose(2, 0, 1))
            out[key] = torch.from_numpy(array)
        elif key in ("depth", "contours", "edges"):
            out[key] = torch.from_numpy(np.ascontiguousarray(np.asarray(value, dtype=np.float32))[None])
        elif key in ("segmentation", "points"):
            out[key] = torch.from_numpy(np.ascontiguousarray(np.asarray(value, dtype=np.int64)))
        elif key == "tags":
            out[key] = torch.from_numpy(np.ascontiguousarray(np.asarray(value, dtype=np.float32)))
        elif key in CLASS_KEYS:
            out[key] = torch.as_tensor(int(value), dtype=torch.int64)
        else:
            raise KeyError(
                f"Unknown sample key {key!r}. Known keys: {[IMAGE, *LABEL_KEYS, *WEAK_LABEL_KEYS, 'edges']} "
                "(see umadapt.samples for the conventions)."
            )
    return out


def images_only(sample: Mapping[str, Any]) -> dict[str, Any]:
    """Drop every supervision key, keeping the image: what an unlabelled target sample looks like."""
    return {IMAGE: sample[IMAGE]}
