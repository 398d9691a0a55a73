"""The reference methods (:mod:`umadapt.methods.reference`): the target oracle trains on target labels and refuses
data without them."""

from __future__ import annotations

import pytest

from data_modules import PairedDataModule
from tests.helpers import tiny_model, tiny_trainer
from umadapt.methods import TargetOracle


def test_oracle_refuses_to_train_without_target_labels(tmp_path, toy_domains):
    dm = PairedDataModule(*toy_domains, batch_size=4)
    with pytest.raises(ValueError, match="target_labels: true"):
        tiny_trainer(tmp_path, fast_dev_run=True).fit(tiny_model(TargetOracle), dm)
    dm = PairedDataModule(*toy_domains, batch_size=4, target_labels=True)
    trainer = tiny_trainer(tmp_path, fast_dev_run=True)
    trainer.fit(tiny_model(TargetOracle), dm)
    assert "train/target/loss" in trainer.callback_metrics
