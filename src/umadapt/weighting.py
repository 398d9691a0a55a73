"""Multi-task loss weighting: how a model turns its per-task losses ``L_t`` into the loss it minimises.

Every weighting is an ``nn.Module`` injected into any :class:`~umadapt.methods.base.MultiTaskModel` as
``model.init_args.weighting`` (default :class:`FixedWeighting`, i.e. ``Σ_t w_t L_t`` with ``model.loss_weights``)::

    model:
      init_args:
        weighting:
          class_path: umadapt.weighting.UncertaintyWeighting

The model calls ``weighting(losses, model)`` wherever it used to take the weighted sum. In training (the model in
train mode with autograd on) the weighting may learn or adapt; in evaluation it returns ``Σ_t w_t L_t`` with its
current weights and changes nothing. The weights used at the last training call are in
:attr:`LossWeighting.last_weights` (the model logs them as ``train/weights/<task>``).

**Per-task gradients.** :class:`GradNorm` and :class:`PCGrad` need the gradient of every task's loss with respect
to the parameters the tasks share (``model.shared_parameters()`` if the model defines it, else
``model.encoder.shared_parameters()`` if the encoder defines it, else all encoder parameters). They take those
gradients with ``torch.autograd.grad`` inside the call and return a loss whose *value* is the weighted sum and whose
*gradient* is the method's: the difference to the plain gradient enters through :func:`inject_gradient`, a zero-valued
term whose backward deposits a given tensor on given parameters. So they need no manual optimization, work under
automatic and manual optimization, with AMP loss scaling and with other loss terms added to theirs (adversarial,
distillation), whose gradients pass through unchanged. A configuration that cannot provide the per-task gradients
raises an error naming the cause: a single task, an encoder that shares no parameter between tasks (e.g.
:class:`~umadapt.nn.ProgressiveEncoder`), a task whose loss does not reach the shared parameters, losses computed
without autograd, or a method whose optimizers do not hold the weighting's own parameters.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from umadapt.errors import ConfigError
from umadapt.tasks import get_task

__all__ = [
    "DynamicWeightAveraging",
    "FixedWeighting",
    "GradNorm",
    "LossWeighting",
    "PCGrad",
    "UncertaintyWeighting",
    "dwa_weights",
    "gradnorm_targets",
    "inject_gradient",
    "project_conflicting",
    "shared_parameters",
]


# -- helpers ------------------------------------------------------------------------------------------------------
class _InjectGradient(torch.autograd.Function):
    """Zero in the forward pass; ``grad_output * g`` for every parameter in the backward pass."""

    @staticmethod
    def forward(ctx: Any, count: int, *tensors: Tensor) -> Tensor:  # type: ignore[override]
        ctx.count = count
        ctx.save_for_backward(*tensors[count:])
        return tensors[0].new_zeros(())

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple:  # type: ignore[override]
        grads = ctx.saved_tensors
        return (None, *(grad_output * g for g in grads), *(None for _ in grads))


def inject_gradient(params: Sequence[Tensor], grads: Sequence[Tensor]) -> Tensor:
    """A scalar equal to 0 whose backward adds ``grads[i]`` (times the incoming gradient, e.g. an AMP loss scale) to
    ``params[i].grad``. Adding it to a loss changes that loss's gradient by exactly ``grads``."""
    if len(params) != len(grads) or not params:
        raise ValueError(f"inject_gradient needs one gradient per parameter, got {len(params)} and {len(grads)}.")
    return _InjectGradient.apply(len(params), *params, *(g.detach() for g in grads))


def shared_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable parameters every task's loss depends on: ``model.shared_parameters()`` if the model defines it,
    else ``model.encoder.shared_parameters()`` if the encoder defines it, else all of ``model.encoder``'s."""
    source = getattr(model, "shared_parameters", None)
    if not callable(source):
        encoder = getattr(model, "encoder", None)
        if encoder is None:
            return []
        source = getattr(encoder, "shared_parameters", None)
        source = source if callable(source) else encoder.parameters
    return [p for p in source() if p.requires_grad]


