"""All-pairs benchmarks (Office-31, Office-Home): the pair overrides, the per-pair + average summary and its chart."""

from __future__ import annotations

import json

import pytest

from umadapt.bench import pairs, runner
from umadapt.bench.registry import get_benchmark
from umadapt.errors import ConfigError

OFFICE31 = get_benchmark("office31")


def _summary(source_only: float, oracle: float) -> dict:
    return {
        "source_only": {"metrics": {"label/accuracy": [source_only, 0.01]}, "gap_closed": {"label/accuracy": 0.0}},
        "oracle": {"metrics": {"label/accuracy": [oracle, 0.02]}, "gap_closed": {"label/accuracy": 1.0}},
    }


def test_pair_overrides_and_tags():
    assert pairs.pair_args("Real World", "Art") == [
        "--data.init_args.source.init_args.domain=Real World",
        "--data.init_args.target.init_args.domain=Art",
    ]
    assert pairs.pair_tag("Real World", "Art") == "Real_World_to_Art"


def test_summary_averages_over_pairs_and_quotes_the_published_numbers():
    summaries = {"amazon_to_webcam": _summary(0.60, 0.90), "dslr_to_webcam": _summary(0.90, 1.00)}
    text = pairs.summary_markdown(OFFICE31, summaries)
    assert "| amazon_to_webcam | 60.0 ± 1.0 | 90.0 ± 2.0 |" in text and "| **average** | 75.0 | 95.0 |" in text
    assert "82.2 (original)" in text and "BENCHMARKS.md" not in text
    oracle_only = {"oracle": summaries["dslr_to_webcam"]["oracle"]}
    missing = pairs.summary_markdown(OFFICE31, {**summaries, "webcam_to_dslr": oracle_only})
    assert "| **average** | n/a | 96.7 |" in missing  # a method missing on one pair has no average
    panel = pairs.summary_panel(OFFICE31, summaries)
    assert panel.values == {"source_only": {t: 0.0 for t in summaries}, "oracle": {t: 100.0 for t in summaries}}


def test_main_runs_each_pair_through_the_runner_and_writes_the_summary(tmp_path, monkeypatch):
    calls = []

    def fake_run_benchmark(bench, methods, seeds, runs_dir, extra, **options):
        calls.append((runs_dir, list(extra)))
        accuracy = {"source_only": 0.5, "oracle": 0.9}
        records = {m: [{"metrics": {"test/target/label/accuracy": accuracy[m]}}] for m in methods}
        return runner.Runs(records, {m: {"runs": 1, "fit": 1.0, "test": 1.0} for m in methods})

    monkeypatch.setattr(pairs, "run_benchmark", fake_run_benchmark)
    folders = ["--out-dir", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs")]
    tags = ["amazon_to_webcam", "dslr_to_webcam"]
    pairs.main(["office31", "--pairs", *tags, "--seeds", "0", *folders, "--cli-arg=--trainer.max_epochs=1"])
    assert [c[0] for c in calls] == [tmp_path / "runs" / "office31" / tag for tag in tags]
    assert calls[0][1] == [*pairs.pair_args("amazon", "webcam"), "--trainer.max_epochs=1"]
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| **average** | 50.0 | 90.0 |" in summary and (tmp_path / "out" / "summary.png").is_file()
    per_pair = json.loads((tmp_path / "out" / "amazon_to_webcam.json").read_text())
    assert per_pair["summary"]["oracle"]["gap_closed"] == {"label/accuracy": 1.0}
    with pytest.raises(ConfigError, match=r"Unknown pair\(s\) \['amazon_to_mars'\] for office31; valid: \["):
        pairs.main(["office31", "--pairs", "amazon_to_mars", "--out-dir", str(tmp_path)])
    with pytest.raises(ConfigError, match="lists no pairs; use `python -m umadapt.bench run digits`"):
        pairs.main(["digits", "--out-dir", str(tmp_path)])
