"""UM-Adapt: unsupervised multi-task adaptation using adversarial cross-task distillation (Kundu, Lakkakula, Babu,
ICCV 2019, arXiv 1908.03884), as one LightningModule with a phase schedule.

Parts (besides the base network, the shared encoder + task heads of :class:`MultiTaskModel`):

* ``distillation``: the cross-task distillation networks ``T_t`` (:class:`~umadapt.nn.CrossTaskDistillation`),
  one per task in ``cross_tasks``, each predicting its task from the other tasks' predictions;
* ``contour_decoder``: the CCR decoder (:class:`~umadapt.nn.ContourDecoder`) predicting the image's edge map
  (batch key ``edges``, from a classical edge detector, :mod:`data_modules.edges`) from the deepest feature.

Phases (relative lengths in ``phases``, laid out on the training progress ``p = (epoch + batch / batches) /
max_epochs``; each phase runs its optimizers with ``lr_schedule`` of its own progress):

1. ``source`` -- supervised multi-task training with cross-task distillation (the paper's cross-task
   distillation module). Two players:

   - base network: ``Σ_t w_t L_t(ŷ_t, y_t) + α · mean E(x_s)`` where ``E(x) = Σ_t w_t d_t(ŷ_t, T_t(ŷ_¬t))``
     is the cross-task inconsistency (the paper's cross-task distillation loss, re-used as the energy below);
     ``α`` (``consistency_weight``) ramps up linearly over the first ``consistency_warmup`` of the phase while the
     ``T_t`` are still untrained. Labelled target images (UM-Adapt-S) add ``w_tl Σ_t w_t L_t`` on them.
   - distillation networks: ``Σ_t w_t L_t(T_t(ŷ_¬t), y_t)`` on source, ground truth as the target, the
     predictions ``ŷ_¬t`` fed as inputs (detached).

   In this phase the consistency term treats ``T_t(ŷ_¬t)`` as a fixed (stop-gradient) target, so one pass of the
   ``T_t`` serves both players and one backward pass updates both.

2. ``ccr`` -- the CCR decoder learns ``BCE(D_c(f_deep(x_s)), edges(x_s))`` on source images with the encoder
   frozen (the paper's contour-based content regularization).

3. ``adapt`` -- energy-based adversarial adaptation (the paper's UM-Adapt objective: EBGAN-style, the
   cross-task distillation loss as the energy, no domain discriminator). Only
   the encoder stages in ``adapt_stages`` learn (default the last); the stem, the other stages, the heads and
   the CCR decoder are frozen (``requires_grad=False`` and eval mode, so BatchNorm statistics stay bitwise
   unchanged). Source, target (and labelled-target) images go through the network as one batch.

   - generator (adapted stages): ``β · mean E(x_t) + λ · BCE(D_c(f_deep(x_t)), edges(x_t))
     + w_s Σ_t w_t L_t(source) [+ w_tl Σ_t w_t L_t(labelled target)]``;
   - discriminator (the ``T_t``): ``mean E(x_s) + mean max(0, m − E(x_t)) + w_gt Σ_t w_t L_t(T_t(ŷ^s_¬t),
     y^s_t)``, on detached predictions: low energy on source, high energy on target up to the margin ``m``.

   The generator's energy is differentiated through the ``T_t``'s inputs (with their parameters' gradients off),
   the discriminator's terms see detached predictions, so one backward pass serves both players.

Paper references are by component, not by equation number: the paper's text could not be consulted while this
was written, so its equation numbers are not quoted here (a future pass should add them).

Choices where the paper leaves room (or where we depart from it, to fit SynthRooms on a CPU):

* ``d_t`` (:func:`~umadapt.nn.cross_task.task_distance`): L1 in metres for depth, ``1 − cos`` for normals,
  ``KL(softmax(ŷ) ‖ softmax(T))`` for segmentation; the energy is per sample, the hinge is applied per sample.
* The ``T_t`` take the base network's (detached) predictions as inputs when they learn from the ground truth,
  the inputs they see when they compute the energy; they keep that ground-truth term (weight
  ``distill_gt_weight``) while they play the discriminator, so "low energy" keeps meaning "correct on source".
* The generator keeps the source supervised loss (weight ``adapt_source_weight``) so the adapted stage stays
  compatible with the frozen heads; set it to 0 for the paper's pure adversarial + CCR objective.
* Edges come from Canny/Sobel (OpenCV) rather than a learned contour detector; the CCR loss is a per-pixel BCE.
* ``adversarial: false`` (the "without energy adversary" ablation) freezes the ``T_t`` during adaptation: the
  generator still lowers the target energy of fixed distillation networks, but no discriminator pushes back.
* ``ccr_weight: 0`` (the "without CCR" ablation) builds no contour decoder and needs ``phases.ccr: 0``.

Optimizers (manual optimization, one per player): ``base`` (encoder + heads), ``distillation`` (the ``T_t``),
``ccr`` (contour decoder, when CCR is on) and ``adapt`` (the adapted stages). Energies and losses are computed in
float32 (autocast off), so bf16 mixed precision is safe; gradients are clipped inside each step when
``gradient_clip_val`` is set (Lightning's own clipping is unavailable with manual optimization). Under DDP use
``strategy: ddp_find_unused_parameters_true``: every phase leaves some parameters without gradients.
Optimizer steps count into ``trainer.global_step`` (2-3 per batch); phases follow batches, not ``global_step``.

Two ways to run the phases: one run with all three (``phases: {source: 12, ccr: 1, adapt: 3}``, the benchmark
config), or chained runs: ``phases: {source: 1, ccr: 1, adapt: 0}`` first, then ``phases: {source: 0, ccr: 0,
adapt: 1}`` with ``source_checkpoint`` pointing at the first run's ``last.ckpt`` (a run without a source phase
loads the encoder, heads, distillation networks and, unless it trains it, the CCR decoder from there).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from pytorch_lightning.cli import OptimizerCallable
from torch import nn

from umadapt.errors import ConfigError
from umadapt.methods.base import HeadFactory, MultiTaskModel, _default_optimizer
from umadapt.nn.contour import ContourDecoder, contour_loss
from umadapt.nn.cross_task import (
    CrossTaskDistillation,
    NetFactory,
    energy_discriminator_loss,
    energy_generator_loss,
)
from umadapt.schedules import training_progress
from umadapt.weighting import LossWeighting

__all__ = ["PHASES", "UMAdapt"]

PHASES = ("source", "ccr", "adapt")
"""The phases, in the order they run."""

EDGES = "edges"
DEFAULT_PHASES = {"source": 8.0, "ccr": 1.0, "adapt": 3.0}


class UMAdapt(MultiTaskModel):
    """UM-Adapt (see the module docstring for the losses and phases).

    Args (besides those of :class:`~umadapt.methods.base.MultiTaskModel`):
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
        distill_gt_weight: weight of the distillation networks' ground-truth loss in the discriminator's objective.
        adapt_stages: indices of the encoder stages (``encoder.stages``, finest first; negative from the end) that
            adapt; default ``[-1]``, the last.
        adapt_source_weight: ``w_s``, weight of the source supervised loss in the generator's objective.
        target_label_weight: ``w_tl``, weight of the supervised loss on labelled target images (UM-Adapt-S, when
            the data module serves a ``target_labelled`` batch, see ``data.target_label_fraction``).
        adapt_optimizer: optimizer factory of the adapted stages (default: ``optimizer``).
        distillation_optimizer: optimizer factory of the distillation networks (default: ``optimizer``).
        gradient_clip_val: clip each player's gradient norm to this value inside its step (``None``: no clipping).
        source_checkpoint: ``last.ckpt`` of an earlier source phase; required when ``phases.source`` is 0.
    """

    def __init__(
        self,
        encoder: nn.Module,
        tasks: list[str],
        num_classes: int | None = None,
        image_size: tuple[int, int] | None = None,
        dense_head: HeadFactory | None = None,
        classification_head: HeadFactory | None = None,
        loss_weights: dict[str, float] | None = None,
        optimizer: OptimizerCallable = _default_optimizer,
        lr_schedule: str = "constant",
        weighting: LossWeighting | None = None,
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
        target_label_weight: float = 1.0,
        adapt_optimizer: OptimizerCallable | None = None,
        distillation_optimizer: OptimizerCallable | None = None,
        gradient_clip_val: float | None = None,
        source_checkpoint: str | None = None,
    ) -> None:
        super().__init__(
            encoder=encoder,
            tasks=tasks,
            num_classes=num_classes,
            image_size=image_size,
            dense_head=dense_head,
            classification_head=classification_head,
            loss_weights=loss_weights,
            optimizer=optimizer,
            lr_schedule=lr_schedule,
            weighting=weighting,
        )
        self.require_shared_features(
            "UMAdapt", "adapts chosen stages of one encoder and regularizes its deepest features with CCR"
        )
        self.automatic_optimization = False
        for name, value in (
            ("consistency_weight", consistency_weight), ("ccr_weight", ccr_weight), ("energy_weight", energy_weight),
            ("energy_margin", energy_margin), ("distill_gt_weight", distill_gt_weight),
            ("adapt_source_weight", adapt_source_weight), ("target_label_weight", target_label_weight),
        ):  # fmt: skip
            if value < 0:
                raise ConfigError(f"model.init_args.{name} must be >= 0, got {value}.")
        if not 0.0 <= consistency_warmup <= 1.0:
            raise ConfigError(f"model.init_args.consistency_warmup must be in [0, 1], got {consistency_warmup}.")
        if gradient_clip_val is not None and gradient_clip_val <= 0:
            raise ConfigError(f"model.init_args.gradient_clip_val must be > 0 or null, got {gradient_clip_val}.")
        self.phases = self._check_phases(phases, ccr_weight)
        if self.phases["adapt"] > 0 and not (energy_weight or ccr_weight or adapt_source_weight or target_label_weight):
            raise ConfigError(
                "The adaptation phase has nothing to minimise: energy_weight, ccr_weight, adapt_source_weight and "
                "target_label_weight are all 0. Set one of them, or set model.init_args.phases.adapt to 0."
            )
        self.cross_tasks = self._check_cross_tasks(cross_tasks)
        self.distillation = CrossTaskDistillation(
            self.cross_tasks, num_classes, distillation_net, {t: self.loss_weights[t] for t in self.cross_tasks}
        )
        self.use_ccr = ccr_weight > 0
        self.contour_decoder = (
            (contour_decoder or ContourDecoder)(int(encoder.out_channels[-1]), 1) if self.use_ccr else None
        )
        self.adapt_stages = self._check_stages(encoder, adapt_stages)
        self.consistency_weight = float(consistency_weight)
        self.consistency_warmup = float(consistency_warmup)
        self.ccr_weight = float(ccr_weight)
        self.energy_weight = float(energy_weight)
        self.energy_margin = float(energy_margin)
        self.adversarial = bool(adversarial)
        self.distill_gt_weight = float(distill_gt_weight)
        self.adapt_source_weight = float(adapt_source_weight)
        self.target_label_weight = float(target_label_weight)
        self.adapt_optimizer_factory = adapt_optimizer
        self.distillation_optimizer_factory = distillation_optimizer
        self.gradient_clip_val = gradient_clip_val
        self.source_checkpoint = source_checkpoint
        self._phase: str | None = None

    # -- configuration checks -----------------------------------------------------------------------------------
    @staticmethod
    def _check_phases(phases: Mapping[str, float] | None, ccr_weight: float) -> dict[str, float]:
        phases = dict(DEFAULT_PHASES if phases is None else phases)
        unknown = sorted(set(phases) - set(PHASES))
        if unknown:
            raise ConfigError(f"model.init_args.phases names unknown phase(s) {unknown}; valid phases: {list(PHASES)}.")
        lengths = {p: float(phases.get(p, 0.0)) for p in PHASES}
        if any(v < 0 or not math.isfinite(v) for v in lengths.values()) or sum(lengths.values()) <= 0:
            raise ConfigError(f"model.init_args.phases must be non-negative lengths with a positive sum, got {phases}.")
        if ccr_weight == 0 and lengths["ccr"] > 0:
            raise ConfigError(
                "CCR is off (model.init_args.ccr_weight: 0), so there is no contour decoder to train: "
                "set model.init_args.phases.ccr to 0."
            )
        total = sum(lengths.values())
        return {p: v / total for p, v in lengths.items()}

    def _check_cross_tasks(self, cross_tasks: list[str] | None) -> list[str]:
        if cross_tasks is None:
            cross_tasks = [t for t in self.tasks if self.task_specs[t].dense]
        missing = [t for t in cross_tasks if t not in self.tasks]
        if missing:
            raise ConfigError(
                f"model.init_args.cross_tasks names {missing}, which the model has no head for (its tasks: "
                f"{self.tasks}). Drop it from cross_tasks or add it to data.tasks."
            )
        if len(set(cross_tasks)) < 2:
            raise ConfigError(
                f"Cross-task distillation needs at least two tasks, got cross_tasks={list(cross_tasks)} (model tasks: "
                f"{self.tasks}). List two or more dense tasks in model.init_args.cross_tasks."
            )
        return list(cross_tasks)

    @staticmethod
    def _check_stages(encoder: nn.Module, adapt_stages: list[int] | None) -> list[int]:
        stages = getattr(encoder, "stages", None)
        if stages is None:
            raise ConfigError(
                f"UM-Adapt adapts chosen encoder stages, but {type(encoder).__name__} has no `stages` list; "
                "use an encoder that exposes one (e.g. umadapt.nn.ResNetEncoder)."
            )
        count = len(stages)
        chosen = [-1] if adapt_stages is None else list(adapt_stages)
        if not chosen or any(not -count <= i < count for i in chosen):
            raise ConfigError(
                f"model.init_args.adapt_stages must be non-empty indices into the encoder's {count} stages "
                f"(0..{count - 1}, or negative from the end), got {adapt_stages}."
            )
        return sorted({i % count for i in chosen})

    # -- phases -------------------------------------------------------------------------------------------------
    def progress(self, batch_idx: int = 0) -> float:
        """Training progress ``p`` in [0, 1], by batches: ``(epoch + batch_idx / batches) / max_epochs`` (optimizer
        steps, and so ``global_step``, are several per batch here)."""
        if self._trainer is None:
            return 0.0
        trainer = self.trainer
        batches, max_epochs = trainer.num_training_batches, trainer.max_epochs
        if not max_epochs or max_epochs < 1 or not batches or not math.isfinite(batches):
            return training_progress(trainer)
        return min(max((trainer.current_epoch + batch_idx / batches) / max_epochs, 0.0), 1.0)

    def phase_at(self, progress: float) -> tuple[str, float]:
        """The phase running at ``progress`` and the progress within it (in [0, 1))."""
        start = 0.0
        active = [p for p in PHASES if self.phases[p] > 0]
        for phase in active:
            length = self.phases[phase]
            if progress < start + length or phase == active[-1]:
                return phase, min(max((progress - start) / length, 0.0), 1.0)
            start += length
        raise AssertionError("unreachable: phases have a positive sum")

    def adapted_parameters(self) -> list[nn.Parameter]:
        """The parameters that learn during adaptation: those of the encoder stages in ``adapt_stages``."""
        stages = self.encoder.stages
        return [p for i in self.adapt_stages for p in stages[i].parameters()]

    def _enter_phase(self, phase: str) -> None:
        """Train/eval modes and ``requires_grad`` of every part for ``phase`` (idempotent; run every step, because
        Lightning switches modes around validation)."""
        trainable: list[nn.Module]
        if phase == "source":
            self.train()
            trainable = [self.encoder, self.heads, self.distillation, self.weighting]
        elif phase == "ccr":
            self.eval()
            assert self.contour_decoder is not None
            self.contour_decoder.train()
            trainable = [self.contour_decoder]
        else:
            self.eval()
            for i in self.adapt_stages:
                self.encoder.stages[i].train()
            trainable = [self.encoder.stages[i] for i in self.adapt_stages]
            if self.adversarial and self.energy_weight > 0:
                self.distillation.train()
                trainable.append(self.distillation)
        if self._phase != phase:
            trainable_ids = {id(p) for m in trainable for p in m.parameters()}
            for parameter in self.parameters():
                parameter.requires_grad_(id(parameter) in trainable_ids)
            self._phase = phase

    def on_train_end(self) -> None:
        for parameter in self.parameters():
            parameter.requires_grad_(True)
        self._phase = None

    # -- source checkpoint --------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage != "fit":
            return
        self._check_strategy()
        if self.phases["ccr"] > 0 and self._trainer is not None:
            datamodule = getattr(self.trainer, "datamodule", None)
            if datamodule is not None and getattr(datamodule, "edges", True) is None:
                raise ConfigError(
                    "UM-Adapt's CCR phase needs image edge maps in the batches: set data.init_args.image_edges "
                    "(e.g. canny), or turn CCR off (model.init_args.ccr_weight: 0, phases.ccr: 0)."
                )
        if self.phases["source"] == 0:
            self.load_source_checkpoint()

    def _check_strategy(self) -> None:
        strategy = self.trainer.strategy if self._trainer is not None else None
        ddp_kwargs = getattr(strategy, "_ddp_kwargs", None)
        if ddp_kwargs is not None and not ddp_kwargs.get("find_unused_parameters", False):
            raise ConfigError(
                "UM-Adapt leaves some parameters without gradients in every phase (frozen stages, the other player), "
                "which plain DDP cannot reduce: use trainer.strategy: ddp_find_unused_parameters_true (or "
                "ddp_spawn_find_unused_parameters_true)."
            )

    def load_source_checkpoint(self) -> None:
        """Load the encoder, heads, distillation networks (and the CCR decoder, unless this run trains it) from
        ``source_checkpoint`` (a file you trust: it is unpickled); a run without a source phase needs them."""
        path = self.source_checkpoint
        if not path:
            raise ConfigError(
                "This UM-Adapt run has no source phase (model.init_args.phases.source: 0), so it needs the "
                "source-phase checkpoint: set model.init_args.source_checkpoint to the last.ckpt of a run with a "
                "source phase."
            )
        if not Path(path).is_file():
            raise ConfigError(
                f"Source-phase checkpoint not found: {path!r} (model.init_args.source_checkpoint). Run the source "
                "phase first (e.g. phases: {source: 1, ccr: 1, adapt: 0}) and point source_checkpoint at its "
                "checkpoints/last.ckpt."
            )
        state = torch.load(path, map_location="cpu", weights_only=False)
        state = state.get("state_dict", state)
        prefixes = ["encoder.", "heads.", "distillation."]
        if self.contour_decoder is not None and self.phases["ccr"] == 0:
            prefixes.append("contour_decoder.")
        own = self.state_dict()
        wanted = [k for k in own if any(k.startswith(p) for p in prefixes)]
        missing = [k for k in wanted if k not in state]
        if missing:
            parts = sorted({k.split(".")[0] for k in missing})
            raise ConfigError(
                f"The source-phase checkpoint {path!r} lacks {parts} (e.g. {missing[0]!r}): it was not written by a "
                "UM-Adapt run whose phases trained them (the distillation networks come from the source phase, the "
                "contour decoder from the ccr phase)."
            )
        self.load_state_dict({k: state[k] for k in wanted}, strict=False)

    # -- optimisation -------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizers = {
            "base": self.optimizer_factory(
                [*self.encoder.parameters(), *self.heads.parameters(), *self.weighting.parameters()]
            ),
            "distillation": (self.distillation_optimizer_factory or self.optimizer_factory)(
                self.distillation.parameters()
            ),
            "adapt": (self.adapt_optimizer_factory or self.optimizer_factory)(self.adapted_parameters()),
        }
        if self.contour_decoder is not None:
            optimizers["ccr"] = self.optimizer_factory(self.contour_decoder.parameters())
        self._optimizer_names = list(optimizers)
        for optimizer in optimizers.values():
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        return list(optimizers.values())

    def _optimizer(self, name: str) -> Any:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        names = getattr(self, "_optimizer_names", None) or ["base", "distillation", "adapt", "ccr"]
        return optimizers[names.index(name)]

    def _step(self, loss: torch.Tensor, names: Sequence[str], phase_progress: float) -> None:
        """One update of the players ``names``: schedule their learning rates, one backward pass of ``loss`` (the
        players' losses are built so that each reaches only its own parameters), clip each player's gradient,
        step each optimizer."""
        optimizers = [self._optimizer(name) for name in names]
        factor = self.lr_schedule(phase_progress)
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * factor
            optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        for name, optimizer in zip(names, optimizers):
            if self.gradient_clip_val is not None:
                self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm")
            optimizer.step()
            self.log(f"train/lr/{name}", optimizer.param_groups[0]["lr"])

    # -- training -----------------------------------------------------------------------------------------------
    def training_step(self, batch: Mapping[str, Mapping[str, torch.Tensor]], batch_idx: int) -> None:
        phase, phase_progress = self.phase_at(self.progress(batch_idx))
        self._enter_phase(phase)
        self.log("train/phase", float(PHASES.index(phase)))
        {"source": self._source_step, "ccr": self._ccr_step, "adapt": self._adapt_step}[phase](batch, phase_progress)

    def fixed_sum(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``Σ_t w_t L_t`` with ``loss_weights``: the supervised terms of the adaptation phase, where most shared
        parameters are frozen (an adaptive ``weighting`` only acts in the source phase)."""
        return sum(self.loss_weights[t] * loss for t, loss in losses.items())  # type: ignore[return-value]

    def _labelled(self, batch: Mapping[str, torch.Tensor], domain: str) -> None:
        missing = [t for t in self.tasks if t not in batch]
        if missing:
            raise KeyError(f"The {domain} batch has no labels for {missing} (keys: {sorted(batch)}).")

    def _log_losses(self, prefix: str, losses: Mapping[str, torch.Tensor], batch_size: int) -> None:
        for t, loss in losses.items():
            self.log(f"{prefix}/{t}/loss", loss.detach(), batch_size=batch_size)

    def _source_step(self, batch: Mapping[str, Mapping[str, torch.Tensor]], phase_progress: float) -> None:
        """Base network: supervised loss + α · source energy against the (detached) transfers; distillation
        networks: their ground-truth loss on the (detached) predictions. One forward of each, one backward."""
        source = batch["source"]
        self._labelled(source, "source")
        labelled_target = batch.get("target_labelled") if self.target_label_weight > 0 else None
        n = source["image"].shape[0]
        images = source["image"] if labelled_target is None else torch.cat([source["image"], labelled_target["image"]])
        every = self(images)
        predictions = {t: p[:n] for t, p in every.items()}

        losses = self.task_losses(predictions, source)
        base_loss = self.weighted_sum(losses)
        self._log_losses("train/source", losses, n)
        self.log("train/source/loss", base_loss.detach(), batch_size=n, prog_bar=True)
        if labelled_target is not None:
            self._labelled(labelled_target, "target_labelled")
            target_losses = self.task_losses({t: p[n:] for t, p in every.items()}, labelled_target)
            self._log_losses("train/target_labelled", target_losses, labelled_target["image"].shape[0])
            base_loss = base_loss + self.target_label_weight * self.fixed_sum(target_losses)

        transferred = self.distillation.transfer(predictions, detach_inputs=True)
        distill_losses = self.distillation.distillation_losses(predictions, source, transferred)
        distill_loss = sum(self.distillation.weights[t] * v for t, v in distill_losses.items())
        self._log_losses("train/distillation", distill_losses, n)
        self.log("train/distillation/loss", distill_loss.detach(), batch_size=n)

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
            raise KeyError(
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
        labelled_target = batch.get("target_labelled") if self.target_label_weight > 0 else None
        ns, nt = source["image"].shape[0], target["image"].shape[0]
        parts = [source["image"], target["image"]] + ([] if labelled_target is None else [labelled_target["image"]])
        images = torch.cat(parts)
        size = tuple(images.shape[-2:])
        adversarial = self.adversarial and self.energy_weight > 0

        self.distillation.requires_grad_(False)
        features = self.features(images)
        every = self.decode(features, size)
        predictions_s = {t: p[:ns] for t, p in every.items()}
        predictions_t = {t: p[ns : ns + nt] for t, p in every.items()}

        generator_loss = torch.zeros((), device=images.device)
        if self.adapt_source_weight > 0:
            self._labelled(source, "source")
            supervised = self.fixed_sum(self.task_losses(predictions_s, source))
            self.log("train/source/loss", supervised.detach(), batch_size=ns, prog_bar=True)
            generator_loss = generator_loss + self.adapt_source_weight * supervised
        if labelled_target is not None:
            self._labelled(labelled_target, "target_labelled")
            target_losses = self.task_losses({t: p[ns + nt :] for t, p in every.items()}, labelled_target)
            generator_loss = generator_loss + self.target_label_weight * self.fixed_sum(target_losses)
        if self.energy_weight > 0:
            energy_target = energy_generator_loss(self.distillation.energy(predictions_t))
            generator_loss = generator_loss + self.energy_weight * energy_target
            self.log("train/energy/target", energy_target.detach(), batch_size=nt, prog_bar=True)
        if self.contour_decoder is not None:
            edges = self._edges(target, "target")
            ccr = contour_loss(self.contour_decoder(features[-1][ns : ns + nt], size), edges)
            generator_loss = generator_loss + self.ccr_weight * ccr
            self.log("train/ccr/target/loss", ccr.detach(), batch_size=nt)
        self.log("train/generator/loss", generator_loss.detach(), batch_size=nt)
        if not adversarial:
            self._step(generator_loss, ["adapt"], phase_progress)
            return

        self.distillation.requires_grad_(True)
        detached = {t: torch.cat([p[:ns], p[ns : ns + nt]]).detach() for t, p in every.items()}
        transferred = self.distillation.transfer(detached)
        energies = self.distillation.energy(detached, transferred)
        energy_s, energy_t = energies[:ns], energies[ns:]
        discriminator_loss = energy_discriminator_loss(energy_s, energy_t, self.energy_margin)
        if self.distill_gt_weight > 0:
            self._labelled(source, "source")
            gt = self.distillation.distillation_losses(
                {t: p[:ns] for t, p in detached.items()}, source, {t: p[:ns] for t, p in transferred.items()}
            )
            discriminator_loss = discriminator_loss + self.distill_gt_weight * sum(
                self.distillation.weights[t] * v for t, v in gt.items()
            )
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
