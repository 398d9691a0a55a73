"""Joint, geometry-consistent augmentation of raw samples, referenced by preset name from YAML.

:func:`build_augmentation` returns a picklable callable that maps a *raw sample* (see :mod:`umadapt.samples`:
NumPy, channels last) to an augmented raw sample with the same keys, dtypes and conventions. Every geometric
transform is applied identically to the image and to every target present; photometric transforms touch the image
only. A sample may hold any subset of the target keys (an unlabelled sample holds only ``image``).

=============  ====================================================================================================
preset         what it does
=============  ====================================================================================================
``none``       identity (a shallow copy of the dict; only resizes when ``image_size`` differs from the input)
``hflip``      horizontal flip with p=0.5
``light``      ``hflip`` + mild colour jitter (brightness/contrast/saturation 0.15, hue 0.02, p=0.5), image only
``standard``   ``hflip`` + random resized crop (area 0.6-1.0 of the input, aspect ratio of the output, so no
               distortion) back to the output size + colour jitter (0.3/0.3/0.3/0.05, p=0.8) + a little Gaussian
               noise (std 0.01-0.03, p=0.5), photometric parts on the image only
``strong``     ``hflip`` + random scale (0.7-1.3, isotropic) and translation (+-10 %) that may leave a padded
               border + stronger colour jitter (0.4/0.4/0.4/0.08, p=0.8) + Gaussian noise (std 0.01-0.05, p=0.5)
=============  ====================================================================================================

Geometry rules (all presets):

* a horizontal flip flips every array left-right **and negates the x component of the normals** (camera frame:
  x right, y down, z forward);
* depth, normals, segmentation and contours are resampled with **nearest** interpolation, so output values are
  always input values (depths and labels are never blended); normals are renormalized afterwards and all-zero
  (invalid) normals stay zero;
* padded pixels (``strong``) get depth ``0`` (invalid), segmentation :data:`~umadapt.samples.IGNORE_INDEX`,
  normals ``0`` and contours ``0``, so they never count as ground truth; the image is padded with ``0``;
* the image stays float32 in ``[0, 1]``; depth/normals/contours stay float32, segmentation and the sparse
  ``points`` map int64 (255 preserved; a point a crop cuts away is gone), the per-image class keys
  (:data:`~umadapt.samples.CLASS_KEYS`: ``label``, ``parity``, ``magnitude``) and ``tags`` pass through untouched
  (a crop may cut away a tagged class: image-level tags describe the whole image, as a human gave them).

The output size is ``image_size`` (``(height, width)``) when given, else each sample's own size.

Implementation: the targets are packed into one float32 multi-channel albumentations ``mask`` (segmentation is
encoded as ``label + 1`` with ignore -> ``0``, so a single mask fill value of ``0`` is correct for every target and
labels below 2**24 survive exactly). The flip is done here (not by albumentations) so the normals can be fixed up.

Determinism: ``build_augmentation(..., seed=s)`` draws every random decision from one generator seeded by ``s``
(``seed=None``: fresh OS entropy). Inside a PyTorch DataLoader worker the generator is re-seeded once per worker
from ``(torch worker seed, s)``, so workers do not repeat each other's augmentations, and runs are reproducible when
the main process is seeded (e.g. ``lightning.seed_everything``). :meth:`Augmentation.reseed` re-seeds explicitly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import albumentations as A
import cv2
import numpy as np
from torch.utils.data import get_worker_info

from umadapt.samples import CLASS_KEYS, IGNORE_INDEX, IMAGE

__all__ = ["AUGMENTATION_PRESETS", "Augmentation", "build_augmentation"]

# Target key -> number of channels in the packed mask. The order is the packing order.
_TARGET_CHANNELS = {"depth": 1, "normals": 3, "segmentation": 1, "contours": 1, "points": 1}
_LABEL_MAPS = ("segmentation", "points")  # class-index maps: packed as label + 1, ignore -> 0
_PASSTHROUGH_KEYS = (*CLASS_KEYS, "tags")
_KNOWN_KEYS = (IMAGE, *_TARGET_CHANNELS, *_PASSTHROUGH_KEYS)


def _no_photometric() -> list:
    return []


@dataclass(frozen=True)
class _Preset:
    flip_p: float = 0.0
    geometry: str = "none"  # "none" | "resized_crop" | "affine"
    photometric: Callable[[], list] = _no_photometric


def _light_photometric() -> list:
    return [A.ColorJitter(brightness=0.15, contrast=0.15, saturation=0.15, hue=0.02, p=0.5)]


def _standard_photometric() -> list:
    return [
        A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, p=0.8),
        A.GaussNoise(std_range=(0.01, 0.03), p=0.5),
    ]


def _strong_photometric() -> list:
    return [
        A.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.08, p=0.8),
        A.GaussNoise(std_range=(0.01, 0.05), p=0.5),
    ]


_PRESETS: dict[str, _Preset] = {
    "none": _Preset(),
    "hflip": _Preset(flip_p=0.5),
    "light": _Preset(flip_p=0.5, photometric=_light_photometric),
    "standard": _Preset(flip_p=0.5, geometry="resized_crop", photometric=_standard_photometric),
    "strong": _Preset(flip_p=0.5, geometry="affine", photometric=_strong_photometric),
}

AUGMENTATION_PRESETS: tuple[str, ...] = tuple(_PRESETS)
"""Names accepted by :func:`build_augmentation`."""


def _encode_segmentation(seg: np.ndarray) -> np.ndarray:
    seg = np.asarray(seg)
    return np.where(seg == IGNORE_INDEX, 0, seg.astype(np.int64) + 1).astype(np.float32)


def _decode_segmentation(enc: np.ndarray) -> np.ndarray:
    labels = np.rint(enc).astype(np.int64) - 1
    labels[labels < 0] = IGNORE_INDEX
    return labels


def _renormalize(normals: np.ndarray) -> np.ndarray:
    """Unit-length normals; (near-)zero vectors become exactly zero. Already-unit vectors are left bit-identical."""
    normals = np.array(normals, dtype=np.float32)  # copy
    norm = np.linalg.norm(normals, axis=-1)
    invalid = norm <= 1e-6
    fix = ~invalid & (np.abs(norm - 1.0) > 1e-5)
    normals[fix] /= norm[fix][:, None]
    normals[invalid] = 0.0
    return normals


class Augmentation:
    """A named augmentation preset as a picklable callable ``raw sample -> augmented raw sample``.

    Build it with :func:`build_augmentation`. See the module docstring for the presets and the conventions.
    """

    def __init__(self, name: str, image_size: tuple[int, int] | None = None, seed: int | None = None):
        if name not in _PRESETS:
            raise ValueError(f"Unknown augmentation preset {name!r}. Valid presets: {list(AUGMENTATION_PRESETS)}.")
        if image_size is not None:
            image_size = (int(image_size[0]), int(image_size[1]))
            if min(image_size) <= 0:
                raise ValueError(f"image_size must be a positive (height, width), got {image_size}.")
        self.name = name
        self.image_size = image_size
        self.seed = seed
        self._composes: dict[tuple[int, int], A.Compose | None] = {}
        self._worker_seed: int | None = None
        self.reseed(seed)

    @property
    def _preset(self) -> _Preset:
        return _PRESETS[self.name]

    # ------------------------------------------------------------------ seeding
    def reseed(self, seed: int | None) -> None:
        """Re-seed the random generator (``None``: fresh OS entropy). Does not change :attr:`seed`."""
        entropy = None if seed is None else int(seed) % 2**64
        self._set_seed_sequence(np.random.SeedSequence(entropy))

    def _set_seed_sequence(self, seq: np.random.SeedSequence) -> None:
        np_seq, py_seq = seq.spawn(2)
        self._rng = np.random.default_rng(np_seq)
        self._py_random = random.Random(int(py_seq.generate_state(1, np.uint64)[0]))
        for compose in self._composes.values():
            if compose is not None:
                compose.set_random_state(self._rng, self._py_random)

    def _maybe_reseed_for_worker(self) -> None:
        info = get_worker_info()
        if info is None or info.seed == self._worker_seed:
            return
        self._worker_seed = info.seed
        entropy = [int(info.seed) % 2**64] + ([] if self.seed is None else [int(self.seed) % 2**64])
        self._set_seed_sequence(np.random.SeedSequence(entropy))

    # ------------------------------------------------------------------ pipeline
    def _compose_for(self, in_hw: tuple[int, int]) -> A.Compose | None:
        if in_hw in self._composes:
            return self._composes[in_hw]
        out_h, out_w = self.image_size or in_hw
        transforms: list = []
        geometry = self._preset.geometry
        if geometry == "resized_crop":
            ratio = out_w / out_h
            transforms.append(
                A.RandomResizedCrop(
                    size=(out_h, out_w),
                    scale=(0.6, 1.0),
                    ratio=(ratio, ratio),
                    interpolation=cv2.INTER_LINEAR,
                    mask_interpolation=cv2.INTER_NEAREST,
                    p=1.0,
                )
            )
        else:
            if (out_h, out_w) != in_hw:
                transforms.append(
                    A.Resize(out_h, out_w, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST)
                )
            if geometry == "affine":
                transforms.append(
                    A.Affine(
                        scale=(0.7, 1.3),
                        keep_ratio=True,
                        translate_percent=(-0.1, 0.1),
                        rotate=0.0,  # an in-plane rotation would also have to rotate the normals
                        interpolation=cv2.INTER_LINEAR,
                        mask_interpolation=cv2.INTER_NEAREST,
                        border_mode=cv2.BORDER_CONSTANT,
                        fill=0.0,
                        fill_mask=0.0,  # packed-mask 0 = depth invalid, ignore label, zero normal, no contour
                        p=0.8,
                    )
                )
        transforms.extend(self._preset.photometric())
        compose = None
        if transforms:
            compose = A.Compose(transforms, p=1.0)
            compose.set_random_state(self._rng, self._py_random)
        self._composes[in_hw] = compose
        return compose

    def __call__(self, sample: Mapping[str, Any], seed: int | None = None) -> dict[str, Any]:
        """Augment ``sample``; with ``seed``, every random decision is a pure function of it (used by the paired
        data module to make augmentation a function of ``(run seed, epoch, index)``, so resumed runs replay it)."""
        unknown = [key for key in sample if key not in _KNOWN_KEYS]
        if unknown:
            raise KeyError(f"Cannot augment unknown sample keys {unknown}; known keys: {list(_KNOWN_KEYS)}.")
        if IMAGE not in sample:
            raise KeyError(f"A raw sample must hold {IMAGE!r}; got keys {list(sample)}.")
        image = np.asarray(sample[IMAGE])
        in_hw = (int(image.shape[0]), int(image.shape[1]))
        preset = self._preset
        if preset.flip_p == 0.0 and preset.geometry == "none" and not self._composes_needed(in_hw):
            return dict(sample)  # identity: cheap
        if seed is None:
            self._maybe_reseed_for_worker()
        else:
            self.reseed(seed)

        # Pack the targets into one float32 mask [H, W, C].
        layout: list[tuple[str, int, int]] = []
        channels: list[np.ndarray] = []
        start = 0
        for key, n in _TARGET_CHANNELS.items():
            if key not in sample:
                continue
            value = np.asarray(sample[key])
            if value.shape[:2] != image.shape[:2]:
                raise ValueError(f"{key!r} has shape {value.shape}, but the image has {image.shape}.")
            if key in _LABEL_MAPS:
                value = _encode_segmentation(value)
            value = value.astype(np.float32, copy=False).reshape(in_hw[0], in_hw[1], n)
            channels.append(value)
            layout.append((key, start, n))
            start += n
        mask = np.concatenate(channels, axis=-1) if channels else None
        image = image.astype(np.float32, copy=False)

        # Horizontal flip (done here so that n_x can be negated).
        if preset.flip_p > 0.0 and self._rng.random() < preset.flip_p:
            image = image[:, ::-1]
            if mask is not None:
                mask = mask[:, ::-1].copy()
                for key, s, _ in layout:
                    if key == "normals":
                        mask[..., s] = 0.0 - mask[..., s]  # 0.0 - 0.0 keeps invalid normals +0
        image = np.ascontiguousarray(image)

        compose = self._compose_for(in_hw)
        if compose is not None:
            data = {"image": image} if mask is None else {"image": image, "mask": np.ascontiguousarray(mask)}
            data = compose(**data)
            image, mask = data["image"], data.get("mask")

        out: dict[str, Any] = {IMAGE: np.ascontiguousarray(np.clip(image, 0.0, 1.0), dtype=np.float32)}
        for key, s, n in layout:
            assert mask is not None
            value = mask[..., s : s + n]
            if key == "normals":
                value = _renormalize(value)
            elif key in _LABEL_MAPS:
                value = _decode_segmentation(value[..., 0])
            else:
                value = value[..., 0].astype(np.float32)
            out[key] = np.ascontiguousarray(value)
        for key in _PASSTHROUGH_KEYS:
            if key in sample:
                out[key] = sample[key]
        return {key: out[key] for key in sample}  # keep the input's key order

    def _composes_needed(self, in_hw: tuple[int, int]) -> bool:
        return self._compose_for(in_hw) is not None

    # ------------------------------------------------------------------ misc
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_composes"] = {}  # rebuilt lazily, bound to the (unpickled) generators
        return state

    def __repr__(self) -> str:
        return f"Augmentation(name={self.name!r}, image_size={self.image_size}, seed={self.seed})"


def build_augmentation(
    name: str, image_size: tuple[int, int] | None = None, seed: int | None = None
) -> Callable[[dict], dict]:
    """The augmentation preset ``name`` (one of :data:`AUGMENTATION_PRESETS`) as a picklable callable.

    Args:
        name: preset name (see the module docstring table).
        image_size: output ``(height, width)``; ``None`` keeps each sample's own size.
        seed: seed of the augmentation's random generator; ``None`` draws fresh OS entropy. In DataLoader workers the
            generator is re-seeded per worker from the torch worker seed (and ``seed``).

    Raises:
        ValueError: ``name`` is not a known preset (the message lists the valid names).
    """
    return Augmentation(name, image_size=image_size, seed=seed)
