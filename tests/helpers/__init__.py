"""What many test modules need, defined once: repository paths, CLI arguments for small data, the ``umadapt``
subprocess runner, the tiny model and trainer builders, and the fit/test/predict smoke run of a config.

Plain functions (tests call them with their own arguments); the fixtures built on them live in ``tests/conftest.py``.
Test modules import from here, never from each other.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import Dataset

from data_modules.domain import Domain

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments"
SYNTHROOMS = EXPERIMENTS / "synthrooms"
BASE = SYNTHROOMS / "base.yaml"
SOURCE_ONLY = SYNTHROOMS / "source_only.yaml"
TASKS = ["depth", "normals", "segmentation"]
DISTRIBUTED_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK")
"""What torch.distributed / Lightning read from the environment to join a process group."""


# -- CLI arguments and the subprocess runner ------------------------------------------------------------------------
def config_args(*paths: str | Path) -> list[str]:
    """``--config <path>`` for each path, in order (later files win)."""
    return [arg for path in paths for arg in ("--config", str(path))]


def small_data(train_size: int = 8, val_size: int = 4, test_size: int = 4, batch_size: int = 4) -> list[str]:
    """CLI overrides that shrink both domains' splits and the batch (for configs whose domains take sizes)."""
    sizes = {"train_size": train_size, "val_size": val_size, "test_size": test_size}
    return [
        f"--data.init_args.{role}.init_args.{key}={n}" for role in ("source", "target") for key, n in sizes.items()
    ] + [f"--data.init_args.batch_size={batch_size}"]


SMALL_DATA = small_data()


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m umadapt <args>`` in ``cwd``, the repository on ``PYTHONPATH`` (so configs can name
    ``tests.helpers.kill`` callbacks), no distributed settings inherited from this process (a stale ``MASTER_PORT``
    makes plain ddp hang) but a fresh ``MASTER_PORT`` from :func:`free_port` (else a ddp run picks a free port itself,
    which another pytest-xdist worker's processes can take before it is bound); output captured as text."""
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV}
    env["MASTER_PORT"] = str(free_port())
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    return subprocess.run([sys.executable, "-m", "umadapt", *args], capture_output=True, text=True, cwd=cwd, env=env)


# -- network ports for distributed runs -----------------------------------------------------------------------------
PORT_FLOOR = 20000
"""Test ports start here and end where the kernel's ephemeral ports start (32768 on Linux): ports that binding to
port 0 or an outgoing connection never hand out, so no process can take one between :func:`free_port`'s check and
its use except one that asks for it by number."""


