"""The multi-task benchmark's summary (single-task reference, Δ_MTL per seed) and its checkpoint reading."""

from __future__ import annotations

import pytest
import torch

from umadapt.bench import mtl
from umadapt.bench.registry import get_benchmark
from umadapt.errors import ConfigError

BENCH = get_benchmark("mtl")


def _record(metrics: dict[str, float]) -> dict:
    return {"metrics": {f"test/{d}/{k}": v for d in ("source", "target") for k, v in metrics.items()}, "seed": "0"}


SINGLE = {
    "single_depth": [_record({"depth/abs_err": 0.5, "depth/rmse": 1.0})],
    "single_normals": [_record({"normals/mean": 20.0})],
    "single_segmentation": [_record({"segmentation/miou": 0.4})],
}
SHARED = _record({"depth/abs_err": 0.4, "depth/rmse": 1.0, "normals/mean": 22.0, "segmentation/miou": 0.5})


def test_summary_uses_the_single_task_runs_as_reference():
    reference = mtl.single_task_reference(BENCH, SINGLE)
    assert reference[0]["metrics"]["test/source/depth/abs_err"] == 0.5 and len(reference[0]["metrics"]) == 8
    summary = mtl.summarise(BENCH, {**SINGLE, "hard_fixed": [SHARED]})
    assert set(summary["source"]) == {"single_task", "hard_fixed"}
    # headline: depth abs_err +20 %, normals mean -10 %, segmentation miou +25 %  -> +11.67 %
    assert summary["source"]["hard_fixed"]["delta"][0] == pytest.approx((20 - 10 + 25) / 3)
    # all: depth (abs_err +20 %, rmse 0 %) averages to +10 % first, then over the three tasks (LibMTL's order);
    # over the four metrics it would read +8.75 %, depth's two metrics weighing twice
    assert summary["target"]["hard_fixed"]["delta_all"][0] == pytest.approx(((20 + 0) / 2 - 10 + 25) / 3)
    per_task = {k: v[0] for k, v in summary["source"]["hard_fixed"]["delta_per_task"].items()}
    assert per_task == pytest.approx({"depth/abs_err": 20.0, "normals/mean": -10.0, "segmentation/miou": 25.0})
    assert summary["source"]["single_task"]["delta"][0] == pytest.approx(0.0)


def test_markdown_rows_and_chart_panels():
    summary = mtl.summarise(BENCH, {**SINGLE, "hard_fixed": [SHARED]})
    sizes = {"single_task": 3000, "hard_fixed": 1000}
    wall = {"hard_fixed": {"runs": 1, "fit": 1.0, "test": 1.0}}
    text = mtl.to_markdown(BENCH, summary, [0], wall, sizes, "cmd", 1, [])
    row = "| hard_fixed | 0.4000 ± 0.0000 | 22.00 ± 0.00 | 0.5000 ± 0.0000 | +11.67 ± 0.00 | +8.33 ± 0.00 | 1 k |"
    assert row in text
    assert "| single_task | 0.5000 ± 0.0000 | 20.00 ± 0.00 | 0.4000 ± 0.0000 | +0.00 ± 0.00 |" in text
    assert (
        "Settings: 1 epochs (overridden; progressive x3, teacher_depth x10, " in text
        and "## Every target metric" in text
    )
    assert "Li, Liu & Bilen, IJCV 2023" in text
    panels = mtl.panels(BENCH, summary)
    assert [p.values["hard_fixed"]["normals"] for p in panels] == pytest.approx([-10.0, -10.0])


class _NotATensor:
    pass


def test_state_size_reads_checkpoints_safely(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    state = {"w": torch.zeros(3, 4), "b": torch.zeros(5), "steps": torch.tensor(7)}
    torch.save({"state_dict": state}, run / "checkpoints" / "last.ckpt")
    assert mtl.state_size(run) == 17  # floating-point values only
    assert mtl.state_size(tmp_path / "no_run") is None
    torch.save({"state_dict": state, "extra": _NotATensor()}, run / "checkpoints" / "last.ckpt")
    with pytest.raises(ConfigError, match="benchmark checkpoint .*last.ckpt.* was not loaded"):  # never unpickled
        mtl.state_size(run)


def test_teachers_are_that_seeds_single_task_checkpoints(tmp_path):
    paths = mtl.teacher_paths(BENCH, tmp_path, 2)
    assert paths == {t: str(tmp_path / f"single_{t}/seed2/checkpoints/last.ckpt") for t in BENCH.single_task}
    longer = mtl.teacher_paths(BENCH, tmp_path, 2, "universal_long_teachers")
    assert longer == {t: str(tmp_path / f"teacher_{t}/seed2/checkpoints/last.ckpt") for t in BENCH.single_task}
    assert mtl.teacher_paths(BENCH, tmp_path, 2, "universal") == paths


def test_jobs_reach_the_runner(monkeypatch, tmp_path):
    seen = {}

    class Stop(Exception):
        pass

    def fake_run_benchmark(bench, methods, seeds, runs_dir, extra, **options):
        seen.update(options)
        raise Stop

    monkeypatch.setattr(mtl, "run_benchmark", fake_run_benchmark)
    with pytest.raises(Stop):
        mtl.main(["--seeds", "0", "--jobs", "2", "--out", str(tmp_path / "t.md"), "--runs-dir", str(tmp_path)])
    assert seen["jobs"] == 2 and seen["seed_major"] is True
