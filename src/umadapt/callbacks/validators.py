"""Log label-free validators every validation epoch as ``val/validator/<name>`` (higher is better)."""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl

from umadapt.errors import ConfigError
from umadapt.validators import Validator, evidence_for, validation_loaders

__all__ = ["VALIDATOR_METRIC", "ValidatorLogger"]

VALIDATOR_METRIC = "val/validator/{name}"
"""The logged name of a validator's score: a ``ModelCheckpoint`` monitor (``mode: max``) or a W&B sweep metric
(``goal: maximize``)."""


class ValidatorLogger(pl.Callback):
    """Scores the model with label-free ``validators`` at the end of every validation epoch (not the sanity check).

    The scores read the labelled source validation split and the target validation **images** only (a loader of
    ``datamodule.images_dataset("target", "val")``, built here, never the labelled target loader of ``validate``),
    so they may choose checkpoints and hyperparameters. In YAML::

        trainer:
          callbacks:
            - class_path: umadapt.callbacks.ValidatorLogger
              init_args:
                validators:
                  - class_path: umadapt.validators.InfoMax
                  - class_path: umadapt.validators.TransformationAgreement

    Args:
        validators: the validators (post-hoc ones, such as reverse validation, are refused: they train a model).
        batch_size: batch size of the validators' loaders (default: the data module's ``eval_batch_size``).
    """

    def __init__(self, validators: list[Validator], batch_size: int | None = None) -> None:
        if not validators:
            raise ConfigError("ValidatorLogger needs at least one validator (init_args.validators).")
        names = [v.name for v in validators]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ConfigError(f"ValidatorLogger: validators {duplicated} appear twice; their logged names would clash.")
        post_hoc = [v.name for v in validators if v.post_hoc]
        if post_hoc:
            raise ConfigError(
                f"ValidatorLogger: {post_hoc} train a model per score; run them with python -m umadapt.select."
            )
        self.validators = list(validators)
        self.batch_size = batch_size
        self._loaders: tuple[Any, Any] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for validator in self.validators:
            validator.check(pl_module)
        self._loaders = validation_loaders(trainer.datamodule, self.batch_size)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self._loaders is None:
            return
        max_batches = 1 if trainer.fast_dev_run else None
        evidence = evidence_for(self.validators, pl_module, *self._loaders, max_batches=max_batches)
        finite = evidence.is_finite()  # a diverged model logs NaN (a monitor never picks it)
        for validator in self.validators:  # every rank scores the whole validation data: no reduction needed
            score = validator.score(evidence) if finite else math.nan
            pl_module.log(VALIDATOR_METRIC.format(name=validator.name), score)