def _port_block() -> range:
    """This pytest process's own ports: the test ports split evenly between the pytest-xdist workers
    (``PYTEST_XDIST_WORKER`` ``gw<i>`` of ``PYTEST_XDIST_WORKER_COUNT``), all of them without xdist. Two workers
    never share a port. If the ephemeral range starts too low to leave room, ports up to 65535 are used instead
    (still one block per worker, but no longer out of the ephemeral range)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[:2] == "gw" and worker[2:].isdigit() else 0
    workers = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), index + 1)
    try:
        end = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        end = 32768
    if end - PORT_FLOOR < 64 * workers:
        end = 65536
    size = (end - PORT_FLOOR) // workers
    return range(PORT_FLOOR + index * size, PORT_FLOOR + (index + 1) * size)


_port_calls = itertools.count(random.SystemRandom().randrange(1 << 16))
"""Where in its block this process starts: at random (not from the seeded ``random``), so that two test sessions
on one machine (whose workers have the same blocks) do not go through them in step."""


def free_port() -> int:
    """A TCP port for a process group's rendezvous (``MASTER_PORT``, ``torchrun --master_port``), from this worker's
    block (:func:`_port_block`), that nothing has bound: successive calls go round the block, so a port is not handed
    out again until the block has been gone through."""
    block = _port_block()
    for _ in range(len(block)):
        port = block[next(_port_calls) % len(block)]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("", port))  # all interfaces, as the rendezvous store binds; no SO_REUSEADDR
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free TCP port in {block}")


# -- tiny models, trainers and data ---------------------------------------------------------------------------------
def tiny_model(
    cls: type | None = None,
    *,
    tasks: Iterable[str] = TASKS,
    width: int = 8,
    image_size: tuple[int, int] | None = (32, 32),
    num_classes: int = 2,
    encoder: Any = None,
    **kwargs: Any,
) -> Any:
    """A method (default :class:`~umadapt.methods.SourceOnly`) on a ResNet-10 of the given width for small inputs."""
    from umadapt.methods import SourceOnly
    from umadapt.nn import ResNetEncoder

    cls = cls or SourceOnly
    encoder = encoder if encoder is not None else ResNetEncoder("resnet10", width, small_input=True)
    return cls(encoder=encoder, tasks=list(tasks), num_classes=num_classes, image_size=image_size, **kwargs)


def tiny_trainer(tmp_path: Path, callbacks: Iterable[pl.Callback] = (), **kwargs: Any) -> pl.Trainer:
    """A quiet CPU trainer without logger or checkpoints (each overridable through ``kwargs``)."""
    options: dict[str, Any] = {
        "default_root_dir": tmp_path,
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "callbacks": list(callbacks),
    }
    return pl.Trainer(**{**options, **kwargs})


SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


class _ToyDataset(Dataset):
    def __init__(
        self, seed: int, split: str, size: int, image_size: int, shift: float, unlabelled: tuple[str, ...] = ()
    ) -> None:
        self.seed, self.split, self.size, self.image_size, self.shift = seed, split, size, image_size, shift
        self.unlabelled = unlabelled

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, SPLIT_IDS[self.split], index])
        h = w = self.image_size
        segmentation = (np.arange(w)[None, :].repeat(h, 0) >= rng.integers(4, w - 4)).astype(np.int64)
        segmentation[:2, :2] = 255
        depth = (1.0 + segmentation + rng.random((h, w)) * 0.1).astype(np.float32)
        normals = np.zeros((h, w, 3), np.float32)
        normals[..., 2] = -1.0
        image = np.clip(np.stack([segmentation * 0.6 + self.shift] * 3, -1) + rng.random((h, w, 3)) * 0.2, 0, 1)
        contours = np.zeros((h, w), np.float32)
        if "depth" in self.unlabelled:
            depth = depth * 0  # 0 = invalid depth everywhere
        if "segmentation" in self.unlabelled:
            segmentation = np.full_like(segmentation, 255)  # every pixel ignored
        return {
            "image": image.astype(np.float32),
            "depth": depth,
            "normals": normals,
            "segmentation": segmentation,
            "contours": contours,
        }


class ToyDomain(Domain):
    """A minimal :class:`data_modules.domain.Domain`: vertical two-class scenes, cheap to make; the tasks named in
    ``unlabelled`` (``depth``, ``segmentation``) have no valid pixel in any sample."""

    def __init__(
        self,
        seed: int = 0,
        image_size: int = 32,
        size: int = 8,
        shift: float = 0.0,
        unlabelled: tuple[str, ...] = (),
    ) -> None:
        self.name = f"toy-{seed}"
        self.tasks = ("depth", "normals", "segmentation", "contours")
        self.num_classes = 2
        self.class_names = ("left", "right")
        self.image_size = (image_size, image_size)
        self.seed, self.size, self.shift, self.unlabelled = seed, size, shift, tuple(unlabelled)

    def dataset(self, split: str) -> Dataset:
        return _ToyDataset(self.seed, split, self.size, self.image_size[0], self.shift, self.unlabelled)


TINY_CLI = [*small_data(train_size=4), "--trainer.accelerator=cpu"]
"""CLI overrides for one-batch runs on tiny data (4 training samples per domain) on the CPU."""


def one_step_run(root: Path, stack: Iterable[Path], *extra: str) -> Path:
    """``last.ckpt`` of a one-batch ``fit`` of the config ``stack`` on tiny data (:data:`TINY_CLI`), without
    validation, logged under ``root``: a stage that a later stage's config starts from."""
    from umadapt.cli import main

    main(
        [
            "fit",
            *config_args(*stack),
            *TINY_CLI,
            *extra,
            "--trainer.max_steps=-1",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=1",
            "--trainer.limit_val_batches=0",
            f"--trainer.logger.init_args.save_dir={root}",
            "--trainer.logger.init_args.version=run",
        ]
    )
    (checkpoint,) = root.rglob("last.ckpt")
    return checkpoint


