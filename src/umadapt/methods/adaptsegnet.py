"""Output-space adversarial adaptation: AdaptSegNet (Tsai et al., "Learning to Adapt Structured Output Space for
Semantic Segmentation", CVPR 2018), single level.

The network and a fully convolutional discriminator ``D`` on its (softmax) outputs are two players (Eq. 1-4):

    network:        L_seg(I_s) + lambda_adv * L_adv(I_t),   L_adv = BCE(D(P_t), source)   (Eq. 1, 4)
    discriminator:  L_d = 1/2 [BCE(D(P_s), source) + BCE(D(P_t), target)]                   (Eq. 2)

so the network learns target outputs the discriminator takes for source outputs. Both players step on one backward
pass (:class:`~umadapt.methods.players.Players`): ``D``'s parameters are frozen while the network's term goes
through it, and ``D`` sees detached outputs in its own term. Source and target images go through the network as one
batch, like :class:`~umadapt.methods.DANN` (``adversarial_weight: 0`` is the control: the same batches and
schedule without the adversary). The authors fine-tune a source-trained network: ``init_checkpoint`` loads one.

:class:`~umadapt.methods.WeakLabelAdaptation` adds its weak-label terms through :meth:`adaptation_terms`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from umadapt.checkpoints import load_task_network
from umadapt.errors import ConfigError
from umadapt.methods.base import METRIC_NAMES, MultiTaskModel
from umadapt.methods.checks import check_non_negative
from umadapt.methods.players import Players, held_fixed, require_find_unused_parameters
from umadapt.nn.adversaries import OutputDiscriminator, domain_adversarial_loss

__all__ = ["OutputSpaceAdaptation", "adversarial_terms"]

SOURCE, TARGET = 0.0, 1.0
"""Domain labels of the discriminators (source 0, target 1, as :func:`domain_adversarial_loss`)."""


def _bce(logits: torch.Tensor, label: float) -> torch.Tensor:
    """Mean binary cross-entropy of domain logits against one domain label, in float32."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        logits = logits.float()
        return nn.functional.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))


