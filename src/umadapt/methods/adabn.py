"""AdaBN (Li, Wang, Shi, Liu, Hou, "Revisiting Batch Normalization For Practical Domain Adaptation", ICLR workshop
2017; Pattern Recognition 2018): a source-only model whose BatchNorm statistics are re-estimated on the target
domain. Algorithm 1 of the paper: for every BatchNorm neuron, the mean and variance over the target images replace
the source ones; the weights (including BatchNorm's scale and shift) stay as trained on source.

Training is :class:`~umadapt.methods.SourceOnly`'s. Before every evaluation (validation, test, predict) the target
statistics are re-estimated from the **target training images** (images only, without augmentation; no label is
read), and each evaluation split is scored with its own domain's statistics: the source split with the statistics
training left, the target split with the target ones. The model holds the source statistics again when the
evaluation ends, so training and checkpoints are those of source-only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

from umadapt.errors import ConfigError
from umadapt.methods.reference import SourceOnly
from umadapt.nn.batchnorm import (
    BatchNormStatistics,
    batchnorm_layers,
    batchnorm_statistics,
    load_batchnorm_statistics,
    reestimate_batchnorm,
)

__all__ = ["AdaBN"]


class AdaBN(SourceOnly):
    """Source-only training, target BatchNorm statistics for target evaluation (see the module docstring).

    Args (besides the base model's, passed on through ``**kwargs``):
        statistics_batches: estimate the target statistics from at most this many batches (of
            ``data.eval_batch_size``) of target training images; default: all of them.
    """

    def __init__(self, statistics_batches: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if statistics_batches is not None and statistics_batches < 1:
            raise ConfigError(f"model.init_args.statistics_batches must be >= 1 or null, got {statistics_batches}.")
        if not batchnorm_layers(self):
            raise ConfigError(
                f"AdaBN re-estimates BatchNorm statistics, but this model ({type(self.encoder).__name__} and its "
                "heads) has no BatchNorm layer: use an encoder with BatchNorm (e.g. DigitEncoder, batch_norm: true)."
            )
        self.statistics_batches = statistics_batches
        self._statistics: dict[str, BatchNormStatistics] = {}
        self._loaded: str | None = None

    # -- the target statistics ------------------------------------------------------------------------------------
    def _target_images(self) -> Iterator[torch.Tensor]:
        return self.target_training_images(self.statistics_batches, "AdaBN estimates target statistics")

    def _begin_evaluation(self) -> None:
        source = batchnorm_statistics(self)
        if reestimate_batchnorm(self, self._target_images(), self) == 0:
            raise ConfigError("AdaBN found no target training image to estimate the target statistics from.")
        self._statistics = {"source": source, "target": batchnorm_statistics(self)}
        self._loaded = "target"

    def _use(self, domain: str) -> None:
        if self._statistics and domain != self._loaded:
            load_batchnorm_statistics(self, self._statistics[domain])
            self._loaded = domain

    def _end_evaluation(self) -> None:
        self._use("source")
        self._statistics, self._loaded = {}, None

    # -- hooks: each evaluation split with its own domain's statistics -----------------------------------------------
    def on_validation_start(self) -> None:
        self._begin_evaluation()

    def on_test_start(self) -> None:
        self._begin_evaluation()

    def on_predict_start(self) -> None:
        self._begin_evaluation()

    def on_validation_batch_start(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._use(self.eval_domains[dataloader_idx])

    def on_test_batch_start(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._use(self.eval_domains[dataloader_idx])

    def on_predict_batch_start(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._use(getattr(self.trainer.datamodule, "predict_domain", "target"))

    # before the callbacks' on_*_end (checkpoints): the model holds the source statistics again
    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._end_evaluation()

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._end_evaluation()

    def on_predict_epoch_end(self) -> None:
        self._end_evaluation()
