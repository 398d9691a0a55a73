"""The ``umadapt`` command end to end: every YAML under experiments/ is parsed and run (or owned by the test named in
tests/config_owners.yaml), checkpoints round-trip, profiles behave, and bad input fails with a message that names the
problem. How arguments are read (``--run``, config order, one-line parse errors) is in tests/test_cli_args.py."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import (
    BASE,
    EXPERIMENTS,
    ROOT,
    SMALL_DATA,
    SOURCE_ONLY,
    check_results,
    config_args,
    fit_test_predict,
    run_cli,
    small_data,
    stack_id,
)
from umadapt.bench.registry import config_stacks
from umadapt.cli import main
from umadapt.methods import SourceOnly

OWNERS_FILE = Path(__file__).with_name("config_owners.yaml")
OWNERS = yaml.safe_load(OWNERS_FILE.read_text())
RUN_BY: dict[str, str | list[str]] = OWNERS["run_by"]
"""YAMLs parsed here but run by the named test (tests/config_owners.yaml)."""
PARSED_AND_RUN_BY: dict[str, str | list[str]] = OWNERS["parsed_and_run_by"]
"""YAMLs neither parsed nor run here: real-data folders, sweep files, the benchmark registry."""


def _stack(rel: str, stacks: dict[str, list[Path]]) -> list[Path]:
    """The configs ``experiments/<rel>`` composes with to make a runnable experiment."""
    path = EXPERIMENTS / rel
    if rel in stacks:  # a YAML that ends a benchmark's stack (e.g. an ablation delta) composes as it does there
        return stacks[rel]
    if path.name == "base.yaml":
        method = path.parent / "source_only.yaml"
        return [path, method] if method.is_file() else [path]  # a base without source_only runs alone
    if path.parent.name in ("trainer", "loggers"):
        return [BASE, SOURCE_ONLY, path]
    return [path.parent / "base.yaml", path]


def _config_sets(skip: set[str]) -> dict[str, list[Path]]:
    """``{stack id: stack}`` for every YAML under experiments/ but ``skip``; YAMLs that compose the same stack
    (``<folder>/base.yaml`` and ``<folder>/source_only.yaml``) share one entry."""
    stacks, sets = config_stacks(EXPERIMENTS / "benchmarks.yaml"), {}
    for path in sorted(EXPERIMENTS.rglob("*.yaml")):
        rel = path.relative_to(EXPERIMENTS).as_posix()
        if rel not in skip:
            stack = _stack(rel, stacks)
            sets[stack_id(stack)] = stack
    return sets


PARSED = _config_sets(set(PARSED_AND_RUN_BY))
# Parametrized with ids=str: pytest shortens an automatic id over 100 characters to "name<N>", which would hide a
# long stack (four files) from the ownership check below.
RUN = _config_sets(set(PARSED_AND_RUN_BY) | set(RUN_BY))
NEEDS_GPU = ["trainer/gpu.yaml", "trainer/ddp.yaml", "trainer/multinode.yaml", "trainer/fp16.yaml"]
"""Profiles that need CUDA: parsed everywhere, run only where a GPU is present."""


# -- every YAML -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PARSED), ids=str)
def test_print_config(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *config_args(*PARSED[name]), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("umadapt.") and printed["data"]["class_path"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUN), ids=str)
def test_fit_test_predict(name, tmp_path, monkeypatch):
    """A user's first run of the config: one training batch leaves ``last.ckpt``, ``test`` on it writes
    ``results.json`` with finite target metrics, ``predict`` writes files."""
    monkeypatch.chdir(tmp_path)
    fit_test_predict([*config_args(*RUN[name]), *SMALL_DATA, "--trainer.accelerator=cpu"], tmp_path)


@pytest.mark.parametrize("name", NEEDS_GPU)
def test_gpu_profiles_need_a_gpu_or_run(name, tmp_path, monkeypatch):
    """GPU profiles parse everywhere; on a machine without a GPU they fail with Lightning's clear message."""
    monkeypatch.chdir(tmp_path)
    args = [
        "fit",
        *config_args(BASE, SOURCE_ONLY, EXPERIMENTS / name),
        *SMALL_DATA,
        "--trainer.fast_dev_run=true",
        "--trainer.devices=1",
    ]
    if torch.cuda.is_available():
        main(args)
    else:
        with pytest.raises(Exception, match="(?i)gpu|cuda"):
            main(args)


METHOD_CONFIGS = sorted(n for n in RUN if not n.endswith("base.yaml") and "trainer/" not in n and "loggers/" not in n)
"""Every method stack the generic tests run (the teacher-distilling universal.yaml does it in its own test)."""


