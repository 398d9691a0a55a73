"""Weak-label adaptation (:mod:`umadapt.methods.weak_label`) and its base, the output-space adversary of AdaptSegNet
(:mod:`umadapt.methods.adaptsegnet`): the paper's pooling and labels against direct formulas, the category-wise
adversary's masking, each player's gradient its own, the fine-tuning start, points and tags in training, and bad
input named."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data_modules import PairedDataModule
from tests.helpers import ToyDomain, tiny_model, tiny_trainer
from umadapt.errors import ConfigError
from umadapt.methods import OutputSpaceAdaptation, WeakLabelAdaptation
from umadapt.methods.weak_label import (
    class_attention,
    class_attention_pool,
    present_classes,
    pseudo_weak_labels,
    smooth_max_pool,
)
from umadapt.nn import ClassWiseDiscriminator, DenseDecoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 16


# -- the paper's terms ----------------------------------------------------------------------------------------------
def test_smooth_max_pooling_is_the_log_mean_exp_between_the_mean_and_the_max():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 5, 6) * 3
    got = smooth_max_pool(logits).numpy()
    flat = logits.flatten(2).double().numpy()
    want = np.log(np.exp(flat).sum(axis=2) / flat.shape[2])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.all(got >= flat.mean(axis=2) - 1e-5) and np.all(got <= flat.max(axis=2) + 1e-5)


def test_pseudo_weak_labels_follow_the_threshold():
    scores = torch.tensor([[-3.0, -1.0, 0.0, 2.0]])  # sigmoid: 0.047, 0.269, 0.5, 0.881
    logits = scores[:, :, None, None].expand(1, 4, 3, 3)  # a constant map pools to its value
    assert pseudo_weak_labels(logits, 0.2).tolist() == [[0.0, 1.0, 1.0, 1.0]]
    assert pseudo_weak_labels(logits, 0.6).tolist() == [[0.0, 0.0, 0.0, 1.0]]
    assert not pseudo_weak_labels(logits.requires_grad_(), 0.2).requires_grad


def test_attention_weights_sum_to_one_per_class_and_pool_the_features():
    torch.manual_seed(1)
    logits, features = torch.randn(2, 3, 4, 5), torch.randn(2, 7, 4, 5)
    weights = class_attention(logits)
    torch.testing.assert_close(weights.sum(dim=2), torch.ones(2, 3))
    pooled = class_attention_pool(logits, features)
    assert pooled.shape == (2, 3, 7)
    b, c = 1, 2
    want = (weights[b, c][None] * features[b].flatten(1)).sum(dim=1)
    torch.testing.assert_close(pooled[b, c], want)


def test_present_classes_count_labelled_pixels_above_the_fraction():
    seg = torch.full((1, 4, 5), 255)
    seg[0, 0, :] = 0  # 5 pixels
    seg[0, 1, :2] = 2  # 2 pixels
    assert present_classes(seg, 4).tolist() == [[1.0, 0.0, 1.0, 0.0]]
    assert present_classes(seg, 4, min_fraction=0.3).tolist() == [[1.0, 0.0, 0.0, 0.0]]  # 2/7 < 0.3 < 5/7


def test_the_class_adversary_gets_no_gradient_for_an_absent_class():
    from umadapt.methods.weak_label import _masked_bce

    torch.manual_seed(2)
    discriminator = ClassWiseDiscriminator(6, 4, hidden=[5])
    features = torch.randn(3, 4, 6)
    present = torch.tensor([[1.0, 0, 1, 0], [0, 0, 1, 0], [1, 0, 0, 0]])  # class 1 and 3 absent everywhere
    _masked_bce(discriminator(features), 1.0, present).backward()
    for weight in discriminator.weights:
        assert weight.grad[[1, 3]].abs().sum() == 0 and weight.grad[[0, 2]].abs().sum() > 0
    features.requires_grad_()
    _masked_bce(discriminator(features), 0.0, present).backward()
    assert features.grad[:, 1].abs().sum() == 0 and features.grad[1, 0].abs().sum() == 0


def test_the_dense_decoder_features_feed_its_own_output():
    """``forward_features`` gives the input of the final 1x1 classifier and its output; ``forward`` is still the
    top-down path, the head and the upsampling written out here (the decoder before the split)."""
    torch.manual_seed(3)
    decoder = DenseDecoder([4, 8], 3, hidden=6).eval()
    features = [torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4)]
    hidden, low = decoder.forward_features(features)
    assert hidden.shape == (2, 6, 8, 8) and low.shape == (2, 3, 8, 8)
    x = decoder.lateral[1](features[1])
    x = F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False)
    x = decoder.merge[0](x + decoder.lateral[0](features[0]))
    torch.testing.assert_close(hidden, decoder.head[0](x), rtol=0, atol=0)
    want = F.interpolate(decoder.head(x), size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(decoder(features, (16, 16)), want, rtol=0, atol=0)


def test_the_adversarial_terms_ask_target_outputs_to_pass_for_source():
    """With a discriminator that returns logit ``c`` everywhere: the network's term is ``BCE(c, source = 0)`` =
    softplus(c), the discriminator's the mean of ``BCE(c, 0)`` on source and ``BCE(c, 1)`` on target."""
    from umadapt.methods.adaptsegnet import adversarial_terms

    c = 1.5
    constant = torch.nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        constant.weight.zero_()
        constant.bias.fill_(c)
    network, discriminator, accuracy = adversarial_terms(constant, torch.rand(2, 1, 3, 3), torch.rand(2, 1, 3, 3))
    softplus = torch.nn.functional.softplus
    assert float(network) == pytest.approx(float(softplus(torch.tensor(c))))
    assert float(discriminator) == pytest.approx(0.5 * float(softplus(torch.tensor(c)) + softplus(torch.tensor(-c))))
    assert float(accuracy) == pytest.approx(0.5)  # every logit says "target": right on the target half only


