"""Loss weightings: each formula at known inputs, the gradients they produce, logging, checkpoints, clear errors."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from data_modules import PairedDataModule
from umadapt.errors import ConfigError
from umadapt.methods import SourceOnly
from umadapt.nn import ProgressiveEncoder, ResNetEncoder
from umadapt.weighting import (
    DynamicWeightAveraging,
    FixedWeighting,
    GradNorm,
    PCGrad,
    UncertaintyWeighting,
    dwa_weights,
    gradnorm_targets,
    inject_gradient,
    project_conflicting,
)

TASKS = ["depth", "normals", "segmentation"]


def _model(weighting=None, tasks=TASKS, encoder=None, image_size=(16, 16), **kwargs) -> SourceOnly:
    encoder = encoder or ResNetEncoder("resnet10", 4, small_input=True)
    return SourceOnly(encoder=encoder, tasks=tasks, num_classes=2, image_size=image_size, weighting=weighting, **kwargs)


def _batch(n: int = 2, size: int = 16) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.rand(n, 3, size, size, generator=g),
        "depth": torch.rand(n, 1, size, size, generator=g) + 0.5,
        "normals": torch.nn.functional.normalize(torch.randn(n, 3, size, size, generator=g), dim=1),
        "segmentation": torch.randint(0, 2, (n, size, size), generator=g),
    }


class _Bound(nn.Module):
    """A minimal 'model' for a weighting: tasks, loss weights, a shared parameter and train mode."""

    def __init__(self, tasks, epoch: int = 0) -> None:
        super().__init__()
        self.tasks, self.loss_weights, self.current_epoch = list(tasks), {t: 1.0 for t in tasks}, epoch
        self.encoder = nn.Linear(2, 1, bias=False)


# -- formulas ---------------------------------------------------------------------------------------------------
def test_fixed_weighting_is_the_old_weighted_sum():
    model = _model(loss_weights={"depth": 2.0, "normals": 0.5})
    assert isinstance(model.weighting, FixedWeighting)
    losses = {"depth": torch.tensor(1.5), "normals": torch.tensor(2.0), "segmentation": torch.tensor(0.25)}
    assert model.weighted_sum(losses).item() == pytest.approx(2.0 * 1.5 + 0.5 * 2.0 + 0.25)
    assert model.weighting.last_weights == {"depth": 2.0, "normals": 0.5, "segmentation": 1.0}


def test_uncertainty_weighting_formula():
    weighting = UncertaintyWeighting()
    weighting.bind(_Bound(TASKS))
    s = torch.tensor([math.log(2.0), 0.0, math.log(4.0)])
    with torch.no_grad():
        weighting.log_variance.copy_(s)
    losses = {"depth": torch.tensor(3.0), "normals": torch.tensor(1.0), "segmentation": torch.tensor(3.0)}
    total = weighting(losses, _Bound(TASKS))
    # regression: 1/(2 sigma^2) L + log sigma; classification: 1/sigma^2 L + log sigma, with log sigma = s / 2
    expected = 0.5 / 2 * 3.0 + 0.5 * 1.0 + 1 / 4 * 3.0 + 0.5 * s.sum().item()
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert weighting.last_weights["segmentation"].item() == pytest.approx(0.25)
    total.backward()  # d/ds of exp(-s) L + s/2 = -exp(-s) L + 1/2
    assert weighting.log_variance.grad[2].item() == pytest.approx(-0.25 * 3.0 + 0.5)


def test_dwa_formula_and_epoch_bookkeeping():
    previous, before = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 2.0, 1.0])
    expected = 3 * torch.softmax(torch.tensor([0.5, 1.0, 3.0]) / 2.0, dim=0)
    assert torch.allclose(dwa_weights(previous, before, 2.0), expected)

    weighting = DynamicWeightAveraging(temperature=2.0)
    weighting.bind(_Bound(TASKS))
    epoch_losses = {0: [2.0, 2.0, 1.0], 1: [1.0, 2.0, 3.0], 2: [5.0, 5.0, 5.0]}
    for epoch, values in epoch_losses.items():
        model = _Bound(TASKS, epoch)
        for scale in (0.5, 1.5):  # two steps whose mean is `values`
            weighting({t: torch.tensor(v * scale, requires_grad=True) for t, v in zip(TASKS, values)}, model)
            weights = torch.stack([torch.as_tensor(weighting.last_weights[t]) for t in TASKS])
            if epoch < 2:
                assert torch.equal(weights, torch.ones(3))
            else:
                assert torch.allclose(weights, expected)


def test_gradnorm_target_ratio():
    norms = torch.tensor([1.0, 2.0, 3.0])
    losses, initial = torch.tensor([1.0, 1.0, 2.0]), torch.tensor([2.0, 1.0, 2.0])
    inverse_rate = torch.tensor([0.5, 1.0, 1.0])
    ratio = inverse_rate / inverse_rate.mean()
    targets = gradnorm_targets(norms, losses, initial, alpha=1.5)
    assert torch.allclose(targets, 2.0 * ratio**1.5)
    assert targets[0] < targets[1] == targets[2]  # the task that trained fastest gets the smallest target
    assert torch.allclose(gradnorm_targets(norms, losses, initial, alpha=0.0), torch.full((3,), 2.0))


def test_gradnorm_weight_gradient_and_value():
    model = _Bound(["depth", "normals"])
    weighting = GradNorm(alpha=1.0)
    weighting.bind(model)
    with torch.no_grad():
        model.encoder.weight.copy_(torch.tensor([[0.5, 0.2]]))  # positive losses
    x = torch.tensor([[1.0, 0.0]])
    out = model.encoder(x).sum()  # = w0
    losses = {"depth": 3.0 * out, "normals": 1.0 * out}  # dL/dW norms 3 and 1 at W = (w0, w1)
    total = weighting(losses, model)
    assert total.item() == pytest.approx(4.0 * out.item())  # value: sum w_i L_i with w = 1
    total.backward()
    # first call: L(0) = L, so r = 1 and targets = mean(G) = 2; grad_w = sign(G_i - 2) * n_i
    assert torch.allclose(weighting.weights.grad, torch.tensor([3.0, -1.0]))
    assert torch.allclose(model.encoder.weight.grad, torch.tensor([[4.0, 0.0]]))  # network: sum w_i dL_i


def test_pcgrad_projection_removes_the_conflicting_component():
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    projected, coefficients = project_conflicting(grads)
    assert torch.allclose(projected, torch.tensor([[0.5, 0.5], [0.0, 1.0]]))
    assert torch.dot(projected[0], grads[1]).abs() < 1e-6 and torch.dot(projected[1], grads[0]).abs() < 1e-6
    assert torch.allclose(coefficients @ grads, projected)
    agreeing = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert torch.equal(project_conflicting(agreeing)[0], agreeing)  # no conflict: unchanged


def test_pcgrad_sets_the_projected_gradient_on_shared_parameters_only():
    model = _Bound(["depth", "normals"])
    head = nn.Parameter(torch.tensor(2.0))
    weighting = PCGrad()
    weighting.bind(model)
    w = model.encoder.weight  # shared, shape [1, 2]
    with torch.no_grad():
        w.copy_(torch.tensor([[0.3, -0.7]]))
    losses = {"depth": w[0, 0] * 1.0 + head * 0.0, "normals": -w[0, 0] + w[0, 1] + head}  # g = (1,0), (-1,1)
    total = weighting(losses, model)
    assert total.item() == pytest.approx(sum(v.item() for v in losses.values()))
    total.backward()
    assert torch.allclose(w.grad, torch.tensor([[0.5, 1.5]]))  # (0.5, 0.5) + (0, 1)
    assert head.grad.item() == pytest.approx(1.0)  # task-specific parameters: plain gradient


def test_inject_gradient_adds_exactly_the_given_gradient():
    p = nn.Parameter(torch.tensor([1.0, 2.0]))
    loss = (p**2).sum() + inject_gradient([p], [torch.tensor([10.0, -1.0])])
    assert loss.item() == 5.0
    loss.backward()
    assert torch.equal(p.grad, torch.tensor([12.0, 3.0]))


@pytest.mark.parametrize("weighting", [UncertaintyWeighting, DynamicWeightAveraging, GradNorm, PCGrad])
def test_every_weighting_trains_a_real_model(weighting):
    model = _model(weighting())
    batch = _batch()
    loss = model.weighted_sum(model.task_losses(model(batch["image"]), batch))
    loss.backward()
    assert torch.isfinite(loss) and set(model.weighting.last_weights) == set(TASKS)
    assert all(p.grad is not None for p in model.encoder.parameters())
    model.eval()
    with torch.no_grad():  # evaluation: plain weighted sum with the current weights, no side effects
        assert torch.isfinite(model.weighted_sum(model.task_losses(model(batch["image"]), batch)))


# -- errors -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("weighting", [GradNorm, PCGrad])
def test_gradient_weighting_needs_several_tasks(weighting):
    with pytest.raises(ConfigError, match=r"single task \['depth'\]"):
        _model(weighting(), tasks=["depth"])


@pytest.mark.parametrize("weighting", [GradNorm, PCGrad])
def test_gradient_weighting_needs_shared_parameters(weighting):
    encoder = ProgressiveEncoder(ResNetEncoder("resnet10", 4, small_input=True))
    with pytest.raises(ConfigError, match="ProgressiveEncoder shares no trainable parameter"):
        _model(weighting(), encoder=encoder)


def test_gradient_weighting_refuses_a_task_that_misses_the_shared_parameters():
    model = _Bound(["depth", "normals"])
    weighting = PCGrad()
    weighting.bind(model)
    head = nn.Parameter(torch.tensor(1.0))
    losses = {"depth": model.encoder.weight.sum(), "normals": head * 2.0}
    with pytest.raises(ConfigError, match="'normals' loss does not reach"):
        weighting(losses, model)
    with pytest.raises(ConfigError, match="'depth' loss carries no gradient"):
        weighting({"depth": torch.tensor(1.0), "normals": head * 2.0}, model)


def test_loss_weights_only_go_with_fixed_weighting():
    with pytest.raises(ConfigError, match="apply only to FixedWeighting.*UncertaintyWeighting"):
        _model(UncertaintyWeighting(), loss_weights={"depth": 2.0})


class _ManualTwoPlayers(SourceOnly):
    """A manual-optimization method whose optimizer holds only the encoder and heads (like adversarial methods)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.automatic_optimization = False

    def configure_optimizers(self):
        return torch.optim.SGD([*self.encoder.parameters(), *self.heads.parameters()], lr=0.01)

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        loss = self.supervised_loss(batch["source"], "source")
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()


