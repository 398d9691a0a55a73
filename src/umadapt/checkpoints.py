"""Checkpoint files: safe reading, partial loading and the identity a checkpoint must match.

Every checkpoint a user passes (``--ckpt_path``, ``source_checkpoint``, teacher checkpoints, benchmark runs) is read
by :func:`read_checkpoint`, which never unpickles arbitrary objects (``weights_only=True``) and turns every failure
into a :class:`~umadapt.errors.ConfigError` naming the file.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umadapt.errors import ConfigError

__all__ = [
    "check_checkpoint_matches_config",
    "check_identity",
    "load_partial_state",
    "load_task_network",
    "read_checkpoint",
    "read_state_dict",
]


def read_checkpoint(path: str | Path, what: str = "checkpoint") -> dict[str, Any]:
    """The dict stored in the checkpoint file ``path``, loaded on CPU with ``weights_only=True`` (tensors, containers
    and primitives only: a file that needs arbitrary code to unpickle is refused, not run). ``what`` names the file's
    role in error messages (e.g. ``"model.init_args.source_checkpoint"``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{what} not found: {str(path)!r}. Pass the path of a .ckpt file, e.g. <run>/checkpoints/last.ckpt."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        blocked = _blocked_global(str(error))
        if blocked:
            raise ConfigError(
                f"{what} {str(path)!r} was not loaded: it holds {blocked}, which is not a tensor or container, and "
                "loading it could run code. Pass a checkpoint written by umadapt or Lightning."
            ) from None
        raise ConfigError(
            f"{what} {str(path)!r} is not a readable checkpoint (not a torch file, or damaged). Pass a complete "
            ".ckpt file, e.g. <run>/checkpoints/last.ckpt."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"{what} {str(path)!r} is not a readable checkpoint (truncated or not a torch file: {first}). "
            "Pass a complete .ckpt file, e.g. <run>/checkpoints/last.ckpt."
        ) from None
    if not isinstance(checkpoint, dict):
        raise ConfigError(f"{what} {str(path)!r} holds a {type(checkpoint).__name__}, not a checkpoint dict.")
    return checkpoint


def _blocked_global(message: str) -> str | None:
    """The object a ``weights_only`` load refused (e.g. ``GLOBAL os.makedirs``), from torch's message, if any."""
    match = re.search(r"(?:unsupported )?GLOBAL ([\w.]+)", message, flags=re.IGNORECASE)
    return f"GLOBAL {match.group(1)}" if match else None


def read_state_dict(
    path: str | Path, what: str = "checkpoint", checkpoint: Mapping[str, Any] | None = None
) -> dict[str, torch.Tensor]:
    """The model weights of a Lightning checkpoint (its ``state_dict``), or of a bare state-dict file; ``checkpoint``:
    the file's contents when the caller has already read them (:func:`read_checkpoint`), so it is not read twice."""
    checkpoint = read_checkpoint(path, what) if checkpoint is None else checkpoint
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, dict):
        raise ConfigError(f"{what} {str(path)!r} has no state_dict.")
    return state


def load_partial_state(
    module: nn.Module,
    path: str | Path,
    prefixes: Iterable[str],
    what: str = "checkpoint",
    hint: str = "",
    source_prefix: str = "",
    checkpoint: Mapping[str, Any] | None = None,
) -> list[str]:
    """Load the parameters and buffers of ``module`` whose names start with one of ``prefixes`` from ``path``, where
    they are stored as ``source_prefix + name`` (e.g. ``"encoder."`` to load a model's encoder into a bare module);
    raise a :class:`ConfigError` naming the missing parts (``hint`` says where they come from). ``checkpoint``: the
    file's contents, if already read. Returns the keys."""
    state = read_state_dict(path, what, checkpoint)
    prefixes = tuple(prefixes)
    own = module.state_dict()
    wanted = [k for k in own if k.startswith(prefixes)]
    missing = [source_prefix + k for k in wanted if source_prefix + k not in state]
    if missing:
        parts = sorted({k.split(".")[0] for k in missing})
        raise ConfigError(f"{what} {str(path)!r} lacks {parts} (e.g. {missing[0]!r}). {hint}".rstrip())
    mismatched = [k for k in wanted if tuple(state[source_prefix + k].shape) != tuple(own[k].shape)]
    if mismatched:
        k = mismatched[0]
        raise ConfigError(
            f"{what} {str(path)!r} has {source_prefix + k!r} of shape {tuple(state[source_prefix + k].shape)}, the "
            f"model {tuple(own[k].shape)}: it was trained with another architecture. {hint}".rstrip()
        )
    module.load_state_dict({k: state[source_prefix + k] for k in wanted}, strict=False)
    return wanted


