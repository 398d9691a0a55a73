"""Multi-task encoders with one column per task: cross-stitch networks and progressive networks.

Both wrap a 4-stage backbone (a :class:`~umadapt.nn.ResNetEncoder`, given as a template and copied once per task) and
follow the *per-task encoder* protocol that :class:`~umadapt.methods.base.MultiTaskModel` understands:

- ``per_task_features = True``; the model calls ``bind_tasks(tasks)`` once, which builds one column per task;
- ``forward(image)`` returns ``{task: [C1, C2, C3, C4]}`` (each task's multi-scale features, finest first) and each
  head reads its own task's list;
- ``out_channels``, ``reductions``, ``output_stride`` and ``check_input_size`` are the backbone's (every column has
  the same shapes), so the heads are built exactly as for a shared encoder;
- ``shared_parameters()`` lists the parameters every task's loss depends on (what gradient-balancing weightings
  such as GradNorm and PCGrad act on);
- ``load_initial_weights()``, where an encoder has it, is called by the model when ``fit`` sets up (before a resumed
  checkpoint is restored, so a resumed run keeps its own weights).

Hard parameter sharing is the plain backbone itself (one column shared by all tasks).

In YAML::

    encoder:
      class_path: umadapt.nn.CrossStitchEncoder
      init_args:
        backbone: {class_path: umadapt.nn.ResNetEncoder, init_args: {arch: resnet10, width: 16}}
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from umadapt.checkpoints import load_partial_state
from umadapt.errors import ConfigError
from umadapt.nn.freeze import freeze

__all__ = ["CrossStitchEncoder", "CrossStitchUnit", "ProgressiveEncoder", "run_stage"]

NUM_STAGES = 4
_BACKBONE_PARTS = ("conv1", "bn1", "relu", "maxpool", "stages", "out_channels", "reductions", "output_stride")


def run_stage(column: nn.Module, index: int, x: Tensor) -> Tensor:
    """Stage ``index`` of a 4-stage ResNet column; the stem runs in front of stage 0 (the per-task encoders here and the
    tree encoder of :mod:`umadapt.nn.dynamic` run their columns one stage at a time)."""
    if index == 0:
        x = column.maxpool(column.relu(column.bn1(column.conv1(x))))
    return column.stages[index](x)


class _PerTaskEncoder(nn.Module):
    """Common part of the per-task encoders: the backbone template, the task binding and the backbone's shapes."""

    per_task_features = True

    def __init__(self, backbone: nn.Module, tasks: list[str] | None = None) -> None:
        super().__init__()
        missing = [name for name in _BACKBONE_PARTS if not hasattr(backbone, name)]
        if missing or len(getattr(backbone, "stages", [])) != NUM_STAGES:
            raise ConfigError(
                f"{type(self).__name__}: the backbone must be a 4-stage umadapt.nn.ResNetEncoder (stem conv1/bn1/relu/"
                f"maxpool + stages); {type(backbone).__name__} lacks {missing or ['4 stages']}."
            )
        self._template = [backbone]  # a list, so the template is not registered (only its copies are)
        self.out_channels: list[int] = list(backbone.out_channels)
        self.reductions: list[int] = list(backbone.reductions)
        self.output_stride: int = int(backbone.output_stride)
        self.tasks: list[str] = []
        self.columns = nn.ModuleList()
        if tasks:
            self.bind_tasks(tasks)

    def bind_tasks(self, tasks: Sequence[str]) -> None:
        """Build one column per task (called by the model with its tasks). If the encoder was built with ``tasks``
        (which fixes the column order), the model's tasks must be the same set."""
        tasks = list(tasks)
        if self.tasks:
            if sorted(self.tasks) != sorted(tasks):
                raise ConfigError(
                    f"{type(self).__name__} was built for the tasks {self.tasks}, but the model predicts {tasks}: "
                    "make encoder.init_args.tasks list the model's tasks (or drop it to follow the model)."
                )
            return
        if len(set(tasks)) != len(tasks) or not tasks:
            raise ConfigError(f"{type(self).__name__} needs distinct task names, got {tasks}.")
        self.tasks = tasks
        self.columns.extend(copy.deepcopy(self._template[0]) for _ in tasks)
        self._build(len(tasks))

    def _build(self, num_tasks: int) -> None:
        """Create the modules that connect the columns."""

    def _check_bound(self) -> None:
        if not self.tasks:
            raise ConfigError(f"{type(self).__name__} has no tasks yet: pass tasks=[...] or call bind_tasks(tasks).")

    def check_input_size(self, image_size: Sequence[int]) -> None:
        check = getattr(self._template[0], "check_input_size", None)
        if check is not None:
            check(image_size)

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return self.parameters()


