"""The contour decoder of contour-based content regularization (CCR, UM-Adapt, Kundu et al. ICCV 2019).

It predicts the edge map of the input image (``edges``, see :mod:`data_modules.edges`) from the encoder's deepest
feature only, so its loss measures how much image content that feature still holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ContourDecoder", "contour_loss"]


def _block(in_ch: int, out_ch: int) -> nn.Sequential:
    groups = next((g for g in (8, 4, 2) if out_ch % g == 0), 1)
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.GroupNorm(groups, out_ch), nn.ReLU(inplace=True)
    )


class ContourDecoder(nn.Module):
    """Deepest feature -> edge-map logits: a 3x3 block, then ``upsample_steps`` x (bilinear x2, 3x3 block, channels
    halved down to 8), a 1x1 output convolution, and bilinear upsampling to the image size.

    GroupNorm rather than BatchNorm, so the decoder behaves the same in train and eval mode (it is frozen, in eval
    mode, while it regularizes the adaptation).

    Args:
        in_channels: channels of the deepest encoder feature (``encoder.out_channels[-1]``).
        out_channels: output channels (1: one edge map).
        hidden: channels of the first block.
        upsample_steps: learned x2 upsampling steps before the final bilinear resize.
    """

    def __init__(self, in_channels: int, out_channels: int = 1, hidden: int = 32, upsample_steps: int = 3) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1 or hidden < 1 or upsample_steps < 0:
            raise ValueError(
                "ContourDecoder needs positive in_channels, out_channels, hidden and upsample_steps >= 0; got "
                f"{in_channels}, {out_channels}, {hidden}, {upsample_steps}."
            )
        blocks = [_block(in_channels, hidden)]
        channels = hidden
        for _ in range(upsample_steps):
            blocks.append(_block(channels, max(8, channels // 2)))
            channels = max(8, channels // 2)
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Conv2d(channels, out_channels, 1)

    def forward(self, feature: Tensor, size: Sequence[int] | None = None) -> Tensor:
        """Edge logits ``[B, out_channels, *size]`` (``size`` defaults to the feature's own)."""
        x = self.blocks[0](feature)
        for block in self.blocks[1:]:
            x = block(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        x = self.out(x)
        if size is not None and tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=False)
        return x


def contour_loss(logits: Tensor, edges: Tensor) -> Tensor:
    """Per-pixel binary cross-entropy (with logits, float32) between predicted and image edge maps in ``[0, 1]``."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return F.binary_cross_entropy_with_logits(logits.float(), edges.float())
