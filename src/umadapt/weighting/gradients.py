"""Per-task gradients on the shared parameters, and :func:`inject_gradient`, through which a weighting changes the
gradient of the loss it returns without manual optimization."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from umadapt.errors import ConfigError

__all__ = ["inject_gradient", "shared_parameters", "task_gradients"]


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


def task_gradients(
    losses: Sequence[Tensor], params: Sequence[Tensor], tasks: Sequence[str], who: str
) -> list[list[Tensor]]:
    """``[[dL_t/dp for p in params] for t]``, keeping the graph for the backward pass that follows. Unused parameters
    give zeros; a loss without autograd, or one that reaches none of ``params``, is an error naming ``who`` needs it."""
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
