"""Task heads (:mod:`umadapt.nn.decoders`): output sizes, gradients back into the encoder, and head factories
built from YAML through jsonargparse (a ``class_path`` whose ``init_args`` omit the positional channels)."""

from __future__ import annotations

import collections.abc
import typing
import warnings

import jsonargparse
import pytest
import torch
import yaml

from umadapt.nn import ClassificationHead, DenseDecoder, ResNetEncoder

# The typed parameter the model uses to receive a head factory: head_factory(encoder.out_channels, task_channels).
HeadFactory = typing.Callable[[list[int], int], torch.nn.Module]


# --- heads ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("small_input", [False, True])
@pytest.mark.parametrize("size", [(64, 64), (96, 128)])
def test_dense_decoder_output_size(size: tuple[int, int], small_input: bool) -> None:
    torch.manual_seed(0)
    encoder = ResNetEncoder("resnet10", width=8, small_input=small_input)
    decoder = DenseDecoder(encoder.out_channels, 5, hidden=16)
    x = torch.randn(2, 3, *size)
    out = decoder(encoder(x), size)
    assert out.shape == (2, 5, *size)
    assert torch.isfinite(out).all()


def test_dense_decoder_size_from_reductions() -> None:
    encoder = ResNetEncoder("resnet10", width=8)
    decoder = DenseDecoder(encoder.out_channels, 1, hidden=8, reductions=encoder.reductions)
    x = torch.randn(1, 3, 64, 96)
    assert decoder(encoder(x)).shape == (1, 1, 64, 96)
    with pytest.raises(ValueError, match="size"):
        DenseDecoder(encoder.out_channels, 1, hidden=8)(encoder(x))


def test_classification_head() -> None:
    encoder = ResNetEncoder("resnet10", width=8, small_input=True)
    features = encoder(torch.randn(3, 3, 32, 32))
    assert ClassificationHead(encoder.out_channels, 7)(features, (32, 32)).shape == (3, 7)
    head = ClassificationHead(encoder.out_channels, 4, hidden=16, dropout=0.2)
    assert head(features, (32, 32)).shape == (3, 4)
    assert head(features, None).shape == (3, 4)


def test_gradients_reach_encoder() -> None:
    torch.manual_seed(0)
    encoder = ResNetEncoder("resnet10", width=8, small_input=True)
    decoder = DenseDecoder(encoder.out_channels, 3, hidden=8)
    x = torch.randn(2, 3, 32, 32)
    loss = decoder(encoder(x), x.shape[-2:]).square().mean()
    loss.backward()
    for name, param in [*encoder.named_parameters(), *decoder.named_parameters()]:
        assert param.grad is not None, name
    assert encoder.conv1.weight.grad.abs().sum() > 0
    assert encoder.layer4[0].conv2.weight.grad.abs().sum() > 0


# --- construction through jsonargparse ----------------------------------------------------------------------------


def _instantiate(parser: jsonargparse.ArgumentParser, cfg: jsonargparse.Namespace) -> jsonargparse.Namespace:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return parser.instantiate(cfg)


def test_jsonargparse_module_class_path() -> None:
    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--enc", type=torch.nn.Module)
    parser.add_argument("--head", type=torch.nn.Module)
    cfg = parser.parse_object(
        {
            "enc": {
                "class_path": "umadapt.nn.ResNetEncoder",
                "init_args": {"arch": "resnet10", "width": 8, "small_input": True},
            },
            "head": {
                "class_path": "umadapt.nn.DenseDecoder",
                "init_args": {"in_channels": [8, 16, 32, 64], "out_channels": 2},
            },
        }
    )
    init = _instantiate(parser, cfg)
    assert isinstance(init.enc, ResNetEncoder) and init.enc.small_input and init.enc.width == 8
    assert isinstance(init.head, DenseDecoder)
    x = torch.randn(1, 3, 32, 32)
    assert init.head(init.enc(x), (32, 32)).shape == (1, 2, 32, 32)


@pytest.mark.parametrize("callable_type", [HeadFactory, collections.abc.Callable[[list[int], int], torch.nn.Module]])
@pytest.mark.parametrize(
    ("class_path", "init_args", "expected"),
    [
        ("umadapt.nn.DenseDecoder", {"hidden": 32}, DenseDecoder),
        ("DenseDecoder", {}, DenseDecoder),
        ("umadapt.nn.ClassificationHead", {"hidden": 8, "dropout": 0.1}, ClassificationHead),
    ],
)
def test_jsonargparse_head_factory(callable_type, class_path: str, init_args: dict, expected: type) -> None:
    """A ``Callable[[list[int], int], Module]`` parameter takes a class_path whose init_args omit the first two
    (positional) constructor parameters; instantiation yields a partial that builds the head from them."""
    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--head_factory", type=callable_type)
    cfg = parser.parse_object({"head_factory": {"class_path": class_path, "init_args": init_args}})
    factory = _instantiate(parser, cfg).head_factory
    assert callable(factory) and not isinstance(factory, torch.nn.Module)
    encoder = ResNetEncoder("resnet10", width=8, small_input=True)
    head = factory(encoder.out_channels, 5)
    assert type(head) is expected
    if expected is DenseDecoder:
        assert head.hidden == init_args.get("hidden", 64)
        assert head.in_channels == encoder.out_channels and head.out_channels == 5
    x = torch.randn(2, 3, 32, 32)
    out = head(encoder(x), x.shape[-2:])
    assert out.shape == ((2, 5, 32, 32) if expected is DenseDecoder else (2, 5))


def test_jsonargparse_head_factory_rejects_positional_init_args() -> None:
    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--head_factory", type=HeadFactory)
    with pytest.raises(jsonargparse.ArgumentError, match="in_channels"):
        parser.parse_object(
            {"head_factory": {"class_path": "umadapt.nn.DenseDecoder", "init_args": {"in_channels": [8], "hidden": 4}}}
        )


class _Model:
    """Stand-in for a LightningModule signature as LightningCLI sees it."""

    def __init__(self, encoder: torch.nn.Module, head_factory: HeadFactory) -> None:
        self.encoder = encoder
        self.head_factory = head_factory


def test_jsonargparse_yaml_through_class_signature() -> None:
    config = """
    model:
      encoder:
        class_path: umadapt.nn.ResNetEncoder
        init_args: {arch: resnet10, width: 8, small_input: true}
      head_factory:
        class_path: umadapt.nn.DenseDecoder
        init_args: {hidden: 16}
    """
    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(_Model, "model")
    cfg = parser.parse_string(config)
    dumped = yaml.safe_load(parser.dump(cfg))
    assert dumped["model"]["head_factory"]["init_args"]["hidden"] == 16
    model = _instantiate(parser, cfg).model
    head = model.head_factory(model.encoder.out_channels, 3)
    x = torch.randn(1, 3, 32, 32)
    assert head(model.encoder(x), (32, 32)).shape == (1, 3, 32, 32)
