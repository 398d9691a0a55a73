"""The run's own folder gets its resolved config and a reproducibility record.

``SaveConfigCallback`` (Lightning) writes ``config.yaml`` to ``trainer.log_dir``, which for a W&B logger is the
shared ``save_dir``: every sweep run would collide on one file. :class:`RunConfigSaver` writes into the run's own
folder instead (the CSV/TensorBoard version folder, or the W&B run's files folder, which W&B also uploads) and adds
``run_record.json``: seed, package versions, git commit, and the data's identity.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.cli import SaveConfigCallback
from pytorch_lightning.loggers import WandbLogger

PACKAGES = ("umadapt", "torch", "pytorch-lightning", "torchmetrics", "jsonargparse", "albumentations", "numpy", "wandb")


def run_folder(trainer: pl.Trainer) -> Path:
    """The folder that belongs to this run alone. Call it on every rank (``trainer.log_dir`` is a collective)."""
    log_dir = Path(trainer.log_dir or trainer.default_root_dir)
    if not trainer.is_global_zero:
        return log_dir
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            folder = getattr(logger.experiment, "dir", None)  # the W&B run's files folder (synced with the run)
            return Path(folder) if folder else Path(logger.save_dir or ".") / str(logger.version or "wandb-run")
    return log_dir


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=5).stdout
        return out.stdout.strip() + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run_record(trainer: pl.Trainer, stage: str) -> dict[str, Any]:
    """Everything needed to reproduce the run, besides the config itself."""
    datamodule = getattr(trainer, "datamodule", None)
    return {
        "stage": stage,
        "seed": os.environ.get("PL_GLOBAL_SEED"),
        "command": sys.argv,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": _versions(),
        "world_size": trainer.world_size,
        "precision": str(trainer.precision),
        "data": datamodule.describe() if hasattr(datamodule, "describe") else None,
    }


class RunConfigSaver(SaveConfigCallback):
    """Writes ``config.yaml`` and ``run_record.json`` into the run's own folder (rank 0 only; the CLI creates it
    with ``save_to_log_dir=False`` so Lightning's shared-``log_dir`` write is skipped)."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not self.already_saved:
            self._folder = run_folder(trainer)  # every rank: the folder lookup is a collective
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        folder = self._folder
        folder.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, folder / self.config_filename, skip_none=False, overwrite=True, multifile=False)
        (folder / "run_record.json").write_text(json.dumps(run_record(trainer, stage), indent=2, default=str))
