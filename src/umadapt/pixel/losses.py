"""The losses of CycleGAN (Zhu et al., ICCV 2017) and CyCADA's semantic consistency (Hoffman et al., ICML 2018)."""

from __future__ import annotations

import torch
from torch import Tensor

from umadapt.pseudo.confidence import pseudo_targets
from umadapt.tasks import Task

__all__ = ["cycle_loss", "least_squares_gan_loss", "semantic_consistency_loss"]


def least_squares_gan_loss(scores: Tensor, real: bool) -> Tensor:
    """LSGAN (Mao et al. 2017), as CycleGAN trains with it (Eq. 1 with the squared error of its Sec. 4): the mean of
    ``(D(x) - 1)^2`` for images that should read as real, ``D(x)^2`` for fakes."""
    return ((scores - 1.0) ** 2).mean() if real else (scores**2).mean()


def cycle_loss(reconstructed: Tensor, original: Tensor) -> Tensor:
    """Cycle consistency (CycleGAN Eq. 2): the mean absolute error of ``F(G(x))`` against ``x``."""
    return (reconstructed - original).abs().mean()


def semantic_consistency_loss(task: Task, on_translated: Tensor, on_original: Tensor) -> Tensor:
    """One task's term of CyCADA's semantic consistency (Eq. 4): the frozen task network's prediction on the
    translated image, scored by the task's own loss against its prediction on the original image.

    For ``segmentation`` and ``label`` the label is the argmax, as in the paper's ``L_task(f_S, G(X), p(f_S, X))``;
    for ``depth`` and ``normals`` (not in the paper) it is the prediction itself, so the depth or normal read from a
    translated image must equal the one read from the original, scored as in training (:mod:`umadapt.tasks`).
    """
    original = on_original.detach()
    everywhere = torch.ones(original.shape[:1] + original.shape[2:], dtype=torch.bool, device=original.device)
    return task.loss(on_translated, pseudo_targets(task.name, original, everywhere))
