"""The two reference methods every benchmark reports: source-only (lower bound) and train-on-target oracle
(upper bound)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from umadapt.methods.base import MultiTaskModel


class SourceOnly(MultiTaskModel):
    """Trains on labelled source data only; the target batch is never used."""

    def training_step(self, batch: Mapping[str, Mapping[str, torch.Tensor]], batch_idx: int) -> torch.Tensor:
        return self.supervised_loss(batch["source"], "source")


class TargetOracle(MultiTaskModel):
    """Trains on labelled *target* data (needs ``data.target_labels: true``): the upper bound of adaptation."""

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and datamodule is not None and not getattr(datamodule, "target_labels", False):
            raise ValueError(
                "TargetOracle trains on target labels, but the data module hides them: "
                "set data.init_args.target_labels: true."
            )

    def training_step(self, batch: Mapping[str, Mapping[str, torch.Tensor]], batch_idx: int) -> torch.Tensor:
        return self.supervised_loss(batch["target"], "target")
