"""The ResNet encoders (:mod:`umadapt.nn.encoders`): feature shapes and strides per architecture, parameter counts
against torchvision, input-size checks that name both numbers."""

from __future__ import annotations

import pytest
import torch

from umadapt.nn import ResNetEncoder, TinyResNetEncoder
from umadapt.nn.encoders import ARCHITECTURES

ALL_ARCHS = ["resnet10", "resnet18", "resnet34", "resnet50", "resnet101"]


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_features(encoder: ResNetEncoder, x: torch.Tensor) -> list[torch.Tensor]:
    features = encoder(x)
    assert isinstance(features, list) and len(features) == 4
    assert len(encoder.out_channels) == len(encoder.reductions) == 4
    assert encoder.output_stride == encoder.reductions[-1]
    for feature, channels, reduction in zip(features, encoder.out_channels, encoder.reductions):
        assert feature.shape == (x.shape[0], channels, x.shape[2] // reduction, x.shape[3] // reduction)
    return features


# --- encoder -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("small_input", [False, True])
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_encoder_shapes_64(arch: str, small_input: bool) -> None:
    torch.manual_seed(0)
    encoder = ResNetEncoder(arch, width=8, small_input=small_input).eval()
    with torch.no_grad():
        check_features(encoder, torch.randn(2, 3, 64, 64))
    expansion = ARCHITECTURES[arch][0].expansion
    assert encoder.out_channels == [8 * m * expansion for m in (1, 2, 4, 8)]
    assert encoder.reductions == ([1, 2, 4, 8] if small_input else [4, 8, 16, 32])


def test_encoder_shapes_224_standard_width() -> None:
    encoder = ResNetEncoder("resnet18").eval()
    with torch.no_grad():
        features = check_features(encoder, torch.randn(1, 3, 224, 224))
    assert encoder.out_channels == [64, 128, 256, 512]
    assert [f.shape[-1] for f in features] == [56, 28, 14, 7]
    assert ResNetEncoder("resnet50", width=8).out_channels == [32, 64, 128, 256]


def test_encoder_non_square_and_in_channels() -> None:
    encoder = ResNetEncoder("resnet10", width=8, in_channels=1, small_input=True).eval()
    with torch.no_grad():
        check_features(encoder, torch.randn(1, 1, 32, 48))


def test_param_counts_match_torchvision_without_fc() -> None:
    # torchvision resnet18: 11,689,512 - fc (512*1000 + 1000); resnet50: 25,557,032 - fc (2048*1000 + 1000).
    assert n_params(ResNetEncoder("resnet18", width=64)) == 11_176_512
    assert n_params(ResNetEncoder("resnet50", width=64)) == 23_508_032


def test_unknown_arch_lists_valid_names() -> None:
    with pytest.raises(ValueError) as info:
        ResNetEncoder("resnet19")
    message = str(info.value)
    assert "resnet19" in message
    for name in ALL_ARCHS:
        assert name in message


def test_check_input_size() -> None:
    encoder = ResNetEncoder("resnet10", width=8)
    encoder.check_input_size((64, 96))
    with pytest.raises(ValueError) as info:
        encoder.check_input_size((60, 60))
    assert "60x60" in str(info.value) and "32" in str(info.value)
    with pytest.raises(ValueError, match=r"64x70.*32"):
        encoder.check_input_size((64, 70))
    small = ResNetEncoder("resnet10", width=8, small_input=True)
    assert small.output_stride == 8
    small.check_input_size((40, 56))
    with pytest.raises(ValueError, match=r"36x40.*8"):
        small.check_input_size((36, 40))


def test_zero_init_residual_and_tiny_alias() -> None:
    encoder = ResNetEncoder("resnet10", width=8, zero_init_residual=True)
    assert torch.count_nonzero(encoder.layer1[0].bn2.weight) == 0
    assert torch.all(encoder.bn1.weight == 1)
    tiny = TinyResNetEncoder()
    assert (tiny.arch, tiny.width, tiny.small_input) == ("resnet10", 16, True)
    assert tiny.reductions == [1, 2, 4, 8]
