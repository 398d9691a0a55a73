"""The image-to-image translation networks of CycleGAN (Zhu et al., ICCV 2017, appendix 7.2), sized for 32-64 px
images on a CPU: a ResNet generator and a PatchGAN discriminator, both with instance normalisation.

Images are RGB in ``[0, 1]`` (the :mod:`umadapt.samples` convention), so the generator ends in ``(tanh + 1) / 2``
where CycleGAN's ends in ``tanh`` over ``[-1, 1]``; its input is mapped to ``[-1, 1]`` first.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["PatchDiscriminator", "ResnetGenerator"]


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True)


class _ResidualBlock(nn.Module):
    """Two reflection-padded 3x3 convolutions with instance norm and a skip connection (CycleGAN's ``R k``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's generator: ``c7s1-w, d2w, ..., R(2^d w) x blocks, ..., u w, c7s1-3`` with ``d = downsamples``
    stride-2 convolutions (CycleGAN: ``width=64, downsamples=2, blocks=6`` for 128 px, 9 blocks from 256 px).

    Args:
        channels: image channels in and out.
        width: channels of the first convolution (doubled at each downsampling).
        downsamples: stride-2 convolutions before the residual blocks (and transposed ones after).
        blocks: residual blocks at the lowest resolution.
    """

    def __init__(self, channels: int = 3, width: int = 32, downsamples: int = 2, blocks: int = 6) -> None:
        super().__init__()
        if width < 1 or downsamples < 0 or blocks < 0:
            raise ValueError(
                f"ResnetGenerator needs width >= 1, downsamples >= 0, blocks >= 0; got {width}, "
                f"{downsamples}, {blocks}."
            )
        self.multiple = 2**downsamples
        """Image sides must be multiples of this (the generator returns the input's size)."""
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(channels, width, 7), _norm(width), nn.ReLU(True)]
        current = width
        for _ in range(downsamples):
            layers += [nn.Conv2d(current, current * 2, 3, stride=2, padding=1), _norm(current * 2), nn.ReLU(True)]
            current *= 2
        layers += [_ResidualBlock(current) for _ in range(blocks)]
        for _ in range(downsamples):
            layers += [
                nn.ConvTranspose2d(current, current // 2, 3, stride=2, padding=1, output_padding=1),
                _norm(current // 2),
                nn.ReLU(True),
            ]
            current //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(current, channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, image: Tensor) -> Tensor:
        """The translation of ``image`` (``[N, C, H, W]`` in ``[0, 1]``), in ``[0, 1]``."""
        return (self.net(image * 2.0 - 1.0) + 1.0) * 0.5


class PatchDiscriminator(nn.Module):
    """PatchGAN (CycleGAN's ``C64-C128-C256-C512``, 70x70 receptive field): ``layers`` stride-2 4x4 convolutions
    (``width`` channels doubling, instance norm from the second, LeakyReLU 0.2), one stride-1 4x4 and a final
    1-channel 4x4 convolution: one real/fake score per overlapping patch (no sigmoid: least-squares GAN)."""

    def __init__(self, channels: int = 3, width: int = 32, layers: int = 3) -> None:
        super().__init__()
        if width < 1 or layers < 1:
            raise ValueError(f"PatchDiscriminator needs width >= 1 and layers >= 1; got {width} and {layers}.")
        modules: list[nn.Module] = [nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        current = width
        for index in range(1, layers + 1):
            out = width * 2 ** min(index, 3)
            stride = 2 if index < layers else 1
            modules += [nn.Conv2d(current, out, 4, stride=stride, padding=1), _norm(out), nn.LeakyReLU(0.2, True)]
            current = out
        modules.append(nn.Conv2d(current, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*modules)

    def forward(self, image: Tensor) -> Tensor:
        """Patch scores ``[N, 1, h, w]`` of ``image`` in ``[0, 1]`` (higher: more like the real domain)."""
        return self.net(image * 2.0 - 1.0)
