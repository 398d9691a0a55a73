"""The contour decoder of CCR (:mod:`umadapt.nn.contour`): edge logits at the image size from the deepest feature,
the same output in train and eval mode, the float32 loss, and bad sizes named."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from umadapt.nn.contour import ContourDecoder, contour_loss


def test_edge_logits_come_out_at_the_image_size_whatever_the_mode():
    torch.manual_seed(0)
    decoder = ContourDecoder(64, hidden=16, upsample_steps=2)
    feature = torch.randn(2, 64, 4, 6)
    assert decoder(feature).shape == (2, 1, 16, 24)  # two learned x2 steps, no resize without a size
    logits = decoder.train()(feature, (32, 48))
    assert logits.shape == (2, 1, 32, 48)
    assert torch.allclose(logits, decoder.eval()(feature, (32, 48)))  # GroupNorm: no train/eval difference
    with pytest.raises(ValueError, match="upsample_steps"):
        ContourDecoder(64, upsample_steps=-1)


def test_contour_loss_is_float32_bce_with_logits_under_autocast():
    logits, edges = torch.randn(2, 1, 8, 8).bfloat16(), (torch.rand(2, 1, 8, 8) > 0.7).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = contour_loss(logits, edges)
    assert loss.dtype == torch.float32
    assert torch.allclose(loss, F.binary_cross_entropy_with_logits(logits.float(), edges))
    assert contour_loss(torch.full((1, 1, 4, 4), 20.0), torch.ones(1, 1, 4, 4)) < 1e-6  # confident and right
