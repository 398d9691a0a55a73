"""Pseudo-label machinery (:mod:`umadapt.pseudo`): transforms and their inverses, ensembling, confidence rules,
pseudo-label conventions, the EMA teacher update and the student's photometric augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from umadapt.errors import ConfigError
from umadapt.pseudo import (
    Calibration,
    PhotometricAugmentation,
    combine_views,
    confident,
    ema_update,
    hflip_back,
    parse_rules,
    parse_transforms,
    predict_views,
    pseudo_targets,
    view_disagreement,
)
from umadapt.pseudo.confidence import LABEL_IGNORE
from umadapt.samples import IGNORE_INDEX

TASKS = ["depth", "normals", "segmentation", "label"]


class FlipEquivariant(nn.Module):
    """Per-pixel depth and segmentation, normals whose x is a horizontal derivative (so it changes sign under a flip,
    as a camera-frame normal does), an image-level label from a global mean: exactly flip-equivariant."""

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        gray = image.mean(dim=1, keepdim=True)
        padded = F.pad(gray, (1, 1, 0, 0))
        dx = padded[..., 2:] - padded[..., :-2]
        normals = torch.cat([dx, torch.full_like(dx, 0.3), -torch.ones_like(dx)], dim=1)
        segmentation = torch.cat([3.0 * gray, 1.0 - 2.0 * gray, gray**2], dim=1)
        return {
            "depth": F.softplus(2.0 * gray + 0.5),
            "normals": normals / normals.norm(dim=1, keepdim=True),
            "segmentation": segmentation,
            "label": torch.stack([image.mean(dim=(1, 2, 3)), image.std(dim=(1, 2, 3))], dim=1),
        }


def test_hflip_back_flips_the_width_and_negates_normals_x():
    normals = torch.randn(2, 3, 4, 5)
    back = hflip_back("normals", normals.flip(-1))
    assert torch.equal(back[:, 1:], normals[:, 1:]) and torch.equal(back[:, 0], -normals[:, 0])
    depth = torch.rand(2, 1, 4, 5)
    assert torch.equal(hflip_back("depth", depth.flip(-1)), depth)
    logits = torch.randn(2, 3)
    assert torch.equal(hflip_back("label", logits), logits)


def test_ensembling_is_exact_for_a_flip_equivariant_model():
    torch.manual_seed(0)
    images = torch.rand(3, 3, 8, 10)
    model = FlipEquivariant()
    views = predict_views(model, images, parse_transforms(["identity", "hflip"], TASKS), TASKS)
    plain = model(images)
    for task in TASKS:
        ensemble = combine_views(task, views[task])
        expected = plain[task].softmax(dim=1) if task in ("segmentation", "label") else plain[task]
        torch.testing.assert_close(ensemble, expected, rtol=1e-5, atol=1e-6)
        assert float(view_disagreement(task, views[task], ensemble).max()) < 0.05  # acos near 1: ~0.02 deg float32
    # without the sign change of n_x the two views of the normals disagree: the test can fail
    wrong = [views["normals"][0], views["normals"][1] * torch.tensor([-1.0, 1.0, 1.0]).view(1, 3, 1, 1)]
    assert float(view_disagreement("normals", wrong, combine_views("normals", wrong)).max()) > 1.0


def test_scale_resamples_to_a_multiple_of_the_stride_and_back():
    (scale,) = parse_transforms(["scale:1.5"], TASKS)
    images = torch.rand(2, 3, 64, 64)
    assert tuple(scale.apply(images, multiple=32).shape[-2:]) == (96, 96)
    assert tuple(scale.apply(torch.rand(1, 3, 40, 40), multiple=32).shape[-2:]) == (64, 64)
    normals = F.normalize(torch.randn(2, 3, 96, 96), dim=1)
    back = scale.invert("normals", normals, (64, 64))
    assert back.shape == (2, 3, 64, 64)
    torch.testing.assert_close(back.norm(dim=1), torch.ones(2, 64, 64))
    depth = torch.full((2, 1, 96, 96), 3.0)
    assert torch.allclose(scale.invert("depth", depth, (64, 64)), torch.full((2, 1, 64, 64), 3.0))  # not rescaled


def test_median_of_an_even_number_of_views_is_the_mean_of_the_middle_two():
    views = [torch.full((1, 1, 2, 2), v) for v in (1.0, 2.0, 4.0, 10.0)]
    assert torch.allclose(combine_views("depth", views, "median"), torch.full((1, 1, 2, 2), 3.0))
    assert torch.allclose(combine_views("depth", views[:3], "median"), torch.full((1, 1, 2, 2), 2.0))


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["zoom:1.2"], "zoom:1.2 cannot be inverted for the dense task 'depth'"),
        (["identity", "identity"], "twice"),
        (["rotate"], "Unknown transform 'rotate'"),
        (["scale:x"], "needs a number"),
        ("hflip", "non-empty list"),
    ],
)
def test_bad_transforms_are_refused_at_construction(specs, message):
    with pytest.raises(ConfigError, match=message):
        parse_transforms(specs, ["depth", "label"])


def test_zoom_is_accepted_for_per_image_labels():
    (zoom,) = parse_transforms(["zoom:2"], ["label"])
    images = torch.zeros(1, 1, 8, 8)
    images[..., 2:6, 2:6] = 1.0  # the central half, enlarged, fills the whole image
    assert torch.equal(zoom.apply(images), torch.ones(1, 1, 8, 8))
    logits = torch.randn(1, 10)
    assert torch.equal(zoom.invert("label", logits, (8, 8)), logits)


def test_threshold_rule_keeps_exactly_the_confident_pixels():
    (rule,) = parse_rules({"segmentation": {"kind": "threshold", "value": 0.7}}, ["segmentation"], {}, 1).values()
    probabilities = torch.tensor([[0.9, 0.6, 0.7], [0.1, 0.4, 0.3]]).view(1, 2, 1, 3)
    keep = confident("segmentation", probabilities, torch.zeros(1, 1, 3), rule, {})
    assert keep.tolist() == [[[True, False, True]]]
    labels = pseudo_targets("segmentation", probabilities, keep)
    assert labels.tolist() == [[[0, IGNORE_INDEX, 0]]]


def test_class_balanced_rule_keeps_the_most_confident_portion_of_each_class():
    rules = parse_rules({"segmentation": {"kind": "class_balanced", "portion": 0.5}}, ["segmentation"], {}, 1)
    calibration = Calibration(rules, num_classes=3)
    top = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.58, 0.56, 0.54, 0.52])  # class 0: 4 pixels, class 1: 4 pixels
    probabilities = torch.zeros(1, 3, 1, 8)
    probabilities[0, 0, 0, :4], probabilities[0, 1, 0, :4] = top[:4], 1 - top[:4]
    probabilities[0, 1, 0, 4:], probabilities[0, 0, 0, 4:] = top[4:], 1 - top[4:]
    calibration.add({"segmentation": probabilities}, {})
    thresholds = calibration.finish()["segmentation"]
    assert thresholds[0].item() == pytest.approx(np.quantile([0.9, 0.8, 0.7, 0.6], 0.5))
    assert thresholds[1].item() == pytest.approx(np.quantile([0.58, 0.56, 0.54, 0.52], 0.5))
    assert thresholds[2].item() == pytest.approx(np.quantile(top.numpy(), 0.5))  # never predicted: all classes
    keep = confident("segmentation", probabilities, torch.zeros(1, 1, 8), rules["segmentation"], calibration.thresholds)
    assert keep.tolist() == [[[True, True, False, False, True, True, False, False]]]


def test_agreement_rule_by_value_and_by_portion():
    rules = parse_rules(
        {"depth": {"kind": "agreement", "value": 0.1}, "normals": {"kind": "agreement", "portion": 0.25}},
        ["depth", "normals"],
        {},
        2,
    )
    disagreement = torch.tensor([[[0.05, 0.1, 0.2, 0.4]]])
    assert confident("depth", torch.ones(1, 1, 1, 4), disagreement, rules["depth"], {}).tolist() == [
        [[True, True, False, False]]
    ]
    calibration = Calibration(rules, None)
    calibration.add({}, {"normals": torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])})
    thresholds = calibration.finish()
    assert thresholds["normals"].item() == pytest.approx(2.0)
    normals = F.normalize(torch.randn(1, 3, 1, 4), dim=1)
    keep = confident("normals", normals, torch.tensor([[[1.0, 2.5, 2.0, 9.0]]]), rules["normals"], thresholds)
    assert keep.tolist() == [[[True, False, True, False]]]
    targets = pseudo_targets("normals", normals, keep)
    assert torch.equal(targets[0, :, 0, 1], torch.zeros(3)) and torch.equal(targets[0, :, 0, 0], normals[0, :, 0, 0])


def test_pseudo_labels_use_each_tasks_invalid_convention():
    keep = torch.tensor([True, False])
    assert pseudo_targets("label", torch.tensor([[0.2, 0.8], [0.9, 0.1]]), keep).tolist() == [1, LABEL_IGNORE]
    depth = pseudo_targets("depth", torch.full((2, 1, 1, 1), 2.0), keep.view(2, 1, 1))
    assert depth.flatten().tolist() == [2.0, 0.0]


@pytest.mark.parametrize(
    ("spec", "views", "message"),
    [
        ({"depth": {"kind": "threshold", "value": 0.5}}, 2, "needs class probabilities"),
        ({"depth": {"kind": "agreement", "portion": 0.5}}, 1, "only 1 is given"),
        ({"depth": {"kind": "agreement", "value": 0.1, "portion": 0.5}}, 2, "either value"),
        ({"segmentation": {"kind": "class_balanced", "portion": 1.5}}, 2, "portion in"),
        ({"segmentation": {"kind": "sure"}}, 2, "unknown"),
        ({"label": {"kind": "all"}}, 2, "not among the model's tasks"),
    ],
)
def test_bad_confidence_rules_are_named(spec, views, message):
    defaults = {"depth": {"kind": "all"}, "segmentation": {"kind": "all"}}
    with pytest.raises(ConfigError, match=message):
        parse_rules(spec, ["depth", "segmentation"], defaults, views)


def test_ema_teacher_equals_the_closed_form_after_k_steps():
    torch.manual_seed(0)
    teacher, student = nn.Linear(3, 2), nn.Linear(3, 2)
    start = teacher.weight.detach().clone()
    alpha, students = 0.9, []
    for _ in range(5):
        with torch.no_grad():
            student.weight.add_(torch.randn_like(student.weight))
        students.append(student.weight.detach().clone())
        ema_update(teacher, student, alpha)
    k = len(students)
    expected = alpha**k * start + sum((1 - alpha) * alpha ** (k - 1 - i) * s for i, s in enumerate(students))
    torch.testing.assert_close(teacher.weight.detach(), expected)


def test_ema_update_copies_integer_buffers():
    teacher, student = nn.BatchNorm2d(2), nn.BatchNorm2d(2)
    student.num_batches_tracked.fill_(7)
    student.running_mean.fill_(1.0)
    ema_update(teacher, student, 0.5)
    assert int(teacher.num_batches_tracked) == 7 and torch.allclose(teacher.running_mean, torch.full((2,), 0.5))


def test_photometric_augmentation_is_seeded_photometric_and_off_in_eval():
    images = torch.rand(4, 3, 8, 8)
    augment = PhotometricAugmentation(probability=1.0, blur=1.0, noise=0.01)
    torch.manual_seed(1)
    a = augment(images)
    torch.manual_seed(1)
    assert torch.equal(a, augment(images)) and not torch.equal(a, images)
    assert a.shape == images.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(augment.eval()(images), images)
    with pytest.raises(ConfigError, match="probability"):
        PhotometricAugmentation(blur=2.0)


def test_calibration_keeps_a_bounded_subsample_of_each_batch(monkeypatch):
    monkeypatch.setattr("umadapt.pseudo.confidence._MAX_VALUES_PER_BATCH", 4)
    rules = parse_rules({"depth": {"kind": "agreement", "portion": 0.5}}, ["depth"], {}, 2)
    calibration = Calibration(rules, None)
    calibration.add({}, {"depth": torch.arange(16.0).view(1, 4, 4)})
    assert calibration._values["depth"][0].tolist() == [0.0, 4.0, 8.0, 12.0]


def test_blur_of_an_image_smaller_than_the_kernel():
    images = torch.rand(2, 3, 2, 2)
    out = PhotometricAugmentation(probability=0.0, blur=1.0, sigma=3.0)(images)
    assert out.shape == images.shape