def load_task_network(
    module: nn.Module,
    path: str | Path,
    what: str,
    tasks: Sequence[str],
    num_classes: int | None,
    hint: str = "",
) -> dict[str, Any]:
    """Load the ``encoder.*`` and ``heads.*`` of the umadapt checkpoint ``path`` into ``module`` (a module with an
    ``encoder`` and ``heads``: a teacher, a frozen task network), after refusing one trained for other ``tasks`` or
    another number of classes; ``what`` names the config key in errors. Returns the stored identity (``method``,
    ``tasks``, ``num_classes``; ``{}`` when the file has none) for checks of the caller's own."""
    checkpoint = read_checkpoint(path, what)
    saved = checkpoint.get("umadapt") or checkpoint.get("hyper_parameters") or {}
    saved_tasks = saved.get("tasks")
    if saved_tasks is not None and list(saved_tasks) != list(tasks):
        raise ConfigError(
            f"{what} {str(path)!r} predicts tasks {list(saved_tasks)}, this model {list(tasks)}: use a checkpoint "
            "trained on the same task set (data.tasks)."
        )
    classes = saved.get("num_classes")
    if classes is not None and num_classes is not None and int(classes) != int(num_classes):
        raise ConfigError(
            f"{what} {str(path)!r} has {classes} classes, this model {num_classes}: use a checkpoint trained on the "
            "same data."
        )
    load_partial_state(module, path, ["encoder.", "heads."], what=what, hint=hint, checkpoint=checkpoint)
    return dict(saved)


def check_identity(saved: Mapping[str, Any] | None, mine: Mapping[str, Any], where: str = "The checkpoint") -> None:
    """Refuse a checkpoint whose stored identity (method, tasks, classes) differs from the run's, naming each
    mismatch; a checkpoint without a stored identity passes."""
    if saved is None:
        return
    mismatched = {k: (saved.get(k), v) for k, v in mine.items() if saved.get(k) != v}
    if mismatched:
        details = "; ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in mismatched.items())
        raise ConfigError(
            f"{where} does not match this run ({details}). Resume or evaluate it with the config it was trained "
            "with (its config.yaml sits in the run folder next to checkpoints/)."
        )


def check_checkpoint_matches_config(config: Mapping[str, Any]) -> None:
    """Refuse a subcommand's ``ckpt_path`` whose checkpoint was trained for another task set or holds another method
    than the config's ``model.class_path`` (``config`` is the parsed subcommand config)."""
    ckpt_path = config.get("ckpt_path")
    requested = (config.get("model") or {}).get("class_path")
    if not ckpt_path or not requested or not Path(ckpt_path).is_file():
        return
    hparams = read_checkpoint(ckpt_path, "--ckpt_path").get("hyper_parameters", {})
    saved_tasks = hparams.get("tasks")
    data_tasks = ((config.get("data") or {}).get("init_args") or {}).get("tasks")
    if saved_tasks is not None and data_tasks is not None and list(saved_tasks) != list(data_tasks):
        raise ConfigError(
            f"The checkpoint {ckpt_path} was trained for tasks {list(saved_tasks)}, but data.tasks is "
            f"{list(data_tasks)}. Use the task set it was trained with, or start a new run without ckpt_path."
        )
    saved = hparams.get("_class_path")
    if saved and saved != requested:
        raise ConfigError(
            f"The checkpoint {ckpt_path} holds a {saved.rsplit('.', 1)[-1]!r} model, but the config asks for "
            f"{requested.rsplit('.', 1)[-1]!r} ({saved} vs {requested}). Use the config the checkpoint was trained "
            "with (its config.yaml sits in the run folder next to checkpoints/)."
        )
