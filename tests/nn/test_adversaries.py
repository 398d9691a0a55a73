"""Domain adversaries (:mod:`umadapt.nn.adversaries`): output shapes per level, the float32 domain loss under
autocast, and a domain classifier that learns to tell Digits from Digits-M."""

from __future__ import annotations

import pytest
import torch

from data_modules.digits import Digits, DigitsM
from umadapt.nn import (
    DigitEncoder,
    FeatureDiscriminator,
    OutputDiscriminator,
    SpatialDiscriminator,
    domain_adversarial_loss,
)


def test_adversary_output_shapes():
    features = [torch.randn(2, 8, 16, 16), torch.randn(2, 12, 8, 8)]
    assert FeatureDiscriminator([8, 12], hidden=[10], pool_size=4)(features).shape == (2, 1)
    assert SpatialDiscriminator([8, 12], hidden=6, feature_index=0)(features).shape == (2, 1, 16, 16)
    dense = OutputDiscriminator([1, 3, 5], hidden=[4, 4])
    assert dense([torch.rand(2, c, 32, 32) for c in (1, 3, 5)]).shape == (2, 1, 8, 8)
    assert OutputDiscriminator([10], hidden=[4])([torch.rand(2, 10)]).shape == (2, 1)
    with pytest.raises(ValueError, match="either only dense"):
        OutputDiscriminator([10, 1])([torch.rand(2, 10), torch.rand(2, 1, 8, 8)])
    with pytest.raises(ValueError, match="feature_index 5"):
        FeatureDiscriminator([8, 12], feature_index=5)


def test_domain_loss_is_float32_bce_under_autocast():
    source, target = torch.randn(4, 1).bfloat16(), torch.randn(4, 1, 2, 2).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, accuracy = domain_adversarial_loss(source, target)
    assert loss.dtype == torch.float32
    logits = torch.cat([source.float().flatten(), target.float().flatten()])
    labels = torch.cat([torch.zeros(4), torch.ones(16)])
    assert torch.allclose(loss, torch.nn.functional.binary_cross_entropy_with_logits(logits, labels))
    assert accuracy == ((logits > 0).float() == labels).float().mean()


def test_domain_classifier_learns_to_tell_the_domains_apart():
    """Trained alone on (fixed, random) encoder features of Digits and Digits-M, it beats chance on held-out images."""
    torch.manual_seed(0)
    encoder = DigitEncoder().eval()

    def features(domain, split):
        images = torch.stack([torch.from_numpy(s["image"]).permute(2, 0, 1) for s in domain.dataset(split)])
        with torch.no_grad():
            return encoder(images)

    source, target = Digits(train_size=96, val_size=48), DigitsM(train_size=96, val_size=48)
    train, held_out = (
        (features(source, "train"), features(target, "train")),
        (features(source, "val"), features(target, "val")),
    )
    adversary = FeatureDiscriminator(encoder.out_channels, hidden=[32], pool_size=2)
    optimizer = torch.optim.Adam(adversary.parameters(), lr=3e-3)
    _, before = domain_adversarial_loss(adversary(held_out[0]), adversary(held_out[1]))
    for _ in range(60):
        loss, _ = domain_adversarial_loss(adversary(train[0]), adversary(train[1]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        _, after = domain_adversarial_loss(adversary(held_out[0]), adversary(held_out[1]))
    assert after > 0.8 and after > before


def test_multiscale_discriminator_weighs_every_scale_the_same():
    """One spatial discriminator per scale; each scale's logits pooled to the coarsest grid (so a 4x4 map counts as
    much as a 1x1 one), and the domain loss reaches every scale's features."""
    from umadapt.nn import MultiScaleDiscriminator

    torch.manual_seed(0)
    adversary = MultiScaleDiscriminator([4, 8, 16], hidden=6)
    features = [torch.randn(2, c, s, s, requires_grad=True) for c, s in ((4, 8), (8, 4), (16, 2))]
    logits = adversary(features)
    assert logits.shape == (2, 3, 2, 2)
    finest = adversary.discriminators[0](features)  # [2, 1, 8, 8]
    assert torch.allclose(logits[:, :1], finest.reshape(2, 1, 2, 4, 2, 4).mean(dim=(3, 5)), atol=1e-6)
    loss, _ = domain_adversarial_loss(logits[:1], logits[1:])
    loss.backward()
    assert all(f.grad is not None and float(f.grad.abs().sum()) > 0 for f in features)
    only_two = MultiScaleDiscriminator([4, 8, 16], feature_indices=[0, -1])
    assert only_two.feature_indices == [0, 2] and only_two(features).shape == (2, 2, 2, 2)
    with pytest.raises(ValueError, match="out of range"):
        MultiScaleDiscriminator([4, 8], feature_indices=[2])
    with pytest.raises(ValueError, match="twice"):
        MultiScaleDiscriminator([4, 8], feature_indices=[1, -1])
