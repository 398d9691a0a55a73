"""Shared fixtures: W&B kept off, one torch thread, a tiny in-memory domain pair, a finished CLI run, a spy on drawn
text. The plain functions behind them (CLI arguments, model and trainer builders) are in :mod:`tests.helpers`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from PIL import ImageDraw

pytest.register_assert_rewrite("tests.helpers")  # their assertion helpers report values like test code does

from tests.helpers import (  # noqa: E402
    BASE,
    DISTRIBUTED_ENV,
    EXPERIMENTS,
    SMALL_DATA,
    SOURCE_ONLY,
    TASKS,
    ToyDomain,
    config_args,
    free_port,
    run_cli,
    small_data,
)

# The suite's models are tiny: one thread per process is faster than two on a 2-core machine, and CLI subprocesses
# (including two-process DDP) inherit it through the environment instead of oversubscribing the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _wandb_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture(scope="session", autouse=True)
def _disk_cache_in_tmp(tmp_path_factory):
    """SynthRooms' disk cache (and any other umadapt cache) goes to a session temporary folder, never the user's
    home; CLI subprocesses inherit it through the environment."""
    before = os.environ.get("UMADAPT_CACHE_DIR")
    os.environ["UMADAPT_CACHE_DIR"] = str(tmp_path_factory.mktemp("umadapt_cache"))
    yield
    if before is None:
        os.environ.pop("UMADAPT_CACHE_DIR", None)
    else:
        os.environ["UMADAPT_CACHE_DIR"] = before


@pytest.fixture(autouse=True)
def _no_distributed_env_leaks():
    """In-process DDP (Lightning's ddp_spawn, a one-process DDPStrategy) sets MASTER_PORT & co. in os.environ and
    never unsets them; a later test's plain-ddp ``umadapt`` subprocess would reuse that port and hang. Each test
    starts with a MASTER_PORT of its own from this worker's block (:func:`tests.helpers.free_port`): without one,
    Lightning picks a free port by binding to port 0 and closing it, and under pytest-xdist the other worker's
    processes could take that port before the rendezvous binds it."""
    before = {key: os.environ.get(key) for key in DISTRIBUTED_ENV}
    os.environ["MASTER_PORT"] = str(free_port())
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is ~5x faster than two spinning ones, whatever
    OMP_NUM_THREADS says (use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def toy_domains() -> tuple[ToyDomain, ToyDomain]:
    return ToyDomain(seed=0), ToyDomain(seed=1, shift=0.3)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A finished two-step SourceOnly run (synthrooms) in its own folder, ``<tmp>/logs/umadapt/run``, shared by
    the session: tests may add files to it (``test --run`` writes its results.json there), never change its own."""
    root = tmp_path_factory.mktemp("trained")
    result = run_cli(
        "fit",
        *config_args(BASE, SOURCE_ONLY),
        *SMALL_DATA,
        "--trainer.max_steps=2",
        "--trainer.max_epochs=1",
        "--trainer.logger.init_args.version=run",
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return root / "logs" / "umadapt" / "run"


@pytest.fixture(scope="session")
def single_task_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """``{task: last.ckpt}`` of one-step single-task networks trained with experiments/mtl/single_<task>.yaml on tiny
    data (teachers of universal representations, columns of an initialised cross-stitch network)."""
    from umadapt.cli import main

    root = tmp_path_factory.mktemp("single_task")
    mtl = EXPERIMENTS / "mtl"
    paths = {}
    for task in TASKS:
        main(
            [
                "fit",
                *config_args(mtl / "base.yaml", mtl / f"single_{task}.yaml"),
                *small_data(train_size=4),
                "--trainer.accelerator=cpu",
                "--trainer.max_epochs=1",
                "--trainer.limit_val_batches=0",
                f"--trainer.logger.init_args.save_dir={root}",
                f"--trainer.logger.init_args.name={task}",
                "--trainer.logger.init_args.version=v",
            ]
        )
        paths[task] = root / task / "v" / "checkpoints" / "last.ckpt"
        assert paths[task].is_file()
    return paths


@pytest.fixture
def drawn_text(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every line of text drawn onto a picture (multi-line text goes through ``text`` too)."""
    texts: list[str] = []
    original = ImageDraw.ImageDraw.text

    def spy(self: ImageDraw.ImageDraw, xy: tuple, text: str, *args: object, **kwargs: object) -> None:
        texts.extend(line.strip() for line in str(text).splitlines())
        original(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", spy)
    return texts
