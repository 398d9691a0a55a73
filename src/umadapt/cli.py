"""The ``umadapt`` command: a LightningCLI with umadapt's defaults and links.

``umadapt fit|validate|test|predict --config experiments/<benchmark>/base.yaml --config <method>.yaml`` (several
``--config`` files compose, later ones win). Values the model must take from the data are linked, not repeated:
``data.tasks -> model.tasks``, ``data.num_classes -> model.num_classes``, ``data.image_size -> model.image_size``.

Always-on callbacks, configurable by key: ``checkpoint`` (``last.ckpt`` only by default: checkpoints are never
chosen by target labels), ``image_grid``, ``predictions`` (PNG writer for ``predict``), ``results`` (test JSON) and
``nan_guard`` (stop on a non-finite loss). Each run's resolved ``config.yaml`` and ``run_record.json`` go into its
own folder (:class:`~umadapt.callbacks.RunConfigSaver`), so sweep runs never collide.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

import umadapt
from umadapt.callbacks import ImageGridLogger, NonFiniteLossGuard, PredictionWriter, ResultsWriter, RunConfigSaver
from umadapt.errors import ConfigError

SPECIAL_CKPT_PATHS = ("last", "best", "hpc", "registry")


class UmadaptCLI(LightningCLI):
    """LightningCLI with umadapt's links, default logger and always-on output callbacks."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for name in ("tasks", "num_classes", "image_size"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 0})
        parser.add_lightning_class_args(ImageGridLogger, "image_grid")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.add_lightning_class_args(ResultsWriter, "results")
        parser.add_lightning_class_args(NonFiniteLossGuard, "nan_guard")
        parser.set_defaults(
            {
                "trainer.logger": {
                    "class_path": "pytorch_lightning.loggers.CSVLogger",
                    "init_args": {"save_dir": "logs", "name": "umadapt"},
                },
            }
        )

    def _parse_ckpt_path(self) -> None:
        """Lightning replaces the configured model by the checkpoint's stored hyperparameters; refuse a checkpoint
        of another method instead of silently running that method."""
        subcommand = self.config.get("subcommand")
        if subcommand:
            ckpt_path = self.config[subcommand].get("ckpt_path")
            requested = self.config[subcommand].get("model", {}).get("class_path")
            if ckpt_path and requested and Path(ckpt_path).is_file():
                checkpoint = torch.load(ckpt_path, weights_only=True, map_location="cpu", mmap=True)
                hparams = checkpoint.get("hyper_parameters", {})
                saved_tasks = hparams.get("tasks")
                data_tasks = self.config[subcommand].get("data", {}).get("init_args", {}).get("tasks")
                if saved_tasks is not None and data_tasks is not None and list(saved_tasks) != list(data_tasks):
                    raise ConfigError(
                        f"The checkpoint {ckpt_path} was trained for tasks {list(saved_tasks)}, but data.tasks is "
                        f"{list(data_tasks)}. Use the task set it was trained with, or start a new run without ckpt_path."
                    )
                saved = hparams.get("_class_path")
                if saved and saved != requested:
                    raise ConfigError(
                        f"The checkpoint {ckpt_path} holds a {saved.rsplit('.', 1)[-1]!r} model, but the config asks "
                        f"for {requested.rsplit('.', 1)[-1]!r} ({saved} vs {requested}). Use the config the checkpoint "
                        "was trained with (its config.yaml sits in the run folder next to checkpoints/)."
                    )
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        ckpt_path = config.get("ckpt_path")
        if ckpt_path and ckpt_path not in SPECIAL_CKPT_PATHS and not Path(ckpt_path).is_file():
            raise ConfigError(
                f"Checkpoint not found: {ckpt_path!r}. Pass the path of a .ckpt file, e.g. "
                "logs/umadapt/version_0/checkpoints/last.ckpt, or 'last'/'best'."
            )


def build_cli(args: list[str], run: bool = True) -> UmadaptCLI:
    """The configured CLI object (``run=False`` parses and instantiates without running a subcommand)."""
    return UmadaptCLI(
        model_class=None,
        datamodule_class=None,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_callback=RunConfigSaver,
        save_config_kwargs={"overwrite": True, "save_to_log_dir": False},
        auto_configure_optimizers=False,
        args=args,
        run=run,
    )


def main(args: list[str] | None = None) -> None:
    """Entry point of ``umadapt`` and ``python -m umadapt``."""
    if args is None:
        args = sys.argv[1:]
    if args and args[0] in ("--version", "-V"):
        print(f"umadapt {umadapt.__version__}")
        return
    try:
        build_cli(args)
    except ValueError as error:  # includes ConfigError: user-facing configuration mistakes
        if os.environ.get("UMADAPT_TRACEBACK"):
            raise
        while isinstance(error.__cause__, ValueError):  # jsonargparse wraps a constructor's error: show the cause
            error = error.__cause__
        print(f"umadapt: error: {error}\n(set UMADAPT_TRACEBACK=1 to see the traceback)", file=sys.stderr)
        raise SystemExit(2) from None
