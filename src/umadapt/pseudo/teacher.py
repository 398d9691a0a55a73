"""The teacher of self-training: a frozen copy of a model's encoder and heads, updated as an exponential moving
average of the student (mean teacher, Tarvainen & Valpola 2017; DAFormer, Hoyer et al. 2022) or replaced by the
student between rounds (data distillation)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["copy_weights", "ema_update"]


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, alpha: float) -> None:
    """``θ_T ← α θ_T + (1 - α) θ_S`` for every parameter and floating-point buffer (BatchNorm statistics); integer
    buffers (``num_batches_tracked``) are copied. ``teacher`` and ``student`` have the same architecture."""
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    for name, value in teacher_state.items():
        source = student_state[name]
        if value.is_floating_point():
            value.mul_(alpha).add_(source.detach().to(value.dtype), alpha=1.0 - alpha)
        else:
            value.copy_(source)


@torch.no_grad()
def copy_weights(teacher: nn.Module, student: nn.Module) -> None:
    """Make ``teacher``'s parameters and buffers equal to ``student``'s."""
    teacher.load_state_dict(student.state_dict())
