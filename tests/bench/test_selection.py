"""``python -m umadapt.bench select``: the grid files of experiments/selection/ parse in every setting, a trimmed
copy of each trains and is selected end to end, and the selection-mode config logs every validator."""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
from pathlib import Path

import pytest

from tests.helpers import EXPERIMENTS, SMALL_DATA, config_args
from umadapt import select
from umadapt.bench.registry import get_benchmark
from umadapt.bench.runner import execute_none
from umadapt.bench.selection import load_grid, run_grid
from umadapt.cli import main
from umadapt.errors import ConfigError

TRAINED = ["selection/digits_dann.yaml", "selection/synthrooms_umadapt.yaml", "selection/synthrooms_dann.yaml"]
"""Grids a trimmed copy of which trains and is selected end to end (each ~40 s); the self-training grid differs from
them only in its prepare run's method, checked through its commands below."""
GRIDS = [*TRAINED, "selection/synthrooms_self_training.yaml"]


def _stack(grid, method=None):
    return get_benchmark(grid.benchmark).stack(method or grid.method)


@pytest.mark.parametrize("name", GRIDS)
def test_every_setting_of_the_grid_parses(name, capsys):
    grid = load_grid(EXPERIMENTS / name)
    settings = grid.settings()
    assert grid.default in settings and len(settings) >= 3
    runs = {setting: (grid.method, [*grid.args, *args]) for setting, args in settings.items()}
    if grid.prepare:
        runs["prepare"] = (grid.prepare.get("method"), grid.prepare["args"])
    for setting, (method, args) in runs.items():
        args = [a.replace("{prepare}", "source.ckpt") for a in args]
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", *config_args(*_stack(grid, method)), *args, "--print_config"])
        assert exit_info.value.code in (0, None), setting
    capsys.readouterr()