def _trainer(tmp_path, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, **kwargs,
    )


def test_learned_weights_outside_the_optimizers_are_an_error(tmp_path, toy_domains):
    model = _ManualTwoPlayers(
        encoder=ResNetEncoder("resnet10", 4, small_input=True), tasks=TASKS, num_classes=2, image_size=(32, 32),
        weighting=UncertaintyWeighting(),
    )
    with pytest.raises(ConfigError, match="optimizers holds model.weighting's parameters"):
        _trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(model, PairedDataModule(*toy_domains, batch_size=4))


def test_pcgrad_works_under_manual_optimization(tmp_path, toy_domains):
    model = _ManualTwoPlayers(
        encoder=ResNetEncoder("resnet10", 4, small_input=True), tasks=TASKS, num_classes=2, image_size=(32, 32),
        weighting=PCGrad(),
    )
    before = [p.detach().clone() for p in model.encoder.parameters()]
    _trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(model, PairedDataModule(*toy_domains, batch_size=4))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.encoder.parameters()))


# -- logging and checkpoints --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_weights_are_logged_and_restored_from_checkpoints(tmp_path, toy_domains):
    pl.seed_everything(0)
    model = _model(UncertaintyWeighting(), image_size=(32, 32))
    trainer = _trainer(tmp_path, max_steps=3, limit_val_batches=0)
    trainer.fit(model, PairedDataModule(*toy_domains, batch_size=4))
    assert {f"train/weights/{t}" for t in TASKS} <= set(trainer.callback_metrics)
    assert not torch.equal(model.weighting.log_variance.detach(), torch.zeros(3))  # learned by the model's optimizer
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    restored = SourceOnly.load_from_checkpoint(path, weights_only=False)  # hparams hold modules (no CLI here)
    assert isinstance(restored.weighting, UncertaintyWeighting)
    assert torch.equal(restored.weighting.log_variance, model.weighting.log_variance)


def test_dwa_state_survives_the_state_dict():
    model = _model(DynamicWeightAveraging())
    model.weighting.history.fill_(3.0)
    model.weighting.epochs_done.fill_(2)
    copy = _model(DynamicWeightAveraging())
    copy.load_state_dict(model.state_dict())
    assert int(copy.weighting.epochs_done) == 2 and torch.equal(copy.weighting.history, model.weighting.history)
