"""The small-image networks of DANN's digit experiments (Ganin et al., JMLR 2016, Sec. 5.2.1 and Fig. 4).

:class:`DigitEncoder` is the feature extractor of the paper's MNIST -> MNIST-M model: conv 5x5 (32) -> ReLU ->
max-pool 2x2 -> conv 5x5 (48) -> ReLU -> max-pool 2x2. The convolutions here are padded ("same"), so the features
have exact strides 2 and 4 (the paper's unpadded 28x28 version ends at 4x4; a padded 32x32 input ends at 8x8).

:class:`MLPClassificationHead` is the paper's label predictor: the feature map is average-pooled to a fixed grid
(``pool_size=4`` gives the paper's 48 x 4 x 4 = 768 features) and goes through fully connected layers
100 -> 100 -> classes with ReLU.

Both follow the interfaces of :mod:`umadapt.nn.encoders` and :mod:`umadapt.nn.decoders`: the encoder returns a list
of features (finest first) and has ``out_channels``, ``reductions``, ``output_stride`` and ``check_input_size``; the
head takes ``(in_channels, out_channels, ...)`` and is called ``head(features, size)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DigitEncoder", "MLPClassificationHead"]


class DigitEncoder(nn.Module):
    """DANN's MNIST feature extractor, returning the output of both conv-pool stages (finest first).

    Args:
        in_channels: channels of the input image.
        channels: output channels of the two convolutions (the paper: 32, 48).
        kernel_size: odd size of both convolutions (the paper: 5).
        batch_norm: add BatchNorm after each convolution (not in the paper; much faster training from scratch).
        dropout: channel dropout (``Dropout2d``) after the second convolution, a common regulariser of this
            network in DANN reimplementations; 0 = none.

    Attributes:
        out_channels: ``list(channels)``.
        reductions: ``[2, 4]``.
        output_stride: 4; input sides must be multiples of it (:meth:`check_input_size`).
    """

    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] = (32, 48),
        kernel_size: int = 5,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"DigitEncoder: dropout must be in [0, 1), got {dropout}.")
        if len(channels) != 2 or min(channels) < 1 or in_channels < 1:
            raise ValueError(
                f"DigitEncoder: need in_channels >= 1 and two positive channels, got {in_channels}, {channels}."
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"DigitEncoder: kernel_size must be a positive odd int, got {kernel_size}.")
        stages = []
        width = in_channels
        for i, c in enumerate(channels):
            layers: list[nn.Module] = [nn.Conv2d(width, c, kernel_size, padding=kernel_size // 2, bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(c))
            if dropout and i == len(channels) - 1:
                layers.append(nn.Dropout2d(dropout))
            layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            stages.append(nn.Sequential(*layers))
            width = c
        self.stages = nn.ModuleList(stages)
        self.out_channels: list[int] = channels
        self.reductions: list[int] = [2, 4]
        self.output_stride: int = 4

    def forward(self, x: Tensor) -> list[Tensor]:
        """``[F1, F2]`` with shapes ``[B, channels[0], H/2, W/2]`` and ``[B, channels[1], H/4, W/4]``."""
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def check_input_size(self, image_size: Sequence[int]) -> None:
        """Raise :class:`ValueError` unless both sides of ``image_size`` are multiples of :attr:`output_stride`."""
        height, width = (int(v) for v in image_size)
        if height % self.output_stride or width % self.output_stride:
            raise ValueError(
                f"image size {height}x{width} is not divisible by the DigitEncoder's output stride "
                f"{self.output_stride}; use a multiple of {self.output_stride} (e.g. 28x28 or 32x32)."
            )


class MLPClassificationHead(nn.Module):
    """Image-level logits: pool one feature to a ``pool_size x pool_size`` grid, flatten, fully connected layers.

    Args:
        in_channels: channels of the encoder's features, finest first.
        out_channels: number of classes.
        hidden: widths of the hidden Linear-ReLU layers (the paper: ``[100, 100]``).
        pool_size: average-pool the feature to this grid before flattening (1 = global average pool).
        feature_index: which feature to use (default the last, coarsest one).
        dropout: dropout after each hidden layer; 0 = none.
    """

    def __init__(
        self,
        in_channels: list[int],
        out_channels: int,
        hidden: list[int] | None = None,
        pool_size: int = 4,
        feature_index: int = -1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in in_channels]
        if not channels or min(channels) < 1 or out_channels < 1 or pool_size < 1 or not 0.0 <= dropout < 1.0:
            raise ValueError(
                "MLPClassificationHead: need positive in_channels, out_channels >= 1, pool_size >= 1, "
                f"0 <= dropout < 1; got {list(in_channels)}, {out_channels}, {pool_size}, {dropout}."
            )
        if not -len(channels) <= feature_index < len(channels):
            raise ValueError(f"MLPClassificationHead: feature_index {feature_index} is out of range for {channels}.")
        self.out_channels = int(out_channels)
        self.pool_size = int(pool_size)
        self.feature_index = int(feature_index)
        width = channels[feature_index] * self.pool_size**2
        layers: list[nn.Module] = []
        for h in [100, 100] if hidden is None else hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = int(h)
        layers.append(nn.Linear(width, self.out_channels))
        self.classifier = nn.Sequential(*layers)

    def forward(self, features: Sequence[Tensor], size: Sequence[int] | None = None) -> Tensor:
        """Logits ``[B, out_channels]``; ``size`` is accepted and ignored, like every head's."""
        pooled = F.adaptive_avg_pool2d(features[self.feature_index], self.pool_size)
        return self.classifier(torch.flatten(pooled, 1))