class CrossStitchUnit(nn.Module):
    """A cross-stitch unit (Misra, Shrivastava, Gupta & Hebert, CVPR 2016, Eq. 1): ``x̃_i = Σ_j α_ij x_j`` over the
    ``K`` tasks' activations, with learned ``α``.

    Args:
        num_tasks: ``K``.
        channels: channels of the activations (used when ``channel_wise``).
        init_self: initial ``α_ii``; the off-diagonal ``α_ij`` start at ``(1 - init_self) / (K - 1)`` so each row
            sums to 1. The paper's best initialisation is ``(α_S, α_D) = (0.9, 0.1)``; ``1.0`` starts as
            independent columns.
        channel_wise: one ``α`` matrix per channel instead of one per unit.
    """

    def __init__(self, num_tasks: int, channels: int, init_self: float = 0.9, channel_wise: bool = False) -> None:
        super().__init__()
        if num_tasks < 1 or channels < 1:
            raise ValueError(f"CrossStitchUnit needs num_tasks >= 1 and channels >= 1, got {num_tasks}, {channels}.")
        off = (1.0 - init_self) / (num_tasks - 1) if num_tasks > 1 else 0.0
        alpha = torch.full((num_tasks, num_tasks), off)
        alpha.fill_diagonal_(init_self)
        if channel_wise:
            alpha = alpha[:, :, None].repeat(1, 1, channels)
        self.alpha = nn.Parameter(alpha)
        self.channel_wise = channel_wise

    def forward(self, xs: Sequence[Tensor]) -> list[Tensor]:
        if len(xs) != self.alpha.shape[0]:
            raise ValueError(f"CrossStitchUnit mixes {self.alpha.shape[0]} activations, got {len(xs)}.")
        stacked = torch.stack(list(xs), dim=0)  # [K, B, C, H, W]
        alpha = self.alpha.to(stacked.dtype)
        if self.channel_wise:
            mixed = torch.einsum("ijc,jbchw->ibchw", alpha, stacked)
        else:
            mixed = torch.einsum("ij,jbchw->ibchw", alpha, stacked)
        return list(mixed.unbind(0))


class CrossStitchEncoder(_PerTaskEncoder):
    """Cross-stitch networks (Misra et al., CVPR 2016): one backbone column per task, and after each of the four
    stages a :class:`CrossStitchUnit` mixes the columns' activations; the mixed activations feed both the next
    stage and the task heads. Every column starts from the backbone's initial weights, or, with ``columns_from``,
    from the encoder of a network trained on that task alone (the paper's initialisation from single-task
    networks, section 4.2). Only the columns are initialised so: the task heads and the units start fresh (our
    heads are decoders, where the paper's task layers are fully connected).

    Args:
        backbone: the template column (a :class:`~umadapt.nn.ResNetEncoder`), copied once per task.
        init_self: initial ``α_ii`` of every unit (see :class:`CrossStitchUnit`).
        channel_wise: per-channel ``α``.
        tasks: fixes the column order; default: the model's tasks.
        columns_from: ``{task: checkpoint}``, e.g. the ``last.ckpt`` of each single-task run
            (``experiments/mtl/single_<task>.yaml``, a shared encoder with this backbone): its ``encoder.*`` weights
            become that task's column when ``fit`` sets up (read with ``weights_only=True``). ``test`` and
            ``predict`` of a trained model do not read them.

    Every parameter is shared in the sense that every task's loss reaches every column through the units.
    """

    def __init__(
        self,
        backbone: nn.Module,
        init_self: float = 0.9,
        channel_wise: bool = False,
        tasks: list[str] | None = None,
        columns_from: dict[str, str] | None = None,
    ) -> None:
        self.init_self = float(init_self)
        self.channel_wise = bool(channel_wise)
        self.columns_from = dict(columns_from or {})
        super().__init__(backbone, tasks)

    def bind_tasks(self, tasks: Sequence[str]) -> None:
        super().bind_tasks(tasks)
        unknown = sorted(set(self.columns_from) - set(self.tasks))
        missing = [t for t in self.tasks if t not in self.columns_from]
        if self.columns_from and (unknown or missing):
            raise ConfigError(
                f"CrossStitchEncoder.columns_from must name one checkpoint per task {self.tasks}; "
                f"{'it lacks ' + str(missing) if missing else 'it names unknown tasks ' + str(unknown)}."
            )

    def load_initial_weights(self) -> None:
        """Load each task's column from the ``encoder.*`` weights of ``columns_from[task]`` (nothing to do without
        ``columns_from``)."""
        self._check_bound()
        for task, column in zip(self.tasks, self.columns):
            if task in self.columns_from:
                load_partial_state(
                    column,
                    self.columns_from[task],
                    prefixes=("",),
                    what=f"encoder.init_args.columns_from.{task}",
                    hint="Point it at a single-task run trained with the same backbone (a shared "
                    "umadapt.nn.ResNetEncoder of the same arch and width).",
                    source_prefix="encoder.",
                )

    def _build(self, num_tasks: int) -> None:
        self.units = nn.ModuleList(
            CrossStitchUnit(num_tasks, c, self.init_self, self.channel_wise) for c in self.out_channels
        )

    def forward(self, x: Tensor) -> dict[str, list[Tensor]]:
        self._check_bound()
        xs = [x] * len(self.tasks)
        features: dict[str, list[Tensor]] = {t: [] for t in self.tasks}
        for index in range(NUM_STAGES):
            xs = self.units[index]([run_stage(col, index, h) for col, h in zip(self.columns, xs)])
            for task, h in zip(self.tasks, xs):
                features[task].append(h)
        return features


