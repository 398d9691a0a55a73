"""Universal representations by distillation (Li, Liu & Bilen, "Universal Representations: A Unified Look at
Multiple Task and Domain Learning", IJCV 2023, arXiv 2204.02744; first as Li & Bilen, "Knowledge Distillation for
Multi-task Learning", ECCV-W 2020).

One single-task network (teacher) is trained per task first; then one multi-task network (student) with a shared
encoder ``φ`` is trained on the task losses while its shared features are aligned, through a small adapter ``A_t``
per task, to each frozen teacher's features ``φ_t*``. The objective (the paper's universal-representation loss with
its feature term; the prediction term is not used for dense tasks)::

    min_{φ, ψ, A}  Σ_t w_t L_t(ψ_t ∘ φ(x), y_t)  +  Σ_t λ_t ℓ(A_t ∘ φ(x), φ_t*(x))

    ℓ(a, b) = mean over positions of || a / ||a||₂  -  b / ||b||₂ ||₂²     (L2-normalised along channels)

as in the authors' NYUD-v2 code (per-pixel channel normalisation, squared distance summed over channels).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from umadapt.checkpoints import read_checkpoint
from umadapt.errors import ConfigError
from umadapt.methods.base import METRIC_NAMES, MultiTaskModel, task_features
from umadapt.ops import normalize_channels

__all__ = ["AdapterFactory", "FeatureAdapter", "UniversalRepresentations", "feature_distillation_loss"]

AdapterFactory = Callable[[int, int], nn.Module]
"""Builds an adapter from ``(student_channels, teacher_channels)``; in YAML a ``class_path``."""


def feature_distillation_loss(student: Tensor, teacher: Tensor, eps: float = 1e-12) -> Tensor:
    """``mean_{b,h,w} || s / ||s||₂ - t / ||t||₂ ||₂²`` with the norms taken over channels (dim 1) at every
    position: the universal-representations feature distance. 0 when the features agree up to a positive scale per
    position, at most 4. Computed in float32."""
    if student.shape != teacher.shape:
        raise ValueError(
            f"feature_distillation_loss: student features {tuple(student.shape)} and teacher features "
            f"{tuple(teacher.shape)} differ in shape."
        )
    s = normalize_channels(student.float(), eps=eps)
    t = normalize_channels(teacher.float(), eps=eps)
    return (s - t).pow(2).sum(dim=1).mean()


class FeatureAdapter(nn.Module):
    """The paper's adapter: a bias-free 1x1 convolution (Xavier-normal initialised) from the student's feature space
    to a teacher's. ``identity_init=True`` starts it as the identity (needs equal channel counts)."""

    def __init__(self, in_channels: int, out_channels: int, identity_init: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        if identity_init:
            if in_channels != out_channels:
                raise ValueError(
                    f"FeatureAdapter: identity_init needs in == out channels, got {in_channels}, {out_channels}."
                )
            with torch.no_grad():
                self.conv.weight.zero_()
                self.conv.weight[:, :, 0, 0].copy_(torch.eye(in_channels))
        else:
            nn.init.xavier_normal_(self.conv.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class UniversalRepresentations(MultiTaskModel):
    """Multi-task student distilled from frozen single-task teachers through per-task adapters.

    Trains on the labelled source batch (like :class:`~umadapt.methods.SourceOnly`); the target batch is not used.
    Logs ``train/distillation/<task>/loss`` and their weighted sum ``train/distillation/loss`` besides the usual task
    losses and weights.

    Args (besides the base model's, passed on through ``**kwargs``):
        teachers: ``{task: path to a .ckpt}`` with one teacher per task, e.g. the ``last.ckpt`` of the single-task
            runs (``experiments/mtl/single_<task>.yaml``). Loaded (on CPU first, then moved with the data) when
            ``fit`` starts; ``test``/``predict`` of a trained student do not need them. Each teacher must predict
            its task and give features of the student's sizes at the distilled levels.
        distill_weights: ``{task: λ_t}``; tasks not listed weigh ``distill_weight``.
        distill_weight: the default ``λ_t``.
        feature_levels: which of the encoder's features are aligned (indices into its list, finest first); default
            ``[-1]``, the last (coarsest) one, as the paper aligns the backbone's final shared feature. With several
            levels, each task's distillation loss is the mean over them. (On SynthRooms, aligning all four levels
            of the small CPU encoder constrained it more and validated worse than the last level alone.)
        adapter: factory of the adapters ``A_t`` from ``(student_channels, teacher_channels)``; default
            :class:`FeatureAdapter` (a 1x1 convolution).
        adapter_lr: learning rate of the adapters, in their own parameter group of ``optimizer`` (default: the
            optimizer's). The authors' code trains adapters much faster than the student (Adam 1e-2 with weight
            decay 5e-4 for adapters, 1e-4 for the student).
        adapter_weight_decay: weight decay of the adapters' group (default: the optimizer's).
    """

    def __init__(
        self,
        teachers: dict[str, str] | None = None,
        distill_weights: dict[str, float] | None = None,
        distill_weight: float = 1.0,
        feature_levels: list[int] | None = None,
        adapter: AdapterFactory | None = None,
        adapter_lr: float | None = None,
        adapter_weight_decay: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.require_shared_features("UniversalRepresentations", "distils every teacher into one shared representation")
        self.teacher_paths = dict(teachers or {})
        if self.teacher_paths:
            self._check_teacher_tasks()
        distill_weights = dict(distill_weights or {})
        unknown = sorted(set(distill_weights) - set(self.tasks))
        if unknown:
            raise ConfigError(f"model.distill_weights names {unknown}, which are not among the tasks {self.tasks}.")
        self.distill_weights = {t: float(distill_weights.get(t, distill_weight)) for t in self.tasks}
        num_levels = len(self.encoder.out_channels)
        levels = [num_levels - 1] if feature_levels is None else [int(level) for level in feature_levels]
        bad = [level for level in levels if not -num_levels <= level < num_levels]
        if bad or not levels:
            raise ConfigError(
                f"model.feature_levels {feature_levels} must be non-empty indices into the encoder's "
                f"{num_levels} features (0..{num_levels - 1}, or negative from the end)."
            )
        self.feature_levels = sorted({level % num_levels for level in levels})
        adapter = adapter or FeatureAdapter
        channels = list(self.encoder.out_channels)
        self.adapters = nn.ModuleDict(
            {
                t: nn.ModuleList(adapter(channels[level], channels[level]) for level in self.feature_levels)
                for t in self.tasks
            }
        )
        self._teachers: dict[str, MultiTaskModel] = {}  # a plain dict: teachers are neither trained nor saved
        for name, value in (("adapter_lr", adapter_lr), ("adapter_weight_decay", adapter_weight_decay)):
            if value is not None and value < 0:
                raise ConfigError(f"model.init_args.{name} must be >= 0 or null, got {value}.")
        if self.lr_multipliers and (adapter_lr is not None or adapter_weight_decay is not None):
            raise ConfigError(
                "Set the adapters' learning rate with model.lr_multipliers ({adapters: ...}) or with adapter_lr / "
                "adapter_weight_decay, not both."
            )
        self.adapter_group = {
            k: float(v) for k, v in (("lr", adapter_lr), ("weight_decay", adapter_weight_decay)) if v is not None
        }

    def parameter_groups(self) -> dict[str, dict[str, float]]:
        """The base's groups, plus the adapters' own when ``adapter_lr`` or ``adapter_weight_decay`` is set."""
        groups = super().parameter_groups()
        if self.adapter_group:
            groups["adapters"] = dict(self.adapter_group)
        return groups

    # -- teachers -----------------------------------------------------------------------------------------------
    def _check_teacher_tasks(self) -> None:
        missing = [t for t in self.tasks if t not in self.teacher_paths]
        extra = [t for t in self.teacher_paths if t not in self.tasks]
        if missing or extra:
            raise ConfigError(
                f"model.teachers must give one checkpoint per task of the student {self.tasks}: "
                + "; ".join(
                    part
                    for part in (
                        f"missing {missing}" if missing else "",
                        f"{extra} are not among the student's tasks" if extra else "",
                    )
                    if part
                )
                + "."
            )

    def load_teachers(self) -> None:
        """Load and check every teacher (done when ``fit`` starts)."""
        if not self.teacher_paths:
            raise ConfigError(
                "UniversalRepresentations needs model.init_args.teachers: {task: path/to/last.ckpt} with one "
                f"single-task checkpoint per task of {self.tasks} (train them with experiments/mtl/single_<task>.yaml)."
            )
        self._check_teacher_tasks()
        for task in self.tasks:
            path = Path(self.teacher_paths[task])
            if not path.is_file():
                raise ConfigError(
                    f"Teacher checkpoint for {task!r} not found: {str(path)!r}. Train a single-task model first "
                    f"(e.g. experiments/mtl/single_{task}.yaml) and pass its checkpoints/last.ckpt."
                )
            read_checkpoint(path, f"Teacher checkpoint for {task!r}")  # refuses unsafe or unreadable files
            teacher = MultiTaskModel.load_from_checkpoint(path, map_location="cpu", weights_only=True)
            self.check_teacher(task, teacher, str(path))
            teacher.eval()
            teacher.requires_grad_(False)
            self._teachers[task] = teacher

    def check_teacher(self, task: str, teacher: MultiTaskModel, where: str = "teacher") -> None:
        """Raise a :class:`ConfigError` naming the mismatch unless ``teacher`` predicts ``task`` and its features at
        the distilled levels have the student's channels and strides."""
        if task not in getattr(teacher, "tasks", []):
            raise ConfigError(
                f"The teacher for {task!r} ({where}) was trained for {list(getattr(teacher, 'tasks', []))}, not "
                f"{task!r}: pass the checkpoint of a model trained on {task!r}."
            )
        student, other = self.encoder, teacher.encoder
        for name in ("out_channels", "reductions"):
            mine, theirs = list(getattr(student, name, [])), list(getattr(other, name, []))
            if len(theirs) != len(mine):
                raise ConfigError(
                    f"The teacher for {task!r} ({where}) has {len(theirs)} feature levels, the student {len(mine)}: "
                    "distil from teachers with the student's encoder architecture."
                )
            for level in self.feature_levels:
                if mine[level] != theirs[level]:
                    what = "channels" if name == "out_channels" else "stride"
                    raise ConfigError(
                        f"Feature size mismatch for {task!r}: the teacher ({where}) has {theirs[level]} {what} at "
                        f"feature level {level}, the student {mine[level]}. Distil from teachers with the student's "
                        "encoder architecture (same arch, width and stem)."
                    )

    def set_teachers(self, teachers: Mapping[str, MultiTaskModel]) -> None:
        """Use already-loaded teachers (checked like loaded ones); for tests and notebooks."""
        for task, teacher in teachers.items():
            self.check_teacher(task, teacher)
            teacher.eval()
            teacher.requires_grad_(False)
        missing = [t for t in self.tasks if t not in teachers]
        if missing:
            raise ConfigError(f"set_teachers: no teacher for {missing}.")
        self._teachers = dict(teachers)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and not self._teachers:
            self.load_teachers()

    # -- losses -------------------------------------------------------------------------------------------------
    def distillation_losses(self, features: Sequence[Tensor], image: Tensor) -> dict[str, Tensor]:
        """``{task: mean over levels of ℓ(A_t φ(x), φ_t*(x))}`` for the student's ``features`` of ``image``."""
        if not self._teachers:
            raise ConfigError("No teachers loaded: call load_teachers() (done by fit) or set_teachers().")
        losses = {}
        for task in self.tasks:
            teacher = self._teachers[task]
            if teacher.device != image.device:
                teacher.to(image.device)
            with torch.no_grad():
                target = task_features(teacher.features(image), task)
            terms = []
            for adapter, level in zip(self.adapters[task], self.feature_levels):
                adapted = adapter(features[level])
                if adapted.shape != target[level].shape:
                    raise ConfigError(
                        f"Feature size mismatch for {task!r} at level {level}: student (adapted) "
                        f"{tuple(adapted.shape)} vs teacher {tuple(target[level].shape)}."
                    )
                terms.append(feature_distillation_loss(adapted, target[level]))
            losses[task] = torch.stack(terms).mean()
        return losses

    def training_step(self, batch: Mapping[str, Mapping[str, Tensor]], batch_idx: int) -> Tensor:
        source = batch["source"]
        self.require_labels(source, "source")
        image = source["image"]
        features = self.features(image)
        supervised = self.supervised_terms(self.decode(features, tuple(image.shape[-2:])), source, "source")
        distill = self.distillation_losses(features, image)
        distill_total = sum(self.distill_weights[t] * d for t, d in distill.items())
        total = supervised + distill_total
        self.log_losses("distillation", distill, image.shape[0], distill_total)
        self.log(METRIC_NAMES["total"], total.detach(), batch_size=image.shape[0], prog_bar=True)
        return total
