"""Pixel-level adaptation's building blocks (:mod:`umadapt.pixel`): the CycleGAN networks keep images in [0, 1] and
their size, the losses are what CycleGAN and CyCADA write down, and a loaded :class:`Translator` maps NumPy images to
NumPy images in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from umadapt.pixel import (
    PatchDiscriminator,
    ResnetGenerator,
    Translator,
    cycle_loss,
    least_squares_gan_loss,
    semantic_consistency_loss,
)
from umadapt.tasks import get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny_generator(seed: int = 0) -> ResnetGenerator:
    torch.manual_seed(seed)
    return ResnetGenerator(width=4, downsamples=1, blocks=1)


# -- the networks ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [0.0, 100.0, -100.0], ids=["random", "saturated_high", "saturated_low"])
def test_generator_output_is_an_image_in_unit_range_of_the_input_size(bias):
    """Even a generator driven far into saturation (its last convolution's bias) gives values in [0, 1]: the output
    is ``(tanh + 1) / 2``, not an unbounded convolution."""
    generator = _tiny_generator()
    last = [m for m in generator.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.bias.fill_(bias)
    images = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        out = generator(images)
    assert out.shape == images.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    if bias:
        torch.testing.assert_close(out, torch.full_like(out, 1.0 if bias > 0 else 0.0))
    else:
        assert float(out.std()) > 1e-3, "a random generator should not be constant"


def test_generator_and_discriminator_refuse_impossible_sizes():
    with pytest.raises(ValueError, match="downsamples >= 0"):
        ResnetGenerator(downsamples=-1)
    with pytest.raises(ValueError, match="layers >= 1"):
        PatchDiscriminator(layers=0)
    assert ResnetGenerator(width=4, downsamples=3, blocks=0).multiple == 8


def test_patch_discriminator_scores_overlapping_patches():
    scores = PatchDiscriminator(width=4, layers=2)(torch.rand(2, 3, 32, 32))
    assert scores.shape[:2] == (2, 1) and min(scores.shape[2:]) > 1, "one score per patch, not per image"


# -- the losses -----------------------------------------------------------------------------------------------------
def test_least_squares_gan_and_cycle_losses_are_the_papers():
    scores = torch.tensor([0.0, 0.5, 2.0])
    torch.testing.assert_close(least_squares_gan_loss(scores, True), torch.tensor((1.0 + 0.25 + 1.0) / 3))
    torch.testing.assert_close(least_squares_gan_loss(scores, False), torch.tensor((0.0 + 0.25 + 4.0) / 3))
    image = torch.rand(2, 3, 4, 4)
    assert float(cycle_loss(image, image)) == 0.0
    torch.testing.assert_close(cycle_loss(image + 0.25, image), torch.tensor(0.25))


def _predictions(task: str, confident: bool = False) -> torch.Tensor:
    """What the frozen task network predicts for a batch of two images, in the task's convention; ``confident``:
    class logits 100 higher for one class than for the others (a one-hot softmax up to ``exp(-100)``)."""
    torch.manual_seed(1)
    spec = get_task(task)
    raw = torch.randn((2, 5) if not spec.dense else (2, spec.channels or 5, 8, 8))
    if confident:
        raw = 100.0 * F.one_hot(raw.argmax(1), raw.shape[1]).movedim(-1, 1).float()
    return spec.activate(raw)


@pytest.mark.parametrize("task", ["depth", "normals"])
def test_semantic_consistency_of_a_regression_task_is_zero_for_the_identity_translator(task):
    """Depth and normals are scored against the original prediction itself: the identity translation reads the
    same values, so the term is 0 (normals up to float rounding of ``1 - cos``)."""
    prediction = _predictions(task)
    loss = semantic_consistency_loss(get_task(task), prediction.clone(), prediction)
    torch.testing.assert_close(loss, torch.tensor(0.0), atol=1e-6, rtol=0)
    moved = semantic_consistency_loss(get_task(task), _predictions(task).roll(1, dims=-1), prediction)
    assert float(moved) > 1e-2, "a translation that moves the content must cost something"


@pytest.mark.parametrize("task", ["segmentation", "label"])
def test_semantic_consistency_of_a_class_task_is_the_networks_own_confidence_for_the_identity_translator(task):
    """For class tasks the label is the argmax of the original prediction (CyCADA's ``p(f_S, X)``), scored by
    cross-entropy: for the identity translator the term is NOT 0 but ``mean(-log max softmax)``, the frozen network's
    own uncertainty on the original image (the smallest cross-entropy any label can have against these logits). It
    is 0 only when the prediction is one-hot confident; and a translation that changes the predicted class costs
    more than that baseline."""
    logits = _predictions(task)
    loss = semantic_consistency_loss(get_task(task), logits.clone(), logits)
    baseline = -F.log_softmax(logits, dim=1).max(dim=1).values.mean()
    torch.testing.assert_close(loss, baseline)
    assert float(baseline) > 0.1, "random logits are not confident: the baseline is not 0"

    confident = _predictions(task, confident=True)
    loss = semantic_consistency_loss(get_task(task), confident.clone(), confident)
    torch.testing.assert_close(loss, torch.tensor(0.0), atol=1e-6, rtol=0)

    swapped = semantic_consistency_loss(get_task(task), logits.roll(1, dims=1), logits)
    assert float(swapped) > float(baseline) + 0.1


def test_semantic_consistency_does_not_train_through_the_original_prediction():
    original = _predictions("depth").requires_grad_(True)
    translated = (_predictions("depth") + 0.5).requires_grad_(True)
    semantic_consistency_loss(get_task("depth"), translated, original).backward()
    assert original.grad is None and translated.grad is not None


# -- a trained translator as a function of images -------------------------------------------------------------------
def test_translator_translates_numpy_images_in_batches_into_unit_range():
    generator = _tiny_generator()
    translator = Translator(generator, (16, 16), "tiny.ckpt", "source_to_target")
    assert not translator.generator.training and not any(p.requires_grad for p in generator.parameters())
    rng = np.random.default_rng(0)
    images = [rng.random((16, 16, 3), dtype=np.float32) for _ in range(5)]
    out = translator.translate_arrays(images, batch_size=2)
    assert out.shape == (5, 16, 16, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    with torch.no_grad():
        expected = generator(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-6)  # batches of 2, 2 and 1 give the whole-batch result
