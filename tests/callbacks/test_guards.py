"""Non-finite losses stop the run naming the loss and the step (:class:`~umadapt.callbacks.NonFiniteLossGuard`)."""

from __future__ import annotations

import math

import pytest

from data_modules import PairedDataModule
from tests.helpers import tiny_model, tiny_trainer
from umadapt.callbacks import NonFiniteLossError, NonFiniteLossGuard


def test_non_finite_loss_stops_the_run_naming_loss_and_step(tmp_path, toy_domains):
    model = tiny_model()
    model.loss_weights["depth"] = math.nan
    trainer = tiny_trainer(tmp_path, callbacks=[NonFiniteLossGuard()], max_steps=3)
    with pytest.raises(NonFiniteLossError, match=r"epoch 0, batch 0 .*train/source/loss = nan"):
        trainer.fit(model, PairedDataModule(*toy_domains, batch_size=4))


def test_non_finite_loss_can_warn_instead(tmp_path, toy_domains):
    model = tiny_model()
    model.loss_weights["depth"] = math.inf
    trainer = tiny_trainer(tmp_path, callbacks=[NonFiniteLossGuard(mode="warn")], max_steps=1, limit_val_batches=0)
    with pytest.warns(RuntimeWarning, match="Non-finite training loss"):
        trainer.fit(model, PairedDataModule(*toy_domains, batch_size=4))
    with pytest.raises(ValueError, match="valid modes"):
        NonFiniteLossGuard(mode="sometimes")