def _task_gradients(
    losses: Sequence[Tensor], params: Sequence[Tensor], tasks: Sequence[str], who: str
) -> list[list[Tensor]]:
    """``[[dL_t/dp for p in params] for t]``; unused parameters give zeros, a task reaching none of them is an error."""
    grads = []
    for task, loss in zip(tasks, losses):
        if not loss.requires_grad:
            raise ConfigError(
                f"{who} needs per-task gradients, but the {task!r} loss carries no gradient (computed without autograd "
                "or from detached features). Use FixedWeighting, UncertaintyWeighting or DynamicWeightAveraging here."
            )
        g = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        if all(x is None for x in g):
            raise ConfigError(
                f"{who} needs the gradient of every task's loss with respect to the shared parameters, but the "
                f"{task!r} loss does not reach any of them (the encoder shares nothing with that task's head). "
                "Use a weighting that does not need per-task gradients."
            )
        grads.append([torch.zeros_like(p) if x is None else x for p, x in zip(params, g)])
    return grads


# -- base ---------------------------------------------------------------------------------------------------------
class LossWeighting(nn.Module):
    """Base class: ``forward(losses, model)`` returns the loss to minimise.

    Subclasses implement :meth:`combine` (training) and :meth:`current_weights` (evaluation and logging). The
    model calls :meth:`bind` once from its constructor; it records the tasks and checks the configuration.
    """

    needs_task_gradients: bool = False
    uses_fixed_weights: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[str] = []
        self.last_weights: dict[str, Tensor | float] = {}
        self._optimizer_checked = False

    @property
    def name(self) -> str:
        return type(self).__name__

    def bind(self, model: nn.Module) -> None:
        """Record ``model.tasks``; refuse ``model.loss_weights`` other than 1 (they belong to :class:`FixedWeighting`)
        and, for gradient-based weightings, configurations without per-task gradients."""
        self.tasks = list(model.tasks)
        if not self.uses_fixed_weights:
            custom = {t: w for t, w in getattr(model, "loss_weights", {}).items() if w != 1.0}
            if custom:
                raise ConfigError(
                    f"model.loss_weights {custom} apply only to FixedWeighting, but the weighting is {self.name}, "
                    "which sets the weights itself: remove model.loss_weights (or set them to 1.0)."
                )
        if self.needs_task_gradients:
            if len(self.tasks) < 2:
                raise ConfigError(
                    f"{self.name} balances the gradients of several tasks, but the model has the single task "
                    f"{self.tasks}: use FixedWeighting (the default) for single-task models."
                )
            if not shared_parameters(model):
                encoder = getattr(model, "encoder", None)
                raise ConfigError(
                    f"{self.name} needs per-task gradients of parameters the tasks share, but "
                    f"{type(encoder).__name__} shares no trainable parameter between tasks. Use FixedWeighting, "
                    "UncertaintyWeighting or DynamicWeightAveraging with this encoder."
                )

    def forward(self, losses: Mapping[str, Tensor], model: nn.Module) -> Tensor:
        unknown = [t for t in losses if t not in self.tasks]
        if unknown:
            raise KeyError(f"{self.name} got losses for {unknown}, which are not among the model's tasks {self.tasks}.")
        if getattr(model, "training", False) and torch.is_grad_enabled():
            self._check_optimizers(model)
            return self.combine(losses, model)
        weights = self.current_weights()
        total = 0.0
        for t, loss in losses.items():
            total = total + weights[t].to(device=loss.device, dtype=loss.dtype) * loss
        return total  # type: ignore[return-value]

    def combine(self, losses: Mapping[str, Tensor], model: nn.Module) -> Tensor:
        raise NotImplementedError

    def current_weights(self) -> dict[str, Tensor]:
        raise NotImplementedError

    def _record(self, weights: Mapping[str, Tensor | float]) -> None:
        self.last_weights = {t: w.detach() if isinstance(w, Tensor) else float(w) for t, w in weights.items()}

    def _require_all_tasks(self, losses: Mapping[str, Tensor]) -> list[Tensor]:
        missing = [t for t in self.tasks if t not in losses]
        if missing:
            raise KeyError(f"{self.name} needs a loss for every task; {missing} are missing (got {sorted(losses)}).")
        return [losses[t] for t in self.tasks]

    def _check_optimizers(self, model: nn.Module) -> None:
        """A learnable weighting must be in one of the trainer's optimizers, or its weights would silently stay put."""
        if self._optimizer_checked:
            return
        trainer = getattr(model, "_trainer", None)
        own = [p for p in self.parameters() if p.requires_grad]
        if trainer is None or not own or not trainer.optimizers:
            return
        held = {id(p) for optimizer in trainer.optimizers for group in optimizer.param_groups for p in group["params"]}
        if any(id(p) not in held for p in own):
            raise ConfigError(
                f"{self.name} learns its weights, but none of {type(model).__name__}'s optimizers holds "
                "model.weighting's parameters: add self.weighting.parameters() to an optimizer in "
                "configure_optimizers, or use FixedWeighting or DynamicWeightAveraging."
            )
        self._optimizer_checked = True


