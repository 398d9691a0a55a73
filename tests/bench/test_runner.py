"""The runner with a fake ``execute`` (no training): the umadapt commands it builds, the one resume rule (a finished
record is reused, not retrained) and its progress lines."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from umadapt.bench import report, runner
from umadapt.bench.registry import get_benchmark
from umadapt.errors import ConfigError

BENCH = get_benchmark("synthrooms")


class FakeUmadapt:
    """Stands in for ``python -m umadapt``: records each command and, for ``test``, writes a results file."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, command: list[str], log: Path) -> float:
        self.commands.append(command)
        assert command[1:3] == ["-m", "umadapt"] and log.name == f"{command[3]}.log"
        results = [a.split("=", 1)[1] for a in command if a.startswith("--results.path=")]
        if results:
            seed = next(a.split("=")[1] for a in command if a.startswith("--seed_everything="))
            Path(results[0]).parent.mkdir(parents=True, exist_ok=True)
            Path(results[0]).write_text(json.dumps({"metrics": {"test/target/depth/rmse": 1.0 + int(seed)}}))
        return 10.0

    def trained(self) -> list[str]:
        """``method/seed`` of each fit command."""
        return [_run(c) for c in self.commands if c[3] == "fit"]


def _value(command: list[str], option: str) -> str:
    return next(a.split("=", 1)[1] for a in command if a.startswith(f"{option}="))


def _run(command: list[str]) -> str:
    """``method/seed`` of one command."""
    return f"{_value(command, '--trainer.logger.init_args.name')}/{_value(command, '--seed_everything')}"


def test_fit_then_test_on_the_last_checkpoint_with_the_method_stack(tmp_path):
    fake = FakeUmadapt()
    record = runner.run_one(BENCH, "umadapt_no_ccr", 1, tmp_path, ["--trainer.max_epochs=1"], execute=fake)
    fit, test = fake.commands
    configs = [a for a in fit[4:] if a.endswith(".yaml")]
    assert [Path(c).name for c in configs] == ["base.yaml", "umadapt.yaml", "umadapt_no_ccr.yaml"]
    assert fit[3] == "fit" and test[3] == "test" and "--trainer.max_epochs=1" in fit and "--seed_everything=1" in test
    run = tmp_path / "umadapt_no_ccr" / "seed1"
    assert f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}" in test
    assert f"--results.path={run / 'results.json'}" in test
    assert _value(fit, "--trainer.logger.init_args.version") == "seed1" and not any("ckpt_path" in a for a in fit)
    saved = json.loads((run / runner.RECORD).read_text())
    assert saved == record and record["fit_seconds"] == 10.0 and record["command_args"][:2] == ["--config", configs[0]]


