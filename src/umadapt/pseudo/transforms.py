"""Test-time transforms of multi-transform inference (data distillation, Radosavovic et al., CVPR 2018, Sec. 3):
each one changes an image batch and maps a prediction made on the changed images back to the original frame.

Transforms are named in YAML by a string:

=============  ======================================================================================================
``identity``   the image as served.
``hflip``      horizontal flip. Mapped back by flipping again; normals also get ``n_x`` negated (the camera-frame
               convention of :mod:`umadapt.samples`); depth and classes are unchanged by a flip.
``scale:S``    the whole image resampled to ``S`` times its resolution (bilinear; each side rounded to a multiple of
               the encoder's output stride). The field of view is unchanged, so depth (metres), normals and classes
               are the same functions of the scene: predictions are resampled back to the original size (bilinear,
               normals renormalised) and **depth is not rescaled**.
``zoom:S``     the central ``1/S`` of the image, enlarged to the full size: objects look ``S`` times larger. A
               per-image label is unchanged, but a dense prediction covers only the centre (the border has no
               prediction) and depth would change with apparent size, so dense tasks refuse it at construction.
=============  ======================================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from umadapt.errors import ConfigError
from umadapt.ops import normalize_channels

__all__ = ["HFlip", "Identity", "Scale", "ViewTransform", "Zoom", "hflip_back", "parse_transforms"]

DENSE_TASKS = ("depth", "normals", "segmentation")


def hflip_back(task: str, prediction: Tensor) -> Tensor:
    """A prediction made on the horizontally flipped image, in the original frame: dense maps ``[N,C,H,W]`` flipped
    along the width, normals with ``n_x`` negated (``0 - x``, so zero stays +0); per-image ``label [N, C]``
    unchanged."""
    if task not in DENSE_TASKS:
        return prediction
    out = prediction.flip(-1)
    if task == "normals":
        out = torch.cat([0.0 - out[:, :1], out[:, 1:]], dim=1)
    return out


def _resize(task: str, prediction: Tensor, size: tuple[int, int]) -> Tensor:
    """A dense prediction resampled to ``size`` (bilinear; normals renormalised; depth values unchanged)."""
    if tuple(prediction.shape[-2:]) == tuple(size):
        return prediction
    out = F.interpolate(prediction, size=size, mode="bilinear", align_corners=False)
    return normalize_channels(out, eps=1e-6) if task == "normals" else out


class ViewTransform:
    """One test-time transform: :meth:`apply` to the images, :meth:`invert` a prediction of the changed images."""

    name: str = ""

    def check_task(self, task: str) -> None:
        """Raise a :class:`ConfigError` naming the transform and the task if predictions of ``task`` cannot be mapped
        back exactly."""

    def apply(self, images: Tensor, multiple: int = 1) -> Tensor:
        raise NotImplementedError

    def invert(self, task: str, prediction: Tensor, size: tuple[int, int]) -> Tensor:
        """``prediction`` (activated: probabilities, metres, unit normals) of the changed images, in the frame of the
        original images of spatial ``size``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class Identity(ViewTransform):
    name = "identity"

    def apply(self, images: Tensor, multiple: int = 1) -> Tensor:
        return images

    def invert(self, task: str, prediction: Tensor, size: tuple[int, int]) -> Tensor:
        return prediction


class HFlip(ViewTransform):
    name = "hflip"

    def apply(self, images: Tensor, multiple: int = 1) -> Tensor:
        return images.flip(-1)

    def invert(self, task: str, prediction: Tensor, size: tuple[int, int]) -> Tensor:
        return hflip_back(task, prediction)


class Scale(ViewTransform):
    """Resample the whole image to ``factor`` times its resolution (same field of view)."""

    def __init__(self, factor: float) -> None:
        if not factor > 0:
            raise ConfigError(f"Transform scale:{factor}: the factor must be > 0, e.g. scale:0.5 or scale:1.5.")
        self.factor = float(factor)
        self.name = f"scale:{factor:g}"

    def size(self, size: Sequence[int], multiple: int = 1) -> tuple[int, int]:
        """The resampled ``(H, W)``: ``factor`` times ``size``, each side rounded to a multiple of ``multiple``."""
        return tuple(max(multiple, round(s * self.factor / multiple) * multiple) for s in size)  # type: ignore[return-value]

    def apply(self, images: Tensor, multiple: int = 1) -> Tensor:
        size = self.size(images.shape[-2:], multiple)
        if size == tuple(images.shape[-2:]):
            return images
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=self.factor < 1)

    def invert(self, task: str, prediction: Tensor, size: tuple[int, int]) -> Tensor:
        return _resize(task, prediction, size) if task in DENSE_TASKS else prediction


class Zoom(ViewTransform):
    """Crop the central ``1/factor`` of the image and enlarge it to the full size (per-image tasks only)."""

    def __init__(self, factor: float) -> None:
        if not factor >= 1:
            raise ConfigError(f"Transform zoom:{factor}: the factor must be >= 1 (zoom in), e.g. zoom:1.2.")
        self.factor = float(factor)
        self.name = f"zoom:{factor:g}"

    def check_task(self, task: str) -> None:
        if task in DENSE_TASKS:
            raise ConfigError(
                f"Transform {self.name} cannot be inverted for the dense task {task!r}: a crop leaves the border "
                "without prediction and changes apparent depth. Use identity, hflip or scale:S for dense tasks."
            )

    def apply(self, images: Tensor, multiple: int = 1) -> Tensor:
        height, width = images.shape[-2:]
        crop_h, crop_w = max(1, math.ceil(height / self.factor)), max(1, math.ceil(width / self.factor))
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        crop = images[..., top : top + crop_h, left : left + crop_w]
        return F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False)

    def invert(self, task: str, prediction: Tensor, size: tuple[int, int]) -> Tensor:
        self.check_task(task)
        return prediction


def _parse_one(spec: str) -> ViewTransform:
    name, _, argument = str(spec).partition(":")
    if name in ("identity", "hflip"):
        if argument:
            raise ConfigError(f"Transform {spec!r}: {name} takes no argument; write {name!r}.")
        return Identity() if name == "identity" else HFlip()
    if name in ("scale", "zoom"):
        try:
            factor = float(argument)
        except ValueError:
            raise ConfigError(f"Transform {spec!r} needs a number after the colon, e.g. {name}:1.5.") from None
        return Scale(factor) if name == "scale" else Zoom(factor)
    raise ConfigError(f"Unknown transform {spec!r}; valid: identity, hflip, scale:S, zoom:S (e.g. scale:1.5).")


def parse_transforms(specs: Sequence[str], tasks: Sequence[str]) -> list[ViewTransform]:
    """The transforms named by ``specs``, each checked against every task (a transform that cannot be inverted for
    a task is refused here, at construction); at least one, without duplicates."""
    if isinstance(specs, str) or not specs:
        raise ConfigError(f"The transforms must be a non-empty list such as [identity, hflip], got {specs!r}.")
    transforms = [_parse_one(spec) for spec in specs]
    names = [t.name for t in transforms]
    if len(set(names)) != len(names):
        raise ConfigError(f"The transforms {names} name one transform twice; list each once.")
    for transform in transforms:
        for task in tasks:
            transform.check_task(task)
    return transforms
