"""The base multi-task LightningModule: a shared encoder, one head per task, weighted per-task losses and
metrics logged as ``stage/domain/task/metric``.

Methods subclass :class:`MultiTaskModel` and implement ``training_step``; evaluation (validation, test, predict)
is shared, so every method is scored the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import OptimizerCallable
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn
from torch.utils.data import DataLoader

from umadapt.checkpoints import check_identity
from umadapt.errors import ConfigError
from umadapt.methods.players import Players
from umadapt.nn import ClassificationHead, DenseDecoder
from umadapt.schedules import get_lr_schedule, require_finite_length, training_progress
from umadapt.tasks import Task, eval_pairs, get_task
from umadapt.weighting import FixedWeighting, LossWeighting


def _finite(value: Any) -> bool:
    """Whether a value about to be logged is a finite number (a tensor on a GPU costs one synchronisation)."""
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value).all())
    return isinstance(value, (int, float)) and float(value) == float(value) and abs(float(value)) != float("inf")


HeadFactory = Callable[[list[int], int], nn.Module]
"""Builds a head from ``(encoder.out_channels, task_out_channels)``; in YAML a ``class_path`` + ``init_args``."""

STAGES = ("val", "test")

METRIC_NAMES: dict[str, str] = {
    "eval": "{stage}/{domain}/{task}/{metric}",  # val/test metrics, e.g. test/target/depth/rmse
    "eval_loss": "{stage}/{domain}/loss",  # weighted task loss on an evaluation split with labels
    "term": "train/{group}/{task}/loss",  # one task's term of a loss group: source, target, distillation, ...
    "group": "train/{group}/loss",  # a loss group's weighted sum
    "task_weight": "train/weights/{task}",  # the weighting's current weight of a task
    "total": "train/loss",  # what the optimizer minimises (automatic optimization)
    "lr": "train/lr",  # learning rate; manual-optimization methods log train/lr/<player>
}
"""Every method logs through these names (see :meth:`MultiTaskModel.log_losses`), so a checkpoint monitor, a sweep
metric or a results table can rely on them whatever the method."""


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
        lr_multipliers: ``{parameter name prefix: multiplier}``: the parameters whose name starts with a prefix train
            in their own group at ``multiplier`` times the optimizer's learning rate, e.g. ``{encoder.units: 100}``
            for cross-stitch units, which Misra et al. train faster than the columns (methods with their own
            players, such as UM-Adapt, refuse it).
        metric_options: ``{task: {option: value}}``, keyword arguments of a task's metric, e.g. ``{depth:
            {reduction: images, max_depth: 10.0}}`` for the per-image, 10 m-capped depth errors of the NYUD-v2
            literature (:class:`~umadapt.metrics.DepthMetrics`); default: each metric's defaults.
        channels_last: keep every 4-D weight and the input images in channels-last memory format from
            :meth:`setup` on: faster convolutions on CPU (oneDNN; the SynthRooms and Digits steps 14-21 % faster,
            see ``results/speed.md``) and on GPUs with mixed precision; the same numbers up to float rounding.

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
        channels_last: bool = False,
        metric_options: dict[str, dict[str, Any]] | None = None,
        lr_multipliers: dict[str, float] | None = None,
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
        self.channels_last = bool(channels_last)
        self.lr_multipliers = self._check_lr_multipliers(lr_multipliers)
        self.eval_domains: tuple[str, ...] = ("source", "target")
        self._label_counts: dict[tuple[str, str, str], torch.Tensor] = {}
        self._loss_sums: dict[tuple[str, str], torch.Tensor] = {}
        self.label_counts: dict[str, dict[str, int]] = {}
        """``{stage/domain/task: {labelled, unlabelled}}``: how many samples the last evaluation scored per task."""
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_{domain}": nn.ModuleDict(self._build_metrics(num_classes, metric_options))
                for stage in STAGES
                for domain in self.eval_domains
            }
        )

    def _build_metrics(self, num_classes: int | None, options: Mapping[str, Mapping[str, Any]] | None) -> dict:
        """Each task's metric, with its ``metric_options``; a wrong task or option is named with the fix."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.tasks))
        if unknown:
            raise ConfigError(
                f"model.metric_options names {unknown}, which are not among the model's tasks {self.tasks}."
            )
        metrics = {}
        for t, spec in self.task_specs.items():
            try:
                metrics[t] = spec.metric(num_classes, **dict(options.get(t) or {}))
            except (TypeError, ValueError) as error:
                raise ConfigError(f"model.metric_options.{t} = {dict(options[t])}: {error}") from None
        return metrics

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
        load_initial_weights = getattr(self.encoder, "load_initial_weights", None)
        if stage == "fit" and load_initial_weights is not None:  # before Lightning restores a resumed checkpoint
            load_initial_weights()
        if self.channels_last:  # here, not in __init__: methods add their own modules after the base's
            self.to(memory_format=torch.channels_last)
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None:
            return
        provided = getattr(datamodule, "tasks", None)
        if provided is not None:
            missing = [t for t in self.tasks if t not in provided]
            if missing:
                raise ValueError(
                    f"The model predicts {missing}, but the data module does not provide it "
                    f"(data.tasks = {list(provided)}). Add the task to data.tasks or drop it from the model."
                )
        self.eval_domains = tuple(getattr(datamodule, "eval_domains", self.eval_domains))

    def target_training_images(self, max_batches: int | None, purpose: str) -> Iterator[torch.Tensor]:
        """The target training images alone (no label, no augmentation: ``datamodule.images_dataset("target",
        "train")``) in batches of ``data.eval_batch_size`` on the model's device, at most ``max_batches`` of them;
        ``purpose`` starts the error for a data module without such images (e.g. ``"AdaBN estimates target
        statistics"``)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "images_dataset"):
            raise ConfigError(
                f"{purpose} from the target training images of a data module with images_dataset() (e.g. "
                "data_modules.PairedDataModule); pass the data as such a data module."
            )
        dataset = datamodule.images_dataset("target", "train")
        loader = DataLoader(dataset, batch_size=datamodule.eval_batch_size, shuffle=False, num_workers=0)
        for index, batch in enumerate(loader):
            if max_batches is not None and index >= max_batches:
                return
            yield batch["image"].to(self.device)

    # -- forward ------------------------------------------------------------------------------------------------
    def features(self, image: torch.Tensor) -> list[torch.Tensor]:
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return self.encoder(image)

    def decode(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Predictions of every task from the encoder's features."""
        return {t: self.task_specs[t].activate(self.heads[t](task_features(features, t), size)) for t in self.tasks}

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.decode(self.features(image), tuple(image.shape[-2:]))

    def adversary_view(self, task: str, prediction: torch.Tensor) -> torch.Tensor:
        """What an output-level adversary sees of a task's prediction: class probabilities for class tasks, the
        prediction itself for the others."""
        return prediction.softmax(dim=1) if self.task_specs[task].categorical else prediction

    # -- losses -------------------------------------------------------------------------------------------------
    def task_losses(
        self, predictions: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return {t: self.task_specs[t].loss(predictions[t], batch[t]) for t in self.tasks}

    def weighted_sum(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The loss to minimise from the task losses, as ``self.weighting`` combines them (default ``Σ_t w_t L_t``)."""
        return self.weighting(losses, self)

    def require_labels(self, batch: Mapping[str, torch.Tensor], domain: str) -> None:
        """Raise a :class:`ConfigError` naming the missing labels unless ``batch`` has every task's labels."""
        missing = [t for t in self.tasks if t not in batch]
        if missing:
            raise ConfigError(
                f"The {domain} batch has no labels for {missing} (keys: {sorted(batch)}). "
                + ("Set data.init_args.target_labels: true to train on target labels." if domain == "target" else "")
            )

    def log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        """``LightningModule.log``, minus the per-step training values Lightning would throw away.

        A value logged from ``training_step`` for the step only (the default there) reaches the logger on every
        ``trainer.log_every_n_steps``-th step; on the other steps, logging it costs ~0.5 ms per value for nothing
        (``results/speed.md``). Those calls are skipped, except on the last batch of an epoch and the last step of
        ``max_steps`` (so ``trainer.callback_metrics`` ends with the last values) and for a non-finite value (so
        the NaN guard sees it at once). ``trainer.log_every_n_steps=1`` logs every step, as plain Lightning does.
        """
        if not (self._skippable(args, kwargs) and _finite(value)):
            super().log(name, value, *args, **kwargs)

    def _skippable(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
        """Whether a ``log`` call with these options now is a training-step value that no logger will receive."""
        if args or self._trainer is None or self._current_fx_name != "training_step" or kwargs.get("on_epoch"):
            return False  # positional options (prog_bar, logger, on_step, ...) are rare: log those as given
        if kwargs.get("on_step") is False:
            return False
        connector = getattr(self.trainer, "_logger_connector", None)
        epoch_loop = getattr(getattr(self.trainer, "fit_loop", None), "epoch_loop", None)
        if connector is None or epoch_loop is None or self.trainer.log_every_n_steps <= 1:
            return False
        max_steps = self.trainer.max_steps
        last_step = max_steps > 0 and self.trainer.global_step + 1 >= max_steps
        return not (connector.should_update_logs or epoch_loop.batch_progress.is_last_batch or last_step)

    def log_losses(
        self,
        group: str,
        losses: Mapping[str, torch.Tensor],
        batch_size: int,
        total: torch.Tensor | None = None,
        prog_bar: bool = False,
    ) -> None:
        """Log each task's term of a loss group as ``train/<group>/<task>/loss`` and, when given, the group's
        ``total`` as ``train/<group>/loss`` (see :data:`METRIC_NAMES`)."""
        for t, loss in losses.items():
            self.log(METRIC_NAMES["term"].format(group=group, task=t), loss.detach(), batch_size=batch_size)
        if total is not None:
            self.log(
                METRIC_NAMES["group"].format(group=group), total.detach(), batch_size=batch_size, prog_bar=prog_bar
            )

    def log_task_weights(self, batch_size: int) -> None:
        """Log the weighting's current task weights as ``train/weights/<task>``."""
        for t, weight in self.weighting.last_weights.items():
            self.log(METRIC_NAMES["task_weight"].format(task=t), weight, batch_size=batch_size)

    def supervised_terms(
        self, predictions: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor], domain: str
    ) -> torch.Tensor:
        """``Σ_t w_t L_t`` of ``predictions`` on a labelled ``batch`` of ``domain`` (combined by ``self.weighting``),
        after checking the labels are there, logging each term, the sum and the task weights."""
        self.require_labels(batch, domain)
        losses = self.task_losses(predictions, batch)
        total = self.weighted_sum(losses)
        batch_size = batch["image"].shape[0]
        self.log_losses(domain, losses, batch_size, total, prog_bar=True)
        self.log_task_weights(batch_size)
        return total

    def supervised_loss(self, batch: Mapping[str, torch.Tensor], domain: str) -> torch.Tensor:
        """``Σ_t w_t L_t`` on a labelled batch (see :meth:`supervised_terms`)."""
        return self.supervised_terms(self(batch["image"]), batch, domain)

    def progress(self, batch_idx: int | None = None) -> float:
        """Training progress ``p`` in [0, 1] (:func:`umadapt.schedules.training_progress`, by batches when
        ``batch_idx`` is given; 0 without a trainer)."""
        if self._trainer is None:
            return 0.0
        return training_progress(self.trainer, batch_idx, self.optimizer_steps_per_batch())

    def optimizer_steps_per_batch(self) -> float:
        """Mean optimizer steps per training batch (what ``global_step`` and ``max_steps`` count per batch): 1 here;
        manual-optimization methods that step several players per batch say how many."""
        return 1.0

    def uses_progress(self) -> bool:
        """Whether training follows the progress ``p`` (a learning-rate schedule here; methods add their own
        schedules and phases), so that a run needs a finite length."""
        return self.lr_schedule is not get_lr_schedule("constant")

    def log_lr(self) -> None:
        """Log the learning rate of the (first) optimizer as ``train/lr``."""
        if self._trainer is not None and self.trainer.optimizers:
            self.log(METRIC_NAMES["lr"], self.trainer.optimizers[0].param_groups[0]["lr"])

    # -- evaluation ---------------------------------------------------------------------------------------------
    def eval_forward(self, image: torch.Tensor, domain: str, stage: str) -> dict[str, torch.Tensor]:
        """The predictions scored against ``domain``'s labels in ``stage`` (``val``/``test``): ``self(image)`` here;
        a method that scores something else (a translator's frozen task network on translated images) says so."""
        return self(image)

    def _eval_step(self, stage: str, batch: Mapping[str, torch.Tensor], dataloader_idx: int) -> None:
        domain = self.eval_domains[dataloader_idx]
        predictions = self.eval_forward(batch["image"], domain, stage)
        metrics = self.metrics[f"{stage}_{domain}"]
        batch_size = batch["image"].shape[0]
        labelled_everywhere = True
        for t in self.tasks:
            counts = self._label_counts.setdefault((stage, domain, t), torch.zeros(2, dtype=torch.int64))
            spec = self.task_specs[t]
            # the labels at image_size, or at their native resolution with the prediction upsampled to them
            pairs = eval_pairs(spec, predictions[t], batch) if t in batch else []
            labelled = sum(int(spec.labelled(target).sum()) for _, target in pairs)
            counts += torch.tensor([labelled, batch_size - labelled])
            labelled_everywhere = labelled_everywhere and labelled == batch_size
            if labelled:
                for prediction, target in pairs:
                    metrics[t].update(prediction, target)
        if labelled_everywhere:  # the loss of a batch without labels would read 0: leave it out
            total = float(self.weighted_sum(self.task_losses(predictions, batch)))
            sums = self._loss_sums.setdefault((stage, domain), torch.zeros(2, dtype=torch.float64))
            sums += torch.tensor([total * batch_size, batch_size], dtype=torch.float64)

    def _log_eval_metrics(self, stage: str) -> None:
        """Log every task's metrics per domain; a task without labels on any rank is reported as such (counts in
        :attr:`label_counts`) instead of being scored. The counts are reduced over ranks first, so every rank calls
        the metrics' (collective) ``compute`` or none does."""
        values: dict[str, torch.Tensor] = {}
        for domain in self.eval_domains:
            loss_sum, samples = (float(v) for v in self._reduce(self._loss_sums.pop((stage, domain), torch.zeros(2))))
            if samples:  # the weighted task loss over the fully labelled batches, as every rank saw them
                values[METRIC_NAMES["eval_loss"].format(stage=stage, domain=domain)] = torch.tensor(loss_sum / samples)
            for t, metric in self.metrics[f"{stage}_{domain}"].items():
                counts = self._reduce(self._label_counts.pop((stage, domain, t), torch.zeros(2, dtype=torch.int64)))
                labelled, unlabelled = (int(c) for c in counts)
                self.label_counts[f"{stage}/{domain}/{t}"] = {"labelled": labelled, "unlabelled": unlabelled}
                if unlabelled:
                    rank_zero_warn(
                        f"{stage}/{domain}: {unlabelled} of {labelled + unlabelled} samples have no {t!r} labels; "
                        + (f"its metrics cover the {labelled} labelled ones." if labelled else "it is not scored.")
                    )
                if labelled == 0:
                    metric.reset()
                    continue
                for name, value in metric.compute().items():  # a diverged model logs NaN: monitors must see it
                    values[METRIC_NAMES["eval"].format(stage=stage, domain=domain, task=t, metric=name)] = value
                metric.reset()
        if values:
            self.log_dict(values, add_dataloader_idx=False)

    def _reduce(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over ranks (a collective: every rank calls it in the same order)."""
        if self._trainer is None:
            return values
        return self.trainer.strategy.reduce(values.to(self.device), reduce_op="sum").cpu()

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("val", batch, dataloader_idx)

    def test_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("test", batch, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._log_eval_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval_metrics("test")

    def predict_step(
        self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, torch.Tensor]:
        return {"image": batch["image"], **self(batch["image"])}

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed or evaluated by this model: method and task set."""
        return {"method": type(self).__name__, "tasks": list(self.tasks), "num_classes": self.num_classes}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["umadapt"] = self.identity()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._trainer is not None:
            check_identity(checkpoint.get("umadapt"), self.identity())
        # `test`/`predict` from a checkpoint do not restore the trainer's step; keep it for results records.
        self.restored_global_step = int(checkpoint.get("global_step", 0))

    # -- optimisation -------------------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        self.weighting.check_optimizers(self.trainer.optimizers, type(self).__name__)
        if self.uses_progress():
            require_finite_length(self.trainer, f"{type(self).__name__}'s training (its schedules or phases)")

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Manual optimization: clip a player's gradients here, after mixed precision has unscaled them (see
        :meth:`umadapt.methods.players.Players.step`)."""
        players = getattr(self, "players", None)
        if isinstance(players, Players):
            players.clip_pending(self, optimizer)

    @staticmethod
    def _check_lr_multipliers(multipliers: Mapping[str, float] | None) -> dict[str, float]:
        multipliers = {str(k): float(v) for k, v in (multipliers or {}).items()}
        for prefix, value in multipliers.items():
            if value < 0:
                raise ConfigError(f"model.lr_multipliers.{prefix} must be >= 0, got {value}.")
        return multipliers

    def optimized_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """``(name, parameter)`` of every parameter the optimizer updates: all of them here; methods with parts that
        learn otherwise (a teacher averaged from the student) leave those out."""
        return list(self.named_parameters())

    def parameter_groups(self) -> dict[str, dict[str, float]]:
        """``{parameter name prefix: options}`` of the parameters that train in an optimizer group of their own
        (first matching prefix wins); ``lr_multiplier`` is relative to the optimizer's learning rate, other options
        are the optimizer's own (``lr``, ``weight_decay``). Here: ``lr_multipliers``; methods add their groups."""
        return {prefix: {"lr_multiplier": value} for prefix, value in self.lr_multipliers.items()}

    def _grouped_parameters(self, prefixes: Sequence[str]) -> tuple[list[nn.Parameter], dict[str, list[nn.Parameter]]]:
        """The parameters of no prefix, and those of each prefix (first match wins); a prefix that names no
        parameter is an error naming the real ones."""
        groups: dict[str, list[nn.Parameter]] = {prefix: [] for prefix in prefixes}
        rest = []
        for name, parameter in self.optimized_parameters():
            prefix = next((p for p in prefixes if name.startswith(p)), None)
            (groups[prefix] if prefix is not None else rest).append(parameter)
        empty = [prefix for prefix, parameters in groups.items() if not parameters]
        if empty:
            roots = sorted({n.split(".")[0] for n, _ in self.optimized_parameters()})
            raise ConfigError(
                f"model.lr_multipliers: no parameter name starts with {empty} (names start with {roots}, e.g. "
                "encoder.units for cross-stitch units)."
            )
        return rest, groups

    def configure_optimizers(self) -> Any:
        """``optimizer`` over every parameter (the :meth:`parameter_groups` in groups of their own), with
        ``lr_schedule`` applied to every group as a function of progress, per step."""
        options = self.parameter_groups()
        if not options:
            optimizer = self.optimizer_factory([p for _, p in self.optimized_parameters()])
        else:
            rest, groups = self._grouped_parameters(list(options))
            optimizer = self.optimizer_factory(rest)
            for prefix, parameters in groups.items():
                group = dict(options[prefix])
                if "lr_multiplier" in group:
                    group["lr"] = optimizer.defaults["lr"] * group.pop("lr_multiplier")
                optimizer.add_param_group({"params": parameters, **group})
        schedule = self.lr_schedule
        trainer = self.trainer
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(training_progress(trainer)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