def test_resume_reuses_finished_records_and_trains_the_rest(tmp_path, capsys):
    fake = FakeUmadapt()
    first = runner.run_benchmark(BENCH, ["source_only", "oracle"], [0, 1], tmp_path, execute=fake)
    assert fake.trained() == ["source_only/0", "source_only/1", "oracle/0", "oracle/1"]
    assert first.wall["oracle"] == {"runs": 2, "fit": 20.0, "test": 20.0}
    (tmp_path / "oracle" / "seed1" / runner.RECORD).unlink()  # killed before its record was written

    again = FakeUmadapt()
    second = runner.run_benchmark(BENCH, ["source_only", "oracle"], [0, 1], tmp_path, resume=True, execute=again)
    assert again.trained() == ["oracle/1"], "a (method, seed) with a record is reused, only the missing one trains"
    assert second.records == first.records
    out = capsys.readouterr().out
    assert "source_only seed 0 reused benchmark_record.json (--resume); 1/4 runs done" in out
    assert "oracle seed 1 trained in 20 s; 4/4 runs done" in out and "ETA 0.0 min" in out

    without = FakeUmadapt()
    runner.run_benchmark(BENCH, ["oracle"], [0], tmp_path, execute=without)
    assert without.trained() == ["oracle/0"], "without --resume every run trains again"


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_code_version_follows_the_code_folders_only(tmp_path):
    assert runner.code_version(tmp_path) is None, "not a git checkout"
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@t")
    _git(tmp_path, "config", "user.name", "t")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    (tmp_path / "README.md").write_text("docs\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "one")
    first = runner.code_version(tmp_path)
    assert first is not None and len(first) == 12
    (tmp_path / "README.md").write_text("other docs\n")
    _git(tmp_path, "commit", "-qam", "docs only")
    assert runner.code_version(tmp_path) == first, "docs outside the code folders do not change the version"
    (tmp_path / "src" / "a.py").write_text("x = 2\n")
    assert runner.code_version(tmp_path) == first + "+dirty"
    _git(tmp_path, "commit", "-qam", "code")
    assert runner.code_version(tmp_path) not in (first, first + "+dirty")


def test_resume_warns_about_records_of_other_code(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runner, "code_version", lambda root: "aaaa")
    first = runner.run_benchmark(BENCH, ["oracle"], [0, 1], tmp_path, execute=FakeUmadapt())
    assert [r["code_version"] for r in first.records["oracle"]] == ["aaaa", "aaaa"]
    assert first.execution["code_versions"] == ["aaaa"]
    record = tmp_path / "oracle" / "seed1" / runner.RECORD
    record.write_text(json.dumps({**json.loads(record.read_text()), "code_version": "bbbb"}))
    capsys.readouterr()
    again = runner.run_benchmark(BENCH, ["oracle"], [0, 1], tmp_path, resume=True, execute=FakeUmadapt())
    out = capsys.readouterr().out
    assert "warning: reused oracle seed 1, but code bbbb trained it, this tree is aaaa;" in out
    assert "seed 0, but" not in out, "a record of this very code is reused silently"
    assert again.execution["code_versions"] == ["aaaa", "bbbb"]
    assert "- Code version of the runs (`umadapt.bench.runner.code_version`): `aaaa`, `bbbb`" in "\n".join(
        report.cost_lines(again.wall, again.execution)
    )


def test_epoch_scale_seed_major_order_and_per_run_arguments(tmp_path):
    mtl = get_benchmark("mtl")
    fake = FakeUmadapt()

    def extra(method: str, seed: int) -> list[str]:
        return [f"--note={method}{seed}"] if method == "progressive" else []

    options = dict(epochs=2, seed_major=True, run_args=extra, execute=fake)
    runner.run_benchmark(mtl, ["hard_fixed", "progressive"], [0, 1], tmp_path, **options)
    assert fake.trained() == ["hard_fixed/0", "progressive/0", "hard_fixed/1", "progressive/1"]
    fits = [c for c in fake.commands if c[3] == "fit"]
    assert [_value(c, "--trainer.max_epochs") for c in fits] == ["2", "6", "2", "6"]
    assert _value(fits[3], "--note") == "progressive1" and not any(a.startswith("--note") for a in fits[0])


def test_progress_eta_counts_only_runs_still_to_train():
    progress = runner.Progress("bench toy", planned=4, to_train=3)
    assert progress.finished("a", 0, None).endswith("1/4 runs done, elapsed 0.0 min, ETA n/a")  # nothing timed yet
    assert progress.finished("a", 1, 60.0).endswith("2/4 runs done, elapsed 0.0 min, ETA 2.0 min")  # 2 left x 60 s
    assert progress.finished("b", 0, 120.0).endswith("3/4 runs done, elapsed 0.0 min, ETA 1.5 min")  # 1 left x 90 s


def test_unknown_methods_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"Unknown method\(s\) \['nope'\] for synthrooms; valid: \['source_only'"):
        runner.select_methods(BENCH, ["oracle", "nope"])
    assert runner.select_methods(BENCH, None) == list(BENCH.methods)


