"""Domain adversaries (domain classifiers): plain ``nn.Module`` s that output domain *logits* (source 0, target 1).

They are meant to sit behind a :class:`~umadapt.nn.GradientReversal` layer (DANN, Ganin & Lempitsky, JMLR 2016):
the adversary learns to tell the domains apart while the network upstream learns to make them indistinguishable.

==========================  ============  ===============================================  ======================
adversary                   ``level``     sees                                             logits
==========================  ============  ===============================================  ======================
:class:`FeatureDiscriminator` features    one encoder feature, average-pooled to a grid     ``[B, 1]``
:class:`SpatialDiscriminator` features    one encoder feature map, every location           ``[B, 1, h, w]``
:class:`MultiScaleDiscriminator` features  several encoder feature maps, one spatial          ``[B, S, h, w]``
                                          discriminator each, logits on the coarsest grid
:class:`OutputDiscriminator`  outputs     the task predictions (class probabilities,         ``[B, 1, h', w']`` or
                                          depth, normals), concatenated on channels          ``[B, 1]``
:class:`ClassWiseDiscriminator` class     one feature vector per class (attention-pooled),  ``[B, C]``
                                features  one small MLP per class
==========================  ============  ===============================================  ======================

Every adversary takes ``in_channels: list[int]`` first, so a method builds it through a factory
``adversary(in_channels)`` like the task heads: for ``level = "features"`` the encoder's ``out_channels`` (finest
first), for ``level = "outputs"`` the channels of each task's prediction, in the model's task order. ``forward``
takes the matching list of tensors.

:func:`domain_adversarial_loss` is the domain loss of Eq. 4/10 (binary cross-entropy of the domain classifier),
computed with ``BCEWithLogits`` in float32 with autocast disabled, whatever the training precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ADVERSARY_LEVELS",
    "ClassWiseDiscriminator",
    "DomainAdversary",
    "FeatureDiscriminator",
    "MultiScaleDiscriminator",
    "OutputDiscriminator",
    "SpatialDiscriminator",
    "domain_adversarial_loss",
]

ADVERSARY_LEVELS = ("features", "outputs")
"""What an adversary looks at: the encoder's features or the task predictions."""


def _channels(in_channels: Sequence[int], cls: str) -> list[int]:
    channels = [int(c) for c in in_channels]
    if not channels or any(c < 1 for c in channels):
        raise ValueError(f"{cls}: in_channels must be a non-empty list of positive ints, got {list(in_channels)!r}.")
    return channels


def _pick(channels: list[int], index: int, cls: str) -> int:
    if not -len(channels) <= index < len(channels):
        raise ValueError(f"{cls}: feature_index {index} is out of range for {len(channels)} features {channels}.")
    return channels[index]


def _hidden_list(hidden: int | Sequence[int]) -> list[int]:
    widths = [int(hidden)] if isinstance(hidden, int) else [int(h) for h in hidden]
    if any(h < 1 for h in widths):
        raise ValueError(f"hidden widths must be positive, got {hidden!r}.")
    return widths


class DomainAdversary(nn.Module):
    """Base class: :attr:`level` says what the adversary looks at (one of :data:`ADVERSARY_LEVELS`)."""

    level: ClassVar[str] = "features"


