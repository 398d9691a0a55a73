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
``native/<task>``  as ``<task>``, stored size  as ``<task>`` at the stored size; a list of per-sample tensors
                                              when the sizes differ within the batch
=================  =========================  ============================================================

``native/depth``, ``native/normals``, ``native/segmentation`` (:func:`native_key`): a dense target at the size it is
stored in (after the reader's own fixed crop), carried by validation and test samples of a real-data reader with
``eval_resolution: native`` in addition to the target at ``image_size``; evaluation upsamples the predictions to it
(:func:`umadapt.tasks.eval_pairs`). Training samples never carry them.

Normals are expressed in the **camera frame**: ``x`` points right in the image, ``y`` points down, ``z`` points
forward (away from the camera, the OpenCV convention). Visible surfaces therefore have ``n_z < 0``. A horizontal
flip of the image negates ``n_x``; a vertical flip negates ``n_y``.

A training batch is ``{"source": {...}, "target": {...}}``; in unsupervised mode the target part holds ``image``
only (the dataset never returns the labels). With weak target supervision (``data.target_weak_labels``) it holds
``image`` and ``tags`` or ``points``, never the dense masks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

IGNORE_INDEX = 255
IMAGE = "image"
CLASS_KEYS = ("label", "parity", "magnitude")
"""Per-image class indices: an int in a raw sample, int64 ``[B]`` in a batch."""
LABEL_KEYS = ("depth", "normals", "segmentation", "contours", *CLASS_KEYS)
"""Keys that carry supervision; an unlabelled sample holds none of them."""
WEAK_LABEL_KEYS = ("tags", "points")
"""Keys of weak supervision (image-level tags, point clicks): what a weakly labelled target sample adds."""
DENSE_TARGETS = ("depth", "normals", "segmentation")
"""The dense targets that evaluation can score at their native resolution."""
NATIVE_PREFIX = "native/"


def native_key(task: str) -> str:
    """The key of ``task``'s target at its native resolution, e.g. ``native/depth``."""
    return NATIVE_PREFIX + task


def native_task(key: str) -> str | None:
    """The task of a native-resolution key (``native/depth`` -> ``depth``), ``None`` for any other key."""
    return key[len(NATIVE_PREFIX) :] if key.startswith(NATIVE_PREFIX) else None


def to_tensor_sample(sample: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Convert a raw (NumPy, channels-last) sample into the batch conventions above (channels-first tensors)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sample.items():
        task = native_task(key)
        if task in DENSE_TARGETS:
            out[key] = to_tensor_sample({task: value})[task]
        elif key in (IMAGE, "normals"):
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
            known = [IMAGE, *LABEL_KEYS, *WEAK_LABEL_KEYS, "edges", *map(native_key, DENSE_TARGETS)]
            raise KeyError(
                f"Unknown sample key {key!r}. Known keys: {known} (see umadapt.samples for the conventions)."
            )
    return out


def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``default_collate``, except that native-resolution targets (:func:`native_key`) of different sizes (GTA5's
    frames vary) are kept as a list of per-sample tensors instead of failing to stack."""
    native = [k for k in samples[0] if native_task(k) is not None]
    if not native:
        return default_collate(samples)
    batch = default_collate([{k: v for k, v in s.items() if k not in native} for s in samples])
    for key in native:
        values = [s[key] for s in samples]
        same = all(v.shape == values[0].shape for v in values)
        batch[key] = default_collate(values) if same else values
    return batch


def images_only(sample: Mapping[str, Any]) -> dict[str, Any]:
    """Drop every supervision key, keeping the image: what an unlabelled target sample looks like."""
    return {IMAGE: sample[IMAGE]}
