"""The digit networks (:mod:`umadapt.nn.digits`): the encoder interface, the paper's classifier input size, and the
channels-last variant giving the same features."""

from __future__ import annotations

import pytest
import torch

from umadapt.nn import DigitEncoder, MLPClassificationHead


def test_digit_encoder_follows_the_encoder_interface():
    encoder = DigitEncoder()
    features = encoder(torch.rand(2, 3, 32, 32))
    assert [f.shape for f in features] == [(2, 32, 16, 16), (2, 48, 8, 8)]
    assert encoder.out_channels == [32, 48] and encoder.reductions == [2, 4] and encoder.output_stride == 4
    encoder.check_input_size((28, 28))
    with pytest.raises(ValueError, match="30x30.*4"):
        encoder.check_input_size((30, 30))
    head = MLPClassificationHead(encoder.out_channels, 10)
    assert head.classifier[0].in_features == 768  # the paper's 48 x 4 x 4 features
    assert head(features, (32, 32)).shape == (2, 10)
    assert DigitEncoder(batch_norm=True, dropout=0.5)(torch.rand(2, 3, 28, 28))[-1].shape == (2, 48, 7, 7)