class FeatureDiscriminator(DomainAdversary):
    """The domain classifier of DANN on pooled encoder features: an MLP with ReLU hidden layers and one logit.

    The paper's MNIST model: 768 features (48 channels x 4 x 4) -> 100 -> 1 (``hidden=[100]``, ``pool_size=4`` on
    a 48-channel map); its Office model: -> 1024 -> 1024 -> 1 with dropout 0.5.

    Args:
        in_channels: channels of the encoder's features, finest first (``encoder.out_channels``).
        hidden: widths of the hidden layers (Linear-ReLU[-Dropout]); an int for one layer.
        feature_index: which feature to classify (default the last, coarsest one).
        pool_size: the feature is average-pooled to ``pool_size x pool_size`` and flattened (1 = global pool).
        dropout: dropout after each hidden layer; 0 = none.
    """

    level: ClassVar[str] = "features"

    def __init__(
        self,
        in_channels: list[int],
        hidden: int | list[int] = 1024,
        feature_index: int = -1,
        pool_size: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        channels = _channels(in_channels, name)
        if pool_size < 1 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"{name}: need pool_size >= 1 and 0 <= dropout < 1, got {pool_size}, {dropout}.")
        self.feature_index = int(feature_index)
        self.pool_size = int(pool_size)
        width = _pick(channels, self.feature_index, name) * self.pool_size**2
        layers: list[nn.Module] = []
        for h in _hidden_list(hidden):
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, 1))
        self.classifier = nn.Sequential(*layers)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Domain logits ``[B, 1]`` of ``features[feature_index]``."""
        x = F.adaptive_avg_pool2d(features[self.feature_index], self.pool_size)
        return self.classifier(torch.flatten(x, 1))


class SpatialDiscriminator(DomainAdversary):
    """A per-location domain classifier on a dense feature map: convolutions without stride, one logit per location.

    With ``kernel_size=1`` every location is classified on its own feature vector (a pixel-wise domain classifier,
    as in Hoffman et al., "FCNs in the Wild"); larger kernels add context.

    Args:
        in_channels: channels of the encoder's features, finest first.
        hidden: channels of the hidden convolutions (conv-LeakyReLU(0.2)); an int for one layer.
        feature_index: which feature map to classify (default the last, coarsest one).
        kernel_size: odd kernel size of every convolution.
    """

    level: ClassVar[str] = "features"

    def __init__(
        self, in_channels: list[int], hidden: int | list[int] = 64, feature_index: int = -1, kernel_size: int = 1
    ) -> None:
        super().__init__()
        name = type(self).__name__
        channels = _channels(in_channels, name)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"{name}: kernel_size must be a positive odd int, got {kernel_size}.")
        self.feature_index = int(feature_index)
        width = _pick(channels, self.feature_index, name)
        pad = kernel_size // 2
        layers: list[nn.Module] = []
        for h in _hidden_list(hidden):
            layers += [nn.Conv2d(width, h, kernel_size, padding=pad), nn.LeakyReLU(0.2, inplace=True)]
            width = h
        layers.append(nn.Conv2d(width, 1, kernel_size, padding=pad))
        self.classifier = nn.Sequential(*layers)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Domain logits ``[B, 1, h, w]``, one per location of ``features[feature_index]``."""
        return self.classifier(features[self.feature_index])


