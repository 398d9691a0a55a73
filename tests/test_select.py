"""``python -m umadapt.select``: candidates found in run folders, picks and rank correlations on runs with known
metrics, the report's files, and the errors for runs that cannot be compared."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from scipy.stats import kendalltau, spearmanr

from umadapt import select
from umadapt.errors import ConfigError


def _run(root, setting, seed, steps, data="digits", last_step=None):
    folder = root / setting / f"seed{seed}"
    (folder / "checkpoints").mkdir(parents=True)
    config = {"seed_everything": seed, "data": {"init_args": {"source": {"class_path": data}, "tasks": ["label"]}}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    for step in steps:
        torch.save({"global_step": step, "state_dict": {}}, folder / "checkpoints" / f"epoch={step // 10 - 1}.ckpt")
    if last_step is not None:
        torch.save({"global_step": last_step, "state_dict": {}}, folder / "checkpoints" / "last.ckpt")
    return folder


def test_discover_lists_every_checkpoint_once(tmp_path):
    a = _run(tmp_path, "a", 0, [10, 20], last_step=20)  # last.ckpt = the epoch checkpoint of step 20: one candidate
    b = _run(tmp_path, "b", 0, [10], last_step=30)
    found = select.discover([a, b])
    assert [(c.setting, c.seed, c.step, c.checkpoint.name) for c in found] == [
        ("a", 0, 10, "epoch=0.ckpt"),
        ("a", 0, 20, "epoch=1.ckpt"),
        ("b", 0, 10, "epoch=0.ckpt"),
        ("b", 0, 30, "last.ckpt"),
    ]


def test_runs_of_different_benchmarks_are_refused_naming_both(tmp_path):
    a = _run(tmp_path, "a", 0, [10, 20])
    b = _run(tmp_path, "b", 0, [10], data="synthrooms")
    with pytest.raises(ConfigError, match=rf"Runs {a} and {b} are of different benchmarks or task sets"):
        select.discover([a, b])


def test_fewer_than_two_candidates_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="at least two candidates; found 1"):
        select.discover([_run(tmp_path, "a", 0, [10])])
    with pytest.raises(ConfigError, match="no config.yaml"):
        select.discover([tmp_path / "nowhere"])


def _records():
    """Three runs (settings a, b, c) x 2 seeds with known target accuracy and validator scores: ``good`` ranks the
    candidates as the accuracy does, ``bad`` the other way round, ``noisy`` swaps the two best."""
    accuracy = {0: {"a": 0.50, "b": 0.70, "c": 0.60}, 1: {"a": 0.40, "b": 0.65, "c": 0.70}}
    rows = []
    for seed, by_setting in accuracy.items():
        ordered = sorted(by_setting, key=by_setting.get)
        for setting, value in by_setting.items():
            rank = ordered.index(setting)
            noisy = {0: 0, 1: 2, 2: 1}[rank]
            scores = {"good": float(rank), "bad": -float(rank), "noisy": float(noisy)}
            rows.append({"setting": setting, "seed": seed, "step": 10, "scores": scores,
                         "metrics": {"label/accuracy": value}})  # fmt: skip
    return rows


def test_summary_picks_and_correlations_on_runs_with_known_metrics():
    records = _records()
    summary = select.summarize(records, ["good", "bad", "noisy"], ["label/accuracy"], default="a")
    rows = summary["rows"]
    assert rows[select.ORACLE]["picked"] == ["b step10", "c step10"]
    assert rows[select.DEFAULT]["picked"] == ["a step10", "a step10"]
    assert rows["good"]["picked"] == rows[select.ORACLE]["picked"]
    assert rows["bad"]["picked"] == ["a step10", "a step10"]
    assert rows["noisy"]["picked"] == ["c step10", "b step10"]
    assert rows["good"]["metrics"]["label/accuracy"][0] == pytest.approx(0.70)
    assert rows["noisy"]["metrics"]["label/accuracy"][0] == pytest.approx((0.60 + 0.65) / 2)
    assert rows["good"]["gap"][0] == pytest.approx(0.0)
    assert rows[select.RANDOM]["metrics"]["label/accuracy"][0] == pytest.approx((0.6 + (0.4 + 0.65 + 0.7) / 3) / 2)
    assert rows[select.RANDOM]["picked"] == ["mean of 3 candidates"] * 2
    assert rows["noisy"]["gap"][0] == pytest.approx(((0.70 - 0.60) + (0.70 - 0.65)) / 2)
    assert rows["good"]["recovered"] == pytest.approx(1.0)
    assert rows["bad"]["recovered"] == pytest.approx(0.0)
    chance = (0.6 + (0.4 + 0.65 + 0.7) / 3) / 2
    assert rows["noisy"]["recovered_vs_random"] == pytest.approx(((0.60 + 0.65) / 2 - chance) / (0.70 - chance))
    gain = (0.70 + 0.70) / 2 - (0.50 + 0.40) / 2
    assert rows["noisy"]["recovered"] == pytest.approx(((0.60 + 0.65) / 2 - 0.45) / gain)
    assert rows["good"]["spearman"] == pytest.approx([1.0, 0.0]) and rows["bad"]["kendall"] == pytest.approx([-1, 0])
    for seed in (0, 1):  # the noisy validator's correlations, per seed, against scipy on the same points
        mine = [r for r in records if r["seed"] == seed]
        x = [r["scores"]["noisy"] for r in mine]
        y = [r["metrics"]["label/accuracy"] for r in mine]
        assert summary["per_seed"][seed]["correlations"]["noisy"] == pytest.approx(
            (spearmanr(x, y).statistic, kendalltau(x, y).statistic)
        )


def test_a_lower_is_better_headline_is_oriented_and_several_metrics_give_delta_mtl():
    records = [
        {"setting": s, "seed": 0, "step": 1, "scores": {"v": v}, "metrics": {"depth/rmse": r, "normals/mean": n}}
        for s, v, r, n in (("a", 0.0, 1.0, 40.0), ("b", 1.0, 0.8, 40.0), ("c", 2.0, 0.9, 34.0))
    ]
    one = select.summarize(records, ["v"], ["depth/rmse"], default="a")
    assert one["rows"][select.ORACLE]["picked"] == ["b step1"]  # lowest rmse
    assert one["rows"][select.ORACLE]["metrics"]["depth/rmse"][0] == pytest.approx(0.8)
    both = select.summarize(records, ["v"], ["depth/rmse", "normals/mean"], default="a")
    assert both["rows"][select.ORACLE]["picked"] == ["c step1"]  # Δ_MTL: b (20 + 0) / 2, c (10 + 15) / 2
    assert both["rows"][select.ORACLE]["value"][0] == pytest.approx((10.0 + 15.0) / 2)
    assert both["rows"][select.DEFAULT]["value"][0] == pytest.approx(0.0)


def test_unknown_default_setting_names_the_settings():
    with pytest.raises(ConfigError, match=r"--default 'z' has no run of seed 0; settings of that seed: \['a', 'b'"):
        select.summarize(_records(), ["good"], ["label/accuracy"], default="z")


def test_report_files(tmp_path):
    out = tmp_path / "selection_x.md"
    select.write_report(_records(), ["good", "noisy"], ["label/accuracy"], "a", out, "Title", "cmd")
    text = out.read_text()
    assert "| oracle (target test labels) | 0.700 ± 0.000 |" in text
    assert "| good | 0.700 ± 0.000 | 0.000 ± 0.000 | 100 % | 100 % | 1.00 ± 0.00 | 1.00 ± 0.00 |" in text
    data = json.loads(out.with_suffix(".json").read_text())
    assert len(data["candidates"]) == 6 and not math.isnan(data["summary"]["rows"]["good"]["recovered"])
    assert (tmp_path / "selection_x_good.png").stat().st_size > 1000
    assert (tmp_path / "selection_x_noisy.png").is_file()


def test_bad_validator_options_are_named():
    with pytest.raises(ConfigError, match="not JSON"):
        select._validator_options("{reverse: 1")
    with pytest.raises(ConfigError, match=r"--validator-options names \['dev'\]"):
        select.build_validators(["entropy"], {"dev": {"folds": 3}})


def test_diverged_candidates_are_never_picked_and_a_validator_without_scores_picks_nothing():
    records = _records()
    records[1]["metrics"]["label/accuracy"] = math.nan  # seed 0, setting b diverged: no target value
    records[1]["scores"]["good"] = math.nan
    for r in records:
        r["scores"]["broken"] = math.nan
    summary = select.summarize(records, ["good", "broken"], ["label/accuracy"], default="a")
    rows = summary["rows"]
    assert rows[select.ORACLE]["picked"] == ["c step10", "c step10"]
    assert rows["good"]["picked"] == ["c step10", "c step10"]
    assert rows["broken"]["picked"] == ["none (no finite score)"] * 2
    assert math.isnan(rows["broken"]["metrics"]["label/accuracy"][0]) and math.isnan(rows["broken"]["recovered"])


def test_cached_scores_follow_the_validator_settings(tmp_path):
    from umadapt.validators import build_validator

    for name, options in (("snd", {"temperature": 0.1}), ("dev", {"folds": 3}), ("reverse", {"max_images": 7})):
        validator = build_validator(name, **options)
        settings = json.loads(select._settings(validator))
        assert {k: settings[k] for k in options} == options  # a changed setting is a cache miss
        rebuilt = build_validator(**settings)  # describe() round-trips: per-seed rebuilds keep every setting
        assert rebuilt.describe() == validator.describe()
    (seeded,) = select._seeded_validators([build_validator("reverse")], {"reverse": {"seed": "{seed}"}}, seed=2)
    assert seeded.seed == 2 and seeded.steps == 300


def test_an_interrupted_cache_write_is_scored_again(tmp_path, capsys):
    path = tmp_path / "selection" / "last.json"
    select._write_cache(path, {"scores": {"im": 1.0}})
    assert select._read_cache(path) == {"scores": {"im": 1.0}} and not list(path.parent.glob("*.partial"))
    path.write_text('{"scores": {"im": 1.')
    assert select._read_cache(path) == {}
    assert "unreadable score cache" in capsys.readouterr().err


def test_a_mistyped_headline_is_refused_before_scoring():
    with pytest.raises(ConfigError, match="Unknown headline metric 'label/acuracy'"):
        select.check_headline(["label/acuracy"])
