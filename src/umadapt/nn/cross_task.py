"""Cross-task distillation networks and the cross-task energy of UM-Adapt (Kundu et al., ICCV 2019, arXiv 1908.03884).

For every task ``t`` of a set of dense tasks, a distillation network ``T_t`` predicts task ``t``'s output from the
other tasks' predictions ``ŷ_¬t`` (e.g. normals + segmentation -> depth). :class:`CrossTaskDistillation` holds them
and defines

* the transfer ``T_t(ŷ_¬t)``, activated like the task's own head (softplus depth, unit normals, segmentation logits);
* the per-task inconsistency ``d_t(ŷ_t, T_t(ŷ_¬t))`` per sample, in float32 (see :func:`task_distance`);
* the energy ``E(x) = Σ_t w_t d_t(ŷ_t, T_t(ŷ_¬t))`` per sample: low when the predictions agree with each other as
  they do on the labelled source domain, high otherwise (the paper's cross-task distillation loss, re-used as the
  output of an energy function);
* the distillation loss that trains each ``T_t`` against the ground truth ``y_t``, with the task's own loss.

How the predictions are fed to a ``T_t`` (our choice; the paper leaves the encoding open): depth as
``log(depth)``, normals as the unit vectors, segmentation as class probabilities (softmax), concatenated in the
order of ``tasks``.

:func:`energy_discriminator_loss` and :func:`energy_generator_loss` are the two players' objectives of the
energy-based adversary (EBGAN-style, Zhao et al. 2017, as UM-Adapt uses it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from umadapt.tasks import Task, get_task

__all__ = [
    "CrossTaskDistillation",
    "CrossTaskNet",
    "NetFactory",
    "energy_discriminator_loss",
    "energy_generator_loss",
    "task_distance",
]

NetFactory = Callable[[int, int], nn.Module]
"""Builds a network from ``(in_channels, out_channels)``; in YAML a ``class_path`` + ``init_args``."""

_DISTANCES = ("depth", "normals", "segmentation")


class CrossTaskNet(nn.Module):
    """A small fully convolutional ``T_t``: area-downsample the input by ``downsample``, a stack of dilated 3x3
    conv-GroupNorm-ReLU layers, a 1x1 output convolution, bilinear upsampling back to the input size.

    No BatchNorm, so its output does not depend on train/eval mode or on the batch: the energy of a sample is the
    same whatever it is batched with.

    Args:
        in_channels: channels of the concatenated input predictions.
        out_channels: channels of the predicted task (raw, pre-activation).
        hidden: width of the hidden layers.
        downsample: working-resolution reduction (1 = full resolution).
        dilations: one 3x3 layer per entry, with that dilation (receptive field grows with their sum).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden: int = 32,
        downsample: int = 8,
        dilations: Sequence[int] = (1, 2, 1),
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1 or hidden < 1 or downsample < 1 or not dilations:
            raise ValueError(
                "CrossTaskNet needs positive in_channels, out_channels, hidden, downsample and at least one dilation; "
                f"got {in_channels}, {out_channels}, {hidden}, {downsample}, {list(dilations)}."
            )
        self.downsample = int(downsample)
        layers: list[nn.Module] = []
        channels = in_channels
        for dilation in dilations:
            layers += [
                nn.Conv2d(channels, hidden, 3, padding=int(dilation), dilation=int(dilation), bias=False),
                nn.GroupNorm(_groups(hidden), hidden),
                nn.ReLU(inplace=True),
            ]
            channels = hidden
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(hidden, out_channels, 1)
        nn.init.normal_(self.out.weight, std=0.01)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        size = tuple(x.shape[-2:])
        if self.downsample > 1:
            small = (max(1, size[0] // self.downsample), max(1, size[1] // self.downsample))
            x = F.interpolate(x, size=small, mode="area")
        x = self.out(self.body(x))
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x


def _groups(channels: int) -> int:
    for groups in (8, 4, 2):
        if channels % groups == 0:
            return groups
    return 1


def task_distance(task: str, prediction: Tensor, transferred: Tensor) -> Tensor:
    """Per-sample inconsistency ``d_t`` (float32, shape ``[B]``) between the base network's prediction of ``task``
    and the distillation network's (both activated, see :mod:`umadapt.tasks`):

    * ``depth``: mean absolute difference in metres (the task's own L1);
    * ``normals``: mean ``1 - cos`` of the angle between the unit normals (the task's own loss);
    * ``segmentation``: mean per-pixel KL divergence ``KL(softmax(ŷ) || softmax(T(ŷ_¬t)))`` of the class
      distributions (the soft version of the task's cross-entropy).

    Zero exactly when the two agree. Computed with autocast off, in float32, whatever the input precision.
    """
    if task not in _DISTANCES:
        raise ValueError(f"Cross-task distillation supports the dense tasks {list(_DISTANCES)}, not {task!r}.")
    with torch.autocast(device_type=prediction.device.type, enabled=False):
        a, b = prediction.float(), transferred.float()
        if task == "depth":
            per_pixel = (a - b).abs().sum(1)
        elif task == "normals":
            per_pixel = 1.0 - (a * b).sum(1)
        else:
            log_p, log_q = F.log_softmax(a, dim=1), F.log_softmax(b, dim=1)
            per_pixel = (log_p.exp() * (log_p - log_q)).sum(1)
        return per_pixel.flatten(1).mean(1)


def energy_discriminator_loss(energy_source: Tensor, energy_target: Tensor, margin: float) -> Tensor:
    """The distillation networks' (discriminator's) objective: ``mean E(x_s) + mean max(0, m - E(x_t))``.

    Low energy on source samples, high energy on target samples up to the margin ``m`` (EBGAN's discriminator
    loss, with source samples playing the "real" data). Float32.
    """
    if margin < 0:
        raise ValueError(f"The energy margin must be >= 0, got {margin}.")
    return energy_source.float().mean() + F.relu(margin - energy_target.float()).mean()


def energy_generator_loss(energy_target: Tensor) -> Tensor:
    """The base network's (generator's) adversarial objective: ``mean E(x_t)``, the target energy. Float32."""
    return energy_target.float().mean()


class CrossTaskDistillation(nn.Module):
    """The distillation networks ``{T_t}`` of a set of dense tasks, their energy and their distillation loss.

    Args:
        tasks: the tasks taking part (at least two dense tasks among ``depth``, ``normals``, ``segmentation``).
        num_classes: number of segmentation classes (when ``segmentation`` takes part).
        net: factory ``net(in_channels, out_channels)`` of each ``T_t`` (default :class:`CrossTaskNet`).
        weights: ``{task: w_t}`` of the energy and distillation loss; tasks not listed weigh 1.
    """

    def __init__(
        self,
        tasks: Sequence[str],
        num_classes: int | None = None,
        net: NetFactory | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        tasks = list(tasks)
        if len(tasks) < 2 or len(set(tasks)) != len(tasks):
            raise ValueError(
                f"Cross-task distillation needs at least two distinct tasks (each predicted from the others), "
                f"got {tasks}. List two or more of {list(_DISTANCES)} in model.init_args.cross_tasks."
            )
        unsupported = [t for t in tasks if t not in _DISTANCES]
        if unsupported:
            raise ValueError(
                f"Cross-task distillation supports the dense tasks {list(_DISTANCES)}; {unsupported} cannot take part. "
                "Drop it from model.init_args.cross_tasks."
            )
        self.tasks = tasks
        self.specs: dict[str, Task] = {t: get_task(t) for t in tasks}
        self.num_classes = num_classes
        out_channels = {t: spec.out_channels(num_classes) for t, spec in self.specs.items()}
        factory = net or CrossTaskNet
        self.nets = nn.ModuleDict(
            {t: factory(sum(out_channels[s] for s in tasks if s != t), out_channels[t]) for t in tasks}
        )
        weights = dict(weights or {})
        self.weights = {t: float(weights.get(t, 1.0)) for t in tasks}

    @staticmethod
    def encode(task: str, prediction: Tensor) -> Tensor:
        """How a prediction is fed to the other tasks' networks: log depth, unit normals, class probabilities."""
        if task == "depth":
            return prediction.clamp_min(1e-3).log()
        if task == "segmentation":
            return prediction.softmax(dim=1)
        return prediction

    def transfer(self, predictions: Mapping[str, Tensor], detach_inputs: bool = False) -> dict[str, Tensor]:
        """``{t: T_t(ŷ_¬t)}``, activated like the task's head. ``detach_inputs``: no gradient into the predictions."""
        missing = [t for t in self.tasks if t not in predictions]
        if missing:
            raise KeyError(f"Cross-task distillation needs predictions of {missing}; got {sorted(predictions)}.")
        encoded = {t: self.encode(t, predictions[t].detach() if detach_inputs else predictions[t]) for t in self.tasks}
        return {
            t: self.specs[t].activate(self.nets[t](torch.cat([encoded[s] for s in self.tasks if s != t], dim=1)))
            for t in self.tasks
        }

    def distances(
        self, predictions: Mapping[str, Tensor], transferred: Mapping[str, Tensor] | None = None
    ) -> dict[str, Tensor]:
        """``{t: d_t(ŷ_t, T_t(ŷ_¬t))}``, each float32 ``[B]`` (see :func:`task_distance`)."""
        transferred = self.transfer(predictions) if transferred is None else transferred
        return {t: task_distance(t, predictions[t], transferred[t]) for t in self.tasks}

    def energy(self, predictions: Mapping[str, Tensor], transferred: Mapping[str, Tensor] | None = None) -> Tensor:
        """The per-sample energy ``E(x) = Σ_t w_t d_t(ŷ_t, T_t(ŷ_¬t))``, float32 ``[B]``."""
        return self.weighted(self.distances(predictions, transferred))

    def distillation_losses(
        self,
        predictions: Mapping[str, Tensor],
        batch: Mapping[str, Tensor],
        transferred: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """``{t: L_t(T_t(ŷ_¬t), y_t)}`` with the task's own loss, the inputs detached (trains the ``T_t`` only).
        ``transferred``: reuse outputs already computed from detached predictions."""
        missing = [t for t in self.tasks if t not in batch]
        if missing:
            raise KeyError(
                f"Training the distillation networks needs labels of {missing}; the batch has {sorted(batch)}."
            )
        if transferred is None:
            transferred = self.transfer(predictions, detach_inputs=True)
        return {t: self.specs[t].loss(transferred[t], batch[t]).float() for t in self.tasks}

    def weighted(self, terms: Mapping[str, Tensor]) -> Tensor:
        """``Σ_t w_t terms_t``: the energy from the distances, the distillation loss from the losses."""
        return sum(self.weights[t] * term for t, term in terms.items())  # type: ignore[return-value]
