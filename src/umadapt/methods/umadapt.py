"""UM-Adapt: unsupervised multi-task adaptation using adversarial cross-task distillation (Kundu, Lakkakula, Babu,
ICCV 2019, arXiv 1908.03884), as one LightningModule whose training runs three phases (``phases``, laid out on the
training progress by batches, :class:`~umadapt.schedules.PhaseSchedule`).

Parts besides the base network (shared encoder + task heads): the cross-task distillation networks ``T_t``
(``distillation``, :class:`~umadapt.nn.CrossTaskDistillation`), each predicting task ``t`` from the other tasks'
predictions, and the CCR contour decoder ``D_c`` (``contour_decoder``, :class:`~umadapt.nn.ContourDecoder`). With
``E(x) = Σ_t w_t d_t(ŷ_t, T_t(ŷ_¬t))`` the cross-task energy (the distillation loss re-used as an energy):

1. ``source``: base network ``Σ_t w_t L_t(ŷ_t, y_t) + α E(x_s)`` (``T_t`` outputs as fixed targets, ``α`` ramped
   up over ``consistency_warmup``) [+ ``w_tl Σ_t w_t L_t`` on labelled target images, UM-Adapt-S]; distillation
   networks ``Σ_t w_t L_t(T_t(ŷ_¬t), y_t)`` on detached predictions.
2. ``ccr``: ``BCE(D_c(f_deep(x_s)), edges(x_s))`` with the encoder frozen.
3. ``adapt``: only the encoder stages ``adapt_stages`` learn. Generator ``β E(x_t) + λ BCE(D_c(f_deep(x_t)),
   edges(x_t)) + w_s Σ_t w_t L_t(source) [+ w_tl ...]``; discriminator (the ``T_t``, when ``adversarial``)
   ``E(x_s) + max(0, m − E(x_t)) + w_gt Σ_t w_t L_t(T_t(ŷ^s_¬t), y^s_t)`` on detached predictions.

Each phase replays ``lr_schedule`` from its own start; energies are float32; one backward pass serves both players
of a step (:class:`~umadapt.methods.players.Players`). ``docs/methods/umadapt.md`` explains the choices where the
paper leaves room, the ablation switches and the chained-run recipe (``source_checkpoint``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pytorch_lightning.cli import OptimizerCallable
from torch import nn

from umadapt.checkpoints import load_partial_state
from umadapt.errors import ConfigError
from umadapt.methods.base import MultiTaskModel
from umadapt.methods.checks import check_non_negative, phase_schedule, stage_indices, task_subset
from umadapt.methods.players import Players, require_find_unused_parameters
from umadapt.nn.contour import ContourDecoder, contour_loss
from umadapt.nn.cross_task import (
    CrossTaskDistillation,
    NetFactory,
    energy_discriminator_loss,
    energy_generator_loss,
)
from umadapt.nn.freeze import train_only
from umadapt.weighting import FixedWeighting

__all__ = ["PHASES", "UMAdapt"]

PHASES = ("source", "ccr", "adapt")
"""The phases, in the order they run."""

EDGES = "edges"
DEFAULT_PHASES = {"source": 8.0, "ccr": 1.0, "adapt": 3.0}


class UMAdapt(MultiTaskModel):
    """UM-Adapt (see the module docstring for the losses and phases).

    Args (besides the base model's, passed on through ``**kwargs``):
        phases: relative lengths ``{source, ccr, adapt}`` of the phases (normalised by their sum; a missing key is
            0). With ``max_epochs`` equal to their sum, they are epochs.
        cross_tasks: the tasks taking part in cross-task distillation (two or more of the model's dense tasks;
            default: all of them).
        distillation_net: factory ``(in_channels, out_channels)`` of each ``T_t`` (default
            :class:`~umadapt.nn.CrossTaskNet`).
        consistency_weight: ``α``, weight of the source cross-task consistency (energy) in the source phase.
        consistency_warmup: fraction of the source phase over which ``α`` ramps up from 0.
        contour_decoder: factory ``(in_channels, out_channels)`` of the CCR decoder (default
            :class:`~umadapt.nn.ContourDecoder`).
        ccr_weight: ``λ``, weight of the target CCR loss in the generator's objective; 0 disables CCR.
        energy_weight: ``β``, weight of the target energy in the generator's objective.
        energy_margin: ``m`` of the discriminator's hinge ``max(0, m − E(x_t))``.
        adversarial: whether the distillation networks play the discriminator during adaptation.
        distill_gt_weight: ``w_gt``, weight of the distillation networks' ground-truth loss while they discriminate.
        adapt_stages: indices of the encoder stages (``encoder.stages``, finest first; negative from the end) that
            adapt; default ``[-1]``, the last.
        adapt_source_weight: ``w_s``, weight of the source supervised loss in the generator's objective.
        adapt_with_target: whether the adaptation phase passes target images at all (default). ``false``, with
            ``energy_weight: 0`` and ``ccr_weight: 0``, is the *extra training* control: the adapted stages go on
            learning from source labels alone on UM-Adapt's schedule (BatchNorm sees no target image).
        target_label_weight: ``w_tl``, weight of the supervised loss on labelled target images (UM-Adapt-S, when
            the data module serves a ``target_labelled`` batch, see ``data.target_label_fraction``).
        adapt_optimizer: optimizer factory of the adapted stages (default: ``optimizer``).
        distillation_optimizer: optimizer factory of the distillation networks (default: ``optimizer``).
        gradient_clip_val: clip each player's gradient norm to this value inside its step (``None``: no clipping).
        source_checkpoint: ``last.ckpt`` of an earlier source phase; required when ``phases.source`` is 0.
    """

    def __init__(
        self,
        phases: dict[str, float] | None = None,
        cross_tasks: list[str] | None = None,
        distillation_net: NetFactory | None = None,
        consistency_weight: float = 0.1,
        consistency_warmup: float = 0.25,
        contour_decoder: NetFactory | None = None,
        ccr_weight: float = 1.0,
        energy_weight: float = 1.0,
        energy_margin: float = 0.5,
        adversarial: bool = True,
        distill_gt_weight: float = 1.0,
        adapt_stages: list[int] | None = None,
        adapt_source_weight: float = 1.0,
        adapt_with_target: bool = True,
        target_label_weight: float = 1.0,
        adapt_optimizer: OptimizerCallable | None = None,
        distillation_optimizer: OptimizerCallable | None = None,
        gradient_clip_val: float | None = None,
        source_checkpoint: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.require_shared_features(
            "UMAdapt", "adapts chosen stages of one encoder and regularizes its deepest features with CCR"
        )
        self.automatic_optimization = False
        if self.lr_multipliers:
            raise ConfigError(
                "UM-Adapt sets each player's optimizer itself (optimizer, adapt_optimizer, distillation_optimizer): "
                "model.lr_multipliers is not supported; set those optimizers' learning rates instead."
            )
        check_non_negative(
            consistency_weight=consistency_weight,
            ccr_weight=ccr_weight,
            energy_weight=energy_weight,
            energy_margin=energy_margin,
            distill_gt_weight=distill_gt_weight,
            adapt_source_weight=adapt_source_weight,
            target_label_weight=target_label_weight,
        )
        if not 0.0 <= consistency_warmup <= 1.0:
            raise ConfigError(f"model.init_args.consistency_warmup must be in [0, 1], got {consistency_warmup}.")
        if gradient_clip_val is not None and gradient_clip_val <= 0:
            raise ConfigError(f"model.init_args.gradient_clip_val must be > 0 or null, got {gradient_clip_val}.")
        self.phase_schedule = phase_schedule(phases, PHASES, DEFAULT_PHASES, "model.init_args.phases")
        self.phases = self.phase_schedule.lengths
        if ccr_weight == 0 and self.phases["ccr"] > 0:
            raise ConfigError(
                "CCR is off (model.init_args.ccr_weight: 0), so there is no contour decoder to train: "
                "set model.init_args.phases.ccr to 0."
            )
        if self.phases["adapt"] > 0 and not (energy_weight or ccr_weight or adapt_source_weight or target_label_weight):
            raise ConfigError(
                "The adaptation phase has nothing to minimise: energy_weight, ccr_weight, adapt_source_weight and "
                "target_label_weight are all 0. Set one of them, or set model.init_args.phases.adapt to 0."
            )
        if not adapt_with_target and (energy_weight > 0 or ccr_weight > 0):
            raise ConfigError(
                "model.init_args.adapt_with_target: false passes no target image in the adaptation phase, but the "
                f"target energy (energy_weight={energy_weight}) and CCR (ccr_weight={ccr_weight}) need them: set both "
                "to 0 (the extra-training control) or adapt_with_target: true."
            )
        dense = [t for t in self.tasks if self.task_specs[t].dense]
        self.cross_tasks = task_subset(cross_tasks, self.tasks, dense, "model.init_args.cross_tasks", minimum=2)
        self.distillation = CrossTaskDistillation(
            self.cross_tasks, self.num_classes, distillation_net, {t: self.loss_weights[t] for t in self.cross_tasks}
        )
        self.use_ccr = ccr_weight > 0
        deepest = int(self.encoder.out_channels[-1])
        self.contour_decoder = (contour_decoder or ContourDecoder)(deepest, 1) if self.use_ccr else None
        self.adapt_stages = stage_indices(self.encoder, adapt_stages, "model.init_args.adapt_stages", "UM-Adapt")
        self.fixed_weighting = FixedWeighting()  # the adaptation phase's supervised terms: fixed loss_weights
        self.fixed_weighting.bind(self)
        self.consistency_weight = float(consistency_weight)
        self.consistency_warmup = float(consistency_warmup)
        self.ccr_weight = float(ccr_weight)
        self.energy_weight = float(energy_weight)
        self.energy_margin = float(energy_margin)
        self.adversarial = bool(adversarial)
        self.distill_gt_weight = float(distill_gt_weight)
        self.adapt_source_weight = float(adapt_source_weight)
        self.adapt_with_target = bool(adapt_with_target)
        self.target_label_weight = float(target_label_weight)
        self.adapt_optimizer_factory = adapt_optimizer
        self.distillation_optimizer_factory = distillation_optimizer
        self.gradient_clip_val = gradient_clip_val
        self.source_checkpoint = source_checkpoint
        self.players = Players()

    # -- phases -------------------------------------------------------------------------------------------------
    def adapted_parameters(self) -> list[nn.Parameter]:
        """The parameters that learn during adaptation: those of the encoder stages in ``adapt_stages``."""
        return [p for i in self.adapt_stages for p in self.encoder.stages[i].parameters()]

    def _trainable(self, phase: str) -> list[nn.Module]:
        """The parts that learn in ``phase``; everything else is frozen (no gradient, eval mode)."""
        if phase == "source":
            return [self.encoder, self.heads, self.distillation, self.weighting]
        if phase == "ccr":
            return [self.contour_decoder]
        adapted = [self.encoder.stages[i] for i in self.adapt_stages]
        return adapted + ([self.distillation] if self.adversarial and self.energy_weight > 0 else [])

    def uses_progress(self) -> bool:
        """The phases (and each phase's learning-rate schedule and the consistency ramp) follow progress."""
        return True

    def optimizer_steps_per_batch(self) -> float:
        """Optimizer steps per batch averaged over the phases (source: base + distillation networks; ccr: the
        contour decoder; adapt: the adapted stages, + the distillation networks when adversarial), so that phases
        follow batches under ``max_steps`` too (``global_step`` counts every player's step)."""
        adversarial = self.adversarial and self.energy_weight > 0
        steps = {"source": 2.0, "ccr": 1.0, "adapt": 2.0 if adversarial else 1.0}
        return sum(length * steps[phase] for phase, length in self.phases.items())

    def on_train_end(self) -> None:
        self.requires_grad_(True)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage != "fit":
            return
        require_find_unused_parameters(self._trainer and self.trainer, "UM-Adapt")
        if self.phases["ccr"] > 0 and self._trainer is not None:
            datamodule = getattr(self.trainer, "datamodule", None)
            if datamodule is not None and getattr(datamodule, "edges", True) is None:
                raise ConfigError(
                    "UM-Adapt's CCR phase needs image edge maps in the batches: set data.init_args.image_edges "
                    "(e.g. canny), or turn CCR off (model.init_args.ccr_weight: 0, phases.ccr: 0)."
                )
        if self.phases["source"] == 0:
            self.load_source_checkpoint()

    def load_source_checkpoint(self) -> None:
        """Load the encoder, heads, distillation networks (and the CCR decoder, unless this run trains it) from
        ``source_checkpoint`` (read with ``weights_only=True``); a run without a source phase needs them."""
        if not self.source_checkpoint:
            raise ConfigError(
                "This UM-Adapt run has no source phase (model.init_args.phases.source: 0), so it needs the "
                "source-phase checkpoint: set model.init_args.source_checkpoint to the last.ckpt of a run with a "
                "source phase."
            )
        prefixes = ["encoder.", "heads.", "distillation."]
        if self.contour_decoder is not None and self.phases["ccr"] == 0:
            prefixes.append("contour_decoder.")
        load_partial_state(
            self,
            self.source_checkpoint,
            prefixes,
            what="Source-phase checkpoint (model.init_args.source_checkpoint)",
            hint="Point source_checkpoint at the checkpoints/last.ckpt of a UM-Adapt run whose phases trained them "
            "(the distillation networks come from the source phase, the contour decoder from the ccr phase).",
        )

    # -- optimisation -------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        base = [*self.encoder.parameters(), *self.heads.parameters(), *self.weighting.parameters()]
        optimizers = {
            "base": self.optimizer_factory(base),
            "distillation": (self.distillation_optimizer_factory or self.optimizer_factory)(
                self.distillation.parameters()
            ),
            "adapt": (self.adapt_optimizer_factory or self.optimizer_factory)(self.adapted_parameters()),
        }
        if self.contour_decoder is not None:
            optimizers["ccr"] = self.optimizer_factory(self.contour_decoder.parameters())
        return self.players.configure(optimizers)

    def _step(self, loss: torch.Tensor, players: list[str], phase_progress: float) -> None:
        self.players.step(self, loss, players, self.lr_schedule(phase_progress), self.gradient_clip_val)

    # -- training -----------------------------------------------------------------------------------------------
    def training_step(self, batch: Mapping[str, Mapping[str, torch.Tensor]], batch_idx: int) -> None:
        phase, phase_progress = self.phase_schedule.at(self.progress(batch_idx))
        train_only(self, self._trainable(phase))  # every step: Lightning switches modes around validation
        self.log("train/phase", float(PHASES.index(phase)))
        {"source": self._source_step, "ccr": self._ccr_step, "adapt": self._adapt_step}[phase](batch, phase_progress)

    def _labelled_target_loss(self, labelled: Mapping[str, torch.Tensor], predictions: dict) -> torch.Tensor:
        """``w_tl Σ_t w_t L_t`` on the labelled target images (UM-Adapt-S); ``predictions`` are theirs."""
        self.require_labels(labelled, "target_labelled")
        losses = self.task_losses(predictions, labelled)
        self.log_losses("target_labelled", losses, labelled["image"].shape[0])
        return self.target_label_weight * self.fixed_weighting(losses, self)

    def _images(self, batch: Mapping[str, Mapping[str, torch.Tensor]], domains: list[str]) -> tuple[torch.Tensor, list]:
        """The images of ``domains`` (plus labelled target images, UM-Adapt-S) as one batch, and the slices."""
        if self.target_label_weight > 0 and "target_labelled" in batch:
            domains = [*domains, "target_labelled"]
        parts = [batch[d]["image"] for d in domains]
        bounds = torch.tensor([0] + [p.shape[0] for p in parts]).cumsum(0).tolist()
        return torch.cat(parts), [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]

    def _source_step(self, batch: Mapping[str, Mapping[str, torch.Tensor]], phase_progress: float) -> None:
        """Base network: supervised loss + α · source energy against the (detached) transfers; distillation
        networks: their ground-truth loss on the (detached) predictions. One forward of each, one backward."""
        source = batch["source"]
        self.require_labels(source, "source")
        images, slices = self._images(batch, ["source"])
        every = self(images)
        predictions = {t: p[slices[0]] for t, p in every.items()}
        base_loss = self.supervised_terms(predictions, source, "source")
        if len(slices) > 1:
            labelled = {t: p[slices[1]] for t, p in every.items()}
            base_loss = base_loss + self._labelled_target_loss(batch["target_labelled"], labelled)

        n = source["image"].shape[0]
        transferred = self.distillation.transfer(predictions, detach_inputs=True)
        distill_losses = self.distillation.distillation_losses(predictions, source, transferred)
        distill_loss = self.distillation.weighted(distill_losses)
        self.log_losses("distillation", distill_losses, n, distill_loss)

        warmup = self.consistency_warmup
        alpha = self.consistency_weight * (min(1.0, phase_progress / warmup) if warmup > 0 else 1.0)
        energy = self.distillation.energy(predictions, {t: v.detach() for t, v in transferred.items()}).mean()
        self.log("train/energy/source", energy.detach(), batch_size=n, prog_bar=True)
        self.log("train/consistency/alpha", alpha)
        if alpha > 0:
            base_loss = base_loss + alpha * energy
        self._step(base_loss + distill_loss, ["base", "distillation"], phase_progress)

    def _edges(self, batch: Mapping[str, torch.Tensor], domain: str) -> torch.Tensor:
        if EDGES not in batch:
            raise ConfigError(
                f"CCR needs the image edge maps, but the {domain} batch has no {EDGES!r} key (keys: {sorted(batch)}); "
                "set data.init_args.image_edges (e.g. canny)."
            )
        return batch[EDGES]

    def _ccr_step(self, batch: Mapping[str, Mapping[str, torch.Tensor]], phase_progress: float) -> None:
        assert self.contour_decoder is not None
        source = batch["source"]
        edges = self._edges(source, "source")
        with torch.no_grad():
            deepest = self.features(source["image"])[-1]
        loss = contour_loss(self.contour_decoder(deepest, tuple(edges.shape[-2:])), edges)
        self.log("train/ccr/source/loss", loss.detach(), batch_size=edges.shape[0], prog_bar=True)
        self._step(loss, ["ccr"], phase_progress)

    def _adapt_step(self, batch: Mapping[str, Mapping[str, torch.Tensor]], phase_progress: float) -> None:
        """Generator (adapted stages) and discriminator (distillation networks) in one backward pass: the generator's
        terms see the distillation networks with ``requires_grad`` off, the discriminator's see detached
        predictions, so each loss reaches only its own player."""
        source, target = batch["source"], batch["target"]
        domains = ["source", "target"] if self.adapt_with_target else ["source"]
        images, slices = self._images(batch, domains)
        s, t = slices[0], slices[1] if self.adapt_with_target else slice(0, 0)
        ns, nt = source["image"].shape[0], target["image"].shape[0]
        size = tuple(images.shape[-2:])
        adversarial = self.adversarial and self.energy_weight > 0

        self.distillation.requires_grad_(False)
        features = self.features(images)
        every = self.decode(features, size)
        predictions_s = {k: p[s] for k, p in every.items()}
        predictions_t = {k: p[t] for k, p in every.items()}

        generator_loss = torch.zeros((), device=images.device)
        if self.adapt_source_weight > 0:
            self.require_labels(source, "source")
            supervised = self.fixed_weighting(self.task_losses(predictions_s, source), self)
            self.log("train/source/loss", supervised.detach(), batch_size=ns, prog_bar=True)
            generator_loss = generator_loss + self.adapt_source_weight * supervised
        if len(slices) > len(domains):
            labelled = {k: p[slices[-1]] for k, p in every.items()}
            generator_loss = generator_loss + self._labelled_target_loss(batch["target_labelled"], labelled)
        if self.energy_weight > 0:
            energy_target = energy_generator_loss(self.distillation.energy(predictions_t))
            generator_loss = generator_loss + self.energy_weight * energy_target
            self.log("train/energy/target", energy_target.detach(), batch_size=nt, prog_bar=True)
        if self.contour_decoder is not None:
            ccr = contour_loss(self.contour_decoder(features[-1][t], size), self._edges(target, "target"))
            generator_loss = generator_loss + self.ccr_weight * ccr
            self.log("train/ccr/target/loss", ccr.detach(), batch_size=nt)
        self.log("train/generator/loss", generator_loss.detach(), batch_size=nt)
        if not adversarial:
            self._step(generator_loss, ["adapt"], phase_progress)
            return

        self.distillation.requires_grad_(True)
        detached = {k: torch.cat([p[s], p[t]]).detach() for k, p in every.items()}
        transferred = self.distillation.transfer(detached)
        energies = self.distillation.energy(detached, transferred)
        energy_s, energy_t = energies[:ns], energies[ns:]
        discriminator_loss = energy_discriminator_loss(energy_s, energy_t, self.energy_margin)
        if self.distill_gt_weight > 0:
            self.require_labels(source, "source")
            gt = self.distillation.distillation_losses(
                {k: p[:ns] for k, p in detached.items()}, source, {k: p[:ns] for k, p in transferred.items()}
            )
            discriminator_loss = discriminator_loss + self.distill_gt_weight * self.distillation.weighted(gt)
        self.log("train/energy/source", energy_s.mean().detach(), batch_size=ns, prog_bar=True)
        self.log("train/discriminator/loss", discriminator_loss.detach(), batch_size=ns)
        self._step(generator_loss + discriminator_loss, ["adapt", "distillation"], phase_progress)

    # -- evaluation: the energy of each domain under the current distillation networks ------------------------
    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        super().validation_step(batch, batch_idx, dataloader_idx)
        domain = self.eval_domains[dataloader_idx]
        energy = self.distillation.energy(self(batch["image"])).mean()
        self.log(
            f"val/{domain}/energy", energy, batch_size=batch["image"].shape[0], add_dataloader_idx=False, sync_dist=True
        )
