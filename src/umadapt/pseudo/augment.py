"""Strong photometric augmentation of the student's target images (the "noisy student" side of self-training;
DAFormer's colour jitter and Gaussian blur, Hoyer et al. 2022, after DACS). Photometric only: the pixels stay where
they are, so the teacher's pseudo-labels of the unchanged image remain aligned. Random draws come from torch's
generator (seeded by ``seed_everything``), one set per image."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from umadapt.errors import ConfigError

__all__ = ["PhotometricAugmentation"]

_GRAY = torch.tensor([0.299, 0.587, 0.114])


class PhotometricAugmentation(nn.Module):
    """Per image, with probability ``probability``: brightness, contrast and saturation factors drawn uniformly from
    ``[1 - s, 1 + s]`` (applied in that order, then clamped to [0, 1]); then, with probability ``blur``, a Gaussian
    blur with a sigma drawn from ``[0.1, sigma]``; then Gaussian noise of standard deviation ``noise``. Images are
    ``[B, 3, H, W]`` in [0, 1]. Identity in eval mode."""

    def __init__(
        self,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        probability: float = 0.8,
        blur: float = 0.5,
        sigma: float = 1.0,
        noise: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in dict(brightness=brightness, contrast=contrast, saturation=saturation).items():
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"strong_augmentation.{name} must be in [0, 1), got {value}.")
        for name, value in dict(probability=probability, blur=blur).items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"strong_augmentation.{name} is a probability in [0, 1], got {value}.")
        if sigma < 0.1 or noise < 0:
            raise ConfigError(f"strong_augmentation: sigma must be >= 0.1 and noise >= 0, got {sigma} and {noise}.")
        self.brightness, self.contrast, self.saturation = float(brightness), float(contrast), float(saturation)
        self.probability, self.blur, self.sigma, self.noise = (
            float(probability),
            float(blur),
            float(sigma),
            float(noise),
        )

    def _factors(self, count: int, spread: float, device: torch.device) -> Tensor:
        return (1.0 + (torch.rand(count, 1, 1, 1) * 2.0 - 1.0) * spread).to(device)

    def forward(self, images: Tensor) -> Tensor:
        if not self.training:
            return images
        count, device = images.shape[0], images.device
        apply = (torch.rand(count, 1, 1, 1) < self.probability).to(device)
        gray_weights = _GRAY.to(device=device, dtype=images.dtype).view(1, 3, 1, 1)
        out = images * self._factors(count, self.brightness, device)
        mean = (out * gray_weights).sum(dim=1, keepdim=True).mean(dim=(2, 3), keepdim=True)
        out = (out - mean) * self._factors(count, self.contrast, device) + mean
        gray = (out * gray_weights).sum(dim=1, keepdim=True)
        out = ((out - gray) * self._factors(count, self.saturation, device) + gray).clamp(0.0, 1.0)
        out = torch.where(apply, out, images)
        if self.blur > 0:
            blurred = (torch.rand(count) < self.blur).tolist()
            sigmas = (0.1 + torch.rand(count) * (self.sigma - 0.1)).tolist()
            out = torch.stack([_gaussian_blur(x, s) if b else x for x, b, s in zip(out, blurred, sigmas)])
        if self.noise > 0:
            out = (out + torch.randn(out.shape).to(device) * self.noise).clamp(0.0, 1.0)
        return out


def _gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """``image [C, H, W]`` blurred by a separable Gaussian of ``sigma`` (kernel radius ``ceil(2 sigma)``, reflect
    padding)."""
    radius = max(1, min(int(2.0 * sigma + 0.999), min(image.shape[-2:]) - 1))  # reflect padding needs radius < size
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = image.shape[0]
    x = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return x[0]