class ProgressiveEncoder(_PerTaskEncoder):
    """Progressive networks (Rusu et al., "Progressive Neural Networks", 2016): one column per task, learned in
    sequence; column ``k`` reads the earlier columns through lateral adapters (Eq. 1)::

        h_i^(k) = f(W_i^(k) h_{i-1}^(k) + Σ_{j<k} U_i^(k:j) h_{i-1}^(j))

    Here ``f ∘ W_i`` is ResNet stage ``i`` and each ``U_i^(k:j)`` a 1x1 convolution added to the stage's input, for
    stages 2-4 (stage 1 reads the image). The adapters start at zero, so a new column starts as an independent one.

    Training order is the column order (``tasks``, default the model's). :meth:`set_active` picks the column that
    trains: the others are frozen (``requires_grad = False``, kept in eval mode so their BatchNorm statistics do not
    move, computed without autograd), so training column ``k`` cannot change any output of the columns before it.
    :class:`umadapt.callbacks.ProgressiveTraining` drives the sequence (and freezes the other tasks' heads);
    training with no active column is an error. No parameter is shared between tasks (``shared_parameters()`` is
    empty).

    Args:
        backbone: the template column (a :class:`~umadapt.nn.ResNetEncoder`), copied once per task.
        tasks: the training order; default: the model's tasks.
    """

    def __init__(self, backbone: nn.Module, tasks: list[str] | None = None) -> None:
        self.active: int | None = None
        super().__init__(backbone, tasks)

    def _build(self, num_tasks: int) -> None:
        # laterals[k][i - 1][j]: U_i^(k:j) into stage i (1..3) of column k from column j < k.
        self.laterals = nn.ModuleList(
            nn.ModuleList(
                nn.ModuleList(self._adapter(self.out_channels[i - 1]) for _ in range(k)) for i in range(1, NUM_STAGES)
            )
            for k in range(num_tasks)
        )

    @staticmethod
    def _adapter(channels: int) -> nn.Module:
        conv = nn.Conv2d(channels, channels, kernel_size=1, bias=False)
        nn.init.zeros_(conv.weight)
        return conv

    def column_index(self, task: int | str) -> int:
        if isinstance(task, str):
            if task not in self.tasks:
                raise ValueError(f"Unknown task {task!r}; the columns are {self.tasks}.")
            return self.tasks.index(task)
        if not 0 <= task < len(self.tasks):
            raise ValueError(f"Column {task} out of range for {len(self.tasks)} columns.")
        return int(task)

    def set_active(self, task: int | str | None) -> None:
        """Make column ``task`` (index or task name) the one that trains and freeze the others; ``None`` unfreezes
        every column (for inspection; training then raises until a column is active again)."""
        self._check_bound()
        self.active = None if task is None else self.column_index(task)
        for k, (column, lateral) in enumerate(zip(self.columns, self.laterals)):
            frozen = self.active is not None and k != self.active
            freeze(column, frozen, training=self.training)
            freeze(lateral, frozen, training=self.training)

    def train(self, mode: bool = True) -> ProgressiveEncoder:
        super().train(mode)
        if mode and self.active is not None:  # keep the frozen columns' BatchNorm statistics fixed
            for k, (column, lateral) in enumerate(zip(self.columns, self.laterals)):
                if k != self.active:
                    column.eval()
                    lateral.eval()
        return self

    def forward(self, x: Tensor) -> dict[str, list[Tensor]]:
        self._check_bound()
        if self.training and self.active is None:
            raise ConfigError(
                "ProgressiveEncoder trains one column at a time: add the callback "
                "umadapt.callbacks.ProgressiveTraining to trainer.callbacks (or call encoder.set_active(task))."
            )
        hidden: list[list[Tensor]] = []
        for k, column in enumerate(self.columns):
            frozen = self.training and k != self.active
            with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
                h, outputs = x, []
                for index in range(NUM_STAGES):
                    if index > 0 and k > 0:
                        h = h + sum(u(hidden[j][index - 1]) for j, u in enumerate(self.laterals[k][index - 1]))
                    h = run_stage(column, index, h)
                    outputs.append(h)
            hidden.append(outputs)
        return {task: hidden[k] for k, task in enumerate(self.tasks)}

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return iter(())
