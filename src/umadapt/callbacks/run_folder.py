"""The run's own folder: the one place where every callback writes what a run produced.

A CSV or TensorBoard logger has a version folder (``logs/umadapt/version_N``). Any other logger (W&B, MLflow, ...)
has only a ``save_dir`` shared by all its runs, which ``trainer.log_dir`` returns, so sweep runs would overwrite each
other's files there; such a run gets ``<save_dir>/<name>/<version>`` (for W&B: ``logs/wandb/umadapt/<run id>``), the
folder Lightning's ``ModelCheckpoint`` already puts its ``checkpoints/`` in. Every output of a run thus sits together,
in the same shape whatever the logger.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger


def local_run_folder(trainer: pl.Trainer) -> str:
    """The run folder as this process sees it (not a collective): valid on rank 0, or before processes launch.
    ``""`` when the run has none: no logger (``--trainer.logger=false``, or ``fast_dev_run``'s dummy logger) and no
    ``default_root_dir`` other than the current directory, which umadapt never fills implicitly."""
    logger = trainer.loggers[0] if trainer.loggers else None
    if isinstance(logger, (CSVLogger, TensorBoardLogger)):
        return logger.log_dir
    version = getattr(logger, "version", None)
    if logger is None or version is None or version == "":  # no logger, or fast_dev_run's DummyLogger
        root = Path(trainer.default_root_dir).resolve()
        return "" if root == Path.cwd().resolve() else str(root)
    save_dir = logger.save_dir or trainer.default_root_dir
    version = version if isinstance(version, str) else f"version_{version}"
    return os.path.join(save_dir, str(logger.name or ""), version)


def run_folder(trainer: pl.Trainer) -> Path | None:
    """The folder that belongs to this run alone (see the module docstring); ``None`` when the run has none (see
    :func:`local_run_folder`): callbacks then write nothing unless given an explicit path.

    A collective: rank 0 decides (only it holds the W&B run, and a CSV version number is only counted there) and
    broadcasts its answer. Call it on every rank, from a hook that all ranks run (such as ``setup``), never from
    rank-0-only code, or DDP hangs.
    """
    folder = local_run_folder(trainer) if trainer.is_global_zero else ""
    folder = trainer.strategy.broadcast(folder)
    return Path(folder) if folder else None


class RunFolderCallback(pl.Callback):
    """Base of callbacks that write into the run folder: resolves :func:`run_folder` in ``setup`` (which every rank
    runs, so the collective is safe) into ``self.folder``, for use in rank-0-only hooks."""

    folder: Path | None = None
    """The run folder, or ``None`` when the run has none (write nothing then, unless given a path)."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.folder = run_folder(trainer)
        super().setup(trainer, pl_module, stage)
