"""Callbacks that write what a run produced: image grids, prediction PNGs and the test results JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.callbacks import BasePredictionWriter

from umadapt import visualize


def run_dir(trainer: pl.Trainer) -> Path:
    """The run's own folder (the logger's version folder), where its outputs go.

    ``trainer.log_dir`` is a collective (it broadcasts rank 0's folder): call this from a hook that every rank
    runs, such as ``setup``, never from rank-0-only code, or DDP hangs.
    """
    return Path(trainer.log_dir or trainer.default_root_dir)


class _RunDirCallback(pl.Callback):
    """Resolves the run folder once, in ``setup`` (which every rank runs), for use in rank-0-only hooks."""

    folder: Path | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.folder = run_dir(trainer)


def _save_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


class ImageGridLogger(_RunDirCallback):
    """After each validation epoch, writes a grid per evaluation domain: one row per image, columns input, then
    ground truth and prediction for each task. Saved as ``<run>/images/val_<domain>_epoch<NNN>.png`` and sent to
    W&B when a ``WandbLogger`` is active.

    Args:
        num_images: rows per grid (taken from the first validation batch of each domain).
        every_n_epochs: write every n-th epoch (the last epoch is always written).
    """

    def __init__(self, num_images: int = 4, every_n_epochs: int = 1) -> None:
        self.num_images = num_images
        self.every_n_epochs = every_n_epochs
        self._rows: dict[int, list[list[np.ndarray]]] = {}

    def _due(self, trainer: pl.Trainer) -> bool:
        last = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        return not trainer.sanity_checking and ((trainer.current_epoch + 1) % self.every_n_epochs == 0 or last)

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if batch_idx != 0 or not self._due(trainer) or not trainer.is_global_zero:
            return
        with torch.no_grad():
            predictions = pl_module(batch["image"])
        rows = []
        for i in range(min(self.num_images, batch["image"].shape[0])):
            row = [visualize.image_to_rgb(batch["image"][i])]
            for task in getattr(pl_module, "tasks", []):
                for source in (batch, predictions):
                    tile = visualize.render(task, source[task][i]) if task in source else None
                    if tile is not None:
                        row.append(tile)
            rows.append(row)
        self._rows[dataloader_idx] = rows

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._rows:
            return
        domains = getattr(pl_module, "eval_domains", ())
        for idx, rows in sorted(self._rows.items()):
            domain = domains[idx] if idx < len(domains) else str(idx)
            image = visualize.grid(rows)
            _save_png(self.folder / "images" / f"val_{domain}_epoch{trainer.current_epoch:03d}.png", image)
            for logger in trainer.loggers:
                if isinstance(logger, pl.loggers.WandbLogger):
                    logger.log_image(key=f"val/{domain}/predictions", images=[image], step=trainer.global_step)
        self._rows.clear()


class PredictionWriter(_RunDirCallback, BasePredictionWriter):
    """Writes colourised predictions of ``predict`` as PNGs: ``<output_dir>/<NNNNN>_<task>.png`` plus the input.

    Args:
        output_dir: folder for the PNGs; default ``<run>/predictions``.
    """

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.count = 0

    def write_on_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any, batch_indices: Sequence[int] | None,
        batch: Any, batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        folder = Path(self.output_dir) if self.output_dir else self.folder / "predictions"
        size = prediction["image"].shape[0]
        indices = list(batch_indices) if batch_indices else list(range(self.count, self.count + size))
        for i, index in enumerate(indices):
            for key, value in prediction.items():
                tile = visualize.render(key, value[i])
                if tile is not None:
                    _save_png(folder / f"{index:05d}_{key}.png", tile)
        self.count += size


class ResultsWriter(_RunDirCallback):
    """After ``test``, writes every ``test/...`` metric and the run's identity to ``<run>/results.json``.

    Args:
        path: where to write; default ``<run>/results.json``.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        datamodule = getattr(trainer, "datamodule", None)
        record = {
            "method": type(pl_module).__name__,
            "seed": os.environ.get("PL_GLOBAL_SEED"),
            "ckpt_path": getattr(trainer, "ckpt_path", None),
            "global_step": trainer.global_step or getattr(pl_module, "restored_global_step", 0),
            "data": datamodule.describe() if hasattr(datamodule, "describe") else None,
            "metrics": dict(sorted(metrics.items())),
        }
        path = Path(self.path) if self.path else self.folder / "results.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2))
        print(f"umadapt: test results written to {path}")