# -- the smoke run of a config --------------------------------------------------------------------------------------
ONE_BATCH = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=1",
    "--trainer.limit_val_batches=1",
    "--trainer.num_sanity_val_steps=0",
]
"""One training batch, then one validation batch per domain: the work of ``fast_dev_run``, but a real epoch that
ends with the run's ``last.ckpt`` (``fast_dev_run`` writes no checkpoint and has no logger)."""


def stack_id(paths: Iterable[Path]) -> str:
    """A parametrize id naming every YAML of a config stack, relative to experiments/ (``a/base.yaml+a/x.yaml``): the
    ownership table (tests/config_owners.yaml) checks owner tests by these ids."""
    return "+".join(Path(p).resolve().relative_to(EXPERIMENTS).as_posix() for p in paths)


def _strict_json(path: Path) -> dict:
    def refuse(constant: str) -> float:
        raise AssertionError(f"{path} holds {constant}: results.json must be strict JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def check_results(path: Path, global_step: int | None = None) -> dict:
    """What a user checks in ``results.json`` after ``test``: strict JSON, and every target task that had labelled
    test samples scored with finite metrics (the writer leaves a NaN metric out, so a NaN shows as a missing task)."""
    record = _strict_json(path)
    metrics, samples = record["metrics"], record["samples"]
    scored = sorted(k.split("/")[2] for k, n in samples.items() if k.startswith("test/target/") and n["labelled"])
    assert scored, f"{path}: no target task had labelled test samples ({samples})"
    for task in scored:
        values = {k: v for k, v in metrics.items() if k.startswith(f"test/target/{task}/")}
        assert values, f"{path}: target task {task!r} had labelled samples but no metric (NaN?)"
        assert all(math.isfinite(v) for v in values.values()), values
    if global_step is not None:
        assert record["global_step"] == global_step, f"{path}: tested step {record['global_step']}, not {global_step}"
    return record


def fit_test_predict(args: list[str], root: Path) -> dict:
    """Run a config as a user's first run does, in ``root`` (the working directory): ``fit`` one batch (one epoch,
    see :data:`ONE_BATCH`) leaving ``last.ckpt``; ``test`` that checkpoint, writing ``results.json`` with finite
    target metrics and the checkpoint's step; ``predict`` with it, writing prediction files. A config that sets
    ``fast_dev_run`` itself (trainer/debug.yaml) keeps it: no checkpoint, so ``test`` and ``predict`` score the
    initial weights. Returns the results record."""
    from umadapt.cli import main

    before = set(root.rglob("last.ckpt"))
    main(["fit", *args, *ONE_BATCH])
    checkpoints = sorted(set(root.rglob("last.ckpt")) - before)
    fast_dev_run = not checkpoints and _sets_fast_dev_run(args)
    assert len(checkpoints) == 1 or fast_dev_run, f"fit left {checkpoints}, expected one last.ckpt"
    evaluate = [*args, "--trainer.limit_test_batches=1", "--trainer.limit_predict_batches=1"]
    evaluate += [] if fast_dev_run else [f"--ckpt_path={checkpoints[0]}"]
    results, predictions = root / "smoke" / "results.json", root / "smoke" / "predictions"
    main(["test", *evaluate, f"--results.path={results}"])
    trained = 0 if fast_dev_run else torch.load(checkpoints[0], weights_only=True)["global_step"]
    assert fast_dev_run or trained > 0, f"{checkpoints[0]} holds no training step"
    record = check_results(results, global_step=trained)
    main(["predict", *evaluate, f"--predictions.output_dir={predictions}"])
    written = [p for p in predictions.rglob("*") if p.is_file()]
    assert written, f"predict wrote nothing into {predictions}"
    return record


def _sets_fast_dev_run(args: list[str]) -> bool:
    import yaml

    configs = [Path(args[i + 1]) for i, a in enumerate(args[:-1]) if a == "--config"]
    return any((yaml.safe_load(c.read_text()) or {}).get("trainer", {}).get("fast_dev_run") for c in configs)