# -- training -------------------------------------------------------------------------------------------------------
@pytest.fixture
def domains() -> tuple[ToyDomain, ToyDomain]:
    return ToyDomain(seed=0, image_size=SIZE), ToyDomain(seed=1, image_size=SIZE, shift=0.3)


def _data(domains, **kwargs) -> PairedDataModule:
    return PairedDataModule(*domains, batch_size=4, tasks=["segmentation"], **{"augmentation": "none", **kwargs})


def _weak(cls: type = WeakLabelAdaptation, **kwargs):
    options = {"dense_head": lambda c, o: DenseDecoder(c, o, hidden=8)}
    return tiny_model(cls, tasks=["segmentation"], width=4, image_size=(SIZE, SIZE), **{**options, **kwargs})


@pytest.mark.parametrize("mode", ["pseudo", "tags", "points"])
def test_one_backward_pass_trains_each_player_with_its_own_terms_only(mode, domains, tmp_path):
    """The network's gradient is that of its own objective (source loss + weighted network terms through frozen
    discriminators), the discriminators' that of their losses alone (detached inputs)."""
    expected, recorded = {}, {}

    class Checking(WeakLabelAdaptation):
        def adaptation_terms(self, source, target, predictions, extras, n_source):
            terms, discriminator_loss = super().adaptation_terms(source, target, predictions, extras, n_source)
            network = self.task_losses({"segmentation": predictions["segmentation"][:n_source]}, source)
            network = network["segmentation"] + sum(w * t for w, t in terms.values() if w > 0)
            discriminators = [p for m in self.discriminator_modules() for p in m.parameters()]
            expected["network"] = torch.autograd.grad(network, self.network_parameters(), retain_graph=True)
            expected["discriminators"] = torch.autograd.grad(discriminator_loss, discriminators, retain_graph=True)
            return terms, discriminator_loss

        def on_before_optimizer_step(self, optimizer):
            params = optimizer.param_groups[0]["params"]
            player = "network" if params[0] is self.network_parameters()[0] else "discriminators"
            recorded[player] = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]
            super().on_before_optimizer_step(optimizer)

    model = _weak(Checking, weak_labels=mode, weak_weight=0.5, class_alignment_weight=0.5, adversarial_weight=0.5)
    data = _data(domains, target_weak_labels={"pseudo": "none"}.get(mode, mode))
    tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(model, datamodule=data)
    assert recorded.keys() == expected.keys() == {"network", "discriminators"}
    for player in expected:
        for got, want in zip(recorded[player], expected[player]):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_without_adaptation_weights_the_network_trains_as_source_only(domains, tmp_path):
    """``adversarial_weight: 0`` (the control) steps the network exactly like source-only on the same batches, the
    target images passing through BatchNorm with the source ones (as DANN's mixed batches)."""
    torch.manual_seed(4)
    model = _weak(OutputSpaceAdaptation, adversarial_weight=0.0, optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    reference = _weak(OutputSpaceAdaptation, adversarial_weight=0.0, optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    reference.load_state_dict(model.state_dict())
    data = _data(domains)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))[0]
    tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(model, datamodule=data)
    reference.train()
    images = torch.cat([batch["source"]["image"], batch["target"]["image"]])
    loss = reference.task_losses({"segmentation": reference(images)["segmentation"][:4]}, batch["source"])
    loss["segmentation"].backward()
    with torch.no_grad():
        for p in reference.network_parameters():
            p -= 0.1 * p.grad
    for got, want in zip(model.network_parameters(), reference.network_parameters()):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_init_checkpoint_starts_from_the_source_trained_network(domains, tmp_path):
    torch.manual_seed(5)
    source_only = _weak(None)
    path = tmp_path / "source_only.ckpt"
    torch.save({"state_dict": source_only.state_dict(), "umadapt": source_only.identity()}, path)
    model = _weak(init_checkpoint=str(path))
    assert any(not torch.equal(a, b) for a, b in zip(model.encoder.parameters(), source_only.encoder.parameters()))
    model.load_init_checkpoint()
    for name, value in source_only.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, msg=name)