class MultiScaleDiscriminator(DomainAdversary):
    """Multi-scale feature alignment for dense tasks: one :class:`SpatialDiscriminator` per chosen encoder scale (the
    dense decoder reads every scale, so aligning only the coarsest leaves the finer ones free to differ).

    Each scale's per-location logits are average-pooled to the grid of the coarsest chosen scale and stacked on the
    channels, so every scale weighs the same in the domain loss (a finer map does not count 4x or 16x because it has
    more locations); a pooled logit is the discriminator's decision on that region of the finer map.

    Args:
        in_channels: channels of the encoder's features, finest first.
        hidden: channels of each discriminator's hidden convolutions.
        feature_indices: the scales to align (default: every one).
        kernel_size: odd kernel size of every convolution.
    """

    level: ClassVar[str] = "features"

    def __init__(
        self,
        in_channels: list[int],
        hidden: int | list[int] = 64,
        feature_indices: list[int] | None = None,
        kernel_size: int = 1,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        channels = _channels(in_channels, name)
        indices = list(range(len(channels))) if feature_indices is None else [int(i) for i in feature_indices]
        if not indices:
            raise ValueError(f"{name}: feature_indices must name at least one scale, got {feature_indices}.")
        for index in indices:
            _pick(channels, index, name)  # a clear error for an index out of range
        resolved = [i % len(channels) for i in indices]
        if len(set(resolved)) != len(resolved):
            raise ValueError(f"{name}: feature_indices {indices} name a scale twice.")
        self.feature_indices = resolved
        self.discriminators = nn.ModuleList(
            SpatialDiscriminator(channels, hidden, feature_index=i, kernel_size=kernel_size) for i in resolved
        )

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Domain logits ``[B, S, h, w]``: scale ``s``'s logits pooled to the coarsest chosen scale's ``h x w``."""
        coarsest = features[max(self.feature_indices)].shape[-2:]
        return torch.cat([F.adaptive_avg_pool2d(d(features), coarsest) for d in self.discriminators], dim=1)


class OutputDiscriminator(DomainAdversary):
    """An output-space domain classifier (Tsai et al., AdaptSegNet, CVPR 2018) on the task predictions.

    The predictions (``[B, C_t, H, W]`` for dense tasks, ``[B, C_t]`` for image-level ones) are concatenated on the
    channel axis and go through 3x3 convolutions with stride 2 and LeakyReLU(0.2), then a 3x3 convolution to one
    logit per remaining location. Image-level predictions are treated as 1x1 maps, where the network reduces to
    an MLP, so the same module serves classification and dense tasks (but not a mix of both).

    Args:
        in_channels: channels of each task's prediction, in the model's task order.
        hidden: channels of the strided convolutions; one layer per entry (an int for one layer); default
            ``[64, 128, 256]``.
    """

    level: ClassVar[str] = "outputs"

    def __init__(self, in_channels: list[int], hidden: int | list[int] | None = None) -> None:
        super().__init__()
        width = sum(_channels(in_channels, type(self).__name__))
        self.in_channels = list(in_channels)
        layers: list[nn.Module] = []
        for h in _hidden_list([64, 128, 256] if hidden is None else hidden):
            layers += [nn.Conv2d(width, h, 3, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            width = h
        layers.append(nn.Conv2d(width, 1, 3, padding=1))
        self.classifier = nn.Sequential(*layers)

    def forward(self, predictions: Sequence[Tensor]) -> Tensor:
        """Domain logits: ``[B, 1, h', w']`` for dense predictions, ``[B, 1]`` for image-level ones."""
        dims = {p.ndim for p in predictions}
        if dims == {2}:
            x = torch.cat(list(predictions), dim=1)[:, :, None, None]
            return self.classifier(x).flatten(1)
        if dims != {4}:
            raise ValueError(
                "OutputDiscriminator needs either only dense [B, C, H, W] or only image-level [B, C] predictions, "
                f"got shapes {[tuple(p.shape) for p in predictions]}; use one adversary per kind of task."
            )
        size = predictions[0].shape[-2:]
        maps = [p if p.shape[-2:] == size else F.interpolate(p, size=size, mode="bilinear") for p in predictions]
        return self.classifier(torch.cat(maps, dim=1))


class ClassWiseDiscriminator(nn.Module):
    """One domain classifier per class on class feature vectors (the category-wise alignment of Paul et al., "Domain
    Adaptive Semantic Segmentation Using Weak Labels", ECCV 2020): class ``c``'s MLP sees only class ``c``'s
    feature, so a class's logits (and gradients) involve no other class's discriminator.

    The MLPs (Linear-ReLU per hidden layer, then one logit; the authors use two hidden layers as wide as the
    features) run batched over classes with stacked weights.

    Args:
        num_features: length of each class's feature vector.
        num_classes: number of classes (one MLP each).
        hidden: hidden widths; default two layers of ``num_features``.
    """

    def __init__(self, num_features: int, num_classes: int, hidden: int | list[int] | None = None) -> None:
        super().__init__()
        if num_features < 1 or num_classes < 1:
            raise ValueError(f"ClassWiseDiscriminator: need positive sizes, got {num_features}, {num_classes}.")
        widths = [num_features, *_hidden_list([num_features] * 2 if hidden is None else hidden), 1]
        self.num_classes = int(num_classes)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            layer = [nn.Linear(fan_in, fan_out) for _ in range(num_classes)]  # PyTorch's default initialisation
            self.weights.append(nn.Parameter(torch.stack([m.weight.detach().t() for m in layer])))
            self.biases.append(nn.Parameter(torch.stack([m.bias.detach() for m in layer])))

    def forward(self, class_features: Tensor) -> Tensor:
        """Domain logits ``[B, C]`` from class features ``[B, C, F]``."""
        if class_features.ndim != 3 or class_features.shape[1] != self.num_classes:
            raise ValueError(
                f"ClassWiseDiscriminator expects class features [B, {self.num_classes}, F], got "
                f"{tuple(class_features.shape)}."
            )
        x = class_features
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            x = torch.einsum("bcf,cfh->bch", x, weight) + bias
            if i < last:
                x = F.relu(x)
        return x.squeeze(-1)


def domain_adversarial_loss(source_logits: Tensor, target_logits: Tensor) -> tuple[Tensor, Tensor]:
    """Binary cross-entropy of the domain classifier (DANN, JMLR 2016, Eq. 4 summed as in Eq. 10) and its accuracy.

    Source logits get label 0 and target logits label 1; every logit (every location of a map) counts once, so with
    equal batch sizes both domains weigh the same. The loss is ``BCEWithLogits`` in float32 with autocast disabled
    (numerically safe under bf16/fp16 mixed precision).

    Returns:
        ``(loss, accuracy)``: the mean loss (differentiable) and the fraction of logits on the right side of 0
        (detached).
    """
    device_type = source_logits.device.type
    with torch.autocast(device_type=device_type, enabled=False):
        logits = torch.cat([source_logits.float().flatten(), target_logits.float().flatten()])
        labels = torch.cat(
            [
                torch.zeros(source_logits.numel(), device=logits.device),
                torch.ones(target_logits.numel(), device=logits.device),
            ]
        )
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        accuracy = ((logits.detach() > 0).float() == labels).float().mean()
    return loss, accuracy
