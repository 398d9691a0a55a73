"""Weak-label domain adaptation for semantic segmentation (Paul, Tsai, Schulter, Roy-Chowdhury, Chandraker, "Domain
Adaptive Semantic Segmentation Using Weak Labels", ECCV 2020), in its two settings:

* **UDA**: no target labels; the target's weak labels are *pseudo*-weak labels, the classes the network itself
  finds in the image, ``sigmoid(smooth-max) > threshold`` (0.2), recomputed at every step;
* **WDA**: a human gives each target training image its class tags (``data.target_weak_labels: tags``) or one
  clicked point per class present (``points``); the data never serves the target masks.

On top of :class:`~umadapt.methods.OutputSpaceAdaptation` (the output-space adversary of AdaptSegNet), the
network minimises, with the segmentation logits ``A`` ``[B, C, h, w]`` and the decoder's last features ``F``
``[B, F, h, w]`` at the decoder's resolution:

* the **weak-label classification loss**: image-level class scores by smooth-max pooling,
  ``s_c = log(1/(hw) sum_hw exp(A_c))`` (:func:`smooth_max_pool`, between the mean and the max of ``A_c``), and the
  multi-label BCE of ``sigmoid(s)`` against the target's weak labels (weight ``weak_weight``). The authors' code
  applies dropout (0.1) to ``A`` first (``weak_dropout``);
* the **category-wise adversary**: a class feature ``F^c = sum_hw softmax_hw(A_c) F_hw`` per class
  (:func:`class_attention_pool`; the attention is detached, as in the authors' code) and one discriminator per class
  (:class:`~umadapt.nn.ClassWiseDiscriminator`), trained to tell source from target class features **only for the
  classes present**: source classes from the source ground truth (covering more than ``source_min_fraction`` of
  the pixels), target classes from the weak labels. The network's term asks the target class features to pass for
  source ones (weight ``class_alignment_weight``). The discriminators are the second player with the output-space
  discriminator, as in the authors' alternating updates;
* with points, the **point loss**: cross-entropy on the clicked pixels only (weight ``point_weight``); the target's
  weak labels are then the image's tags, which a human clicking one point per class has given too (the data serves
  them with the points, so a click that a crop cuts away does not turn its class into a negative label).

Loss weights of the paper's GTA5 -> Cityscapes runs (the authors' scripts, UDA and WDA alike): ``lambda_adv = 0.001``,
``weak_weight = 0.01``, ``class_alignment_weight = 0.001``, threshold 0.2. Images of a point-supervised batch without
any clicked pixel (a crop cut them away, or the mask had no label) are counted in ``train/weak/images_without_points``
and add nothing to the point loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from umadapt.errors import ConfigError
from umadapt.methods.adaptsegnet import SOURCE, TARGET, OutputSpaceAdaptation
from umadapt.methods.base import task_features
from umadapt.methods.checks import check_non_negative
from umadapt.methods.players import held_fixed
from umadapt.nn.adversaries import ClassWiseDiscriminator
from umadapt.samples import IGNORE_INDEX

__all__ = [
    "WEAK_LABEL_SOURCES",
    "WeakLabelAdaptation",
    "class_attention",
    "class_attention_pool",
    "pseudo_weak_labels",
    "present_classes",
    "smooth_max_pool",
]

WEAK_LABEL_SOURCES = {"pseudo": "none", "tags": "tags", "points": "points"}
"""``model.weak_labels`` -> the ``data.target_weak_labels`` it needs."""


def smooth_max_pool(logits: torch.Tensor) -> torch.Tensor:
    """Image-level class scores ``[B, C]`` of dense logits ``[B, C, h, w]``: ``log(1/(hw) sum exp(A_c))``, a smooth
    maximum between the spatial mean and the maximum."""
    flat = logits.float().flatten(2)
    return torch.logsumexp(flat, dim=2) - math.log(flat.shape[2])


def pseudo_weak_labels(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """UDA's pseudo-weak labels ``[B, C]``: 1 where ``sigmoid(smooth_max_pool(logits)) > threshold``, no gradient."""
    with torch.no_grad():
        return (torch.sigmoid(smooth_max_pool(logits)) > threshold).float()


def class_attention(logits: torch.Tensor) -> torch.Tensor:
    """Spatial attention of each class ``[B, C, h*w]``: the softmax of its logits over positions (sums to 1)."""
    return torch.softmax(logits.float().flatten(2), dim=2)


