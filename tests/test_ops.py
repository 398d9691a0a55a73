"""The fast channel reductions equal the PyTorch forms they replace, in value and in gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from umadapt.ops import channel_argmax, channel_norm, normalize_channels, resize_bilinear


def _normal_map() -> torch.Tensor:
    x = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(0))
    x[0, :, 1, 2] = 0.0  # a zero vector (an invalid normal): no NaN, same gradient as F.normalize
    return x


def test_channel_norm_equals_vector_norm():
    x = _normal_map()
    assert torch.allclose(channel_norm(x), torch.linalg.vector_norm(x, dim=1), atol=1e-6)
    assert torch.allclose(channel_norm(x, keepdim=True), x.norm(dim=1, keepdim=True), atol=1e-6)
    assert torch.allclose(channel_norm(x.permute(0, 2, 3, 1), dim=-1), x.norm(dim=1), atol=1e-6)


@pytest.mark.parametrize("eps", [1e-12, 1e-6, 0.5])
def test_normalize_channels_equals_f_normalize_in_value_and_gradient(eps):
    weights = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(1))
    outputs, grads = [], []
    for normalize in (normalize_channels, lambda t, eps: F.normalize(t, dim=1, eps=eps)):
        x = _normal_map().requires_grad_()
        out = normalize(x, eps=eps)
        (out * weights).sum().backward()
        outputs.append(out.detach())
        grads.append(x.grad)
    assert torch.isfinite(grads[0]).all()
    assert torch.allclose(outputs[0], outputs[1], atol=1e-6)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_channel_argmax_equals_argmax_with_ties():
    logits = torch.randint(0, 3, (2, 5, 4, 4), generator=torch.Generator().manual_seed(2)).float()  # many ties
    assert torch.equal(channel_argmax(logits), logits.argmax(dim=1))
    assert torch.equal(channel_argmax(logits[:, :, 0, 0]), logits[:, :, 0, 0].argmax(dim=1))


def test_resize_bilinear_upsamples_without_aligned_corners_and_keeps_a_matching_size():
    x = torch.tensor([[[[1.0, 3.0]]]])
    # output column centres map to input -0.25, 0.25, 0.75, 1.25 (clamped): 1, 1.5, 2.5, 3
    assert resize_bilinear(x, (1, 4)).tolist() == [[[[1.0, 1.5, 2.5, 3.0]]]]
    assert resize_bilinear(x, (1, 2)) is x


def test_resize_bilinear_renormalises_unit_vectors():
    x = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]).reshape(1, 2, 3).permute(2, 0, 1)[None]  # [1, 3, 1, 2]
    blended = resize_bilinear(x, (1, 4))
    assert channel_norm(blended)[0, 0, 1] == pytest.approx((0.75**2 + 0.25**2) ** 0.5)  # plain blend: shorter
    unit = resize_bilinear(x, (1, 4), unit_vectors=True)
    assert torch.allclose(channel_norm(unit), torch.ones(1, 1, 4))
    assert torch.allclose(unit, normalize_channels(blended))
