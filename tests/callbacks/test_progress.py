"""Progress lines for logs: what a fit prints, that the runner can read them back, and when the CLI uses them."""

from __future__ import annotations

import io
import time

import pytest
from pytorch_lightning.callbacks import TQDMProgressBar

from data_modules import PairedDataModule
from tests.helpers import tiny_model, tiny_trainer
from umadapt.callbacks.progress import LineProgress, parse_line
from umadapt.cli import use_line_progress


def test_fit_prints_parsable_lines_with_epoch_step_and_eta(tmp_path, toy_domains, capsys):
    dm = PairedDataModule(*toy_domains, batch_size=4, augmentation="none")
    trainer = tiny_trainer(
        tmp_path, [LineProgress(interval=0)], max_epochs=2, limit_val_batches=1, enable_progress_bar=True
    )
    trainer.fit(tiny_model(), dm)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("progress:")]
    parsed = [parse_line(line) for line in lines]
    assert all(parsed), "\n".join(lines)
    assert [(p["epoch"], p["batch"]) for p in parsed] == [(1, 1), (1, 2), (1, 2), (2, 3), (2, 4), (2, 4)]
    assert {p["epochs"] for p in parsed} == {2} and {p["batches"] for p in parsed} == {4}
    assert parsed[-1]["eta_min"] == 0.0 and "(epoch done)" in lines[-1] and "train/source/loss" in lines[-1]
    assert parse_line("Epoch 1: 100%|#####| 2/2") is None
    with pytest.raises(ValueError, match="interval must be >= 0"):
        LineProgress(interval=-1)


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_lines_replace_the_bar_only_when_the_output_is_not_a_terminal(tmp_path, monkeypatch):
    def bar_kinds(stream: _Stream) -> list[type]:
        trainer = use_line_progress(tiny_trainer(tmp_path, enable_progress_bar=True), stream)
        return [type(c) for c in trainer.callbacks if isinstance(c, (TQDMProgressBar, LineProgress))]

    assert bar_kinds(_Stream(tty=False)) == [LineProgress]
    assert bar_kinds(_Stream(tty=True)) == [TQDMProgressBar]
    monkeypatch.setenv("UMADAPT_PROGRESS", "bar")
    assert bar_kinds(_Stream(tty=False)) == [TQDMProgressBar]


def test_lines_count_batches_when_a_method_steps_several_optimizers_per_batch():
    """UM-Adapt takes two optimizer steps per batch: global_step runs ahead of the batches, and counting it against
    the planned batches gave "step 120/100 (120 %) ... ETA -0.1 min", a line the runner could not read."""
    from types import SimpleNamespace

    batches = SimpleNamespace(total=SimpleNamespace(processed=60))
    trainer = SimpleNamespace(
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=batches)),
        global_step=120,  # two optimizer steps per batch
        estimated_stepping_batches=100,
        num_training_batches=10,
        max_epochs=10,
        max_steps=-1,
        accumulate_grad_batches=1,
        lightning_module=SimpleNamespace(automatic_optimization=False),
        current_epoch=5,
        progress_bar_metrics={"train/energy/source": 0.5},
    )
    progress = LineProgress()
    progress._start = time.perf_counter() - 10.0  # 60 batches in 10 s
    parsed = parse_line("progress: " + progress.line(trainer))
    assert parsed is not None and (parsed["batch"], parsed["batches"]) == (60, 100)
    assert parsed["eta_min"] == pytest.approx(40 / 6.0 / 60, abs=0.05)
