"""The ``umadapt`` command: a LightningCLI with umadapt's defaults and links.

``umadapt fit|validate|test|predict --config experiments/<benchmark>/base.yaml --config <method>.yaml`` (several
``--config`` files compose, later ones win). Values the model must take from the data are linked, not repeated:
``data.tasks -> model.tasks``, ``data.num_classes -> model.num_classes``, ``data.image_size -> model.image_size``.

Always-on callbacks, configurable by key: ``checkpoint`` (``last.ckpt`` only by default: checkpoints are never
chosen by target labels), ``image_grid``, ``predictions`` (PNG writer for ``predict``), ``results`` (test JSON) and
``nan_guard`` (stop on a non-finite loss). Each run's resolved ``config.yaml`` and ``run_record.json`` go into its
own folder (:class:`~umadapt.callbacks.RunConfigSaver`), so sweep runs never collide.

``umadapt check-data --config ...`` reads every sample of the config's data once and lists every bad file
(:mod:`umadapt.check_data`).
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentError
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities import rank_zero_warn

import data_modules  # noqa: F401  (registers the data modules, so `--data.help PairedDataModule` and help list them)
import umadapt
import umadapt.methods  # noqa: F401  (registers the methods, so `--model.help DANN` and help list them)
from umadapt.callbacks import ImageGridLogger, NonFiniteLossGuard, PredictionWriter, ResultsWriter, RunConfigSaver
from umadapt.callbacks.checkpoint import RunCheckpoint, keep_csv_history
from umadapt.callbacks.run_folder import local_run_folder
from umadapt.checkpoints import check_checkpoint_matches_config, read_checkpoint
from umadapt.cli_args import (
    EVALUATION_SUBCOMMANDS,
    check_config_order,
    expand_run,
    integer_batch_limits,
    keep_inference_controls,
    overridden_by_checkpoint,
    quiet_lightning_noise,
    summarize_parse_error,
)
from umadapt.errors import ConfigError

SPECIAL_CKPT_PATHS = ("last", "best", "hpc", "registry")


class UmadaptCLI(LightningCLI):
    """LightningCLI with umadapt's links, default logger and always-on output callbacks."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for name in ("tasks", "num_classes", "image_size"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 0})
        parser.add_lightning_class_args(ImageGridLogger, "image_grid")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.add_lightning_class_args(ResultsWriter, "results")
        parser.add_lightning_class_args(NonFiniteLossGuard, "nan_guard")
        parser.add_argument(
            "--untrained",
            type=bool,
            default=False,
            help="validate/test/predict without --ckpt_path on purpose, scoring the initial (untrained) weights",
        )
        parser.set_defaults(
            {
                "trainer.logger": {
                    "class_path": "pytorch_lightning.loggers.CSVLogger",
                    "init_args": {"save_dir": "logs", "name": "umadapt"},
                },
            }
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse; refuse a ``--ckpt_path`` whose checkpoint holds another method or task set (Lightning replaces the
        configured model by the checkpoint's stored hyperparameters right after parsing, which would silently run
        that other method); ``test`` prints umadapt's results table instead of Lightning's unless ``--verbose`` is
        given on the command line (a ``verbose:`` key in a config file does not count)."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        check_checkpoint_matches_config(config)
        self._model_before_checkpoint = copy.deepcopy(config.get("model"))
        self._integer_limits = integer_batch_limits(list(args or []))  # applied in instantiate_trainer
        if subcommand == "test" and not any(str(a).startswith("--verbose") for a in (args or [])):
            config["verbose"] = False

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        ckpt_path = config.get("ckpt_path")
        if ckpt_path and ckpt_path not in SPECIAL_CKPT_PATHS and not Path(ckpt_path).is_file():
            raise ConfigError(
                f"Checkpoint not found: {ckpt_path!r}. Pass the path of a .ckpt file, e.g. "
                "logs/umadapt/version_0/checkpoints/last.ckpt, or 'last'/'best'."
            )
        trainer = config.get("trainer") or {}
        if (
            self.subcommand in EVALUATION_SUBCOMMANDS
            and not ckpt_path
            and not config.get("untrained")
            and not trainer.get("fast_dev_run")
        ):
            raise ConfigError(
                f"umadapt {self.subcommand} without --ckpt_path would score an untrained model: pass --ckpt_path "
                "<run>/checkpoints/last.ckpt or --run <run folder>, or --untrained true to evaluate the initial "
                "weights."
            )
        if ckpt_path and self.subcommand in EVALUATION_SUBCOMMANDS:
            keep_inference_controls(getattr(self, "_model_before_checkpoint", None), config.get("model"))
            replaced = overridden_by_checkpoint(getattr(self, "_model_before_checkpoint", None), config.get("model"))
            if replaced:
                rank_zero_warn(
                    "The checkpoint's hyperparameters replace the configured "
                    + "; ".join(replaced)
                    + ": the model is built as it was trained."
                )
        max_epochs, max_steps = trainer.get("max_epochs"), trainer.get("max_steps")
        if self.subcommand == "fit" and (
            (max_epochs is not None and (max_epochs == 0 or max_epochs < -1)) or max_steps == 0
        ):
            raise ConfigError(
                f"trainer.max_epochs={max_epochs}, trainer.max_steps={max_steps} train nothing: set max_epochs >= 1 "
                "(or -1 with max_steps >= 1)."
            )

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """The trainer, with batch limits written as integers kept as integers: the parser turns ``1`` into ``1.0``,
        which Lightning reads as "all batches"."""
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        for key, value in getattr(self, "_integer_limits", {}).items():
            if config["trainer"].get(key) == value:
                config["trainer"][key] = value
        configured = "ProgressBar" in str(config["trainer"].get("callbacks"))  # the user chose a bar: keep it
        trainer = super().instantiate_trainer(**kwargs)
        return trainer if configured else use_line_progress(trainer)

    def before_fit(self) -> None:
        """Resuming (``--ckpt_path``): refuse ``last`` when the run folder holds no ``last.ckpt`` (Lightning would
        silently train from scratch), and keep the run's ``metrics.csv`` history up to the checkpoint."""
        ckpt_path = self.config_init[self.subcommand].get("ckpt_path")
        if ckpt_path == "last":
            callback = self.trainer.checkpoint_callback
            dirpath = getattr(callback, "dirpath", None)
            folder = Path(dirpath) if dirpath else Path(local_run_folder(self.trainer)) / "checkpoints"
            if not (folder / "last.ckpt").is_file():
                raise ConfigError(
                    f"--ckpt_path last: there is no checkpoint to resume in {folder}/ (no last.ckpt). Resume a run "
                    "with its logger version (--trainer.logger.init_args.version=<the killed run's>), pass a .ckpt "
                    "path, or start a new run without --ckpt_path."
                )
            ckpt_path = str(folder / "last.ckpt")
        if ckpt_path and ckpt_path not in SPECIAL_CKPT_PATHS and self.trainer.is_global_zero:
            step = int(read_checkpoint(ckpt_path, "--ckpt_path").get("global_step", 0))
            keep_csv_history(self.trainer.logger, step)


def use_line_progress(trainer: Any, stream: Any = None) -> Any:
    """Swap Lightning's default progress bar for :class:`~umadapt.callbacks.progress.LineProgress` lines when the
    output is not a terminal (a log file, a pipe, a batch job); ``UMADAPT_PROGRESS=bar`` keeps the bar."""
    from pytorch_lightning.callbacks import TQDMProgressBar

    from umadapt.callbacks.progress import LineProgress

    stream = sys.stdout if stream is None else stream
    if os.environ.get("UMADAPT_PROGRESS") == "bar" or stream.isatty():
        return trainer
    for index, callback in enumerate(trainer.callbacks):
        if type(callback) is TQDMProgressBar:
            trainer.callbacks[index] = LineProgress()
    return trainer


def build_cli(args: list[str] | None, run: bool = True) -> UmadaptCLI:
    """The configured CLI object (``run=False`` parses and instantiates without running a subcommand)."""
    strict = {"allow_abbrev": False, "exit_on_error": False}  # no prefix matching; errors come back to main()
    return UmadaptCLI(
        model_class=None,
        datamodule_class=None,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_callback=RunConfigSaver,
        save_config_kwargs={"overwrite": True, "save_to_log_dir": False},
        auto_configure_optimizers=False,
        parser_kwargs={
            "prog": "umadapt",
            "description": "umadapt: unsupervised multi-task domain adaptation on PyTorch Lightning "
            "(umadapt <subcommand> --help lists the options; `umadapt check-data --config ...` checks a dataset).",
            **strict,
            **{subcommand: dict(strict) for subcommand in ("fit", *EVALUATION_SUBCOMMANDS)},
        },
        args=args,
        run=run,
    )


def _error(message: str) -> None:
    print(f"umadapt: error: {message}\n(set UMADAPT_TRACEBACK=1 to see the traceback)", file=sys.stderr)
    raise SystemExit(2) from None


def leave_process_group() -> None:
    """End this process's part of a distributed run: wait for every rank, then destroy the process group.

    Lightning destroys NCCL process groups at exit but leaves gloo's (DDP on CPUs) to the interpreter's teardown,
    where a rank whose peers have already closed their connections can abort with "terminate called without an
    active exception" (exit 134) after a run that succeeded. Called once the subcommand has finished on every rank.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def main(args: list[str] | None = None) -> None:
    """Entry point of ``umadapt`` and ``python -m umadapt``."""
    if args is None:
        args = sys.argv[1:]
    if args and args[0] in ("--version", "-V"):
        print(f"umadapt {umadapt.__version__}")
        return
    if args and args[0] == "check-data":
        from umadapt.check_data import main as check_data  # here: only `check-data` needs it

        raise SystemExit(check_data(args[1:]))
    quiet_lightning_noise()
    try:
        args = expand_run(list(args))
        check_config_order(args)
        build_cli(args)
        leave_process_group()
    except ArgumentError as error:  # a wrong key or type: one line, not the usage block
        if os.environ.get("UMADAPT_TRACEBACK"):
            raise
        _error(summarize_parse_error(str(error)))
    except ValueError as error:  # includes ConfigError: user-facing configuration mistakes
        if os.environ.get("UMADAPT_TRACEBACK"):
            raise
        while isinstance(error.__cause__, ValueError):  # jsonargparse wraps a constructor's error: show the cause
            error = error.__cause__
        _error(str(error))