class SlowFakeUmadapt(FakeUmadapt):
    """A fake whose fit takes a while and writes a progress line, recording the threads and the overlap of runs."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.active = self.most_active = 0
        self.threads: list[int | None] = []

    def __call__(self, command: list[str], log: Path, threads: int | None = None) -> float:
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            self.threads.append(threads)
        if command[3] == "fit":
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text("progress: epoch 2/12 batch 100/600 (17 %) 4.0 batches/s train/loss 1.5 ETA 2.1 min\n")
            time.sleep(0.3)
        with self.lock:
            self.active -= 1
            return super().__call__(command, log)


def test_jobs_run_side_by_side_with_their_share_of_the_cores(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    fake = SlowFakeUmadapt()
    options = dict(execute=fake, jobs=2, status_every=0.1)
    runs = runner.run_benchmark(BENCH, ["source_only", "oracle"], [0, 1], tmp_path, **options)
    assert fake.most_active == 2 and set(fake.threads) == {2}, "2 jobs on 4 cores: 2 at once, 2 threads each"
    assert list(runs.records) == ["source_only", "oracle"] and len(runs.records["oracle"]) == 2  # plan order
    out = capsys.readouterr().out
    assert "epoch 2/12, batch 100/600, ETA 2.1 min" in out, "status lines show each running run's progress"
    serial = SlowFakeUmadapt()
    runner.run_benchmark(BENCH, ["oracle"], [0, 1], tmp_path / "serial", execute=serial)
    assert serial.most_active == 1 and serial.threads == [None] * 4, "1 job: one at a time, threads inherited"
    with pytest.raises(ConfigError, match="--jobs must be at least 1"):
        runner.run_benchmark(BENCH, ["oracle"], [0], tmp_path, execute=fake, jobs=0)


def test_shards_split_the_plan_and_the_last_resume_writes_the_table(tmp_path, capsys):
    plan = [(m, s) for m in ("a", "b", "c") for s in (0, 1)]
    assert runner.shard_plan(plan, (1, 2)) + runner.shard_plan(plan, (2, 2)) == plan[0::2] + plan[1::2]
    with pytest.raises(ConfigError, match="--shard 3/2"):
        runner.shard_plan(plan, (3, 2))
    fakes = [FakeUmadapt(), FakeUmadapt()]
    for k, fake in enumerate(fakes, 1):
        args = ["synthrooms", "--methods", "source_only", "oracle", "--seeds", "0", "1", "--shard", f"{k}/2"]
        runner.main([*args, "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "table.md")], execute=fake)
    assert sorted(fakes[0].trained() + fakes[1].trained()) == sorted(
        ["source_only/0", "source_only/1", "oracle/0", "oracle/1"]
    )
    assert len(fakes[0].trained()) == 2 and (tmp_path / "table.md").is_file(), "the last shard writes the table"
    assert "runs of other shards are not finished yet" in capsys.readouterr().out


def test_a_run_that_trains_again_starts_from_an_empty_folder(tmp_path):
    """A killed (or earlier) run leaves ``checkpoints/last.ckpt``; Lightning's checkpoint callback then saves the new
    run as ``last-v1.ckpt`` and ``test --ckpt_path .../last.ckpt`` scored the stale checkpoint (a SynthRooms
    UM-Adapt benchmark run was tested at step 1240 of 1798 that way). The runner clears the folder before fit."""
    stale = tmp_path / "oracle" / "seed0" / "checkpoints" / "last.ckpt"
    stale.parent.mkdir(parents=True)
    stale.write_text("a killed run's checkpoint")
    seen = []

    def fake(command: list[str], log: Path) -> float:
        if command[3] == "fit":
            seen.append(stale.exists())
        return FakeUmadapt()(command, log)

    runner.run_one(BENCH, "oracle", 0, tmp_path, execute=fake)
    assert seen == [False] and not stale.exists()


TEACHER = "--model.init_args.teacher_checkpoint"
# dann starts from source_only's checkpoint of its seed (no extra_report: it measures SynthRooms' rendering rate)
STUDENT = dataclasses.replace(BENCH, checkpoints_from={"dann": {TEACHER[2:]: "source_only"}}, extra_report=None)


class CheckpointingFake(SlowFakeUmadapt):
    """A slow fake whose fit writes ``checkpoints/last.ckpt``; it notes, as each fit starts, which records exist."""

    def __init__(self, runs: Path) -> None:
        super().__init__()
        self.runs = runs
        self.records_at_fit: dict[str, list[str]] = {}

    def __call__(self, command: list[str], log: Path, threads: int | None = None) -> float:
        if command[3] == "fit":
            self.records_at_fit[_run(command)] = sorted(
                p.parent.relative_to(self.runs).as_posix() for p in self.runs.glob("*/*/" + runner.RECORD)
            )
            (log.parent / "checkpoints").mkdir(parents=True, exist_ok=True)
            (log.parent / "checkpoints" / "last.ckpt").write_text("weights")
        return super().__call__(command, log, threads)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_consumer_trains_after_and_from_its_producers_checkpoint_of_the_same_seed(tmp_path, monkeypatch, jobs):
    monkeypatch.setattr(runner, "get_benchmark", lambda name, registry=None: STUDENT)
    runs = tmp_path / "runs"
    fake = CheckpointingFake(runs)
    args = ["synthrooms", "--methods", "dann", "source_only", "--seeds", "0", "1", "--jobs", str(jobs)]
    runner.main([*args, "--runs-dir", str(runs), "--out", str(tmp_path / "table.md")], execute=fake)
    for seed in (0, 1):
        assert f"source_only/seed{seed}" in fake.records_at_fit[f"dann/{seed}"], "the producer's run finished first"
    if jobs == 1:
        assert fake.trained() == ["source_only/0", "source_only/1", "dann/0", "dann/1"]
    else:
        assert fake.most_active == 2
    fits = {_run(c): c for c in fake.commands if c[3] == "fit"}
    for seed in (0, 1):
        teacher = runs / "source_only" / f"seed{seed}" / "checkpoints" / "last.ckpt"
        assert _value(fits[f"dann/{seed}"], TEACHER) == str(teacher), "the same seed's producer checkpoint"
        assert not any(a.startswith(TEACHER) for a in fits[f"source_only/{seed}"])
    table = json.loads((tmp_path / "table.json").read_text())
    assert list(table["runs"]) == ["dann", "source_only"], "the report keeps the methods' order"


def test_a_method_waits_for_the_runs_of_its_single_task_checkpoints(tmp_path):
    mtl = get_benchmark("mtl")
    teachers = [f"teacher_{t}" for t in mtl.single_task]
    assert runner.producers(mtl, "universal_long_teachers") == teachers
    assert runner.producers(mtl, "universal") == list(mtl.single_task.values())
    fake = CheckpointingFake(tmp_path)
    runner.run_benchmark(mtl, ["universal_long_teachers", *teachers], [0], tmp_path, jobs=2, execute=fake)
    assert fake.most_active == 2
    assert fake.records_at_fit["universal_long_teachers/0"] == [f"{t}/seed0" for t in teachers], "teachers first"


def test_a_missing_producer_checkpoint_stops_before_training_and_resume_uses_the_kept_one(tmp_path):
    fake = CheckpointingFake(tmp_path)
    message = (
        r"dann seed 1 starts from source_only's checkpoint \(model.init_args.teacher_checkpoint\), but "
        + re.escape(str(tmp_path / "source_only" / "seed1" / "checkpoints" / "last.ckpt"))
        + r" does not exist; add source_only to --methods, or run it first with the same --runs-dir\."
    )
    runner.run_benchmark(STUDENT, ["source_only"], [0], tmp_path, execute=fake)
    with pytest.raises(ConfigError, match=message):
        runner.run_benchmark(STUDENT, ["dann"], [0, 1], tmp_path, execute=fake)
    assert fake.trained() == ["source_only/0"], "nothing trains when a producer checkpoint is missing"

    runner.run_benchmark(STUDENT, ["source_only", "dann"], [1], tmp_path, execute=fake)
    (tmp_path / "dann" / "seed1" / runner.RECORD).unlink()
    again = CheckpointingFake(tmp_path)
    runner.run_benchmark(STUDENT, ["source_only", "dann"], [0, 1], tmp_path, resume=True, execute=again)
    assert again.trained() == ["dann/0", "dann/1"], "reused producers hand on their kept checkpoints"

    no_checkpoint = FakeUmadapt()  # a producer whose fit writes no last.ckpt: its consumer stops when it would start
    with pytest.raises(ConfigError, match=r"dann seed 0 starts from source_only's checkpoint .* does not exist"):
        runner.run_benchmark(STUDENT, ["source_only", "dann"], [0], tmp_path / "bare", execute=no_checkpoint)
    assert no_checkpoint.trained() == ["source_only/0"]


def test_resume_trains_a_consumer_again_when_its_producer_trains_again(tmp_path):
    """A student's record from an older teacher is not reused next to a retrained teacher of the same seed."""
    runner.run_benchmark(STUDENT, ["source_only", "dann"], [0, 1], tmp_path, execute=CheckpointingFake(tmp_path))
    (tmp_path / "source_only" / "seed1" / runner.RECORD).unlink()
    again = CheckpointingFake(tmp_path)
    runner.run_benchmark(STUDENT, ["source_only", "dann"], [0, 1], tmp_path, resume=True, execute=again)
    assert again.trained() == ["source_only/1", "dann/1"]


def test_shards_keep_a_consumer_with_its_producer_of_the_same_seed(tmp_path, monkeypatch):
    plan = [(m, s) for m in ("a", "b", "c") for s in (0, 1)]
    links = {"c": ["a"]}
    assert runner.shard_plan(plan, (1, 2), links) == [("a", 0), ("b", 0), ("c", 0)]
    assert runner.shard_plan(plan, (2, 2), links) == [("a", 1), ("b", 1), ("c", 1)]
    assert runner.shard_plan(plan, (1, 3), {"b": ["a"], "c": ["b"]}) == [("a", 0), ("b", 0), ("c", 0)]
    monkeypatch.setattr(runner, "get_benchmark", lambda name, registry=None: STUDENT)
    fakes = [CheckpointingFake(tmp_path / "runs"), CheckpointingFake(tmp_path / "runs")]
    for k, fake in enumerate(fakes, 1):
        args = ["synthrooms", "--methods", "source_only", "dann", "--seeds", "0", "1", "--shard", f"{k}/2"]
        runner.main([*args, "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "table.md")], execute=fake)
    assert [f.trained() for f in fakes] == [["source_only/0", "dann/0"], ["source_only/1", "dann/1"]]
    assert (tmp_path / "table.md").is_file()
