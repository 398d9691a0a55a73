"""Validators as a user meets them: gathered evidence, higher-is-better signs on good vs bad models, the target
images-only guarantee, and the errors that name the validator and the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from umadapt.errors import ConfigError
from umadapt.nn import CrossTaskDistillation
from umadapt.tasks import get_task
from umadapt.validators import (
    BNM,
    DEV,
    SND,
    CrossTaskConsistency,
    Entropy,
    Evidence,
    InfoMax,
    ReverseValidation,
    SourceRisk,
    TransformationAgreement,
    build_validator,
    collect_evidence,
    evidence_for,
)
from umadapt.validators import functional as VF

CLASSES = 3


class PixelModel(nn.Module):
    """A tiny multi-task model that is exactly flip-equivariant: depth and segmentation per pixel, normals from the
    image's horizontal and vertical central differences (a flip negates the horizontal one, so normals' x flips as
    the data pipeline flips it). ``odd_x=False`` predicts ``|dI/dx|``: wrong under a flip."""

    def __init__(self, tasks=("depth", "normals", "segmentation"), odd_x: bool = True) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.task_specs = {t: get_task(t) for t in self.tasks}
        self.loss_weights = {t: 1.0 for t in self.tasks}
        self.seg = nn.Conv2d(3, CLASSES, 1)
        self.odd_x = odd_x

    def features(self, image):
        return [image.mean(dim=1, keepdim=True).repeat(1, 2, 1, 1) * torch.tensor([1.0, -1.0]).view(1, 2, 1, 1)]

    def decode(self, features, size):
        grey = features[0][:, :1]
        return self._heads(grey)

    def forward(self, image):
        return self._heads(image.mean(dim=1, keepdim=True), image)

    def _heads(self, grey, image=None):
        image = grey.repeat(1, 3, 1, 1) if image is None else image
        padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")
        dx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
        dy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
        dx = dx if self.odd_x else dx.abs()
        normals = F.normalize(torch.cat([dx, dy, torch.full_like(dx, 0.1)], dim=1), dim=1)
        out = {"depth": F.softplus(grey) + 0.1, "normals": normals, "segmentation": self.seg(image)}
        return {t: out[t] for t in self.tasks}


def _batches(images, labels=None, size=4):
    for start in range(0, images.shape[0], size):
        batch = {"image": images[start : start + size]}
        if labels:
            batch.update({k: v[start : start + size] for k, v in labels.items()})
        yield batch


def _source(n=8, hw=8):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, hw, hw, generator=g)
    labels = {
        "depth": torch.rand(n, 1, hw, hw, generator=g) + 0.5,
        "normals": F.normalize(torch.randn(n, 3, hw, hw, generator=g), dim=1),
        "segmentation": torch.randint(0, CLASSES, (n, hw, hw), generator=g),
    }
    return images, labels


def test_flip_equivariant_model_agrees_with_itself_and_a_wrong_normals_mapping_does_not():
    torch.manual_seed(0)
    images, labels = _source()
    target = torch.rand(8, 3, 8, 8)
    for odd_x, expect_zero in ((True, True), (False, False)):
        model = PixelModel(odd_x=odd_x)
        evidence = collect_evidence(model, _batches(images, labels), _batches(target), transforms=["hflip"])
        score = TransformationAgreement("hflip", tasks=["normals"]).score(evidence)
        assert (abs(score) < 1e-6) == expect_zero, score
    # depth and segmentation of a per-pixel model are flip-equivariant too
    evidence = collect_evidence(PixelModel(), _batches(images, labels), _batches(target), transforms=["hflip"])
    assert abs(TransformationAgreement("hflip").score(evidence)) < 1e-6


def test_source_losses_are_the_per_sample_task_losses():
    images, labels = _source()
    model = PixelModel()
    evidence = collect_evidence(model, _batches(images, labels), _batches(images))
    with torch.no_grad():
        predictions = model(images)
    for i in (0, 5):
        expected = sum(float(get_task(t).loss(predictions[t][i : i + 1], labels[t][i : i + 1])) for t in model.tasks)
        assert evidence.source_losses[i].item() == pytest.approx(expected, rel=1e-5)
    assert SourceRisk().score(evidence) == pytest.approx(-float(evidence.source_losses.mean()))


def test_a_target_batch_with_labels_is_refused():
    images, labels = _source()
    with pytest.raises(ConfigError, match=r"target batch with \['depth'\].*images only"):
        collect_evidence(PixelModel(), _batches(images, labels), _batches(images, {"depth": labels["depth"]}))


def _class_evidence(target_logits, tasks=("label",)):
    """Evidence of a classifier whose target predictions are ``target_logits`` (no source needed by these)."""
    model = nn.Module()
    model.tasks = list(tasks)
    return Evidence(model, list(tasks), {}, {}, torch.zeros(1), {"label": target_logits})


def test_class_validators_prefer_confident_diverse_target_predictions():
    diverse = torch.eye(CLASSES).repeat(4, 1) * 8.0  # confident, every class used
    collapsed = torch.zeros(12, CLASSES)
    collapsed[:, 0] = 8.0  # confident, one class
    uniform = torch.zeros(12, CLASSES)  # not confident
    good, one_class, unsure = (_class_evidence(x) for x in (diverse, collapsed, uniform))
    assert Entropy().score(good) > Entropy().score(unsure)
    for validator in (InfoMax(), BNM()):
        assert validator.score(good) > validator.score(one_class), validator.name
        assert validator.score(good) > validator.score(unsure), validator.name
    # IM against a NumPy computation
    p = torch.softmax(diverse.double(), 1).numpy()
    h = lambda q: -(q * np.log(q)).sum(-1)  # noqa: E731
    assert InfoMax().score(good) == pytest.approx(h(p.mean(0)) - h(p).mean(), rel=1e-9)


def test_snd_scores_clustered_target_predictions_higher_than_scattered_ones():
    g = torch.Generator().manual_seed(0)
    clustered = torch.eye(CLASSES).repeat(20, 1) * 6.0 + 0.05 * torch.randn(60, CLASSES, generator=g)
    scattered = 3.0 * torch.randn(60, CLASSES, generator=g)
    assert SND().score(_class_evidence(clustered)) > SND().score(_class_evidence(scattered))


def test_class_validators_refuse_a_model_without_class_tasks():
    with pytest.raises(ConfigError, match=r"'entropy'.*PixelModel.*\['depth', 'normals'\]"):
        Entropy().check(PixelModel(tasks=("depth", "normals")))


def test_dev_weights_the_source_risk_by_the_cross_fitted_density_ratio():
    g = torch.Generator().manual_seed(1)
    source = torch.randn(40, 4, generator=g)
    target = torch.randn(40, 4, generator=g) + torch.tensor([1.5, 0, 0, 0])
    losses = (source[:, 0] > 0.5).double() * 2.0 + 0.1  # source samples that look like the target are the hard ones
    evidence = Evidence(nn.Module(), [], {}, {}, losses, {}, source_features=source, target_features=target)
    weights = VF.cross_fitted_weights(source, target, folds=2, seed=0)
    assert DEV().score(evidence) == pytest.approx(-VF.dev_risk(losses, weights))
    assert DEV().score(evidence) < SourceRisk().score(evidence)  # the target-like (hard) samples weigh more


def test_dev_names_itself_and_the_model_without_features():
    model = nn.Linear(2, 2)
    with pytest.raises(ConfigError, match=r"'dev'.*Linear has no encoder features"):
        DEV().check(model)


def test_cross_task_consistency_is_the_negated_mean_energy_and_needs_distillation_networks():
    torch.manual_seed(0)
    model = PixelModel()
    model.distillation = CrossTaskDistillation(["depth", "normals", "segmentation"], num_classes=CLASSES)
    images, labels = _source()
    target = torch.rand(8, 3, 8, 8)
    evidence = collect_evidence(model, _batches(images, labels), _batches(target))
    with torch.no_grad():
        expected = -float(model.distillation.energy(model(target)).mean())
    assert CrossTaskConsistency().score(evidence) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ConfigError, match=r"'consistency'.*PixelModel has none.*or use 'agreement'"):
        CrossTaskConsistency().check(PixelModel())


def test_cross_task_consistency_loads_fixed_networks_from_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = PixelModel()
    model.distillation = CrossTaskDistillation(["depth", "normals", "segmentation"], num_classes=CLASSES)
    fixed = CrossTaskDistillation(["depth", "normals", "segmentation"], num_classes=CLASSES)
    path = tmp_path / "source_phase.ckpt"
    torch.save({"state_dict": {f"distillation.{k}": v for k, v in fixed.state_dict().items()}}, path)
    images, labels = _source()
    target = torch.rand(8, 3, 8, 8)
    evidence = collect_evidence(model, _batches(images, labels), _batches(target))
    with torch.no_grad():
        expected = -float(fixed.energy(model(target)).mean())
    assert CrossTaskConsistency(checkpoint=str(path)).score(evidence) == pytest.approx(expected, rel=1e-5)
    assert CrossTaskConsistency().score(evidence) != pytest.approx(expected, rel=1e-5)  # not the model's own


def test_evidence_for_gathers_what_the_validators_need():
    images, labels = _source()
    validators = [DEV(), TransformationAgreement("shift", shift_pixels=1), SourceRisk()]
    evidence = evidence_for(validators, PixelModel(), _batches(images, labels), _batches(images))
    assert evidence.source_features.shape == (8, 2) and evidence.target_features.shape == (8, 2)
    assert set(evidence.target_transformed) == {"shift"}
    shifted = PixelModel()(images.roll(1, dims=-1))["depth"].roll(-1, dims=-1)
    torch.testing.assert_close(evidence.target_transformed["shift"]["depth"], shifted)


def test_reverse_validation_scores_a_right_model_above_a_wrong_one():
    """A model whose target pseudo-labels are right teaches a reverse model that does well on the source."""
    torch.manual_seed(0)

    class Classifier(nn.Module):
        def __init__(self, flip: bool) -> None:
            super().__init__()
            self.tasks, self.task_specs, self.loss_weights = ["label"], {"label": get_task("label")}, {"label": 1.0}
            self.linear = nn.Linear(2, 2)
            self.flip = flip
            with torch.no_grad():
                self.linear.weight.copy_(torch.tensor([[-4.0, 0.0], [4.0, 0.0]]) * (-1 if flip else 1))
                self.linear.bias.zero_()

        def forward(self, image):
            return {"label": self.linear(image.mean(dim=(2, 3))[:, :2])}

    def sample(n, g):
        label = torch.randint(0, 2, (n,), generator=g)
        x = (label.float() * 2 - 1).view(n, 1, 1, 1) + 0.3 * torch.randn(n, 1, 1, 1, generator=g)
        return torch.cat([x, torch.zeros(n, 2, 1, 1)], dim=1), label

    g = torch.Generator().manual_seed(0)
    target_images, _ = sample(64, g)
    source_images, source_labels = sample(32, g)
    targets = [{"image": im} for im in target_images]
    source = list(_batches(source_images, {"label": source_labels}, size=8))
    reverse = ReverseValidation(steps=60, lr=0.05, batch_size=16)
    right, wrong = (reverse.score_model(Classifier(flip), targets, source) for flip in (False, True))
    assert right > wrong
    with pytest.raises(ConfigError, match="python -m umadapt.select"):
        reverse.score(_class_evidence(torch.zeros(2, 2)))
    with pytest.raises(ConfigError, match=r"besides the image"):
        reverse.score_model(Classifier(False), [{"image": target_images[0], "label": torch.tensor(0)}], source)


def test_build_validator_names_unknown_validators_and_options():
    assert isinstance(build_validator("snd", temperature=0.1), SND)
    with pytest.raises(ConfigError, match=r"Unknown validator 'entropie'; valid: \['agreement'"):
        build_validator("entropie")
    with pytest.raises(ConfigError, match=r"Validator 'dev' with options \{'bins': 3\}"):
        build_validator("dev", bins=3)


def test_a_diverged_model_is_not_finite_evidence_and_modes_are_restored():
    images, labels = _source()
    model = PixelModel()
    model.seg.train()
    model.eval()
    model.seg.train()  # a frozen-in-eval root with a training child (UM-Adapt keeps such mixes): both kept
    evidence = collect_evidence(model, _batches(images, labels), _batches(images))
    assert evidence.is_finite() and not model.training and model.seg.training
    with torch.no_grad():
        model.seg.weight.fill_(float("nan"))
    assert not collect_evidence(model, _batches(images, labels), _batches(images)).is_finite()


def test_cross_task_consistency_scores_a_model_without_networks_with_built_ones_from_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    net = {"hidden": 8, "downsample": 2, "dilations": [1]}
    from functools import partial

    from umadapt.nn import CrossTaskNet

    tasks = ["depth", "normals", "segmentation"]
    fixed = CrossTaskDistillation(tasks, num_classes=CLASSES, net=partial(CrossTaskNet, **net))
    path = tmp_path / "umadapt_source_phase.ckpt"
    torch.save({"state_dict": {f"distillation.{k}": v for k, v in fixed.state_dict().items()}}, path)
    model = PixelModel()  # no distillation networks of its own (a source-only or DANN model)
    model.num_classes = CLASSES
    images, labels = _source()
    target = torch.rand(8, 3, 8, 8)
    evidence = collect_evidence(model, _batches(images, labels), _batches(target))
    validator = CrossTaskConsistency(checkpoint=str(path), cross_tasks=tasks, net=net)
    with torch.no_grad():
        expected = -float(fixed.energy(model(target)).mean())
    assert validator.score(evidence) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ConfigError, match=r"set checkpoint .* and cross_tasks"):
        CrossTaskConsistency(checkpoint=str(path)).check(model)
    wrong = CrossTaskConsistency(checkpoint=str(path), cross_tasks=tasks, net={**net, "hidden": 16})
    with pytest.raises(ConfigError, match="another architecture"):
        wrong.score(evidence)
