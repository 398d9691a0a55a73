"""DANN: domain-adversarial training by gradient reversal (Ganin & Lempitsky, "Unsupervised Domain Adaptation by
Backpropagation", ICML 2015; Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016).

One optimizer minimises (JMLR 2016, Eq. 9-10, with the gradient-reversal layer of Eq. 13)

    E = sum_t w_t L_t(source)  +  domain_weight * L_d(source -> 0, target -> 1)

where ``L_d`` is the binary cross-entropy of a domain classifier (the *adversary*) that sees the source and target
features (or predictions) through a gradient-reversal layer: the adversary descends ``L_d`` while everything
upstream of the layer receives ``-lambda_p`` times its gradient and so ascends it. ``lambda_p`` follows a schedule of
training progress ``p`` (default the paper's ``2 / (1 + exp(-10 p)) - 1``), logged every step as
``train/grl/lambda``, together with ``train/domain/loss``, ``train/domain/accuracy`` and ``train/lr``.

Source and target images go through the encoder as one batch (as in the paper's implementation), so normalisation
layers see both domains. Works for the image-level task ``label`` and for any combination of dense tasks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from umadapt.methods.base import METRIC_NAMES, MultiTaskModel
from umadapt.nn.adversaries import ADVERSARY_LEVELS, FeatureDiscriminator, domain_adversarial_loss
from umadapt.nn.gradient_reversal import GradientReversal
from umadapt.schedules import get_coefficient_schedule

AdversaryFactory = Callable[[list[int]], nn.Module]
"""Builds the adversary from ``in_channels`` (see :mod:`umadapt.nn.adversaries`); in YAML a ``class_path``."""

__all__ = ["AdversaryFactory", "DANN"]


def declared_level(factory: Callable[..., nn.Module]) -> str | None:
    """The ``level`` class attribute of the adversary class a factory builds (a class, or a ``functools.partial`` of
    one, as jsonargparse makes from a ``class_path``), or ``None`` when it cannot be told."""
    if isinstance(factory, type):
        return getattr(factory, "level", None)
    if isinstance(factory, functools.partial):
        for candidate in (factory.func, *factory.args):
            if isinstance(candidate, type) and issubclass(candidate, nn.Module):
                return getattr(candidate, "level", None)
    return None


class DANN(MultiTaskModel):
    """Domain-adversarial training with a gradient-reversal layer in front of an injected adversary.

    Args (besides those of :class:`~umadapt.methods.base.MultiTaskModel`):
        adversary: factory of the domain classifier, called with ``in_channels`` (default
            :class:`~umadapt.nn.FeatureDiscriminator`). Feature-level adversaries get the encoder's
            ``out_channels`` and see the encoder's features; output-level ones get the channels of each task's
            prediction and see the predictions (class probabilities for ``segmentation``/``label``).
        adversary_input: ``"features"`` or ``"outputs"``; default: the adversary class's ``level`` attribute.
        grl_schedule: name of the coefficient schedule of ``lambda_p`` (see
            :data:`umadapt.schedules.COEFFICIENT_SCHEDULES`: ``dann``, ``constant``, ``linear_warmup``).
        grl_schedule_args: keyword parameters of that schedule (e.g. ``{gamma: 10}``, ``{warmup: 0.2}``).
        grl_max: ``lambda_p = grl_max * schedule(p)``.
        domain_weight: weight of the domain loss in the total loss (scales the adversary's own gradient too).
        **kwargs: the base model's arguments (encoder, tasks, heads, optimizer, ``weighting``, ...); the source task
            losses are combined by ``weighting``, the domain loss is added outside it, with ``domain_weight``.
    """

    def __init__(
        self,
        adversary: AdversaryFactory | None = None,
        adversary_input: str | None = None,
        grl_schedule: str = "dann",
        grl_schedule_args: dict[str, float] | None = None,
        grl_max: float = 1.0,
        domain_weight: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        factory = adversary or FeatureDiscriminator
        self.adversary_input = self._resolve_input(factory, adversary_input)
        if self.adversary_input == "features":
            self.require_shared_features(
                "DANN with a feature-level adversary",
                "aligns one shared feature map across domains",
                " or an output-level adversary (umadapt.nn.OutputDiscriminator), which works with any encoder",
            )
            in_channels = list(self.encoder.out_channels)
        else:
            in_channels = [self.task_specs[t].out_channels(self.num_classes) for t in self.tasks]
        self.adversary = factory(in_channels)
        self.grl = GradientReversal(0.0)
        self.grl_schedule = get_coefficient_schedule(grl_schedule, grl_schedule_args)
        self.grl_schedule_name = grl_schedule
        if grl_max < 0 or domain_weight < 0:
            raise ValueError(f"grl_max and domain_weight must be >= 0, got {grl_max} and {domain_weight}.")
        self.grl_max = float(grl_max)
        self.domain_weight = float(domain_weight)

    @staticmethod
    def _resolve_input(factory: Callable[..., nn.Module], adversary_input: str | None) -> str:
        declared = declared_level(factory)
        if adversary_input is None:
            if declared is None:
                raise ValueError(
                    "Cannot tell whether the adversary looks at features or outputs: its class has no `level` "
                    f"attribute. Set model.init_args.adversary_input to one of {list(ADVERSARY_LEVELS)}."
                )
            adversary_input = declared
        if adversary_input not in ADVERSARY_LEVELS:
            raise ValueError(f"adversary_input must be one of {list(ADVERSARY_LEVELS)}, got {adversary_input!r}.")
        if declared is not None and declared != adversary_input:
            raise ValueError(
                f"adversary_input is {adversary_input!r}, but the adversary class declares level {declared!r}; "
                "drop adversary_input or pick an adversary of that level."
            )
        return adversary_input

    # -- schedules ----------------------------------------------------------------------------------------------
    def uses_progress(self) -> bool:
        """The reversal coefficient follows progress unless it is constant (or the adversary is off)."""
        adversary_on = self.grl_max > 0 and self.domain_weight > 0
        return super().uses_progress() or (adversary_on and self.grl_schedule_name != "constant")

    def grl_coefficient(self) -> float:
        """``lambda_p`` at the current training progress."""
        return self.grl_max * self.grl_schedule(self.progress())

    # -- training -----------------------------------------------------------------------------------------------
    def training_step(self, batch: Mapping[str, Mapping[str, torch.Tensor]], batch_idx: int) -> torch.Tensor:
        source, target = batch["source"], batch["target"]
        self.require_labels(source, "source")
        n_source = source["image"].shape[0]
        images = torch.cat([source["image"], target["image"]])
        size = tuple(images.shape[-2:])
        features = self.features(images)

        if self.adversary_input == "features":
            predictions = self.decode([f[:n_source] for f in features], size)
            domain_inputs = list(features)
        else:
            every = self.decode(features, size)
            predictions = {t: p[:n_source] for t, p in every.items()}
            domain_inputs = [self.adversary_view(t, every[t]) for t in self.tasks]
        task_loss = self.supervised_terms(predictions, source, "source")

        coefficient = self.grl_coefficient()
        self.grl.coefficient = coefficient
        logits = self.adversary([self.grl(x) for x in domain_inputs])
        domain_loss, domain_accuracy = domain_adversarial_loss(logits[:n_source], logits[n_source:])
        total = task_loss + self.domain_weight * domain_loss

        log = functools.partial(self.log, batch_size=n_source)
        log("train/domain/loss", domain_loss.detach(), prog_bar=True)
        log("train/domain/accuracy", domain_accuracy)
        log("train/grl/lambda", coefficient)
        log(METRIC_NAMES["total"], total.detach())
        self.log_lr()
        return total