def class_attention_pool(logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Class features ``[B, C, F]``: the decoder features ``[B, F, h, w]`` averaged with each class's
    :func:`class_attention` of ``logits`` ``[B, C, h, w]`` (in float32, also under mixed precision)."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return torch.einsum("bcp,bfp->bcf", class_attention(logits), features.float().flatten(2))


def present_classes(segmentation: torch.Tensor, num_classes: int, min_fraction: float = 0.0) -> torch.Tensor:
    """``[B, C]`` float 0/1: the classes covering more than ``min_fraction`` of an image's labelled pixels (and at
    least one pixel) in a ``[B, H, W]`` label map; :data:`IGNORE_INDEX` pixels count for nothing."""
    flat = segmentation.flatten(1)
    valid = (flat != IGNORE_INDEX) & (flat >= 0) & (flat < num_classes)
    counts = torch.zeros(flat.shape[0], num_classes, device=flat.device)
    counts.scatter_add_(1, torch.where(valid, flat, 0), valid.float())
    threshold = min_fraction * valid.sum(dim=1, keepdim=True).float()
    return ((counts > threshold) & (counts > 0)).float()


def _masked_bce(logits: torch.Tensor, label: float, mask: torch.Tensor) -> torch.Tensor:
    """BCE of ``[B, C]`` logits against ``label`` over the entries where ``mask`` is 1: averaged over each image's
    present classes, then over the images with any (as the authors' code; 0 when no class is present). An absent
    class's discriminator gets no gradient."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        losses = F.binary_cross_entropy_with_logits(
            logits.float(), torch.full_like(logits.float(), label), reduction="none"
        )
        count = mask.sum(dim=1)
        per_image = (losses * mask).sum(dim=1) / count.clamp(min=1.0)
        return per_image.sum() / (count > 0).sum().clamp(min=1)


class WeakLabelAdaptation(OutputSpaceAdaptation):
    """Weak-label adaptation of the ``segmentation`` task (see the module docstring).

    Args (besides those of :class:`~umadapt.methods.OutputSpaceAdaptation`):
        weak_labels: where the target's weak labels come from: ``pseudo`` (UDA), ``tags`` or ``points`` (WDA,
            served by ``data.target_weak_labels`` of the same name).
        weak_weight: weight of the weak-label classification loss (0: off).
        class_alignment_weight: weight of the network's category-wise adversarial term (0: no class
            discriminators are built).
        point_weight: weight of the point loss (``weak_labels: points``).
        pseudo_threshold: pseudo-weak labels are the classes with ``sigmoid(smooth-max) > pseudo_threshold``.
        source_min_fraction: a source class is present (aligned) when it covers more than this fraction of an
            image's labelled pixels.
        weak_dropout: dropout on the logits before the weak-label classification loss.
        class_discriminator_hidden: hidden widths of each class discriminator (default: two layers as wide as the
            decoder's features).
    """

    def __init__(
        self,
        weak_labels: str = "pseudo",
        weak_weight: float = 0.01,
        class_alignment_weight: float = 0.001,
        point_weight: float = 1.0,
        pseudo_threshold: float = 0.2,
        source_min_fraction: float = 0.0,
        weak_dropout: float = 0.1,
        class_discriminator_hidden: list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if weak_labels not in WEAK_LABEL_SOURCES:
            raise ConfigError(
                f"model.init_args.weak_labels must be one of {list(WEAK_LABEL_SOURCES)}, got {weak_labels!r}."
            )
        if "segmentation" not in self.tasks:
            raise ConfigError(f"WeakLabelAdaptation adapts the segmentation task, but the tasks are {self.tasks}.")
        head = self.heads["segmentation"]
        if not all(hasattr(head, name) for name in ("forward_features", "upsample", "hidden")):
            raise ConfigError(
                f"WeakLabelAdaptation pools the segmentation decoder's features, but {type(head).__name__} does not "
                "expose them (forward_features, upsample, hidden): use umadapt.nn.DenseDecoder as the dense_head."
            )
        check_non_negative(weak_weight=weak_weight, class_alignment_weight=class_alignment_weight)
        if point_weight < 0 or not 0 < pseudo_threshold < 1 or not 0 <= weak_dropout < 1:
            raise ConfigError(
                "Need point_weight >= 0, 0 < pseudo_threshold < 1 and 0 <= weak_dropout < 1; got "
                f"{point_weight}, {pseudo_threshold}, {weak_dropout}."
            )
        if not 0 <= source_min_fraction < 1:
            raise ConfigError(f"model.init_args.source_min_fraction must be in [0, 1), got {source_min_fraction}.")
        self.weak_labels = weak_labels
        self.weak_weight, self.class_alignment_weight = float(weak_weight), float(class_alignment_weight)
        self.point_weight, self.pseudo_threshold = float(point_weight), float(pseudo_threshold)
        self.source_min_fraction = float(source_min_fraction)
        self.weak_dropout = nn.Dropout(weak_dropout)
        self.class_discriminator = (
            ClassWiseDiscriminator(int(head.hidden), int(self.num_classes), class_discriminator_hidden)
            if self.class_alignment_weight > 0
            else None
        )

    def discriminator_modules(self) -> list[nn.Module]:
        return [*super().discriminator_modules(), *([self.class_discriminator] if self.class_discriminator else [])]

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        served = getattr(datamodule, "target_weak_labels", None)
        needed = WEAK_LABEL_SOURCES[self.weak_labels]
        if stage == "fit" and served is not None and served != needed:
            raise ConfigError(
                f"model.init_args.weak_labels={self.weak_labels} needs data.init_args.target_weak_labels={needed}, "
                f"but the data serves {served!r}: set them to match."
            )

    # -- forward ----------------------------------------------------------------------------------------------------
    def forward_both(self, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Every task's predictions, plus the segmentation logits and decoder features at the decoder's resolution
        (``low_logits``, ``features``)."""
        features = self.features(images)
        size = tuple(images.shape[-2:])
        predictions = {t: self.task_specs[t].activate(self.heads[t](task_features(features, t), size))
                       for t in self.tasks if t != "segmentation"}  # fmt: skip
        head = self.heads["segmentation"]
        segmentation_features = task_features(features, "segmentation")
        hidden, low = head.forward_features(segmentation_features)
        predictions["segmentation"] = head.upsample(low, segmentation_features, size)
        return predictions, {"low_logits": low, "features": hidden}

    # -- the target's weak labels -----------------------------------------------------------------------------------
    def target_weak_labels(self, target: Mapping[str, torch.Tensor], low_logits: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` weak labels of the target images: pseudo-weak labels, or the tags served (with points too)."""
        if self.weak_labels == "pseudo":
            return pseudo_weak_labels(low_logits, self.pseudo_threshold)
        missing = [k for k in (self.weak_labels, "tags") if k not in target]
        if missing:
            raise ConfigError(
                f"model.init_args.weak_labels={self.weak_labels} needs the target batch's {missing}, but it holds "
                f"{sorted(target)}: set data.init_args.target_weak_labels: {self.weak_labels}."
            )
        tags = target["tags"]
        if tags.ndim != 2 or tags.shape[1] != self.num_classes:
            raise ConfigError(
                f"The target tags have {tags.shape[-1]} classes but the model has num_classes={self.num_classes}: "
                "tag the images with the model's class list."
            )
        return tags.float()

    # -- the weak-label terms ---------------------------------------------------------------------------------------
    def adaptation_terms(
        self,
        source: Mapping[str, torch.Tensor],
        target: Mapping[str, torch.Tensor],
        predictions: Mapping[str, torch.Tensor],
        extras: Mapping[str, Any],
        n_source: int,
    ) -> tuple[dict[str, tuple[float, torch.Tensor]], torch.Tensor]:
        terms, discriminator_loss = super().adaptation_terms(source, target, predictions, extras, n_source)
        low, hidden = extras["low_logits"], extras["features"]
        target_low = low[n_source:]
        weak = self.target_weak_labels(target, target_low)
        log = self.log
        log("train/weak/labels_per_image", weak.sum(dim=1).mean(), batch_size=n_source)

        scores = smooth_max_pool(self.weak_dropout(target_low))
        with torch.autocast(device_type=scores.device.type, enabled=False):
            terms["weak"] = (self.weak_weight, F.binary_cross_entropy_with_logits(scores.float(), weak))

        if self.weak_labels == "points":
            points = target["points"]
            clicked = (points != IGNORE_INDEX).flatten(1).sum(dim=1)
            log("train/weak/images_without_points", (clicked == 0).sum().float(), batch_size=n_source)
            per_pixel = F.cross_entropy(
                predictions["segmentation"][n_source:].float(), points, ignore_index=IGNORE_INDEX, reduction="sum"
            )
            terms["points"] = (self.point_weight, per_pixel / clicked.sum().clamp(min=1))

        if self.class_discriminator is not None:
            source_present = present_classes(source["segmentation"], int(self.num_classes), self.source_min_fraction)
            source_features = class_attention_pool(low[:n_source].detach(), hidden[:n_source].detach())
            target_features = class_attention_pool(target_low.detach(), hidden[n_source:])
            with held_fixed(self.class_discriminator):
                network_term = _masked_bce(self.class_discriminator(target_features), SOURCE, weak)
            class_loss = 0.5 * (
                _masked_bce(self.class_discriminator(source_features), SOURCE, source_present)
                + _masked_bce(self.class_discriminator(target_features.detach()), TARGET, weak)
            )
            terms["class_adversary"] = (self.class_alignment_weight, network_term)
            log("train/class_adversary/discriminator_loss", class_loss.detach(), batch_size=n_source)
            discriminator_loss = discriminator_loss + class_loss
        return terms, discriminator_loss
