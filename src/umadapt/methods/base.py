"""The base multi-task LightningModule: a shared encoder, one head per task, weighted per-task losses and
metrics logged as ``stage/domain/task/metric``.

Methods subclass :class:`MultiTaskModel` and implement ``training_step``; evaluation (validation, test, predict)
is shared, so every method is scored the same way.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import OptimizerCallable
from torch import nn

from umadapt.errors import ConfigError
from umadapt.nn import ClassificationHead, DenseDecoder
from umadapt.schedules import get_lr_schedule, training_progress
from umadapt.tasks import Task, get_task
from umadapt.weighting import FixedWeighting, LossWeighting

HeadFactory = Callable[[list[int], int], nn.Module]
"""Builds a head from ``(encoder.out_channels, task_out_channels)``; in YAML a ``class_path`` + ``init_args``."""

STAGES = ("val", "test")


def _default_optimizer(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3)


def task_features(
    features: Sequence[torch.Tensor] | Mapping[str, Sequence[torch.Tensor]], task: str
) -> Sequence[torch.Tensor]:
    """The features ``task``'s head reads: ``features[task]`` from a per-task encoder, else the shared list."""
    return features[task] if isinstance(features, Mapping) else features


class MultiTaskModel(pl.LightningModule):
    """Shared encoder + task heads (hard parameter sharing), trained with ``Σ_t w_t L_t``.

    Args:
        encoder: returns a list of multi-scale features and has ``out_channels``, ``output_stride``.
        tasks: the tasks to predict (linked from ``data.tasks`` by the CLI).
        num_classes: classes of ``segmentation``/``label`` (linked from the data).
        image_size: ``(H, W)`` of the inputs (linked from the data), checked against the encoder's stride.
        dense_head: factory for the per-pixel heads (default :class:`~umadapt.nn.DenseDecoder`).
        classification_head: factory for per-image heads (default :class:`~umadapt.nn.ClassificationHead`).
        loss_weights: ``{task: weight}``; tasks not listed weigh 1.
        optimizer: optimizer factory (``class_path`` of a ``torch.optim`` class in YAML).
        lr_schedule: learning-rate multiplier as a function of training progress (see :mod:`umadapt.schedules`).
        weighting: how the task losses are combined (see :mod:`umadapt.weighting`); default
            :class:`~umadapt.weighting.FixedWeighting` with ``loss_weights``.

    Encoders with ``per_task_features = True`` (cross-stitch, progressive) get ``encoder.bind_tasks(tasks)`` and
    return ``{task: [features]}``; each head then reads its own task's features (see :func:`task_features`).
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
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not tasks:
            raise ValueError("The model needs at least one task (model.tasks, normally linked from data.tasks).")
        self.task_specs: dict[str, Task] = {name: get_task(name) for name in tasks}
        self.tasks = list(tasks)
        self.num_classes = num_classes
        if image_size is not None and hasattr(encoder, "check_input_size"):
            encoder.check_input_size(tuple(image_size))
        self.encoder = encoder
        if getattr(encoder, "per_task_features", False):
            encoder.bind_tasks(self.tasks)
        dense_head = dense_head or DenseDecoder
        classification_head = classification_head or ClassificationHead
        self.heads = nn.ModuleDict(
            {
                name: (dense_head if task.dense else classification_head)(
                    list(encoder.out_channels), task.out_channels(num_classes)
                )
                for name, task in self.task_specs.items()
            }
        )
        loss_weights = dict(loss_weights or {})
        unknown = sorted(set(loss_weights) - set(self.tasks))
        if unknown:
            raise ValueError(f"model.loss_weights names {unknown}, which are not among the model's tasks {self.tasks}.")
        self.loss_weights = {t: float(loss_weights.get(t, 1.0)) for t in self.tasks}
        self.weighting = weighting if weighting is not None else FixedWeighting()
        self.weighting.bind(self)
        self.optimizer_factory = optimizer
        self.lr_schedule = get_lr_schedule(lr_schedule)
        self.eval_domains: tuple[str, ...] = ("source", "target")
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_{domain}": nn.ModuleDict({t: spec.metric(num_classes) for t, spec in self.task_specs.items()})
                for stage in STAGES
                for domain in self.eval_domains
            }
        )

    def require_shared_features(self, method: str, reason: str, alternative: str = "") -> None:
        """Refuse a per-task encoder (cross-stitch, progressive) in a method that reads the encoder's features
        outside the task heads (``reason`` says where), naming the fix."""
        if getattr(self.encoder, "per_task_features", False):
            raise ConfigError(
                f"{method} {reason}, but {type(self.encoder).__name__} gives each task its own features. "
                f"Use a shared encoder (e.g. umadapt.nn.ResNetEncoder){alternative}."
            )

    # -- checks against the data ------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None:
            return
        provided = getattr(datamodule, "tasks", None)
        if provided is not None:
            missing = [t for t in self.tasks if t not in provided]
            if missing:
                raise ValueError(
                    f"The model predicts {missing}, but the data module does not provide it (data.tasks = {list(provided)}). "
                    "Add the task to data.tasks or drop it from the model."
                )
        self.eval_domains = tuple(getattr(datamodule, "eval_domains", self.eval_domains))

    # -- forward ------------------------------------------------------------------------------------------------
    def features(self, image: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder(image)

    def decode(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Predictions of every task from the encoder's features."""
        return {t: self.task_specs[t].activate(self.heads[t](task_features(features, t), size)) for t in self.tasks}

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.decode(self.features(image), tuple(image.shape[-2:]))

    # -- losses -------------------------------------------------------------------------------------------------
    def task_losses(self, predictions: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {t: self.task_specs[t].loss(predictions[t], batch[t]) for t in self.tasks}

    def weighted_sum(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The loss to minimise from the task losses, as ``self.weighting`` combines them (default ``Σ_t w_t L_t``)."""
        return self.weighting(losses, self)

    def supervised_loss(self, batch: Mapping[str, torch.Tensor], domain: str, stage: str = "train") -> torch.Tensor:
        """``Σ_t w_t L_t`` on a labelled batch, logging each term as ``stage/domain/task/loss``."""
        missing = [t for t in self.tasks if t not in batch]
        if missing:
            raise KeyError(
                f"The {domain} batch has no labels for {missing} (keys: {sorted(batch)}). "
                + ("Set data.init_args.target_labels: true to train on target labels." if domain == "target" else "")
            )
        losses = self.task_losses(self(batch["image"]), batch)
        total = self.weighted_sum(losses)
        batch_size = batch["image"].shape[0]
        for t, loss in losses.items():
            self.log(f"{stage}/{domain}/{t}/loss", loss.detach(), batch_size=batch_size)
        self.log(f"{stage}/{domain}/loss", total.detach(), batch_size=batch_size, prog_bar=stage == "train")
        if stage == "train":
            for t, weight in self.weighting.last_weights.items():
                self.log(f"train/weights/{t}", weight, batch_size=batch_size)
        return total

    # -- evaluation ---------------------------------------------------------------------------------------------
    def _eval_step(self, stage: str, batch: Mapping[str, torch.Tensor], dataloader_idx: int) -> None:
        domain = self.eval_domains[dataloader_idx]
        predictions = self(batch["image"])
        metrics = self.metrics[f"{stage}_{domain}"]
        for t in self.tasks:
            if t in batch:
                metrics[t].update(predictions[t].float(), batch[t])
        if all(t in batch for t in self.tasks):
            total = self.weighted_sum(self.task_losses(predictions, batch))
            self.log(
                f"{stage}/{domain}/loss", total, batch_size=batch["image"].shape[0], add_dataloader_idx=False, sync_dist=True
            )

    def _log_eval_metrics(self, stage: str) -> None:
        values: dict[str, torch.Tensor] = {}
        for domain in self.eval_domains:
            for t, metric in self.metrics[f"{stage}_{domain}"].items():
                if metric.update_count == 0:
                    continue
                for name, value in metric.compute().items():
                    values[f"{stage}/{domain}/{t}/{name}"] = value
                metric.reset()
        if values:
            self.log_dict(values, add_dataloader_idx=False)

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("val", batch, dataloader_idx)

    def test_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("test", batch, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._log_eval_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval_metrics("test")

    def predict_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        return {"image": batch["image"], **self(batch["image"])}

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed or evaluated by this model: method and task set."""
        return {"method": type(self).__name__, "tasks": list(self.tasks), "num_classes": self.num_classes}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["umadapt"] = self.identity()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("umadapt")
        if saved is not None and self._trainer is not None:
            mine = self.identity()
            mismatched = {k: (saved.get(k), v) for k, v in mine.items() if saved.get(k) != v}
            if mismatched:
                details = "; ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in mismatched.items())
                raise ConfigError(
                    f"The checkpoint does not match this run ({details}). Resume or evaluate it with the config it "
                    "was trained with (its config.yaml sits in the run folder next to checkpoints/)."
                )
        # `test`/`predict` from a checkpoint do not restore the trainer's step; keep it for results records.
        self.restored_global_step = int(checkpoint.get("global_step", 0))

    # -- optimisation -------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        schedule = self.lr_schedule
        trainer = self.trainer
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(training_progress(trainer)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