@pytest.mark.slow
@pytest.mark.parametrize("name", METHOD_CONFIGS, ids=str)
def test_every_method_runs_under_bf16_mixed(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            *config_args(*RUN[name]),
            *SMALL_DATA,
            "--trainer.fast_dev_run=true",
            "--trainer.accelerator=cpu",
            "--trainer.precision=bf16-mixed",
        ]
    )


def _last_val(metrics_csv: Path) -> dict[str, float]:
    rows = [r for r in csv.DictReader(metrics_csv.open()) if r.get("val/target/depth/rmse")]
    return {k: float(v) for k, v in rows[-1].items() if k.startswith("val/") and v}


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["trainer/ddp_cpu.yaml"])
def test_ddp_cpu_profile_trains_and_evaluates_like_one_process(profile, tmp_path):
    """`ddp` through the CLI (plain ddp re-launches sys.argv, so not in process): training runs on two processes,
    and evaluating its checkpoint on two processes gives the metrics of one process on the same data."""
    common = [
        *config_args(BASE, SOURCE_ONLY),
        *small_data(train_size=16),
        "--data.init_args.eval_batch_size=2",
        "--trainer.enable_progress_bar=false",
    ]
    ddp = config_args(EXPERIMENTS / profile)
    fit = run_cli(
        "fit", *common, *ddp, "--trainer.max_epochs=1", "--trainer.logger.init_args.version=fit", cwd=tmp_path
    )
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpt = tmp_path / "logs" / "umadapt" / "fit" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=False)["global_step"] == 2  # 16 samples / (2 processes x batch 4)
    metrics = {}
    for name, extra in {"single": ["--trainer.devices=1"], "ddp": ddp}.items():
        run = run_cli(
            "validate",
            *common,
            *extra,
            f"--ckpt_path={ckpt}",
            f"--trainer.logger.init_args.version={name}",
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        metrics[name] = _last_val(tmp_path / "logs" / "umadapt" / name / "metrics.csv")
    assert {k for k in metrics["single"] if "/target/" in k} and metrics["ddp"].keys() == metrics["single"].keys()
    assert metrics["ddp"] == pytest.approx(metrics["single"], rel=1e-4)


# -- the ownership table --------------------------------------------------------------------------------------------
def _owners(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _names(node_id: str) -> set[str]:
    """The experiments/ YAMLs a collected node's parametrize id names (every ``<folder>/<file>.yaml`` or
    ``<file>.yaml`` in it; stack ids join them with ``+``)."""
    param = node_id.partition("[")[2].rstrip("]")
    return set(re.findall(r"(?:[\w.]+/)*[\w.]+\.yaml", param))


@pytest.fixture(scope="module")
def collected() -> list[str]:
    """The node ids of this module and of every owner test's module, as pytest collects them."""
    files = sorted(
        {"tests/test_cli.py"} | {o.split("::")[0] for v in {**RUN_BY, **PARSED_AND_RUN_BY}.values() for o in _owners(v)}
    )
    missing = [f for f in files if not (ROOT / f).is_file()]
    assert not missing, f"{OWNERS_FILE.name} names test files that do not exist: {missing}"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"},  # e.g. -v prints a tree, not node ids
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [line.strip() for line in result.stdout.splitlines() if "::" in line]


def test_every_yaml_is_run_here_or_listed_with_its_owner(collected):
    every = {p.relative_to(EXPERIMENTS).as_posix() for p in EXPERIMENTS.rglob("*.yaml")}
    listed = set(RUN_BY) | set(PARSED_AND_RUN_BY)
    assert not set(RUN_BY) & set(PARSED_AND_RUN_BY), "a YAML is listed in both sections"
    assert listed <= every, f"{OWNERS_FILE.name} lists files that are not under experiments/: {sorted(listed - every)}"
    runs = {
        name
        for node in collected
        if node.startswith("tests/test_cli.py::test_fit_test_predict[")
        for name in _names(node)
    }
    parses = {
        name for node in collected if node.startswith("tests/test_cli.py::test_print_config[") for name in _names(node)
    }
    assert every - listed <= runs, f"neither run by test_fit_test_predict nor listed: {sorted(every - listed - runs)}"
    unparsed = every - set(PARSED_AND_RUN_BY) - parses
    assert not unparsed, f"neither parsed by test_print_config nor listed under parsed_and_run_by: {sorted(unparsed)}"


@pytest.mark.parametrize("name", sorted({**RUN_BY, **PARSED_AND_RUN_BY}))
def test_owner_test_runs_the_yaml(name, collected):
    for owner in _owners({**RUN_BY, **PARSED_AND_RUN_BY}[name]):
        nodes = [node for node in collected if node.split("[")[0] == owner]
        assert nodes, f"{OWNERS_FILE.name}: the owner of {name}, {owner}, is not collected"
        assert any(name in _names(node) for node in nodes), (
            f"{owner} no longer runs experiments/{name}: none of its parametrize ids names it "
            f"({[n.partition('[')[2].rstrip(']') for n in nodes]})"
        )


# -- a full run and its outputs -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_checkpoint_round_trip_and_outputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = [
        *config_args(BASE, SOURCE_ONLY),
        *SMALL_DATA,
        "--trainer.accelerator=cpu",
        "--trainer.logger.init_args.version=run",
    ]
    main(["fit", *common, "--trainer.max_steps=2", "--trainer.max_epochs=1"])
    run = tmp_path / "logs" / "umadapt" / "run"
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and (run / "config.yaml").is_file()
    assert sorted((run / "images").glob("val_target_epoch*.png")), "the image grid callback wrote nothing"

    model = SourceOnly.load_from_checkpoint(ckpt).eval()
    assert model.tasks == ["depth", "normals", "segmentation"] and model.num_classes == 5
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())

    results = tmp_path / "results.json"
    main(["test", *common, f"--ckpt_path={ckpt}", f"--results.path={results}"])
    record = check_results(results, global_step=2)
    assert record["method"] == "SourceOnly"
    expected = {"test/target/depth/rmse", "test/source/segmentation/miou", "test/target/normals/median"}
    assert expected <= set(record["metrics"])

    out = tmp_path / "predictions"
    main(["predict", *common, f"--ckpt_path={ckpt}", f"--predictions.output_dir={out}"])
    for key in ("image", "depth", "normals", "segmentation"):
        assert (out / f"00000_{key}.png").is_file()
    assert len(list(out.glob("*_depth.png"))) == 4