def _trimmed(grid, tiny):
    """The grid with two values of its first axis and the default of the others, on tiny data."""
    default = grid.default_values
    axes = {}
    for index, (axis, values) in enumerate(grid.axes.items()):
        keep = list(values)[:2] if index == 0 else [default[axis]]
        if default[axis] not in keep:
            keep = [default[axis], keep[0]]
        axes[axis] = {label: values[label] for label in keep}
    prepare = None
    if grid.prepare:
        prepare = {**grid.prepare, "args": [*grid.prepare["args"], *tiny, "--model.init_args.phases={source: 1, "
                   "ccr: 1, adapt: 0}", "--trainer.max_epochs=2"]}  # fmt: skip
    return dataclasses.replace(grid, axes=axes, args=[*grid.args, *tiny], prepare=prepare)


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINED)
def test_trimmed_grid_trains_and_selects(name, tmp_path, monkeypatch):
    from umadapt.bench.selection import main as bench_select

    grid = load_grid(EXPERIMENTS / name)
    tiny = [*SMALL_DATA, "--data.init_args.eval_batch_size=4"]
    if grid.benchmark == "digits":  # 2 epochs, a checkpoint after each
        tiny.append("--trainer.max_epochs=2")
        grid = dataclasses.replace(grid, checkpoint_every_n_epochs=1)
    trimmed = _trimmed(grid, tiny)
    options = {**trimmed.validator_options, "reverse": {"steps": 3}} if "reverse" in grid.validators else None
    trimmed = dataclasses.replace(trimmed, validator_options=options or trimmed.validator_options)
    if "../" in str(grid.validator_options.get("consistency", {}).get("checkpoint", "")):
        # networks of another grid's runs (tested in tests/validators): score the agreement rule here
        validators = [v for v in grid.validators if v != "consistency"]
        options = {k: v for k, v in trimmed.validator_options.items() if k != "consistency"}
        trimmed = dataclasses.replace(trimmed, validators=validators, rule="agreement", validator_options=options)
        grid = trimmed
    monkeypatch.setattr("umadapt.bench.selection.load_grid", lambda path: trimmed)
    out = tmp_path / "selection.md"
    bench_select([str(EXPERIMENTS / name), "--seeds", "0", "--runs-dir", str(tmp_path / "runs"), "--out", str(out)])
    data = json.loads(out.with_suffix(".json").read_text())
    candidates = data["candidates"]
    settings = {c["setting"] for c in candidates}
    assert set(trimmed.settings()) <= settings
    assert len(candidates) >= 2 * len(trimmed.settings())  # a checkpoint per epoch (and the source phase)
    for candidate in candidates:
        assert set(candidate["scores"]) == set(grid.validators)
        assert all(math.isfinite(v) for v in candidate["scores"].values()), candidate
    for candidate in candidates:  # the report's target metrics are those `umadapt test` wrote for the same checkpoint
        if Path(candidate["checkpoint"]).name == "last.ckpt" or candidate["step"] == max(
            c["step"] for c in candidates if c["setting"] == candidate["setting"]
        ):
            tested = json.loads((Path(candidate["checkpoint"]).parents[1] / "results.json").read_text())["metrics"]
            for key, value in candidate["metrics"].items():
                assert value == pytest.approx(tested[f"test/target/{key}"], rel=1e-5, abs=1e-6), key
    rows = data["summary"]["rows"]
    assert {select.ORACLE, select.DEFAULT, select.RANDOM, *grid.validators} == set(rows)
    assert f"headline rule, fixed in advance: {grid.rule}" in out.read_text()
    for validator in grid.validators:
        assert out.with_name(f"selection_{validator}.png").is_file()
    # scores are cached per checkpoint: a second selection trains and scores nothing
    again = tmp_path / "again.md"
    trimmed_runs = sorted((tmp_path / "runs").glob("*/seed0"))
    assert all((run / "selection").is_dir() for run in trimmed_runs if run.parent.name in settings)
    monkeypatch.setattr("umadapt.bench.selection.run_grid", functools.partial(run_grid, execute=execute_none))
    monkeypatch.setattr("umadapt.select.RunLoader.__call__", lambda *a: pytest.fail("a cached score was recomputed"))
    runs = str(tmp_path / "runs")
    bench_select([str(EXPERIMENTS / name), "--seeds", "0", "--runs-dir", runs, "--out", str(again), "--resume"])
    assert json.loads(again.with_suffix(".json").read_text())["candidates"] == candidates


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits/base.yaml+digits/dann.yaml+selection/digits_validators.yaml"])
def test_selection_mode_config_logs_every_validator(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = [EXPERIMENTS / p for p in name.split("+")]
    main(
        [
            "fit",
            *config_args(*paths),
            *SMALL_DATA,
            "--trainer.max_epochs=2",
            "--trainer.check_val_every_n_epoch=1",
            "--checkpoint.every_n_epochs=1",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ]
    )
    (metrics,) = tmp_path.rglob("metrics.csv")
    rows = [r for r in csv.DictReader(metrics.open()) if r.get("val/validator/im")]
    assert len(rows) == 2  # every validation epoch (not the sanity check)
    names = {"source_risk", "entropy", "im", "bnm", "snd", "dev", "agreement"}
    assert {k.split("/")[-1] for k in rows[0] if k.startswith("val/validator/")} == names
    assert all(math.isfinite(float(rows[-1][f"val/validator/{n}"])) for n in names)
    assert {p.name for p in metrics.parent.glob("checkpoints/*.ckpt")} >= {"epoch=0-step=2.ckpt", "last.ckpt"}
    # a validator as the checkpoint monitor: the best epoch by information maximization, no target label involved
    best = max(rows, key=lambda r: float(r["val/validator/im"]))
    main(
        [
            "fit",
            *config_args(*paths),
            *SMALL_DATA,
            "--trainer.max_epochs=2",
            "--trainer.check_val_every_n_epoch=1",
            "--checkpoint.monitor=val/validator/im",
            "--checkpoint.mode=max",
            "--checkpoint.save_top_k=1",
            "--checkpoint.every_n_epochs=1",
            "--checkpoint.filename=best-{epoch}",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.logger.init_args.version=monitored",
        ]
    )
    (kept,) = tmp_path.rglob("monitored/checkpoints/best-*.ckpt")
    assert kept.name == f"best-epoch={int(best['epoch'])}.ckpt"


def test_validator_logger_reads_target_images_only():
    from umadapt.callbacks import ValidatorLogger
    from umadapt.validators import Entropy, validation_loaders

    class Data:
        eval_batch_size = 2

        def eval_dataset(self, role, split, native=True):
            return [{"image": 0, "label": 1}] * 2

        def images_dataset(self, role, split):
            assert (role, split) == ("target", "val")
            return [{"image": 0}] * 2

    source, target = validation_loaders(Data())
    assert set(next(iter(target))) == {"image"} and set(next(iter(source))) == {"image", "label"}
    with pytest.raises(ConfigError, match="train a model per score"):
        from umadapt.validators import ReverseValidation

        ValidatorLogger([ReverseValidation()])
    with pytest.raises(ConfigError, match=r"validators \['entropy'\] appear twice"):
        ValidatorLogger([Entropy(), Entropy()])
    with pytest.raises(ConfigError, match="object has no eval_dataset"):
        validation_loaders(object())


def test_grid_file_mistakes_are_named(tmp_path):
    good = (EXPERIMENTS / GRIDS[0]).read_text()
    path = tmp_path / "grid.yaml"
    path.write_text(good.replace("rule: reverse", "rule: oracle"))
    with pytest.raises(ConfigError, match="rule 'oracle' must be one of its validators"):
        load_grid(path)
    path.write_text(good.replace('default: {mu0: "0.01"', 'default: {mu0: "0.02"'))
    with pytest.raises(ConfigError, match=r"default mu0='0.02' is not one of \['0.003', '0.01', '0.03'\]"):
        load_grid(path)
    path.write_text(good + "\nepochs: 3\n")
    with pytest.raises(ConfigError, match=r"unknown keys \['epochs'\]"):
        load_grid(path)
    with pytest.raises(ConfigError, match="Grid file not found"):
        load_grid(Path(tmp_path / "none.yaml"))


def test_a_prepare_run_of_another_method_is_stacked_like_it(tmp_path):
    from umadapt.bench.selection import grid_benchmark

    grid = load_grid(EXPERIMENTS / "selection/synthrooms_self_training.yaml")
    bench = grid_benchmark(grid, get_benchmark("synthrooms"))
    assert bench.methods["teacher"] == get_benchmark("synthrooms").methods["source_only"]
    assert all(bench.methods[s] == get_benchmark("synthrooms").methods["self_training"] for s in grid.settings())
    path = tmp_path / "grid.yaml"
    path.write_text((EXPERIMENTS / "selection/synthrooms_self_training.yaml").read_text().replace(
        "method: source_only", "method: sourceonly"))  # fmt: skip
    with pytest.raises(ConfigError, match="prepare.method 'sourceonly' is not one of synthrooms's"):
        grid_benchmark(load_grid(path), get_benchmark("synthrooms"))


@pytest.mark.parametrize("name", ["selection/synthrooms_self_training.yaml"])
def test_self_training_grid_trains_its_teacher_first_and_hands_each_seed_its_own(name, tmp_path):
    """The teacher runs as the registry's source_only stack; every setting runs the self_training stack with its
    seed's teacher checkpoint, after that teacher, and the teacher is a candidate (no self-training)."""
    commands: list[list[str]] = []

    def fake(command: list[str], log: Path, threads: int | None = None) -> float:
        commands.append(command)
        if command[3] == "fit":
            (log.parent / "checkpoints").mkdir(parents=True, exist_ok=True)
            (log.parent / "checkpoints" / "last.ckpt").write_text("weights")
        results = [a.split("=", 1)[1] for a in command if a.startswith("--results.path=")]
        if results:
            Path(results[0]).write_text(json.dumps({"metrics": {}}))
        return 1.0

    grid = load_grid(EXPERIMENTS / name)
    folders = run_grid(grid, [0, 1], tmp_path, jobs=2, execute=fake)
    fits = [c for c in commands if c[3] == "fit"]
    bench = get_benchmark("synthrooms")
    teachers = [c for c in fits if "--trainer.logger.init_args.name=teacher" in c]
    assert len(teachers) == 2 and all(str(bench.stack("source_only")[-1].name) in " ".join(c) for c in teachers)
    students = [c for c in fits if c not in teachers]
    assert len(students) == 2 * len(grid.settings())
    for command in students:
        seed = next(a.split("=")[1] for a in command if a.startswith("--seed_everything="))
        assert (
            f"--model.init_args.teacher_checkpoint={tmp_path / 'teacher' / f'seed{seed}' / 'checkpoints' / 'last.ckpt'}"
            in command
        )
        assert "experiments/synthrooms/self_training.yaml" in " ".join(command)
    assert all(fits.index(t) < min(fits.index(c) for c in students) for t in teachers)  # the teachers go first
    assert {f.parent.name for f in folders} == {"teacher", *grid.settings()}
