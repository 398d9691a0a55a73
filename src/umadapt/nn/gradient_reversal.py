"""The gradient-reversal layer of DANN (Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation",
ICML 2015 / JMLR 2016, Eq. 13 of the JMLR paper): ``R(x) = x`` forward, ``dR/dx = -lambda * I`` backward.

Put it between the feature extractor and the domain classifier: the classifier then minimises the domain loss while
the features upstream receive ``-lambda`` times its gradient, i.e. they maximise it (the saddle point of Eq. 9-10).

The backward pass multiplies the incoming gradient, in its own dtype, by ``-lambda``: under bf16 autocast the
gradient stays bf16 and is exactly ``-lambda * grad`` as bf16 arithmetic computes it. The layer holds no parameters
and no state besides the coefficient, so DDP (which only reduces parameter gradients) needs nothing special.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["GradientReversal", "grad_reverse"]


class _GradientReversalFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, coefficient: float) -> Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        return grad_output * -ctx.coefficient, None


def grad_reverse(x: Tensor, coefficient: float = 1.0) -> Tensor:
    """Identity forward; the gradient flowing back through it is multiplied by ``-coefficient``."""
    return _GradientReversalFunction.apply(x, float(coefficient))


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse`; set :attr:`coefficient` (``lambda``) before each step.

    Args:
        coefficient: the initial ``lambda``; methods update it every step from a schedule of training progress
            (see :func:`umadapt.schedules.get_coefficient_schedule`).
    """

    def __init__(self, coefficient: float = 1.0) -> None:
        super().__init__()
        self.coefficient = float(coefficient)

    def forward(self, x: Tensor) -> Tensor:
        return grad_reverse(x, self.coefficient)

    def extra_repr(self) -> str:
        return f"coefficient={self.coefficient:.4g}"
