"""Multi-scale ResNet encoders, written from scratch (torchvision is not a dependency).

:class:`ResNetEncoder` reproduces the torchvision ResNet layouts (v1.5: the stride of a bottleneck sits on its 3x3
convolution) without the average pool and the fully connected layer, and returns the output of each of its four
stages, finest first. With ``width=64`` the parameter counts equal torchvision's ``resnet18`` / ``resnet50`` minus
their ``fc`` layer (11,176,512 and 23,508,032).

Strides (``reductions``) of the four returned features relative to the input image:

==================  ==================================  =========================
``small_input``     stem                                ``reductions``
==================  ==================================  =========================
``False`` (default) 7x7 conv stride 2 + 3x3 maxpool s2  ``[4, 8, 16, 32]``
``True``            3x3 conv stride 1, no maxpool       ``[1, 2, 4, 8]``
==================  ==================================  =========================

``small_input=True`` is meant for 32-64 px images (CIFAR-style stem); the features are then 8x larger in each
direction, so the encoder costs roughly 16-64x more compute per image than at the same size with the standard stem.

All constructor arguments are primitives so the encoder can be injected from YAML through ``class_path``::

    encoder:
      class_path: umadapt.nn.ResNetEncoder
      init_args: {arch: resnet18, width: 32, small_input: true}
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["ARCHITECTURES", "BasicBlock", "Bottleneck", "ResNetEncoder", "TinyResNetEncoder"]


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, as in torchvision's ResNet v1.5), 1x1 expand by 4 (ResNet-50/101)."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_channels, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3


ARCHITECTURES: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    "resnet10": (BasicBlock, (1, 1, 1, 1)),
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
    "resnet152": (Bottleneck, (3, 8, 36, 3)),
}
"""Valid ``arch`` names -> (block type, blocks per stage)."""


class ResNetEncoder(nn.Module):
    """A ResNet backbone returning one feature map per stage (4 stages), finest first.

    Args:
        arch: one of :data:`ARCHITECTURES` (``resnet10``, ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``,
            ``resnet152``).
        width: channels of the stem and of the first stage's blocks (before the bottleneck expansion); the stages
            use ``width * [1, 2, 4, 8]``. 64 gives the standard shapes; 16 or 32 are CPU-sized.
        in_channels: channels of the input image.
        small_input: replace the 7x7/stride-2 stem and the max-pool with a 3x3/stride-1 stem, for 32-64 px images.
            Reductions become ``[1, 2, 4, 8]`` instead of ``[4, 8, 16, 32]``.
        zero_init_residual: initialise the last BatchNorm scale of every residual block to zero, so each block
            starts as an identity (improves training of deep nets slightly, "Bag of Tricks").

    Attributes:
        out_channels: channels of each returned feature.
        reductions: stride of each returned feature relative to the input.
        output_stride: ``reductions[-1]``; input sizes should be multiples of it (see :meth:`check_input_size`).
    """

    def __init__(
        self,
        arch: str = "resnet18",
        width: int = 64,
        in_channels: int = 3,
        small_input: bool = False,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"Unknown ResNet arch {arch!r}; valid names: {sorted(ARCHITECTURES, key=_arch_key)}.")
        if width < 1 or in_channels < 1:
            raise ValueError(f"width and in_channels must be positive, got width={width}, in_channels={in_channels}.")
        block, layers = ARCHITECTURES[arch]
        self.arch = arch
        self.width = width
        self.small_input = small_input

        if small_input:
            self.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
            stem_stride = 1
        else:
            self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            stem_stride = 4
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)

        self._inplanes = width
        self.layer1 = self._make_layer(block, width, layers[0], stride=1)
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        del self._inplanes

        self.out_channels: list[int] = [width * m * block.expansion for m in (1, 2, 4, 8)]
        self.reductions: list[int] = [stem_stride * s for s in (1, 2, 4, 8)]
        self.output_stride: int = self.reductions[-1]

        self._init_weights(zero_init_residual)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self._inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
            )
        modules: list[nn.Module] = [block(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes * block.expansion
        modules += [block(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*modules)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)

    @property
    def stages(self) -> list[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, x: Tensor) -> list[Tensor]:
        """Return ``[C1, C2, C3, C4]``: the stage outputs, finest first, with shapes
        ``[B, out_channels[i], H / reductions[i], W / reductions[i]]`` (rounded up when not divisible)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def check_input_size(self, image_size: Sequence[int]) -> None:
        """Raise :class:`ValueError` unless both sides of ``image_size`` (``(H, W)``) are multiples of
        :attr:`output_stride` (otherwise the decoder's skip connections would be misaligned by rounding)."""
        height, width = (int(v) for v in image_size)
        stride = self.output_stride
        if height % stride or width % stride:
            up_h, up_w = -(-height // stride) * stride, -(-width // stride) * stride
            raise ValueError(
                f"image size {height}x{width} is not divisible by the encoder's output stride {stride}; "
                f"use a multiple of {stride} (e.g. {up_h}x{up_w}) for this {self.arch} encoder "
                f"(small_input={self.small_input})."
            )

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, width={self.width}, small_input={self.small_input}, reductions={self.reductions}"


class TinyResNetEncoder(ResNetEncoder):
    """CPU-sized convenience alias: ``ResNetEncoder(arch="resnet10", width=16, small_input=True)`` by default."""

    def __init__(
        self,
        arch: str = "resnet10",
        width: int = 16,
        in_channels: int = 3,
        small_input: bool = True,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__(arch, width, in_channels, small_input, zero_init_residual)


def _arch_key(name: str) -> int:
    return int(name.removeprefix("resnet"))
