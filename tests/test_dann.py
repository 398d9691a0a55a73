"""Gradient reversal, coefficient and LR schedules, domain adversaries and the DANN method."""

from __future__ import annotations

import math
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from data_modules import PairedDataModule
from data_modules.digits import Digits, DigitsM
from umadapt.methods import DANN, SourceOnly
from umadapt.nn import (
    DigitEncoder,
    FeatureDiscriminator,
    GradientReversal,
    MLPClassificationHead,
    OutputDiscriminator,
    ResNetEncoder,
    SpatialDiscriminator,
    domain_adversarial_loss,
    grad_reverse,
)
from umadapt.schedules import (
    COEFFICIENT_SCHEDULES,
    LR_SCHEDULES,
    get_coefficient_schedule,
    get_lr_schedule,
)

# -- gradient reversal --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("coefficient", [0.0, 0.37, 1.0, 2.5])
def test_gradient_is_exactly_minus_lambda_times_incoming(coefficient):
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    y = grad_reverse(x, coefficient)
    assert torch.equal(y, x)
    # Full Jacobian, one unit cotangent at a time (gradcheck-style): it must be -lambda * I.
    jacobian = torch.stack(
        [torch.autograd.grad(y.flatten()[i], x, retain_graph=True)[0].flatten() for i in range(x.numel())]
    )
    assert torch.equal(jacobian, -coefficient * torch.eye(x.numel(), dtype=torch.float64))
    incoming = torch.randn_like(x)
    (grad,) = torch.autograd.grad(y, x, incoming)
    assert torch.equal(grad, incoming * -coefficient)


def test_gradient_reversal_under_bf16_autocast():
    torch.manual_seed(0)
    layer, head = torch.nn.Linear(8, 16), torch.nn.Linear(16, 1)
    grl = GradientReversal(0.75)
    x = torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = layer(x)
        reversed_ = grl(hidden)
        out = head(reversed_).float().pow(2).sum()
    assert hidden.dtype == torch.bfloat16 and torch.equal(reversed_, hidden)
    hidden.retain_grad()
    reversed_.retain_grad()
    out.backward()
    assert reversed_.grad.dtype == torch.bfloat16 and hidden.grad.dtype == torch.bfloat16
    assert torch.equal(hidden.grad, reversed_.grad * -0.75)
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


