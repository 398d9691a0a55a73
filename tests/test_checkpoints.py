"""Checkpoint files a user passes are read without running code in them, unreadable ones fail with one line that
names the file, and a checkpoint of another method or task set is refused (:mod:`umadapt.checkpoints`)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.helpers import BASE, SOURCE_ONLY, SYNTHROOMS, TASKS, config_args, run_cli, small_data, tiny_model
from umadapt.checkpoints import load_task_network, read_checkpoint
from umadapt.errors import ConfigError
from umadapt.methods import UMAdapt


class _Payload:
    """Unpickling this creates ``marker``: what a crafted checkpoint could do with ``weights_only=False``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


@pytest.fixture
def malicious(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "payload_ran"
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "extra": _Payload(marker)}, path)
    return path, marker


def test_a_crafted_checkpoint_runs_nothing_and_is_named(malicious):
    path, marker = malicious
    with pytest.raises(
        ConfigError, match=r"crafted\.ckpt.* was not loaded: it holds GLOBAL \S*makedirs.*could run code"
    ):
        read_checkpoint(path)
    assert not marker.exists()


def test_umadapt_source_checkpoint_is_loaded_safely(malicious):
    path, marker = malicious
    model = tiny_model(
        UMAdapt,
        tasks=["depth", "normals"],
        width=4,
        phases={"source": 0, "ccr": 1, "adapt": 1},
        source_checkpoint=str(path),
    )
    with pytest.raises(ConfigError, match=r"source_checkpoint.*crafted\.ckpt"):
        model.load_source_checkpoint()
    assert not marker.exists()


@pytest.mark.parametrize(
    "content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated"], ids=["empty", "garbage", "truncated"]
)
def test_unreadable_checkpoint_is_one_line_error(tmp_path, content):
    path = tmp_path / "broken.ckpt"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"broken\.ckpt.* is not a readable checkpoint"):
        read_checkpoint(path)


def test_cli_refuses_a_garbage_checkpoint_in_one_line(tmp_path, malicious):
    path, marker = malicious
    for ckpt in (path, tmp_path / "garbage.ckpt"):
        (tmp_path / "garbage.ckpt").write_bytes(b"garbage")
        result = run_cli("test", *config_args(BASE, SOURCE_ONLY), f"--ckpt_path={ckpt}", cwd=tmp_path)
        assert result.returncode == 2, result.stderr[-2000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("umadapt: error:")]
        assert len(errors) == 1 and ckpt.name in errors[0] and "Traceback" not in result.stderr
    assert not marker.exists()


# -- the identity a checkpoint must match ---------------------------------------------------------------------------
SIZES = small_data(train_size=16)


@pytest.fixture
def source_only_checkpoint(tmp_path):
    result = run_cli(
        "fit",
        *config_args(BASE, SOURCE_ONLY),
        *SIZES,
        "--trainer.max_steps=1",
        "--trainer.limit_val_batches=0",
        "--trainer.logger.init_args.version=so",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return tmp_path / "logs" / "umadapt" / "so" / "checkpoints" / "last.ckpt"


def test_checkpoint_of_another_method_is_refused(tmp_path, source_only_checkpoint):
    oracle = run_cli(
        "fit",
        *config_args(BASE, SYNTHROOMS / "oracle.yaml"),
        *SIZES,
        f"--ckpt_path={source_only_checkpoint}",
        "--trainer.max_steps=2",
        cwd=tmp_path,
    )
    assert oracle.returncode == 2, oracle.stderr[-2000:]
    assert "holds a 'SourceOnly' model, but the config asks for 'TargetOracle'" in oracle.stderr
    assert "Traceback" not in oracle.stderr


def test_checkpoint_of_another_task_set_is_refused(tmp_path, source_only_checkpoint):
    fewer = run_cli(
        "fit",
        *config_args(BASE, SOURCE_ONLY),
        *SIZES,
        f"--ckpt_path={source_only_checkpoint}",
        "--trainer.max_steps=2",
        "--data.init_args.tasks=[depth,segmentation]",
        cwd=tmp_path,
    )
    assert fewer.returncode == 2, fewer.stderr[-2000:]
    expected = "trained for tasks ['depth', 'normals', 'segmentation'], but data.tasks is ['depth', 'segmentation']"
    assert expected in fewer.stderr


# -- a task network read from a run (teachers, CyCADA's frozen network) ----------------------------------------------
def _task_network(model: nn.Module) -> nn.ModuleDict:
    return nn.ModuleDict({"encoder": model.encoder, "heads": model.heads})


def _saved_network(tmp_path: Path, identity: str = "umadapt", **kwargs) -> tuple[Path, dict[str, torch.Tensor]]:
    """A tiny network's checkpoint with its identity stored under ``identity`` (``umadapt``, Lightning's
    ``hyper_parameters``, or ``none``)."""
    torch.manual_seed(0)
    network = tiny_model(width=4, **kwargs)
    checkpoint = {"state_dict": network.state_dict()}
    if identity != "none":
        checkpoint[identity] = network.identity()
    path = tmp_path / "network.ckpt"
    torch.save(checkpoint, path)
    return path, network.state_dict()


@pytest.mark.parametrize("identity", ["umadapt", "hyper_parameters", "none"])
def test_load_task_network_loads_the_encoder_and_heads_and_returns_the_stored_identity(tmp_path, identity):
    path, saved = _saved_network(tmp_path, identity)
    torch.manual_seed(1)
    network = _task_network(tiny_model(width=4))
    stored = load_task_network(network, path, "model.init_args.x", TASKS, 2)
    assert stored == ({} if identity == "none" else {"method": "SourceOnly", "tasks": TASKS, "num_classes": 2})
    own = network.state_dict()
    assert own.keys() == {k for k in saved if k.startswith(("encoder.", "heads."))}
    assert all(torch.equal(own[k], saved[k]) for k in own)


def test_load_task_network_refuses_other_tasks_or_classes_naming_both(tmp_path):
    path, _ = _saved_network(tmp_path)
    network = _task_network(tiny_model(width=4, tasks=["depth"]))
    expected = f"model.init_args.x {str(path)!r} predicts tasks {TASKS}, this model ['depth']"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_task_network(network, path, "model.init_args.x", ["depth"], 2)
    network = _task_network(tiny_model(width=4, num_classes=5))
    with pytest.raises(ConfigError, match=re.escape(f"{str(path)!r} has 2 classes, this model 5")):
        load_task_network(network, path, "model.init_args.x", TASKS, 5)
    wider = _task_network(tiny_model(width=8))
    with pytest.raises(ConfigError, match=r"another architecture\. Use the same encoder\.$"):
        load_task_network(wider, path, "model.init_args.x", TASKS, 2, "Use the same encoder.")