def test_points_with_no_labelled_pixel_are_counted_not_a_crash(domains, tmp_path):
    logged = {}

    class Recording(WeakLabelAdaptation):
        def log(self, name, value, *args, **kwargs):
            logged.setdefault(name, []).append(float(value))
            super().log(name, value, *args, **kwargs)

    blank = ToyDomain(seed=1, image_size=SIZE, unlabelled=("segmentation",))  # no pixel to click
    data = _data((domains[0], blank), target_weak_labels="points")
    model = _weak(Recording, weak_labels="points")
    # two batches: each batch steps two players, and max_steps counts optimizer steps
    tiny_trainer(tmp_path, max_steps=4, limit_val_batches=0, log_every_n_steps=1).fit(model, datamodule=data)
    assert logged["train/weak/images_without_points"] == [4.0, 4.0]
    assert logged["train/points/loss"] == [0.0, 0.0] and all(math.isfinite(v) for v in logged["train/loss"])


# -- bad input ------------------------------------------------------------------------------------------------------
def test_tags_of_another_class_count_are_named(domains):
    model = _weak(weak_labels="tags")
    with pytest.raises(ConfigError, match="tags have 5 classes but the model has num_classes=2"):
        model.target_weak_labels({"tags": torch.zeros(2, 5)}, torch.zeros(2, 2, 4, 4))


def test_weak_labels_the_data_does_not_serve_are_named(domains, tmp_path):
    with pytest.raises(ConfigError, match="weak_labels=tags needs data.init_args.target_weak_labels=tags.*'none'"):
        tiny_trainer(tmp_path, max_steps=1).fit(_weak(weak_labels="tags"), datamodule=_data(domains))


def test_impossible_settings_are_refused():
    with pytest.raises(ConfigError, match="weak_labels must be one of"):
        _weak(weak_labels="clicks")
    with pytest.raises(ConfigError, match="adapts the segmentation task"):
        tiny_model(WeakLabelAdaptation, tasks=["depth"], width=4, image_size=(SIZE, SIZE))
    with pytest.raises(ConfigError, match="does not expose them"):
        _weak(dense_head=lambda c, o: torch.nn.Identity())
    with pytest.raises(ConfigError, match="adversarial_weight must be >= 0"):
        _weak(adversarial_weight=-1.0)
    with pytest.raises(ConfigError, match="lr_multipliers is not supported"):
        _weak(lr_multipliers={"encoder": 2.0})