# -- fixed --------------------------------------------------------------------------------------------------------
class FixedWeighting(LossWeighting):
    """``Σ_t w_t L_t`` with the constant ``w_t`` of ``model.loss_weights`` (tasks not listed weigh 1): exactly the
    weighted sum of :class:`~umadapt.methods.base.MultiTaskModel` before weightings existed."""

    uses_fixed_weights = True

    def bind(self, model: nn.Module) -> None:
        super().bind(model)
        self._weights = {t: float(w) for t, w in getattr(model, "loss_weights", {}).items()}

    def forward(self, losses: Mapping[str, Tensor], model: nn.Module) -> Tensor:
        unknown = [t for t in losses if t not in self.tasks]
        if unknown:
            raise KeyError(f"{self.name} got losses for {unknown}, which are not among the model's tasks {self.tasks}.")
        self._weights = {t: float(w) for t, w in getattr(model, "loss_weights", self._weights).items()}
        if getattr(model, "training", False) and torch.is_grad_enabled():
            self._record({t: self._weights.get(t, 1.0) for t in losses})
        return sum(self._weights.get(t, 1.0) * loss for t, loss in losses.items())  # type: ignore[return-value]

    def current_weights(self) -> dict[str, Tensor]:
        return {t: torch.tensor(self._weights.get(t, 1.0)) for t in self.tasks}


# -- uncertainty --------------------------------------------------------------------------------------------------
class UncertaintyWeighting(LossWeighting):
    """Homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

    With one learned ``s_t = log σ_t²`` per task, the loss is (Eq. 7 for regression, Eq. 10 for classification,
    written with ``log σ = s / 2``)::

        regression (depth, normals):          L = 1/(2σ²) L_t + log σ  = ½ exp(-s_t) L_t + ½ s_t
        classification (segmentation, label): L = 1/σ² L_t + log σ     =   exp(-s_t) L_t + ½ s_t

    The logged weight of a task is its factor ``½ exp(-s_t)`` or ``exp(-s_t)``. ``s_t`` are parameters of the
    model, trained by its optimizer.

    Args:
        init_log_variance: initial ``s_t`` (0: ``σ = 1``).
        classification: tasks to treat as classification; default those whose output size is the number of
            classes (``segmentation``, ``label``).
    """

    def __init__(self, init_log_variance: float = 0.0, classification: list[str] | None = None) -> None:
        super().__init__()
        self.init_log_variance = float(init_log_variance)
        self.classification = None if classification is None else list(classification)
        self.log_variance = nn.Parameter(torch.zeros(0))

    def bind(self, model: nn.Module) -> None:
        super().bind(model)
        unknown = [t for t in self.classification or [] if t not in self.tasks]
        if unknown:
            raise ConfigError(f"UncertaintyWeighting.classification names {unknown}, not among the tasks {self.tasks}.")
        self.log_variance = nn.Parameter(torch.full((len(self.tasks),), self.init_log_variance))
        classification = self.classification if self.classification is not None else [
            t for t in self.tasks if get_task(t).channels is None
        ]
        scale = torch.tensor([1.0 if t in classification else 0.5 for t in self.tasks])
        self.register_buffer("scale", scale, persistent=False)

    def _factors(self) -> Tensor:
        return self.scale * torch.exp(-self.log_variance)

    def combine(self, losses: Mapping[str, Tensor], model: nn.Module) -> Tensor:
        factors = self._factors()
        self._record({t: factors[i] for i, t in enumerate(self.tasks)})
        total = 0.0
        for i, t in enumerate(self.tasks):
            if t in losses:
                total = total + factors[i] * losses[t] + 0.5 * self.log_variance[i]
        return total  # type: ignore[return-value]

    def current_weights(self) -> dict[str, Tensor]:
        factors = self._factors().detach()
        return {t: factors[i] for i, t in enumerate(self.tasks)}


# -- dynamic weight averaging -------------------------------------------------------------------------------------
def dwa_weights(previous: Tensor, before: Tensor, temperature: float) -> Tensor:
    """Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019, Sec. 3.3)::

        λ_k(t) = K exp(w_k(t-1) / T) / Σ_i exp(w_i(t-1) / T),   w_k(t-1) = L_k(t-1) / L_k(t-2)

    ``previous`` and ``before`` are the epoch-mean losses ``L(t-1)`` and ``L(t-2)`` of the ``K`` tasks."""
    ratio = previous / before.clamp_min(1e-12)
    return previous.numel() * torch.softmax(ratio / temperature, dim=0)


