"""A trained translator as a plain function of images: read from a :class:`~umadapt.methods.CyCADATranslator`
checkpoint (``weights_only=True``) and applied to whole datasets in batches, without gradients, in float32."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umadapt.checkpoints import load_partial_state, read_checkpoint
from umadapt.errors import ConfigError
from umadapt.pixel.networks import ResnetGenerator

__all__ = ["DIRECTIONS", "TRANSLATOR_KEY", "Translator", "load_translator"]

DIRECTIONS = ("source_to_target", "target_to_source")
TRANSLATOR_KEY = "umadapt_translator"
"""The checkpoint entry a translator run writes: ``{generator: ResnetGenerator kwargs, image_size: [H, W]}``."""


class Translator:
    """One direction of a trained translator: ``translator(images)`` maps ``[N, 3, H, W]`` in ``[0, 1]`` to the
    other domain's look, and :meth:`translate_arrays` does so for channels-last NumPy images in batches."""

    def __init__(
        self, generator: ResnetGenerator, image_size: tuple[int, int] | None, path: str, direction: str
    ) -> None:
        self.generator = generator.eval().requires_grad_(False)
        self.image_size = image_size
        self.path = path
        self.direction = direction

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.autocast(images.device.type, enabled=False):
            return self.generator(images.float()).clamp_(0.0, 1.0)

    def translate_arrays(self, images: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """``[N, H, W, 3]`` float32 translations of raw images (``[H, W, 3]`` float32 in ``[0, 1]``)."""
        out = []
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.stack(images[start : start + batch_size])).permute(0, 3, 1, 2)
            out.append(self(batch.float()).permute(0, 2, 3, 1).numpy())
        return np.concatenate(out).astype(np.float32, copy=False)

    def check_image_size(self, image_size: Sequence[int], where: str) -> None:
        """Refuse images of another size than the translator was trained on (when it was told), naming both sizes."""
        if self.image_size is not None and tuple(image_size) != self.image_size:
            raise ConfigError(
                f"The translator {self.path!r} was trained on {self.image_size[0]}x{self.image_size[1]} images, but "
                f"{where} has {image_size[0]}x{image_size[1]}: translate between domains of the size it was trained "
                "on (set the same image_size), or train a translator at this size."
            )


def load_translator(path: str | Path, direction: str = "source_to_target", what: str = "translator") -> Translator:
    """The ``direction`` generator (:data:`DIRECTIONS`) of the translator checkpoint ``path``; ``what`` names the
    config key in errors."""
    if direction not in DIRECTIONS:
        raise ConfigError(f"Unknown translation direction {direction!r}; valid: {list(DIRECTIONS)}.")
    checkpoint = read_checkpoint(path, what)
    spec: Any = checkpoint.get(TRANSLATOR_KEY)
    if not isinstance(spec, dict) or "generator" not in spec:
        method = (checkpoint.get("umadapt") or {}).get("method", "unknown")
        raise ConfigError(
            f"{what} {str(path)!r} is not an image translator (its method: {method}): pass the last.ckpt of a "
            "umadapt.methods.CyCADATranslator run (e.g. experiments/digits/cycada_translator.yaml)."
        )
    generator = ResnetGenerator(**dict(spec["generator"]))
    load_partial_state(
        generator, path, [""], what=what, source_prefix=f"generators.{direction}.", checkpoint=checkpoint
    )
    image_size = spec.get("image_size")
    image_size = (int(image_size[0]), int(image_size[1])) if image_size else None
    return Translator(generator, image_size, str(path), direction)
