"""Self-training with multi-transform ensembling: data distillation (Radosavovic, Dollár, Girshick, Gkioxari, He,
"Data Distillation: Towards Omni-Supervised Learning", CVPR 2018) for domain adaptation, for every task, as a stage
after any umadapt method.

A teacher (the encoder and heads of ``teacher_checkpoint``, any umadapt model of the same task set) predicts each
target training image under several ``transforms`` (:mod:`umadapt.pseudo.transforms`); the predictions, mapped back
to the image's frame, are ensembled (:mod:`umadapt.pseudo.ensemble`); the ``confidence`` rule of each task keeps the
reliable pixels (:mod:`umadapt.pseudo.confidence`); the student learns

    L = w_src Σ_t w_t L_t(f(x_s), y_s) + w_pl Σ_t w_t q_t L_t(f(A(x_t)), ŷ_t)

with ``A`` a strong photometric augmentation of the student's input (:mod:`umadapt.pseudo.augment`), ``ŷ_t`` the
pseudo-labels (invalid where not kept) and ``q_t = 1`` (``pseudo_weighting: mask``) or the fraction of kept
pixels with every pixel labelled (``quality``: DAFormer's confidence-weighted loss, Hoyer et al. CVPR 2022, eq. 4).

``mode: offline`` (data distillation): the teacher is fixed within each of ``rounds`` equal parts of training and
becomes the student at the start of the next. ``mode: online`` (mean teacher, Tarvainen & Valpola 2017, as in
DAFormer): after every optimizer step ``θ_T ← α θ_T + (1 - α) θ_S`` with ``α = ema_decay``. Quantile thresholds
(``class_balanced``, ``agreement`` with a ``portion``) are calibrated on the target training images (no label read)
at the start of each round (offline) or epoch (online). The target batch is read for its image only.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from umadapt.checkpoints import load_task_network
from umadapt.errors import ConfigError
from umadapt.methods.base import MultiTaskModel, task_features
from umadapt.methods.checks import check_non_negative
from umadapt.nn.batchnorm import reestimate_batchnorm
from umadapt.pseudo import (
    Calibration,
    PhotometricAugmentation,
    combine_views,
    confident,
    copy_weights,
    ema_update,
    parse_rules,
    parse_transforms,
    predict_views,
    pseudo_targets,
    view_disagreement,
)
from umadapt.pseudo.confidence import LABEL_IGNORE
from umadapt.pseudo.ensemble import REDUCTIONS

__all__ = ["MODES", "SelfTraining"]

MODES = ("offline", "online")
WEIGHTINGS = ("mask", "quality")
STUDENT_INITS = ("teacher", "scratch")
TEACHER_BATCHNORM = ("checkpoint", "target")


def default_rules(tasks: list[str], views: int) -> dict[str, dict[str, Any]]:
    """Per task: class tasks keep the most confident half of each class (CBST); depth and normals the half of the
    pixels whose transforms agree best (everything with a single transform)."""
    regression = {"kind": "agreement", "portion": 0.5} if views > 1 else {"kind": "all"}
    return {
        t: {"kind": "class_balanced", "portion": 0.5} if t in ("segmentation", "label") else regression for t in tasks
    }


class SelfTraining(MultiTaskModel):
    """Self-training from a teacher checkpoint (see the module docstring).

    Args (besides the base model's, passed on through ``**kwargs``):
        teacher_checkpoint: ``last.ckpt`` of any umadapt run of the same tasks and architecture (its ``encoder.*``
            and ``heads.*`` are read, with ``weights_only=True``). Required offline; online without it, the teacher
            starts as the student.
        mode: ``offline`` (data distillation, teacher fixed per round) or ``online`` (EMA teacher).
        rounds: offline: teacher -> student rounds, equal parts of training.
        ema_decay: online: ``α`` of the teacher's moving average (DAFormer: 0.999).
        transforms: the test-time transforms ensembled (``identity``, ``hflip``, ``scale:S``, ``zoom:S``).
        ensemble: ``mean`` or ``median`` of the views' depth and normals (class probabilities are averaged).
        confidence: ``{task: {kind, value | portion}}`` (:mod:`umadapt.pseudo.confidence`); tasks not listed keep
            :func:`default_rules`.
        pseudo_weighting: ``mask`` (unconfident pixels carry no loss) or ``quality`` (every pixel, the loss scaled
            by the kept fraction).
        pseudo_weight: ``w_pl``; 0 never reads a target image (the *extra training* control: the student goes on
            learning from source labels alone on the same schedule).
        source_weight: ``w_src``.
        strong_augmentation: augment the student's target images photometrically (the teacher sees them as served).
        augmentation_options: keyword arguments of :class:`~umadapt.pseudo.PhotometricAugmentation`.
        student_init: ``teacher`` (start from the teacher's weights) or ``scratch`` (the model's own initialisation).
        teacher_batchnorm: ``checkpoint`` (the teacher's statistics as trained) or ``target`` (re-estimated on the
            target training images whenever the teacher is (re)set, as AdaBN does).
        calibration_batches: read at most this many batches (``data.eval_batch_size``) in each calibration.
        control_target_batchnorm: with ``pseudo_weight: 0``, still pass the target images through the student
            (strongly augmented, without gradient), so its BatchNorm statistics see them as in self-training: the
            *BatchNorm-only* control, which separates what the pseudo-labels contribute from what BatchNorm does.
    """

    def __init__(
        self,
        teacher_checkpoint: str | None = None,
        mode: str = "offline",
        rounds: int = 1,
        ema_decay: float = 0.999,
        transforms: list[str] | None = None,
        ensemble: str = "mean",
        confidence: dict[str, dict[str, Any]] | None = None,
        pseudo_weighting: str = "mask",
        pseudo_weight: float = 1.0,
        source_weight: float = 1.0,
        strong_augmentation: bool = True,
        augmentation_options: dict[str, float] | None = None,
        student_init: str = "teacher",
        teacher_batchnorm: str = "checkpoint",
        calibration_batches: int | None = None,
        control_target_batchnorm: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for name, value, valid in (
            ("mode", mode, MODES),
            ("ensemble", ensemble, REDUCTIONS),
            ("pseudo_weighting", pseudo_weighting, WEIGHTINGS),
            ("student_init", student_init, STUDENT_INITS),
            ("teacher_batchnorm", teacher_batchnorm, TEACHER_BATCHNORM),
        ):
            if value not in valid:
                raise ConfigError(f"model.init_args.{name} {value!r} is unknown; valid: {list(valid)}.")
        check_non_negative(pseudo_weight=pseudo_weight, source_weight=source_weight)
        if pseudo_weight == 0 and source_weight == 0:
            raise ConfigError("pseudo_weight and source_weight are both 0: nothing to learn; set one of them > 0.")
        if rounds < 1:
            raise ConfigError(f"model.init_args.rounds must be >= 1, got {rounds}.")
        if mode == "online" and rounds != 1:
            raise ConfigError("model.init_args.rounds applies to mode offline; the online teacher follows every step.")
        if not 0.0 <= ema_decay < 1.0:
            raise ConfigError(f"model.init_args.ema_decay must be in [0, 1), got {ema_decay}.")
        if mode == "offline" and not teacher_checkpoint:
            raise ConfigError(
                "Offline self-training distils a trained teacher: set model.init_args.teacher_checkpoint to the "
                "last.ckpt of a run of the same tasks (e.g. source-only), or use mode: online."
            )
        if student_init == "teacher" and not teacher_checkpoint:
            raise ConfigError(
                "student_init: teacher needs model.init_args.teacher_checkpoint; or student_init: scratch."
            )
        if control_target_batchnorm and pseudo_weight > 0:
            raise ConfigError("control_target_batchnorm is the control of pseudo_weight: 0; set one of them only.")
        if calibration_batches is not None and calibration_batches < 1:
            raise ConfigError(f"model.init_args.calibration_batches must be >= 1 or null, got {calibration_batches}.")
        self.view_transforms = parse_transforms(transforms or ["identity", "hflip"], self.tasks)
        self.rules = parse_rules(
            confidence, self.tasks, default_rules(self.tasks, len(self.view_transforms)), len(self.view_transforms)
        )
        self.teacher = nn.ModuleDict({"encoder": copy.deepcopy(self.encoder), "heads": copy.deepcopy(self.heads)})
        self.teacher.requires_grad_(False)  # its mode is set at each use (eval): Lightning restores modes itself
        self.augment = PhotometricAugmentation(**dict(augmentation_options or {})) if strong_augmentation else None
        self.teacher_checkpoint = teacher_checkpoint
        self.mode, self.rounds, self.ema_decay = mode, int(rounds), float(ema_decay)
        self.ensemble, self.pseudo_weighting = ensemble, pseudo_weighting
        self.pseudo_weight, self.source_weight = float(pseudo_weight), float(source_weight)
        self.student_init, self.teacher_batchnorm = student_init, teacher_batchnorm
        self.calibration_batches = calibration_batches
        self.control_target_batchnorm = bool(control_target_batchnorm)
        self.calibration = Calibration(self.rules, self.num_classes)
        self.round: int | None = None
        """The offline round the teacher belongs to (``None`` until the first training batch)."""
        self._calibrated_epoch: int | None = None
        self._calibrated = False
        self._ema_step = 0

    # -- the teacher ---------------------------------------------------------------------------------------------
    def optimized_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Every parameter but the teacher's (it is loaded, copied or averaged, never optimized)."""
        return [(n, p) for n, p in self.named_parameters() if not n.startswith("teacher.")]

    def student(self) -> nn.ModuleDict:
        """The student's encoder and heads, named like the teacher's."""
        return nn.ModuleDict({"encoder": self.encoder, "heads": self.heads})

    @torch.no_grad()
    def teacher_forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The teacher's activated predictions of ``images``, in eval mode (whatever mode Lightning restored)."""
        self.teacher.eval()
        return self._teacher_predict(images)

    def _teacher_predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        features = self.teacher["encoder"](images)
        size = tuple(images.shape[-2:])
        heads = self.teacher["heads"]
        return {t: self.task_specs[t].activate(heads[t](task_features(features, t), size)) for t in self.tasks}

    def load_teacher(self) -> None:
        """Load the teacher's encoder and heads from ``teacher_checkpoint``, refusing another task set."""
        what = "model.init_args.teacher_checkpoint"
        hint = "Use a teacher with the same encoder and heads as this config (the teacher run's config.yaml)."
        saved = load_task_network(self.teacher, self.teacher_checkpoint, what, self.tasks, self.num_classes, hint)
        if saved.get("method") == "AdaBN" and self.teacher_batchnorm == "checkpoint":
            raise ConfigError(
                f"{what} {self.teacher_checkpoint!r} is an AdaBN run, whose checkpoint holds the source BatchNorm "
                "statistics (AdaBN swaps in target ones only to evaluate): set model.init_args.teacher_batchnorm: "
                "target, or the teacher is a source-only model."
            )

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage != "fit":
            return
        if self.teacher_checkpoint:
            self.load_teacher()  # before Lightning restores a resumed run, whose own teacher then wins
        if self.student_init == "teacher":
            copy_weights(self.student(), self.teacher)
        elif not self.teacher_checkpoint:  # online without a checkpoint: the teacher starts as the student
            copy_weights(self.teacher, self.student())
        self._check_augmentation()

    def _check_augmentation(self) -> None:
        """Refuse a data-module augmentation beyond flips: the teacher labels the target images as served, while the
        thresholds are calibrated on un-augmented ones, and padded borders of a crop or affine warp would be labelled
        too."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        augmentation = getattr(datamodule, "augmentation", None)
        if self.pseudo_weight > 0 and augmentation not in (None, "none", "hflip"):
            raise ConfigError(
                f"Self-training labels the target images as the data module serves them, but "
                f"data.init_args.augmentation is {augmentation!r} (crops, warps, colour changes): set it to hflip or "
                "none; the student's own strong augmentation is model.init_args.strong_augmentation."
            )

    def _target_images(self) -> Iterator[torch.Tensor]:
        return self.target_training_images(self.calibration_batches, "Self-training calibrates its thresholds")

    def _teacher_changed(self) -> None:
        """After the teacher was (re)set: target BatchNorm statistics if asked, then the quantile thresholds."""
        if self.teacher_batchnorm == "target":
            reestimate_batchnorm(self.teacher, self._target_images(), self._teacher_predict)
            self.teacher.eval()
        self._calibrate()

    @torch.no_grad()
    def _calibrate(self) -> None:
        self._calibrated = True
        if not self.calibration:
            return
        for images in self._target_images():
            self.calibration.add(*self._ensemble(images))
        for t, threshold in self.calibration.finish().items():
            self.log(f"train/pseudo/{t}/threshold", threshold.float().mean(), on_step=False, on_epoch=True)

    # -- pseudo-labels ---------------------------------------------------------------------------------------------
    def _ensemble(self, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The teacher's ensembles and their views' disagreements per task, in float32 whatever the trainer's
        precision (autocast covers the training step, not the calibration in ``on_train_batch_start``: both must see
        the same teacher)."""
        multiple = int(getattr(self.teacher["encoder"], "output_stride", 1) or 1)
        with torch.autocast(images.device.type, enabled=False):
            views = predict_views(self.teacher_forward, images.float(), self.view_transforms, self.tasks, multiple)
        ensembles = {t: combine_views(t, v, self.ensemble) for t, v in views.items()}
        disagreements = {t: view_disagreement(t, views[t], ensembles[t]) for t in self.tasks}
        return ensembles, disagreements

    @torch.no_grad()
    def pseudo_labels(self, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """``({task: pseudo-labels in the batch convention}, {task: fraction kept})`` of target ``images``."""
        ensembles, disagreements = self._ensemble(images)
        labels, kept = {}, {}
        thresholds = self.calibration.thresholds
        for t in self.tasks:
            keep = confident(t, ensembles[t], disagreements[t], self.rules[t], thresholds)
            kept[t] = float(keep.float().mean())
            if self.pseudo_weighting == "quality":
                keep = torch.ones_like(keep)
            labels[t] = pseudo_targets(t, ensembles[t], keep)
        return labels, kept

    def pseudo_losses(
        self, predictions: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Each task's own loss against its pseudo-labels (0 for a per-image task whose every label was dropped)."""
        losses = {}
        for t in self.tasks:
            if t == "label" and not bool((labels[t] != LABEL_IGNORE).any()):
                losses[t] = predictions[t].sum() * 0.0
            else:
                losses[t] = self.task_specs[t].loss(predictions[t], labels[t])
        return losses

    # -- training ----------------------------------------------------------------------------------------------
    def uses_progress(self) -> bool:
        return (self.mode == "offline" and self.rounds > 1) or super().uses_progress()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.pseudo_weight == 0:
            return
        if self.mode == "offline":
            current = min(int(self.progress(batch_idx) * self.rounds), self.rounds - 1)
            if self.round is None or current > self.round:
                if self.round is not None:  # data distillation: the student becomes the next round's teacher
                    copy_weights(self.teacher, self.student())
                self.round = current
                self._teacher_changed()
            elif not self._calibrated:  # resumed within a round: its teacher came back with the checkpoint
                self._calibrate()
        elif self._calibrated_epoch != self.current_epoch:  # online: the thresholds follow the moving teacher
            if self._calibrated_epoch is None and self.teacher_batchnorm == "target" and self.round is None:
                self.round = 0
                self._teacher_changed()
            else:
                self._calibrate()
            self._calibrated_epoch = self.current_epoch

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Online: the teacher follows the student after each optimizer step (not per batch: gradient accumulation
        and mixed-precision steps skipped for an overflow do not move the student)."""
        if self.mode == "online" and self.pseudo_weight > 0 and self.global_step != self._ema_step:
            ema_update(self.teacher, self.student(), self.ema_decay)
            self._ema_step = self.global_step

    def _student_input(self, images: torch.Tensor) -> torch.Tensor:
        """The student's view of target ``images``: strongly augmented, unless ``strong_augmentation`` is off."""
        return self.augment(images) if self.augment is not None else images

    def training_step(self, batch: Mapping[str, Mapping[str, torch.Tensor]], batch_idx: int) -> torch.Tensor:
        loss = self.source_weight * self.supervised_loss(batch["source"], "source")
        if self.pseudo_weight == 0:
            if self.control_target_batchnorm:  # the BatchNorm-only control: the student sees the target images
                with torch.no_grad():  # as self-training would pass them, and learns nothing from them
                    self(self._student_input(batch["target"]["image"]))
            self.log("train/loss", loss.detach(), prog_bar=True)
            return loss
        images = batch["target"]["image"]  # never any other key of the target batch
        labels, kept = self.pseudo_labels(images)
        predictions = self(self._student_input(images))
        losses = self.pseudo_losses(predictions, labels)
        scale = {t: kept[t] if self.pseudo_weighting == "quality" else 1.0 for t in self.tasks}
        pseudo = sum(self.loss_weights[t] * scale[t] * losses[t] for t in self.tasks)
        size = images.shape[0]
        self.log_losses("pseudo", losses, size, pseudo)
        for t, fraction in kept.items():
            self.log(f"train/pseudo/{t}/kept", fraction, batch_size=size)
        loss = loss + self.pseudo_weight * pseudo
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=size)
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["self_training_round"] = self.round

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.round = checkpoint.get("self_training_round")