def _ddp_worker(rank: int, world_size: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/init", rank=rank, world_size=world_size)
    torch.manual_seed(0)
    feature, head = torch.nn.Linear(4, 3), torch.nn.Linear(3, 1)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Sequential(feature, GradientReversal(0.5), head))
    x = torch.arange(8.0).reshape(2, 4) / 8 + rank
    model(x).sum().backward()
    torch.save((feature.weight.grad, head.weight.grad), f"{folder}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_gradient_reversal_under_ddp(tmp_path):
    """Two CPU processes (gloo): DDP averages the reversed gradients like any other gradient."""
    # spawn, not fork: forking the multi-threaded test process (torch, W&B threads) can deadlock the child
    mp.start_processes(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    torch.manual_seed(0)
    feature, head = torch.nn.Linear(4, 3), torch.nn.Linear(3, 1)
    reference = torch.nn.Sequential(feature, head)
    x = torch.cat([torch.arange(8.0).reshape(2, 4) / 8 + r for r in range(2)])
    (reference(x).sum() / 2).backward()  # the mean over ranks of per-rank sums
    for rank in range(2):
        feature_grad, head_grad = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.allclose(feature_grad, -0.5 * feature.weight.grad, atol=1e-6)
        assert torch.allclose(head_grad, head.weight.grad, atol=1e-6)


# -- schedules ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_schedules_match_the_paper_formulas(p):
    assert get_coefficient_schedule("dann")(p) == pytest.approx(2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0, abs=1e-12)
    assert get_coefficient_schedule("dann", {"gamma": 5})(p) == pytest.approx(2.0 / (1.0 + math.exp(-5 * p)) - 1.0)
    assert get_lr_schedule("dann")(p) == pytest.approx(1.0 / (1.0 + 10.0 * p) ** 0.75, abs=1e-12)
    assert get_coefficient_schedule("constant", {"value": 0.3})(p) == 0.3
    assert get_coefficient_schedule("linear_warmup", {"warmup": 0.5})(p) == min(p / 0.5, 1.0)


def test_schedule_values_at_the_ends():
    assert get_coefficient_schedule("dann")(0.0) == 0.0
    assert get_coefficient_schedule("dann")(1.0) == pytest.approx(0.99991, abs=1e-5)
    assert get_lr_schedule("dann")(1.0) == pytest.approx(11**-0.75)


def test_unknown_schedule_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="Valid names") as info:
        get_coefficient_schedule("dan")
    assert all(name in str(info.value) for name in COEFFICIENT_SCHEDULES)
    with pytest.raises(ValueError, match="Valid names") as info:
        get_lr_schedule("anneal")
    assert all(name in str(info.value) for name in LR_SCHEDULES) and "'dann'" in str(info.value)
    with pytest.raises(ValueError, match="gama.*gamma"):
        get_coefficient_schedule("dann", {"gama": 10})


# -- adversaries --------------------------------------------------------------------------------------------------


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
    train, held_out = (features(source, "train"), features(target, "train")), (features(source, "val"), features(target, "val"))
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


# -- the method ---------------------------------------------------------------------------------------------------


def _digits_dann(**kwargs) -> DANN:
    return DANN(
        encoder=DigitEncoder(batch_norm=True),
        tasks=["label"],
        num_classes=10,
        image_size=(32, 32),
        classification_head=partial(MLPClassificationHead, hidden=[32]),
        adversary=partial(FeatureDiscriminator, hidden=[16], pool_size=2),
        **kwargs,
    )


def test_dann_bad_configuration_is_named():
    with pytest.raises(ValueError, match="Valid names.*'constant'.*'dann'.*'linear_warmup'"):
        _digits_dann(grl_schedule="ramp")
    with pytest.raises(ValueError, match="declares level 'features'"):
        _digits_dann(adversary_input="outputs")
    with pytest.raises(ValueError, match="adversary_input"):
        DANN(encoder=DigitEncoder(), tasks=["label"], num_classes=10, adversary=lambda channels: FeatureDiscriminator(channels))


def _trainer(tmp_path, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **kwargs,
    )


@pytest.mark.parametrize(
    "adversary",
    [
        partial(FeatureDiscriminator, hidden=[16]),
        partial(SpatialDiscriminator, hidden=[8], feature_index=-2),
        partial(OutputDiscriminator, hidden=[8]),
    ],
    ids=["feature", "spatial", "output"],
)
def test_dann_trains_dense_tasks_with_every_adversary(adversary, tmp_path, toy_domains):
    pl.seed_everything(0)
    dm = PairedDataModule(*toy_domains, batch_size=4)
    model = DANN(
        encoder=ResNetEncoder("resnet10", width=8, small_input=True),
        tasks=["depth", "normals", "segmentation"],
        num_classes=2,
        image_size=(32, 32),
        adversary=adversary,
    )
    before = {k: v.clone() for k, v in model.adversary.state_dict().items()}
    trainer = _trainer(tmp_path, max_steps=3, limit_val_batches=0)
    trainer.fit(model, dm)
    metrics = trainer.callback_metrics
    for key in ("train/domain/loss", "train/domain/accuracy", "train/grl/lambda", "train/lr", "train/source/depth/loss"):
        assert key in metrics, key
    assert 0.0 < float(metrics["train/grl/lambda"]) < 1.0  # 2 / (1 + exp(-10 * 2/3)) - 1 after the last step's p
    assert any(not torch.equal(before[k], v) for k, v in model.adversary.state_dict().items())


@pytest.mark.parametrize("weighting", ["uncertainty", "pcgrad"])
def test_dann_combines_its_task_losses_with_a_weighting(weighting, tmp_path, toy_domains):
    """Loss weighting is selectable for DANN too; a gradient method (PCGrad) works beside the reversed gradient."""
    from umadapt.weighting import PCGrad, UncertaintyWeighting

    pl.seed_everything(0)
    chosen = UncertaintyWeighting() if weighting == "uncertainty" else PCGrad()
    model = DANN(
        encoder=ResNetEncoder("resnet10", width=8, small_input=True),
        tasks=["depth", "segmentation"],
        num_classes=2,
        image_size=(32, 32),
        adversary=partial(FeatureDiscriminator, hidden=[8]),
        weighting=chosen,
    )
    adversary_before = {k: v.clone() for k, v in model.adversary.state_dict().items()}
    trainer = _trainer(tmp_path, max_steps=3, limit_val_batches=0)
    trainer.fit(model, PairedDataModule(*toy_domains, batch_size=4))
    metrics = trainer.callback_metrics
    assert model.weighting is chosen
    for key in ("train/weights/depth", "train/weights/segmentation", "train/domain/loss"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert any(not torch.equal(adversary_before[k], v) for k, v in model.adversary.state_dict().items())
    if weighting == "uncertainty":  # its log-variances are trained by the same optimizer
        assert any(bool(p.abs().sum() > 0) for p in model.weighting.parameters())  # moved from their init 0


def test_dann_step_under_bf16_mixed_precision(tmp_path):
    pl.seed_everything(0)
    dm = PairedDataModule(Digits(train_size=8), DigitsM(train_size=8), tasks=["label"], batch_size=4, augmentation="none")
    model = _digits_dann()
    trainer = _trainer(tmp_path, max_steps=2, limit_val_batches=0, precision="bf16-mixed")
    trainer.fit(model, dm)
    assert torch.isfinite(trainer.callback_metrics["train/domain/loss"])
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.slow
def test_dann_changes_target_accuracy_against_source_only(tmp_path):
    """Same seed, same data, same steps: the only difference is the adversary behind gradient reversal."""
    accuracies = {}
    for cls in (SourceOnly, DANN):
        pl.seed_everything(0)
        dm = PairedDataModule(
            Digits(train_size=128, test_size=32), DigitsM(train_size=128, test_size=160),
            tasks=["label"], batch_size=32, augmentation="none",
        )
        kwargs = {"adversary": partial(FeatureDiscriminator, hidden=[16], pool_size=2)} if cls is DANN else {}
        model = cls(
            encoder=DigitEncoder(batch_norm=True), tasks=["label"], num_classes=10, image_size=(32, 32),
            classification_head=partial(MLPClassificationHead, hidden=[32]),
            optimizer=lambda params: torch.optim.SGD(params, lr=0.03, momentum=0.9), lr_schedule="dann", **kwargs,
        )
        trainer = _trainer(tmp_path, max_epochs=3, limit_val_batches=0)
        trainer.fit(model, dm)
        trainer.test(model, dm, verbose=False)
        accuracies[cls.__name__] = float(trainer.callback_metrics["test/target/label/accuracy"])
    assert accuracies["DANN"] != accuracies["SourceOnly"], accuracies


@pytest.mark.slow
def test_dann_checkpoint_round_trip(tmp_path, monkeypatch):
    from umadapt.cli import main

    monkeypatch.chdir(tmp_path)
    experiments = __import__("pathlib").Path(__file__).resolve().parents[1] / "experiments" / "digits"
    args = [
        "--config", str(experiments / "base.yaml"), "--config", str(experiments / "dann.yaml"),
        *[f"--data.init_args.{r}.init_args.{s}=8" for r in ("source", "target") for s in ("train_size", "val_size", "test_size")],
        "--data.init_args.batch_size=4", "--trainer.accelerator=cpu", "--trainer.logger.init_args.version=run",
        "--model.init_args.grl_schedule=linear_warmup", "--model.init_args.grl_schedule_args={warmup: 0.5}",
    ]
    main(["fit", *args, "--trainer.max_steps=2", "--trainer.max_epochs=1"])
    ckpt = tmp_path / "logs" / "umadapt" / "run" / "checkpoints" / "last.ckpt"
    model = DANN.load_from_checkpoint(ckpt).eval()
    assert isinstance(model.adversary, FeatureDiscriminator) and isinstance(model.encoder, DigitEncoder)
    assert model.adversary_input == "features" and model.grl_schedule(0.25) == 0.5
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert model(torch.rand(2, 3, 32, 32))["label"].shape == (2, 10)