def test_a_checkpoint_of_other_tasks_is_refused_as_init(tmp_path):
    other = tiny_model(tasks=["depth"], width=4, image_size=(SIZE, SIZE))
    path = tmp_path / "depth.ckpt"
    torch.save({"state_dict": other.state_dict(), "umadapt": other.identity()}, path)
    model = _weak(init_checkpoint=str(path))
    with pytest.raises(ConfigError, match="init_checkpoint .* predicts tasks \\['depth'\\]"):
        model.load_init_checkpoint()


def test_a_resumed_run_does_not_need_its_init_checkpoint_any_more(domains, tmp_path):
    """Resuming restores the run's own weights; the source-only file it started from may be gone by then."""
    source_only = _weak(None)
    init = tmp_path / "source_only.ckpt"
    torch.save({"state_dict": source_only.state_dict(), "umadapt": source_only.identity()}, init)
    options = {"limit_val_batches": 0, "enable_checkpointing": True}
    first = tiny_trainer(tmp_path, max_steps=2, **options)
    first.fit(_weak(init_checkpoint=str(init)), datamodule=_data(domains))
    saved = tmp_path / "run.ckpt"
    first.save_checkpoint(saved)
    init.unlink()
    resumed = _weak(init_checkpoint=str(init))
    trainer = tiny_trainer(tmp_path, max_steps=4, **options)
    # the tiny model's hyperparameters hold modules (the CLI's hold config values): our own file, loaded in full
    trainer.fit(resumed, datamodule=_data(domains), ckpt_path=str(saved), weights_only=False)
    state = torch.load(saved, weights_only=False)["state_dict"]
    assert resumed.trainer.global_step == 4 and not all(
        torch.equal(resumed.state_dict()[k], v) for k, v in state.items()
    )


def test_gradient_clipping_reaches_the_network_only(domains, tmp_path):
    """``gradient_clip_val`` clips the network's gradient norm (the authors clip it at 1), not the discriminators'."""
    norms: dict[str, list[float]] = {}

    class Recording(WeakLabelAdaptation):
        def on_before_optimizer_step(self, optimizer):
            super().on_before_optimizer_step(optimizer)  # clips
            params = [p for p in optimizer.param_groups[0]["params"] if p.grad is not None]
            player = "network" if params[0] is self.network_parameters()[0] else "discriminators"
            norms.setdefault(player, []).append(
                float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))
            )

    model = _weak(Recording, gradient_clip_val=1e-3, adversarial_weight=1.0, class_alignment_weight=1.0)
    tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(model, datamodule=_data(domains))
    assert max(norms["network"]) <= 1e-3 * 1.01 and min(norms["discriminators"]) > 1e-2
    with pytest.raises(ConfigError, match="gradient_clip_val must be > 0"):
        _weak(gradient_clip_val=0.0)


def test_the_masked_class_loss_averages_each_image_then_the_images():
    """As the authors' code: per image over its present classes, then over the images with any present class (not a
    global mean over present entries, which would weigh images by their class count)."""
    from umadapt.methods.weak_label import _masked_bce

    logits = torch.tensor([[0.0, 2.0, -1.0], [1.0, 0.0, 0.0], [3.0, 3.0, 3.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # 3 classes, 1 class, none
    bce = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    want = (bce[0].mean() + bce[1, 0]) / 2
    torch.testing.assert_close(_masked_bce(logits, 0.0, mask), want)


def test_learned_loss_weights_train_with_the_network(domains, tmp_path):
    """A weighting with parameters (uncertainty weighting) joins the network player; before, fit refused it."""
    from umadapt.weighting import UncertaintyWeighting

    model = _weak(weighting=UncertaintyWeighting())
    tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(model, datamodule=_data(domains))
    ids = {id(p) for p in model.network_parameters()}
    assert all(id(p) in ids for p in model.weighting.parameters()) and len(list(model.weighting.parameters()))