def adversarial_terms(
    discriminator: nn.Module, source_input: Any, target_input: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The two players' terms of one adversary: ``(network term, discriminator term, discriminator accuracy)``.

    The network term ``BCE(D(target), source)`` reaches the network only (``D`` is frozen for it); the
    discriminator term ``1/2 [BCE(D(source), source) + BCE(D(target), target)]`` sees detached inputs, so it
    reaches ``D`` only. Inputs are whatever ``discriminator`` takes (a tensor or a list of tensors)."""
    detach = (lambda x: [t.detach() for t in x]) if isinstance(source_input, list) else (lambda x: x.detach())
    with held_fixed(discriminator):
        network_term = _bce(discriminator(target_input), SOURCE)
    discriminator_term, accuracy = domain_adversarial_loss(
        discriminator(detach(source_input)), discriminator(detach(target_input))
    )
    return network_term, discriminator_term, accuracy


class OutputSpaceAdaptation(MultiTaskModel):
    """AdaptSegNet: an output-space discriminator as a second player (see the module docstring).

    Args (besides those of :class:`~umadapt.methods.base.MultiTaskModel`):
        discriminator: factory of the output-space discriminator, called with the channels of each task's
            prediction (default :class:`~umadapt.nn.OutputDiscriminator`); it sees class probabilities for
            ``segmentation``/``label`` and the raw predictions of other tasks.
        adversarial_weight: ``lambda_adv`` (AdaptSegNet: 0.001 on GTA5 -> Cityscapes, single level).
        discriminator_optimizer: the discriminators' optimizer (default: ``optimizer``); the authors use
            Adam(lr 1e-4, betas (0.9, 0.99)). Both players follow ``lr_schedule``.
        init_checkpoint: ``last.ckpt`` of a run of the same tasks and architecture (e.g. source-only) whose encoder
            and heads start this run, as the authors start from a source-trained network. ``None``: from scratch.
            Not read when the run resumes from a checkpoint of its own (``--ckpt_path``).
        gradient_clip_val: clip the network's gradient norm to this value, the discriminators' not (the weak-label
            authors clip the network at 1); ``None``: no clipping.
    """

    def __init__(
        self,
        discriminator: Callable[[list[int]], nn.Module] | None = None,
        adversarial_weight: float = 0.001,
        discriminator_optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        init_checkpoint: str | None = None,
        gradient_clip_val: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.automatic_optimization = False
        check_non_negative(adversarial_weight=adversarial_weight)
        if gradient_clip_val is not None and gradient_clip_val <= 0:
            raise ConfigError(f"model.init_args.gradient_clip_val must be > 0 or null, got {gradient_clip_val}.")
        if self.lr_multipliers:
            raise ConfigError(
                f"{type(self).__name__} has its own players (network, discriminators): model.lr_multipliers is not "
                "supported; drop it."
            )
        in_channels = [self.task_specs[t].out_channels(self.num_classes) for t in self.tasks]
        self.discriminator = (discriminator or OutputDiscriminator)(in_channels)
        self.adversarial_weight = float(adversarial_weight)
        self.discriminator_optimizer_factory = discriminator_optimizer
        self.init_checkpoint = init_checkpoint
        self.gradient_clip_val = gradient_clip_val
        self.players = Players()
        self._restored = False  # set when a resumed run restores its own checkpoint

    # -- set-up -----------------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self._trainer is not None:
            require_find_unused_parameters(self.trainer, type(self).__name__)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._restored = True  # a resumed run: its own weights, not init_checkpoint's

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if not self._restored:
            self.load_init_checkpoint()

    def load_init_checkpoint(self) -> None:
        """Load the encoder and heads of ``init_checkpoint`` (when set), refusing another task set or class count.
        Called when a fit starts, after a resumed run has restored its own state (then it is not called)."""
        if self.init_checkpoint:
            load_task_network(
                self,
                self.init_checkpoint,
                "model.init_args.init_checkpoint",
                self.tasks,
                self.num_classes,
                "Use a run with the same encoder and heads as this config (its run's config.yaml).",
            )

    def network_parameters(self) -> list[nn.Parameter]:
        """The task network's parameters (encoder, heads and any learned loss weights): the first player."""
        return [*self.encoder.parameters(), *self.heads.parameters(), *self.weighting.parameters()]

    def discriminator_modules(self) -> list[nn.Module]:
        """Every discriminator: the second player (subclasses add theirs)."""
        return [self.discriminator]

    def configure_optimizers(self) -> Any:
        discriminators = [p for m in self.discriminator_modules() for p in m.parameters()]
        factory = self.discriminator_optimizer_factory or self.optimizer_factory
        return self.players.configure(
            {"network": self.optimizer_factory(self.network_parameters()), "discriminators": factory(discriminators)}
        )

    def optimizer_steps_per_batch(self) -> float:
        """The network and the discriminators step once per batch each."""
        return 2.0

    def uses_progress(self) -> bool:
        return True  # the learning-rate schedule is applied per update by the players

    # -- training ---------------------------------------------------------------------------------------------------
    def forward_both(self, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Predictions of every task on ``images`` (source then target, one batch) and what
        :meth:`adaptation_terms` needs besides them (nothing here)."""
        return self(images), {}

    def adaptation_terms(
        self,
        source: Mapping[str, torch.Tensor],
        target: Mapping[str, torch.Tensor],
        predictions: Mapping[str, torch.Tensor],
        extras: Mapping[str, Any],
        n_source: int,
    ) -> tuple[dict[str, tuple[float, torch.Tensor]], torch.Tensor]:
        """``({name: (weight, network term)}, discriminator term)`` of the adaptation objective, logged as
        ``train/<name>/loss``; here the output-space adversary (Eq. 2, 4)."""
        views = [self.adversary_view(t, predictions[t]) for t in self.tasks]
        network_term, discriminator_term, accuracy = adversarial_terms(
            self.discriminator, [v[:n_source] for v in views], [v[n_source:] for v in views]
        )
        self.log("train/output_adversary/accuracy", accuracy, batch_size=n_source)
        self.log("train/output_adversary/discriminator_loss", discriminator_term.detach(), batch_size=n_source)
        return {"output_adversary": (self.adversarial_weight, network_term)}, discriminator_term

    def training_step(self, batch: Mapping[str, Mapping[str, torch.Tensor]], batch_idx: int) -> None:
        source, target = batch["source"], batch["target"]
        self.require_labels(source, "source")
        n_source = source["image"].shape[0]
        predictions, extras = self.forward_both(torch.cat([source["image"], target["image"]]))
        task_loss = self.supervised_terms({t: p[:n_source] for t, p in predictions.items()}, source, "source")
        terms, discriminator_loss = self.adaptation_terms(source, target, predictions, extras, n_source)
        network_loss = task_loss + sum(weight * term for weight, term in terms.values() if weight > 0)
        lr = self.lr_schedule(self.progress(batch_idx))
        clip = None if self.gradient_clip_val is None else {"network": self.gradient_clip_val}
        self.players.step(self, network_loss + discriminator_loss, ["network", "discriminators"], lr, clip)
        log = functools.partial(self.log, batch_size=n_source)
        for name, (_, term) in terms.items():
            log(f"train/{name}/loss", term.detach())
        log(METRIC_NAMES["total"], network_loss.detach(), prog_bar=True)
