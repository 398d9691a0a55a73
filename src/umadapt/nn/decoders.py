"""Task heads that sit on the multi-scale features of an encoder (e.g. :class:`umadapt.nn.ResNetEncoder`).

Every head takes ``(in_channels, out_channels, ...)`` as its first two constructor parameters, in that order, so the
model can build one per task through a factory ``head_factory(encoder.out_channels, task_out_channels)``; and every
head is called the same way, ``head(features, size)``, where ``features`` is the encoder's list (finest first) and
``size`` the ``(H, W)`` of the input image. Outputs are raw (pre-activation): logits, or unnormalised regressions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ClassificationHead", "DenseDecoder"]


def _conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)
    )


def _check_in_channels(in_channels: Sequence[int], cls: str) -> list[int]:
    channels = [int(c) for c in in_channels]
    if not channels or any(c < 1 for c in channels):
        raise ValueError(f"{cls}: in_channels must be a non-empty list of positive ints, got {list(in_channels)!r}.")
    return channels


class DenseDecoder(nn.Module):
    """An FPN / U-Net-style decoder producing a dense ``[B, out_channels, H, W]`` map.

    Every feature goes through a lateral 1x1 convolution to ``hidden`` channels; starting from the coarsest, the
    running map is bilinearly upsampled to the next finer feature's size, added to its lateral, and refined by a
    3x3 conv-BN-ReLU. A final 3x3 conv-BN-ReLU and a 1x1 convolution predict ``out_channels`` at the finest
    feature's resolution, which is bilinearly upsampled to the requested size.

    Args:
        in_channels: channels of the encoder's features, finest first (``encoder.out_channels``).
        out_channels: channels of the output (e.g. number of classes, 1 for depth, 3 for normals).
        hidden: channels of the decoder's internal maps.
        reductions: optional strides of the features (``encoder.reductions``); only used to infer the output size
            when :meth:`forward` gets ``size=None`` (then ``finest feature size * reductions[0]``).
    """

    def __init__(
        self,
        in_channels: list[int],
        out_channels: int,
        hidden: int = 64,
        reductions: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = _check_in_channels(in_channels, type(self).__name__)
        if out_channels < 1 or hidden < 1:
            raise ValueError(f"DenseDecoder: out_channels and hidden must be positive, got {out_channels}, {hidden}.")
        if reductions is not None and len(reductions) != len(self.in_channels):
            raise ValueError(
                f"DenseDecoder: reductions {list(reductions)} must have one entry per feature "
                f"({len(self.in_channels)})."
            )
        self.out_channels = int(out_channels)
        self.hidden = int(hidden)
        self.reductions = None if reductions is None else [int(r) for r in reductions]

        self.lateral = nn.ModuleList(nn.Conv2d(c, hidden, kernel_size=1) for c in self.in_channels)
        # One merge conv per top-down step (len(features) - 1 of them), indexed by the finer level it produces.
        self.merge = nn.ModuleList(_conv_bn_relu(hidden, hidden) for _ in self.in_channels[:-1])
        self.head = nn.Sequential(_conv_bn_relu(hidden, hidden), nn.Conv2d(hidden, out_channels, kernel_size=1))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # The prediction layer: small weights so the initial output is near zero for every task.
        last = self.head[-1]
        nn.init.normal_(last.weight, std=0.01)
        nn.init.zeros_(last.bias)

    def forward_features(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """The decoder's last features ``[B, hidden, h, w]`` (the input of the final 1x1 classifier) and its raw
        outputs ``[B, out_channels, h, w]`` at the finest feature's resolution, before upsampling; e.g. for
        attention pooling of features by class (weak-label adaptation, Paul et al. 2020)."""
        if len(features) != len(self.lateral):
            raise ValueError(f"DenseDecoder expects {len(self.lateral)} features, got {len(features)}.")
        x = self.lateral[-1](features[-1])
        for i in range(len(features) - 2, -1, -1):
            lateral = self.lateral[i](features[i])
            x = F.interpolate(x, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            x = self.merge[i](x + lateral)
        hidden = self.head[0](x)
        return hidden, self.head[1](hidden)

    def forward(self, features: Sequence[Tensor], size: Sequence[int] | None = None) -> Tensor:
        """Decode ``features`` (finest first) into raw ``[B, out_channels, *size]`` outputs."""
        return self.upsample(self.forward_features(features)[1], features, size)

    def upsample(self, x: Tensor, features: Sequence[Tensor], size: Sequence[int] | None = None) -> Tensor:
        """Raw outputs ``x`` at the decoder's resolution, bilinearly upsampled to ``size`` (default: the finest
        feature's size times ``reductions[0]``)."""
        if size is None:
            if self.reductions is None:
                raise ValueError("DenseDecoder.forward needs `size` when the decoder was built without `reductions`.")
            size = (features[0].shape[-2] * self.reductions[0], features[0].shape[-1] * self.reductions[0])
        size = (int(size[0]), int(size[1]))
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x


class ClassificationHead(nn.Module):
    """Image-level logits: global average pool of the last (coarsest) feature, optional hidden layer, linear.

    Args:
        in_channels: channels of the encoder's features, finest first; only the last entry is used.
        out_channels: number of classes.
        hidden: width of an optional hidden layer (Linear-BN-ReLU); 0 = none.
        dropout: dropout probability before the final linear layer; 0 = none.

    ``forward(features, size)`` returns ``[B, out_channels]``; ``size`` is accepted (and ignored) so that every head
    is called the same way.
    """

    def __init__(self, in_channels: list[int], out_channels: int, hidden: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        channels = _check_in_channels(in_channels, type(self).__name__)
        if out_channels < 1 or hidden < 0 or not 0.0 <= dropout < 1.0:
            raise ValueError(
                f"ClassificationHead: need out_channels >= 1, hidden >= 0, 0 <= dropout < 1; "
                f"got {out_channels}, {hidden}, {dropout}."
            )
        self.in_channels = channels
        self.out_channels = int(out_channels)
        layers: list[nn.Module] = []
        features = channels[-1]
        if hidden:
            layers += [nn.Linear(features, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            features = hidden
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(features, out_channels))
        self.classifier = nn.Sequential(*layers)

    def forward(self, features: Sequence[Tensor], size: Sequence[int] | None = None) -> Tensor:
        pooled = torch.flatten(F.adaptive_avg_pool2d(features[-1], 1), 1)
        return self.classifier(pooled)
