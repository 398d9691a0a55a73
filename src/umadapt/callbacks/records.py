"""The run's own folder gets its resolved config and a reproducibility record.

``SaveConfigCallback`` (Lightning) writes ``config.yaml`` to ``trainer.log_dir``, which for a W&B logger is the
shared ``save_dir``: every sweep run would collide on one file. :class:`RunConfigSaver` writes into the run's own
folder instead (:func:`~umadapt.callbacks.run_folder.run_folder`) and adds ``run_record.json``: seed, package
versions, git commit, and the data's identity.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.cli import SaveConfigCallback

from umadapt.callbacks.run_folder import RunFolderCallback

PACKAGES = ("umadapt", "torch", "pytorch-lightning", "torchmetrics", "jsonargparse", "albumentations", "numpy", "wandb")


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


class RunConfigSaver(RunFolderCallback, SaveConfigCallback):
    """Writes ``config.yaml`` and ``run_record.json`` into the run's own folder (rank 0 only; the CLI creates it
    with ``save_to_log_dir=False`` so Lightning's shared-``log_dir`` write is skipped)."""

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        folder = self.folder
        if folder is None:  # no logger and no default_root_dir: the run has no folder, write nothing
            return
        folder.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, folder / self.config_filename, skip_none=False, overwrite=True, multifile=False)
        (folder / "run_record.json").write_text(json.dumps(run_record(trainer, stage), indent=2, default=str))