class DynamicWeightAveraging(LossWeighting):
    """Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019): each task's weight follows the rate at which its
    epoch-mean loss falls (see :func:`dwa_weights`); the first two epochs use weight 1 for every task.

    The epoch-mean losses are accumulated from the training calls; a new epoch is recognised from
    ``model.current_epoch``. State is kept in buffers, so it survives checkpoints.

    Args:
        temperature: ``T``; larger means softer (closer to equal) weights. The paper uses 2.
    """

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"DynamicWeightAveraging.temperature must be positive, got {temperature}.")
        self.temperature = float(temperature)

    def bind(self, model: nn.Module) -> None:
        super().bind(model)
        k = len(self.tasks)
        self.register_buffer("epoch_sum", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("epoch_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("history", torch.ones(2, k, dtype=torch.float64))  # rows: L(t-1), L(t-2)
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self.register_buffer("epoch", torch.full((), -1, dtype=torch.long))

    def _weights(self) -> Tensor:
        if int(self.epochs_done) < 2:
            return torch.ones(len(self.tasks), device=self.history.device)
        return dwa_weights(self.history[0], self.history[1], self.temperature).float()

    def combine(self, losses: Mapping[str, Tensor], model: nn.Module) -> Tensor:
        values = self._require_all_tasks(losses)
        epoch = int(getattr(model, "current_epoch", 0))
        if epoch != int(self.epoch):
            if int(self.epoch_count) > 0:
                self.history[1] = self.history[0]
                self.history[0] = self.epoch_sum / self.epoch_count
                self.epochs_done += 1
            self.epoch_sum.zero_()
            self.epoch_count.zero_()
            self.epoch.fill_(epoch)
        weights = self._weights()
        self.epoch_sum += torch.stack([v.detach().double() for v in values])
        self.epoch_count += 1
        self._record({t: weights[i] for i, t in enumerate(self.tasks)})
        return sum(weights[i].to(v.dtype) * v for i, v in enumerate(values))  # type: ignore[return-value]

    def current_weights(self) -> dict[str, Tensor]:
        weights = self._weights()
        return {t: weights[i] for i, t in enumerate(self.tasks)}


# -- GradNorm -----------------------------------------------------------------------------------------------------
def gradnorm_targets(norms: Tensor, losses: Tensor, initial_losses: Tensor, alpha: float) -> Tensor:
    """GradNorm's target gradient norms (Chen et al., ICML 2018, Eq. 1 and Sec. 3.2)::

        target_i = Ḡ_W · r_i^α,   r_i = L̃_i / mean_j L̃_j,   L̃_i = L_i(t) / L_i(0)

    where ``norms`` are the weighted gradient norms ``G_W^(i) = ||∇_W w_i L_i||`` and ``Ḡ_W`` their mean. Tasks
    that have trained less (higher ``L̃``) get larger targets. All inputs are treated as constants."""
    inverse_rate = losses / initial_losses.clamp_min(1e-12)
    ratio = inverse_rate / inverse_rate.mean()
    return norms.mean() * ratio.pow(alpha)


class GradNorm(LossWeighting):
    """GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018): learns weights ``w_i`` so that the weighted
    task gradient norms on the shared parameters ``W`` train at rates set by each task's relative inverse training
    rate.

    Each training call takes ``n_i = ||∇_W L_i||`` by autograd, and the weights get the gradient of (Eq. 1)
    ``L_grad = Σ_i |w_i n_i - target_i|`` (targets from :func:`gradnorm_targets`, held constant), i.e.
    ``sign(w_i n_i - target_i) n_i``, while the network gets the gradient of ``Σ_i w_i L_i`` with ``w`` held
    constant. Before each call the weights are renormalised to ``Σ_i w_i = K`` (Sec. 3.2). ``L_i(0)`` are the
    losses of the first training call (kept in the checkpoint). ``W`` is every shared parameter (the paper often
    takes only the last shared layer, to save compute).

    Args:
        alpha: the asymmetry ``α`` (the paper uses 1.5 on NYUv2; 0 pulls all gradient norms to the mean).
    """

    needs_task_gradients = True

    def __init__(self, alpha: float = 1.5) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.weights = nn.Parameter(torch.zeros(0))

    def bind(self, model: nn.Module) -> None:
        super().bind(model)
        k = len(self.tasks)
        self.weights = nn.Parameter(torch.ones(k))
        self.register_buffer("initial_losses", torch.zeros(k))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def _renormalise(self) -> None:
        with torch.no_grad():
            self.weights.clamp_(min=1e-3)
            self.weights.mul_(len(self.tasks) / self.weights.sum())

    def combine(self, losses: Mapping[str, Tensor], model: nn.Module) -> Tensor:
        values = self._require_all_tasks(losses)
        self._renormalise()
        stacked = torch.stack([v.detach().float() for v in values])
        if not bool(self.initialised):
            self.initial_losses.copy_(stacked)
            self.initialised.fill_(True)
        params = shared_parameters(model)
        grads = _task_gradients(values, params, self.tasks, self.name)
        norms = torch.stack([torch.sqrt(sum((g.float() ** 2).sum() for g in task)) for task in grads])
        w = self.weights.detach()
        targets = gradnorm_targets(w * norms, stacked, self.initial_losses, self.alpha)
        weight_grad = torch.sign(w * norms - targets) * norms
        self._record({t: w[i] for i, t in enumerate(self.tasks)})
        total = sum(w[i].to(v.dtype) * v for i, v in enumerate(values))
        return total + inject_gradient([self.weights], [weight_grad]).to(total.dtype)  # type: ignore[union-attr]

    def current_weights(self) -> dict[str, Tensor]:
        w = self.weights.detach()
        w = w * len(self.tasks) / w.sum()
        return {t: w[i] for i, t in enumerate(self.tasks)}


# -- PCGrad -------------------------------------------------------------------------------------------------------
def project_conflicting(grads: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Gradient surgery (Yu et al., NeurIPS 2020, Alg. 1): for each task ``i`` and every other task ``j`` in random
    order, if ``g_i^PC · g_j < 0`` then ``g_i^PC ← g_i^PC - (g_i^PC · g_j / ||g_j||²) g_j``.

    Args:
        grads: ``[K, P]`` flattened per-task gradients (``g_j`` are the original ones).

    Returns:
        ``(projected [K, P], coefficients [K, K])`` with ``projected = coefficients @ grads``; the column sums of
        ``coefficients`` are the effective weights of the original gradients in ``Σ_i g_i^PC``.
    """
    k = grads.shape[0]
    projected = grads.clone()
    coefficients = torch.eye(k, dtype=grads.dtype, device=grads.device)
    squared = (grads * grads).sum(dim=1)
    for i in range(k):
        others = [j for j in range(k) if j != i]
        order = torch.randperm(len(others), generator=generator).tolist()
        for index in order:
            j = others[index]
            dot = torch.dot(projected[i], grads[j])
            if dot < 0 and squared[j] > 0:
                scale = dot / squared[j]
                projected[i] = projected[i] - scale * grads[j]
                coefficients[i, j] = coefficients[i, j] - scale
    return projected, coefficients


class PCGrad(LossWeighting):
    """PCGrad (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020): the shared parameters get
    ``Σ_i g_i^PC`` (see :func:`project_conflicting`), every other parameter the gradient of ``Σ_i L_i``.

    The logged weight of a task is the effective coefficient ``a_j`` of its original gradient in
    ``Σ_i g_i^PC = Σ_j a_j g_j`` (1 when no gradients conflict).
    """

    needs_task_gradients = True

    def combine(self, losses: Mapping[str, Tensor], model: nn.Module) -> Tensor:
        values = self._require_all_tasks(losses)
        params = shared_parameters(model)
        grads = _task_gradients(values, params, self.tasks, self.name)
        flat = torch.stack([torch.cat([g.reshape(-1).float() for g in task]) for task in grads])
        projected, coefficients = project_conflicting(flat)
        correction = projected.sum(0) - flat.sum(0)
        effective = coefficients.sum(0)
        self._record({t: effective[i] for i, t in enumerate(self.tasks)})
        pieces, offset = [], 0
        for p in params:
            pieces.append(correction[offset : offset + p.numel()].view_as(p).to(p.dtype))
            offset += p.numel()
        total = sum(values)
        return total + inject_gradient(params, pieces).to(total.dtype)  # type: ignore[union-attr]

    def current_weights(self) -> dict[str, Tensor]:
        return {t: torch.tensor(1.0) for t in self.tasks}
