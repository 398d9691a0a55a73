"""Callbacks that write what a run produced: image grids, predictions (pictures and raw values) and the test results
JSON."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.callbacks import BasePredictionWriter

from umadapt import visualize
from umadapt.callbacks.run_folder import RunFolderCallback
from umadapt.errors import ConfigError


def _save_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


def _class_names(trainer: pl.Trainer) -> Sequence[str]:
    return tuple(getattr(getattr(trainer, "datamodule", None), "class_names", None) or ())


def _cpu(values: Any, i: int, keys: Sequence[str]) -> dict[str, torch.Tensor]:
    """Sample ``i`` of the ``keys`` a batch (or prediction) holds, detached on the CPU."""
    return {k: values[k][i].detach().cpu() for k in keys if k in values}


def sample_names(dataset: Any) -> list[str] | None:
    """The file name (without suffix) of every sample of ``dataset``, by index, when its samples come from named
    files (the real-data ``FileDataset``, whose ``items`` are names or paths, also through wrappers with a ``base``
    or ``dataset`` and optional ``indices``); ``None`` when they do not or when two samples would share a name.

    With ``skip_bad_files`` an unreadable sample is replaced by the next one, which is then written under the
    unreadable file's name as well.
    """
    order: list[int] | None = None
    while dataset is not None:
        items = getattr(dataset, "items", None)
        if isinstance(items, (list, tuple)):
            if not items or not all(isinstance(item, (str, os.PathLike)) for item in items):
                return None
            names = [Path(items[i]).stem for i in (order if order is not None else range(len(items)))]
            return names if len(set(names)) == len(names) else None
        if getattr(dataset, "indices", None) is not None:
            indices = list(dataset.indices)
            order = [indices[i] for i in order] if order is not None else indices
        dataset = getattr(dataset, "base", None) or getattr(dataset, "dataset", None)
    return None


class ImageGridLogger(RunFolderCallback):
    """After each validation epoch, writes a grid per evaluation domain: one row per image, columns input, then
    ground truth and prediction for each task, under column headers, with one depth colour scale for the whole grid
    (a colour bar in metres), a normals colour key and a legend naming the classes drawn (names from
    ``trainer.datamodule.class_names``). Small images are enlarged (nearest) to at least ``min_tile`` pixels. A
    module with ``image_columns(images, domain)`` (an image translator) gets those images side by side instead (input,
    translated, reconstructed). Saved as ``<run>/images/val_<domain>_epoch<NNN>.png`` and sent to W&B when a
    ``WandbLogger`` is active.

    Args:
        num_images: rows per grid (taken from the first validation batch of each domain); 0 writes no grids.
        every_n_epochs: write every n-th epoch (the last epoch is always written).
        min_tile: shorter side of a tile in pixels, at least (images are enlarged by an integer factor).
    """

    def __init__(self, num_images: int = 4, every_n_epochs: int = 1, min_tile: int = visualize.MIN_TILE) -> None:
        if num_images < 0 or every_n_epochs < 1:
            raise ConfigError(
                f"image_grid.num_images must be >= 0 (0: no grids) and image_grid.every_n_epochs >= 1, got "
                f"{num_images} and {every_n_epochs}."
            )
        self.num_images = num_images
        self.every_n_epochs = every_n_epochs
        self.min_tile = min_tile
        self._samples: dict[int, tuple[list[torch.Tensor], list[dict], list[dict]]] = {}
        self._columns: dict[int, dict[str, list[torch.Tensor]]] = {}

    def _due(self, trainer: pl.Trainer) -> bool:
        last = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        return not trainer.sanity_checking and ((trainer.current_epoch + 1) % self.every_n_epochs == 0 or last)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx != 0 or not self.num_images or not self._due(trainer) or not trainer.is_global_zero:
            return
        count = min(self.num_images, batch["image"].shape[0])
        image_columns = getattr(pl_module, "image_columns", None)
        if image_columns is not None:  # an image translator: its images side by side instead of task predictions
            domains = getattr(pl_module, "eval_domains", ())
            domain = domains[dataloader_idx] if dataloader_idx < len(domains) else str(dataloader_idx)
            with torch.no_grad():
                columns = image_columns(batch["image"][:count], domain)
            self._columns[dataloader_idx] = {k: [v[i].detach().cpu() for i in range(count)] for k, v in columns.items()}
            return
        with torch.no_grad():
            predictions = pl_module(batch["image"])
        tasks = list(getattr(pl_module, "tasks", []))
        self._samples[dataloader_idx] = (
            [batch["image"][i].detach().cpu() for i in range(count)],
            [_cpu(batch, i, tasks) for i in range(count)],
            [_cpu(predictions, i, tasks) for i in range(count)],
        )

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._samples and not self._columns:
            return
        domains = getattr(pl_module, "eval_domains", ())
        tasks = list(getattr(pl_module, "tasks", []))
        grids = {}
        for idx, (images, truths, predictions) in sorted(self._samples.items()):
            domain = domains[idx] if idx < len(domains) else str(idx)
            title = f"val · {domain} · epoch {trainer.current_epoch}"
            grids[domain] = visualize.task_grid(
                images, tasks, truths, predictions, _class_names(trainer), title=title, min_side=self.min_tile
            )
        for idx, columns in sorted(self._columns.items()):
            domain = domains[idx] if idx < len(domains) else str(idx)
            title = f"val · {domain} · epoch {trainer.current_epoch}"
            grids[domain] = visualize.image_grid(columns, title=title, min_side=self.min_tile)
        for domain, image in grids.items():
            if self.folder is not None:
                _save_png(self.folder / "images" / f"val_{domain}_epoch{trainer.current_epoch:03d}.png", image)
            for logger in trainer.loggers:
                if isinstance(logger, pl.loggers.WandbLogger):
                    logger.log_image(key=f"val/{domain}/predictions", images=[image], step=trainer.global_step)
        self._samples.clear()
        self._columns.clear()


class PredictionWriter(RunFolderCallback, BasePredictionWriter):
    """Writes what ``predict`` produced into ``output_dir``, per input sample ``<name>``: the input's file name
    without its suffix when the data are read from files with unique names (folder format and the other real-data
    readers, see :func:`sample_names`), otherwise its index ``NNNNN``.

    - ``request.json``, for a model controlled by a request (:class:`~umadapt.methods.ControllableMultiTask`): the
      preference and budget it ran, its tree and the tree's MACs;
    - ``<name>_image.png`` and ``<name>_<task>.png``: the input and colourised predictions, for looking at;
    - with ``raw`` (default), the values, in the folder format's layout (``docs/real_datasets.md``), so they can be
      reused or read back as labels: ``depth/<name>.png`` (16-bit PNG, millimetres, 0 = invalid, clipped at
      65.535 m), ``segmentation/<name>.png`` (class IDs, the argmax; 8-bit, 16-bit from 257 classes),
      ``normals/<name>.npy`` (float32 ``[H, W, 3]`` unit vectors, camera frame: x right, y down, z forward) and, for
      classification, ``labels.csv`` (``name,class_id,class_name,probability``, one line per image).

    Outputs are at the model's input size (``data...image_size``), not the original file's.

    Args:
        output_dir: the folder; default ``<run>/predictions``.
        raw: also write the raw values (above), not only the colourised PNGs.
    """

    def __init__(self, output_dir: str | None = None, raw: bool = True) -> None:
        super().__init__(write_interval="batch")
        if output_dir and Path(output_dir).exists() and not Path(output_dir).is_dir():
            raise ConfigError(f"--predictions.output_dir={output_dir} is a file; give a folder (new or existing).")
        self.output_dir = output_dir
        self.raw = raw
        self.count = 0
        self._names: dict[int, list[str] | None] = {}
        self._labels: Path | None = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.count, self._names, self._labels = 0, {}, None
        request_info = getattr(pl_module, "request_info", None)
        folder = self._output_folder()
        if request_info is not None and folder is not None and trainer.is_global_zero:
            folder.mkdir(parents=True, exist_ok=True)  # a controllable model: the request it ran and its tree
            (folder / "request.json").write_text(json.dumps(request_info(), indent=2) + "\n")

    def _output_folder(self) -> Path | None:
        """Where predictions go: ``output_dir``, else ``<run>/predictions``; ``None`` for a run without a folder."""
        if self.output_dir:
            return Path(self.output_dir)
        return self.folder / "predictions" if self.folder is not None else None

    def _sample_names(self, trainer: pl.Trainer, dataloader_idx: int) -> list[str] | None:
        if dataloader_idx not in self._names:
            loaders = trainer.predict_dataloaders
            loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
            loader = loaders[dataloader_idx] if dataloader_idx < len(loaders) else None
            self._names[dataloader_idx] = sample_names(getattr(loader, "dataset", None))
        return self._names[dataloader_idx]

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        folder = self._output_folder()
        if folder is None:
            if batch_idx == 0 and dataloader_idx == 0:
                print("umadapt: the run has no folder (no logger): pass --predictions.output_dir to write predictions.")
            return
        size = prediction["image"].shape[0]
        indices = list(batch_indices) if batch_indices else list(range(self.count, self.count + size))
        names = self._sample_names(trainer, dataloader_idx) if batch_indices else None
        for i, index in enumerate(indices):
            name = names[index] if names is not None and index < len(names) else f"{index:05d}"
            for key, value in prediction.items():
                tile = visualize.render(key, value[i])
                if tile is not None:
                    _save_png(folder / f"{name}_{key}.png", tile)
            if self.raw:
                self._write_raw(trainer, folder, name, {k: v[i] for k, v in prediction.items()})
        self.count += size

    def _write_raw(self, trainer: pl.Trainer, folder: Path, name: str, prediction: dict[str, torch.Tensor]) -> None:
        if "depth" in prediction:
            _save_png(folder / "depth" / f"{name}.png", visualize.depth_to_millimetres(prediction["depth"]))
        if "segmentation" in prediction:
            _save_png(folder / "segmentation" / f"{name}.png", visualize.class_id_image(prediction["segmentation"]))
        if "normals" in prediction:
            (folder / "normals").mkdir(parents=True, exist_ok=True)
            normals = prediction["normals"].detach().float().cpu().numpy().transpose(1, 2, 0)
            np.save(folder / "normals" / f"{name}.npy", np.ascontiguousarray(normals, dtype=np.float32))
        if "label" in prediction:
            probabilities = torch.softmax(prediction["label"].detach().float().cpu(), dim=0)
            best = int(probabilities.argmax())
            if self._labels is None:  # one file per process under DDP
                suffix = "" if trainer.world_size == 1 else f".rank{trainer.global_rank}"
                self._labels = folder / f"labels{suffix}.csv"
                folder.mkdir(parents=True, exist_ok=True)
                self._labels.write_text("name,class_id,class_name,probability\n")
            row = [name, best, visualize.class_name(best, _class_names(trainer)), f"{float(probabilities[best]):.6f}"]
            with self._labels.open("a", newline="") as file:
                csv.writer(file).writerow(row)


class ResultsWriter(RunFolderCallback):
    """After ``test``, prints umadapt's results table (domain × task × metric) and writes every ``test/...`` metric,
    how many samples each task scored, and the run's identity to ``<run>/results.json`` (strict JSON: a metric
    that could not be computed is left out, never written as NaN).

    Args:
        path: where to write; default ``<run>/results.json`` (nothing is written when the run has no folder).
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "test" and self.path and Path(self.path).is_dir():
            raise ConfigError(
                f"--results.path {self.path!r} is a directory: pass a file path, "
                f"e.g. {Path(self.path) / 'results.json'}."
            )

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
        samples = {k: v for k, v in getattr(pl_module, "label_counts", {}).items() if k.startswith("test/")}
        datamodule = getattr(trainer, "datamodule", None)
        record = {
            "method": type(pl_module).__name__,
            "seed": os.environ.get("PL_GLOBAL_SEED"),
            "ckpt_path": getattr(trainer, "ckpt_path", None),
            "global_step": trainer.global_step or getattr(pl_module, "restored_global_step", 0),
            "data": datamodule.describe() if hasattr(datamodule, "describe") else None,
            "metrics": dict(sorted(metrics.items())),
            "samples": samples,
        }
        print(results_table(metrics, samples))
        path = Path(self.path) if self.path else (self.folder / "results.json" if self.folder else None)
        if path is None:
            print("umadapt: the run has no folder (no logger): pass --results.path to save these results.")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2, allow_nan=False, default=str))
        print(f"umadapt: test results written to {path}")


def results_table(metrics: dict[str, float], samples: dict[str, dict[str, int]]) -> str:
    """``stage/domain/task/metric`` values as one line per (domain, task), with the number of labelled samples."""
    rows: dict[tuple[str, str], list[str]] = {}
    for key, value in sorted(metrics.items()):
        parts = key.split("/")
        if len(parts) != 4:
            continue
        _, domain, task, name = parts
        rows.setdefault((domain, task), []).append(f"{name} {value:.4g}")
    for key, counts in sorted(samples.items()):
        _, domain, task = key.split("/")
        rows.setdefault((domain, task), [])
        if not counts["labelled"]:
            rows[(domain, task)].append("not scored: no labels")
    lines = ["umadapt test results (domain, task, samples scored: metrics)"]
    for (domain, task), cells in rows.items():
        counts = samples.get(f"test/{domain}/{task}", {})
        scored = f"{counts.get('labelled', '?')}" + (
            f" (+{counts['unlabelled']} unlabelled)" if counts.get("unlabelled") else ""
        )
        lines.append(f"  {domain:<8} {task:<13} {scored:>6}: " + "  ".join(cells))
    return "\n".join(lines)
