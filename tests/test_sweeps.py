"""Every W&B sweep file is validated offline: its command shape, W&B's method and distribution names, every value
and both bounds of every parameter parsed as the agent would pass it, and its metric is one a smoke run really logs
(and uses no target labels unless declared an oracle sweep); all problems come back together, one line each."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.helpers import EXPERIMENTS, ROOT, SMALL_DATA
from umadapt import sweeps
from umadapt.cli import build_cli
from umadapt.sweeps import agent_arguments, command_arguments, load_sweep, validate_sweep

SWEEPS = sorted((EXPERIMENTS / "sweeps").glob("*.yaml"))
DANN_SWEEP = EXPERIMENTS / "sweeps" / "synthrooms_dann.yaml"
"""The sweep the wrong-sweep variants below start from (its parameters are what they break)."""


def _id(path: Path) -> str:
    return path.relative_to(EXPERIMENTS).as_posix()  # tests/config_owners.yaml checks these ids


def test_there_are_sweeps():
    assert SWEEPS


@pytest.mark.parametrize("path", SWEEPS, ids=_id)
def test_sweep_is_valid(path):
    assert validate_sweep(path, root=ROOT) == []


@pytest.mark.slow
@pytest.mark.parametrize("path", SWEEPS, ids=_id)
def test_sweep_metric_is_logged(path, tmp_path, monkeypatch):
    sweep = load_sweep(path)
    args = [a if not a.endswith(".yaml") else str(ROOT / a) for a in command_arguments(sweep)]
    monkeypatch.chdir(tmp_path)
    cli = build_cli([*args, *agent_arguments(sweep), *SMALL_DATA, "--trainer.fast_dev_run=true"], run=False)
    cli.trainer.fit(cli.model, cli.datamodule)
    logged = cli.trainer.callback_metrics
    assert sweep["metric"]["name"] in logged and math.isfinite(float(logged[sweep["metric"]["name"]]))


def _variant(tmp_path: Path, change) -> Path:
    sweep = load_sweep(DANN_SWEEP)
    change(sweep)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_validator_names_a_key_that_is_not_a_config_key(tmp_path):
    path = _variant(tmp_path, lambda s: s["parameters"].update({"model.init_args.learning_rat": {"values": [0.1]}}))
    problems = validate_sweep(path, root=ROOT)
    assert problems and "learning_rat" in problems[0]


def test_validator_requires_args_last_and_label_free_metrics(tmp_path):
    path = _variant(tmp_path, lambda s: s["command"].append("--trainer.max_epochs=1"))
    assert any("${args}" in p for p in validate_sweep(path, root=ROOT))
    path = _variant(tmp_path, lambda s: s["metric"].update(name="val/target/segmentation/miou"))
    assert any("target labels" in p for p in validate_sweep(path, root=ROOT))


BATCH = "data.init_args.batch_size"
DOMAIN_WEIGHT = "model.init_args.domain_weight"  # DANN_SWEEP sweeps it on a log_uniform_values range


def _set(key: str, **spec) -> Callable[[dict], None]:
    return lambda sweep: sweep["parameters"].update({key: spec})


def _edit(key: str, **changes) -> Callable[[dict], None]:
    return lambda sweep: sweep["parameters"][key].update(changes)


# Each was accepted before (issue 18): the problem must be found and the message must name it and the fix.
WRONG = {
    "a_later_value_is_not_a_number": (_set(BATCH, values=[16, "abc"]), [BATCH, "=abc`", "int"]),
    "a_bound_is_not_a_number": (_edit(DOMAIN_WEIGHT, max="x"), [DOMAIN_WEIGHT, "max 'x' is not a number"]),
    "negative_batch_size": (_set(BATCH, min=-8, max=32), [BATCH, "=-8`", "batch_size must be >= 1"]),
    "metric_typo": (lambda s: s["metric"].update(name="val/source/los"), ["'val/source/los'", "'val/source/loss'"]),
    "unknown_method": (lambda s: s.update(method="bayesian"), ["method 'bayesian'", "'bayes'"]),
    "unknown_distribution": (
        _edit(DOMAIN_WEIGHT, distribution="log_uniform_valus"),
        [DOMAIN_WEIGHT, "'log_uniform_valus'", "'log_uniform_values'"],
    ),
    "min_above_max": (_edit(DOMAIN_WEIGHT, min=2.0, max=0.5), [DOMAIN_WEIGHT, "min 2.0 is greater than max 0.5"]),
    "range_without_max": (
        _set(DOMAIN_WEIGHT, distribution="uniform", min=0.1),
        [DOMAIN_WEIGHT, "needs both min and max"],
    ),
    "unknown_goal": (lambda s: s["metric"].update(goal="minimise"), ["metric.goal 'minimise'", "'minimize'"]),
}


@pytest.mark.parametrize("case", WRONG, ids=str)
def test_validator_names_each_wrong_sweep(case, tmp_path):
    change, fragments = WRONG[case]
    problems = validate_sweep(_variant(tmp_path, change), root=ROOT)
    assert len(problems) == 1, problems
    assert all(fragment in problems[0] for fragment in fragments), problems[0]


def test_all_problems_are_reported_together_one_line_each(tmp_path, monkeypatch, capsys):
    def break_everything(sweep):
        for case in ("a_later_value_is_not_a_number", "a_bound_is_not_a_number", "unknown_method", "metric_typo"):
            WRONG[case][0](sweep)

    path = _variant(tmp_path, break_everything)
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit_info:
        sweeps.main([str(path), "--validate-only"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith(f"umadapt: error: {path}: ") for line in lines), lines


def test_agent_values_follow_wandb_distributions():
    """Both bounds, mapped as W&B samples them: log_uniform bounds are exponents, q_* rounds to multiples of q."""
    named = set(sweeps.BOUNDED) | set(sweeps.CENTRES) | {"constant", "categorical", "categorical_w_probabilities"}
    assert named == set(sweeps.DISTRIBUTIONS)
    assert sweeps.parameter_values("b", {"min": 8, "max": 64}) == ([8, 64], [])
    assert sweeps.parameter_values("b", {"distribution": "q_uniform", "min": 7.6, "max": 64.2, "q": 8}) == ([8, 64], [])
    values, _ = sweeps.parameter_values("lr", {"distribution": "log_uniform", "min": -4.0, "max": 0.0})
    assert values == pytest.approx([0.01831563888873418, 1.0])
    assert sweeps.parameter_values("lr", {"distribution": "log_uniform_values", "min": 0.0, "max": 1.0})[1]
    assert "did you mean 'values'?" in sweeps.parameter_values("lr", {"valus": [0.1]})[1][0]


def test_agent_joins_the_given_sweep_and_creates_none(monkeypatch, tmp_path):
    """`--agent ENTITY/PROJECT/ID` (another machine joining a sweep) runs W&B's agent on that id with the count, and
    neither validates a file nor creates a sweep nor starts the create path's `wandb agent` subprocess."""
    import wandb

    calls: list[tuple[str, int | None]] = []

    def refuse(*args, **kwargs):
        raise AssertionError(f"--agent must not validate or create a sweep (called with {args}, {kwargs})")

    monkeypatch.setattr(wandb, "agent", lambda sweep_id, count=None, **kwargs: calls.append((sweep_id, count)))
    monkeypatch.setattr(wandb, "sweep", refuse)
    monkeypatch.setattr(sweeps, "validate_sweep", refuse)
    monkeypatch.setattr(sweeps.subprocess, "call", refuse)
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.chdir(tmp_path)
    sweeps.main(["--agent", "team/umadapt/abc123xy", "--count", "3"])
    assert calls == [("team/umadapt/abc123xy", 3)]
    with pytest.raises(SystemExit) as exit_info:  # a sweep file with --agent is a mistake, not a second sweep
        sweeps.main([str(DANN_SWEEP), "--agent", "team/umadapt/abc123xy"])
    assert exit_info.value.code == 2 and calls == [("team/umadapt/abc123xy", 3)]
