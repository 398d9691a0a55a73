"""Manual optimization with several players (adversarial and phased methods): named optimizers, one update of a
group of players, and the DDP requirement such methods share.

A player is a named optimizer over its own parameters. A method builds its players' losses so that each reaches
only its own parameters (detached inputs, ``requires_grad`` off on the other player), so one backward pass serves
every player of an update; see :meth:`Players.step`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch

from umadapt.errors import ConfigError
from umadapt.schedules import restart_lr

__all__ = ["Players", "grad_scaler", "held_fixed", "one_scale_update", "require_find_unused_parameters"]


class Players:
    """The optimizers of a manual-optimization LightningModule, by player name.

    ``configure_optimizers`` returns ``players.configure({"name": optimizer, ...})``; ``training_step`` updates a
    group with ``players.step(module, loss, ["name", ...])``.
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self._pending_clip: float | None = None

    def configure(self, optimizers: Mapping[str, torch.optim.Optimizer]) -> list[torch.optim.Optimizer]:
        """Record the players' names (in checkpoint order) and return the optimizers for Lightning."""
        self.names = list(optimizers)
        return list(optimizers.values())

    def optimizer(self, module: pl.LightningModule, name: str) -> Any:
        """Player ``name``'s (Lightning-wrapped) optimizer."""
        optimizers = module.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        if name not in self.names:
            raise KeyError(f"No player {name!r}; the players are {self.names}.")
        return optimizers[self.names.index(name)]

    def step(
        self,
        module: pl.LightningModule,
        loss: torch.Tensor,
        names: Sequence[str],
        lr_multiplier: float | None = None,
        gradient_clip_val: float | Mapping[str, float] | None = None,
    ) -> None:
        """One update of the players ``names``: set their learning rates to ``initial_lr * lr_multiplier`` (when
        given), zero their gradients, one backward pass of ``loss``, step each optimizer with its gradient norm
        clipped to ``gradient_clip_val`` (when given: one value for every player, or ``{player: value}`` for some
        of them), and log ``train/lr/<player>``.

        Under ``16-mixed`` the gradients are clipped after they are unscaled (in ``on_before_optimizer_step``,
        which Lightning calls after unscaling; clipping before ``optimizer.step()`` would clip the scaled
        gradients, Lightning issue 18089), and the loss scale is updated once per update, after every player has
        stepped: the players share one backward pass, so all of them must be unscaled with the scale it used.
        """
        optimizers = [self.optimizer(module, name) for name in names]
        if lr_multiplier is not None:
            restart_lr(optimizers, lr_multiplier)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        module.manual_backward(loss)
        with one_scale_update(module):
            for name, optimizer in zip(names, optimizers):
                clip = gradient_clip_val.get(name) if isinstance(gradient_clip_val, Mapping) else gradient_clip_val
                self._pending_clip = clip
                try:
                    optimizer.step()
                finally:
                    self._pending_clip = None
                module.log(f"train/lr/{name}", optimizer.param_groups[0]["lr"])

    def clip_pending(self, module: pl.LightningModule, optimizer: torch.optim.Optimizer) -> None:
        """Clip ``optimizer``'s gradient norm to the value :meth:`step` set for it, if any; called from the
        module's ``on_before_optimizer_step``, where gradients are unscaled."""
        if self._pending_clip is not None:
            module.clip_gradients(optimizer, gradient_clip_val=self._pending_clip, gradient_clip_algorithm="norm")


@contextlib.contextmanager
def held_fixed(module: torch.nn.Module) -> Iterator[None]:
    """Inside the block no gradient reaches ``module``'s parameters (``requires_grad`` off; each parameter's flag is
    restored after): how one player's term goes *through* another player (a discriminator) without training it, so
    that one backward pass serves both players' losses."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def grad_scaler(module: pl.LightningModule) -> torch.amp.GradScaler | None:
    """The loss scaler of the module's trainer (``16-mixed``), or ``None`` (full precision, bf16, no trainer)."""
    if module._trainer is None:
        return None
    return getattr(module.trainer.precision_plugin, "scaler", None)


@contextlib.contextmanager
def one_scale_update(module: pl.LightningModule) -> Iterator[None]:
    """Hold back the loss scaler's ``update()``, which Lightning calls after every optimizer step, until the block
    ends, then update once (when the block ends without an error): how several optimizers stepping on one
    backward pass use a ``GradScaler`` (PyTorch's AMP recipe for several optimizers)."""
    scaler = grad_scaler(module)
    if scaler is None:
        yield
        return
    scaler.update = lambda new_scale=None: None  # an instance attribute hides the method until it is deleted
    try:
        yield
    finally:
        del scaler.update
    scaler.update()


def require_find_unused_parameters(trainer: pl.Trainer | None, method: str) -> None:
    """Refuse plain DDP for a method that leaves some parameters without gradients in a step (a frozen part, the
    other player), which DDP cannot reduce; name the strategy that can."""
    ddp_kwargs = getattr(getattr(trainer, "strategy", None), "_ddp_kwargs", None)
    if ddp_kwargs is not None and not ddp_kwargs.get("find_unused_parameters", False):
        raise ConfigError(
            f"{method} leaves some parameters without gradients in every step (frozen parts, the other player), "
            "which plain DDP cannot reduce: use trainer.strategy: ddp_find_unused_parameters_true (or "
            "ddp_spawn_find_unused_parameters_true)."
        )