# -- the command and its errors -------------------------------------------------------------------------------------
def test_help_and_version(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0 and all(s in result.stdout for s in ("fit", "validate", "test", "predict"))
    result = run_cli("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("umadapt ")


def test_incompatible_image_size_names_both_numbers(tmp_path):
    sizes = [f"--data.init_args.{r}.init_args.image_size=60" for r in ("source", "target")]
    result = run_cli(
        "fit", *config_args(BASE, SOURCE_ONLY), *SMALL_DATA, *sizes, "--trainer.fast_dev_run=true", cwd=tmp_path
    )
    assert result.returncode == 2
    assert "60x60" in result.stderr and "32" in result.stderr and "Traceback" not in result.stderr


def test_missing_checkpoint_is_named(tmp_path):
    result = run_cli("test", *config_args(BASE, SOURCE_ONLY), "--ckpt_path=nowhere/last.ckpt", cwd=tmp_path)
    assert result.returncode == 2 and "nowhere/last.ckpt" in result.stderr and "Traceback" not in result.stderr


def test_task_the_data_does_not_provide_is_named(tmp_path):
    result = run_cli(
        "fit", *config_args(BASE, SOURCE_ONLY), *SMALL_DATA, "--data.init_args.tasks=[depth,label]", cwd=tmp_path
    )
    assert result.returncode != 0 and "'label'" in result.stderr and "Traceback" not in result.stderr


def test_test_without_checkpoint_is_refused_unless_asked(tmp_path):
    result = run_cli("test", *config_args(BASE, SOURCE_ONLY), *SMALL_DATA, cwd=tmp_path)
    assert result.returncode == 2 and "would score an untrained model" in result.stderr
    assert not (tmp_path / "logs").exists()
    asked = run_cli("test", *config_args(BASE, SOURCE_ONLY), *SMALL_DATA, "--untrained=true", cwd=tmp_path)
    assert asked.returncode == 0, asked.stderr[-2000:]


@pytest.mark.parametrize(
    "extra", [["--trainer.fast_dev_run=true"], ["--trainer.logger=false", "--trainer.max_steps=1"]]
)
def test_runs_without_a_logger_write_nothing_into_the_working_directory(tmp_path, extra):
    result = run_cli("fit", *config_args(BASE, SOURCE_ONLY), *SMALL_DATA, *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_resuming_without_a_checkpoint_is_an_error_naming_the_folder(tmp_path):
    result = run_cli(
        "fit",
        *config_args(BASE, SOURCE_ONLY),
        *small_data(train_size=16),
        "--trainer.max_steps=1",
        "--ckpt_path=last",
        "--trainer.logger.init_args.version=none",
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "no checkpoint to resume in logs/umadapt/none/checkpoints/" in result.stderr
    assert not (tmp_path / "logs" / "umadapt" / "none" / "checkpoints").exists()
