"""The report writer on synthetic records: mean ± std, Δ_MTL and gap closed against hand-computed values, the
Markdown and JSON of results/*.md|json, and the bar-chart PNG beside them."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from umadapt.bench import report
from umadapt.bench.registry import REGISTRY_PATH, Benchmark

ROOT = REGISTRY_PATH.parents[1]
BENCH = Benchmark(
    name="toy",
    root=ROOT,
    base="experiments/synthrooms/base.yaml",
    methods={m: (f"experiments/synthrooms/{m}.yaml",) for m in ("source_only", "dann", "oracle")},
    headline={"depth": "rmse", "segmentation": "miou"},
    published={"Toy paper, target rmse": "0.42"},
    extra_report="tests.bench.test_report:extra_lines",
)
SEEDS = {  # method: (rmse per seed, miou per seed)
    "source_only": ([1.0, 1.2], [0.20, 0.30]),
    "dann": ([0.8, 0.9], [0.30, 0.40]),
    "oracle": ([0.5, 0.5], [0.60, 0.60]),
}


def _metrics(rmse: float, miou: float) -> dict[str, float]:
    target = {"test/target/depth/rmse": rmse, "test/target/segmentation/miou": miou, "test/target/loss": 1.0}
    return {**target, "test/source/depth/rmse": 9.0}  # another domain: not in the target table


RECORDS = {m: [{"metrics": _metrics(r, i)} for r, i in zip(*values)] for m, values in SEEDS.items()}
WALL = {m: {"runs": 2, "fit": 60.0, "test": 6.0} for m in RECORDS}


def extra_lines() -> list[str]:
    return ["- extra cost line"]


def test_mean_std_delta_mtl_and_gap_closed_match_hand_computed_values():
    summary = report.summarise(BENCH, RECORDS)
    dann = summary["dann"]
    assert dann["metrics"]["depth/rmse"] == pytest.approx((0.85, 0.0707107), abs=1e-6)
    assert summary["source_only"]["metrics"]["depth/rmse"] == pytest.approx((1.1, 0.1414214), abs=1e-6)
    assert "loss" in dann["metrics"] and not any(k.startswith("test/") for k in dann["metrics"])
    # Δ_MTL: rmse -(0.85 - 1.1) / 1.1 = +22.73 %, miou (0.35 - 0.25) / 0.25 = +40 % -> +31.36 %
    assert dann["delta_mtl"] == pytest.approx((25 / 1.1 + 40) / 2)
    assert summary["oracle"]["delta_mtl"] == pytest.approx((60 / 1.1 + 140) / 2)
    assert summary["source_only"]["delta_mtl"] == pytest.approx(0.0)
    # gap closed: rmse (0.85 - 1.1) / (0.5 - 1.1), miou (0.35 - 0.25) / (0.6 - 0.25)
    assert dann["gap_closed"] == pytest.approx({"depth/rmse": 0.25 / 0.6, "segmentation/miou": 0.1 / 0.35})
    assert summary["oracle"]["gap_closed"] == pytest.approx({"depth/rmse": 1.0, "segmentation/miou": 1.0})


def test_markdown_json_and_chart_are_written_beside_each_other(tmp_path):
    out = tmp_path / "toy.md"
    execution = {"jobs": 2, "threads": 1, "elapsed_s": 90.0}
    summary = report.write_benchmark(BENCH, RECORDS, WALL, [0, 1], out, "python -m umadapt.bench run toy", execution)
    text = out.read_text()
    assert text.startswith("# toy: target-domain test metrics\n")
    header = "| method | depth/rmse ↓ | segmentation/miou ↑ | Δ_MTL vs source-only (%) | gap closed (depth/rmse, "
    assert header in text
    assert "| dann | 0.8500 ± 0.0707 | 0.3500 ± 0.0707 | +31.36 | 42 %, 29 % |" in text
    assert "| source_only | 1.1000 ± 0.1414 | 0.2500 ± 0.0707 | +0.00 | 0 %, 0 % |" in text
    assert "| loss | 1.0000 ± 0.0000 | 1.0000 ± 0.0000 | 1.0000 ± 0.0000 |" in text  # no direction arrow
    assert "- dann: 2 runs, fit 60 s + test 6 s in total" in text and "- Sum of the runs' wall times: 3.3 min" in text
    assert "- extra cost line" in text and "![gap closed per task and method](toy.png)" in text
    published = text.index(report.PUBLISHED_TITLE)
    assert text.index("## Headline") < text.index("## Cost") < published and "0.42" in text[published:]
    assert "BENCHMARKS.md" not in text
    saved = json.loads(out.with_suffix(".json").read_text())
    assert set(saved) == {"summary", "runs", "wall", "execution"} and saved["runs"]["dann"] == RECORDS["dann"]
    assert saved["execution"] == execution and "1 torch threads per run" in text
    assert "- Benchmark wall clock: 1.5 min (2 runs side by side)" in text
    assert saved["summary"]["dann"]["gap_closed"] == pytest.approx(summary["dann"]["gap_closed"])

    image = Image.open(out.with_suffix(".png")).convert("RGB")
    assert image.width > 300 and image.height > 250
    colours = {colour for _, colour in image.getcolors(maxcolors=1 << 16)}
    assert {(0x4C, 0x72, 0xB0), (0xDD, 0x84, 0x52)} <= colours, "one bar colour per task"
    assert (0x55, 0xA8, 0x68) not in colours, "only two tasks: no third series colour"


def test_no_oracle_means_no_gap_and_no_chart(tmp_path):
    bench = Benchmark(**{**BENCH.__dict__, "oracle": None, "extra_report": None})
    out = tmp_path / "toy.md"
    summary = report.write_benchmark(bench, RECORDS, WALL, [0, 1], out, "cmd")
    assert "gap_closed" not in summary["dann"] and summary["dann"]["delta_mtl"] == pytest.approx((25 / 1.1 + 40) / 2)
    assert not out.with_suffix(".png").exists()
    assert "| dann | 0.8500 ± 0.0707 | 0.3500 ± 0.0707 | +31.36 | n/a |" in out.read_text()


def test_chart_axis_covers_negative_gaps_and_the_oracle_line(tmp_path):
    assert report._ticks(-2.0, 100.0) == [-20.0, 0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
    panel = report.Panel("t", "gap closed (%)", {"a": {"depth": -2.0, "normals": 130.0}}, marks=(0.0, 100.0))
    report.bar_chart(tmp_path / "c.png", [panel, panel])
    image = Image.open(tmp_path / "c.png")
    assert image.height == 2 * report._draw_panel(panel).height


def test_a_task_without_gap_is_not_applicable_instead_of_an_error(tmp_path):
    records = {**RECORDS, "oracle": [{"metrics": _metrics(1.1, 0.6)}]}  # oracle rmse == source-only mean rmse
    summary = report.write_benchmark(BENCH, records, WALL, [0, 1], tmp_path / "toy.md", "cmd")
    assert summary["dann"]["gap_closed"] == pytest.approx({"segmentation/miou": 0.1 / 0.35})
    assert "| dann | 0.8500 ± 0.0707 | 0.3500 ± 0.0707 | +31.36 | n/a, 29 % |" in (tmp_path / "toy.md").read_text()


def test_a_label_free_selection_beside_the_table_becomes_its_headline(tmp_path):
    from umadapt import select

    records = [
        {
            "setting": s,
            "seed": seed,
            "step": 1,
            "scores": {"im": v},
            "metrics": {"depth/rmse": r, "segmentation/miou": i},
        }
        for seed in (0, 1)
        for s, v, r, i in (("a", 0.0, 1.0, 0.2), ("b", 1.0, 0.8, 0.3), ("c", 2.0, 0.9, 0.25))
    ]
    about = {"rule": "im", "method": "dann", "grid": "toy_grid.yaml"}
    keys = ["depth/rmse", "segmentation/miou"]
    select.write_report(records, ["im"], keys, "a", tmp_path / "selection_toy.md", "t", "cmd", about)
    out = tmp_path / "toy.md"
    report.write_benchmark(BENCH, RECORDS, WALL, [0, 1], out, "cmd")
    text = out.read_text()
    assert text.index("## Headline: dann chosen without target labels") < text.index(
        "## Methods at their configs' settings (chosen with target labels where"
    )
    assert "| im (label-free, the headline) | 0.9000 ± 0.0000 | 0.2500 ± 0.0000 |" in text
    assert "| default settings, last epoch | 1.0000 ± 0.0000 | 0.2000 ± 0.0000 |" in text
    assert "| oracle pick (target test labels: unreachable bound) | 0.8000 ± 0.0000 | 0.3000 ± 0.0000 |" in text
    (tmp_path / "selection_toy.json").unlink()
    report.write_benchmark(BENCH, RECORDS, WALL, [0, 1], out, "cmd")
    assert "chosen without target labels" not in out.read_text() and "## Headline\n" in out.read_text()


def test_a_metric_missing_from_one_seed_is_summarised_over_the_seeds_that_have_it():
    """A per-class IoU is left out of a run where the class never appears (no NaN in the logs); the summary must not
    fail with a KeyError on that run (it did before) but average the seeds that scored it."""
    records = {m: [dict(r, metrics=dict(r["metrics"])) for r in runs] for m, runs in RECORDS.items()}
    records["dann"][0]["metrics"]["test/target/segmentation/iou_ball"] = 0.25
    summary = report.summarise(BENCH, records)
    assert summary["dann"]["metrics"]["segmentation/iou_ball"] == pytest.approx((0.25, 0.0))
    assert "segmentation/iou_ball" not in summary["oracle"]["metrics"]
