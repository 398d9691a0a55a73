"""The controllable dynamic multi-task benchmark (:mod:`umadapt.bench.dynamic`): its scores on hand-computed cases
and its report from synthetic evaluations (no training)."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest
from PIL import Image

from umadapt.bench import dynamic
from umadapt.bench.dynamic import BUDGETS, PREFERENCES
from umadapt.bench.registry import get_benchmark

HEADLINE = {"depth": "abs_err", "normals": "mean", "segmentation": "miou"}
ANCHOR = {"depth/abs_err": 0.5, "normals/mean": 20.0, "segmentation/miou": 0.4}


# -- hypervolume ----------------------------------------------------------------------------------------------------
def _union_volume(points, ref):
    """Exact volume of the union of the boxes [ref, p] by inclusion-exclusion (independent of the slicing)."""
    total = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(points, size):
            corner = [min(p[d] for p in subset) for d in range(len(ref))]
            total += (-1) ** (size + 1) * math.prod(max(0.0, c - r) for c, r in zip(corner, ref))
    return total


def test_hypervolume_of_hand_computed_2d_sets():
    ref = (0.5, 0.5)
    assert dynamic.hypervolume([(1.0, 1.0)], ref) == pytest.approx(0.25)
    # two boxes 0.5 x 0.1 overlapping in 0.1 x 0.1
    assert dynamic.hypervolume([(1.0, 0.6), (0.6, 1.0)], ref) == pytest.approx(0.09)
    # a dominated point adds nothing; one below the reference in a task is clipped to nothing
    assert dynamic.hypervolume([(1.0, 1.0), (0.8, 0.9)], ref) == pytest.approx(0.25)
    assert dynamic.hypervolume([(1.0, 1.0), (0.4, 3.0)], ref) == pytest.approx(0.25)
    assert dynamic.hypervolume([(0.4, 3.0)], ref) == 0.0
    assert dynamic.hypervolume([(1.0, math.nan), (0.7, 0.7)], ref) == pytest.approx(0.04)
    assert dynamic.hypervolume([], ref) == 0.0


def test_hypervolume_in_3d_matches_inclusion_exclusion():
    ref = (0.5, 0.5, 0.5)
    assert dynamic.hypervolume([(1.0, 1.0, 1.0)], ref) == pytest.approx(0.125)
    # two boxes 0.5 x 0.25 x 0.25 overlapping in 0.25^3
    pair = [(1.0, 0.75, 0.75), (0.75, 1.0, 0.75)]
    assert dynamic.hypervolume(pair, ref) == pytest.approx(2 * 0.5 * 0.25 * 0.25 - 0.25**3)
    rng = random.Random(0)
    for _ in range(20):
        points = [tuple(rng.uniform(0.3, 1.5) for _ in range(3)) for _ in range(rng.randint(1, 7))]
        clipped = [tuple(max(v, 0.5) for v in p) for p in points]
        assert dynamic.hypervolume(points, ref) == pytest.approx(_union_volume(clipped, ref), abs=1e-12)


# -- preference matching and normalisation --------------------------------------------------------------------------
def test_spearman_with_ties_and_constant_vectors():
    assert dynamic.spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert dynamic.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # average ranks: x -> [1, 2.5, 2.5, 4], y -> [1, 2, 3, 4]
    assert dynamic.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    grid = [p[0] for p in PREFERENCES]  # the grid's own ties (three 0.2, two 0.4)
    assert dynamic.spearman(grid, [v + 0.7 for v in grid]) == pytest.approx(1.0)
    assert dynamic.spearman(grid, [1.0] * len(grid)) == 0.0  # a row that ignores the preference
    assert math.isnan(dynamic.spearman([1, 2, 3], [1, math.nan, 2]))
    with pytest.raises(ValueError):
        dynamic.spearman([1, 2], [1, 2, 3])


def test_quality_is_relative_to_the_anchor_in_the_better_direction():
    metrics = {"depth/abs_err": 0.625, "normals/mean": 16.0, "segmentation/miou": 0.3}
    # abs_err and the normal mean angle: lower is better (anchor / m); mIoU: higher is better (m / anchor)
    assert dynamic.quality(metrics, ANCHOR, HEADLINE) == pytest.approx([0.8, 1.25, 0.75])
    assert dynamic.quality(ANCHOR, ANCHOR, HEADLINE) == pytest.approx([1.0, 1.0, 1.0])
    zero = dynamic.quality({**metrics, "depth/abs_err": 0.0}, {**ANCHOR, "segmentation/miou": 0.0}, HEADLINE)
    assert math.isnan(zero[0]) and zero[1] == pytest.approx(1.25) and math.isnan(zero[2])
    digits = dynamic.DATASETS["digits"].headline
    q = dynamic.quality({"label/accuracy": 0.45}, {"label/accuracy": 0.9}, {"label": digits["label"]})
    assert q == pytest.approx([0.5])


# -- compute control ------------------------------------------------------------------------------------------------
def _point(k, c, compute, mmacs=None):
    return {"k": k, "budget": c, "compute": compute, "mmacs": 10 + 20 * compute if mmacs is None else mmacs}


def test_compute_control_of_hand_made_points():
    points = [_point(0, 0.0, 0.0), _point(1, 0.0, 0.5), _point(0, 1.0, 1.0), _point(1, 1.0, 0.5)]
    control = dynamic.compute_control(points, budgets=(0.0, 1.0))
    assert control["per_budget"][0.0] == pytest.approx({"compute": 0.25, "mmacs": 15.0})
    assert control["per_budget"][1.0] == pytest.approx({"compute": 0.75, "mmacs": 25.0})
    assert control["monotone"] is True
    assert control["gap"] == pytest.approx((0 + 0.5 + 0 + 0.5) / 4)
    assert control["respected"] == pytest.approx(3 / 4)  # 0.5 > 0 is the one over budget
    assert control["compute"] == pytest.approx(0.5)
    falling = [_point(0, 0.0, 0.5), _point(0, 0.5, 0.25), _point(0, 1.0, 1.0)]
    control = dynamic.compute_control(falling, budgets=(0.0, 0.5, 1.0))
    assert control["monotone"] is False and control["respected"] == pytest.approx(2 / 3)


# -- the registry entry, the training plan and the evaluation arguments ---------------------------------------------
def test_training_plan_adds_one_hard_sharing_run_per_preference():
    bench = dynamic.dataset_bench(get_benchmark("dynamic"), "synthrooms")
    assert bench.headline == HEADLINE and bench.reference == "anchor" and bench.domains == ("source",)
    assert bench.checkpoints_from["weights"] == {"model.init_args.init_checkpoint": "edges"}
    methods = dynamic.train_methods(bench, None)
    assert methods == ["anchor", "edges", "weights", "phn", *(f"hard_p{k}" for k in range(7))]
    assert bench.stack("hard_p3") == bench.stack("hard_preference")
    (arg,) = dynamic.preference_args("hard_p1", 0)
    assert arg.startswith("--model.init_args.train_preference=") and json.loads(arg.split("=", 1)[1]) == [0.6, 0.2, 0.2]
    assert dynamic.preference_args("weights", 0) == []
    assert dynamic.train_methods(bench, ["weights"]) == ["anchor", "weights"]  # the anchor always: it normalises
    with pytest.raises(ValueError, match="Unknown method"):
        dynamic.train_methods(bench, ["hard_p1"])
    assert dynamic.requests("anchor") == [(0, 1.0)] and dynamic.requests("hard_p4") == [(4, 0.0)]
    assert len(dynamic.requests("phn")) == len(PREFERENCES) * len(BUDGETS)


def test_digits_replaces_the_base_and_headline_of_the_same_entry(tmp_path):
    bench = dynamic.dataset_bench(get_benchmark("dynamic"), "digits")
    assert bench.base == "experiments/dynamic_digits/base.yaml" and list(bench.headline) == [
        "label",
        "parity",
        "magnitude",
    ]
    assert bench.stack("edges")[-1].name == "edges.yaml" and "hard_p6" in bench.methods


def test_evaluation_keeps_the_runs_data_and_model_arguments_without_the_previous_stage():
    record = {
        "command_args": [
            "--config",
            "experiments/dynamic/base.yaml",
            "--config",
            "experiments/dynamic/weights.yaml",
            "--seed_everything=1",
            "--trainer.logger.init_args.save_dir=runs",
            "--data.init_args.source.init_args.test_size=16",
            "--trainer.max_epochs=1",
            "--model.init_args.init_checkpoint=runs/edges/seed1/checkpoints/last.ckpt",
        ]
    }
    assert dynamic._eval_overrides(record) == [
        "--seed_everything=1",
        "--data.init_args.source.init_args.test_size=16",
        "--model.init_args.init_checkpoint=runs/edges/seed1/checkpoints/last.ckpt",
        "--model.init_args.init_checkpoint=null",
    ]


# -- the report from synthetic evaluations --------------------------------------------------------------------------
def _metrics(q):
    """Metrics whose quality against ANCHOR is ``q``."""
    return {"depth/abs_err": 0.5 / q[0], "normals/mean": 20.0 / q[1], "segmentation/miou": 0.4 * q[2]}


def _evaluation(k, c, q, compute):
    return {"preference": list(PREFERENCES[k]), "budget": c, "metrics": _metrics(q), "compute": compute,
            "mmacs": 10.0 + 20.0 * compute, "tasks": list(HEADLINE)}  # fmt: skip


def _synthetic(seeds=(0, 1)):
    """anchor: q = 1 at compute 1; hard sharing: q = 0.9 + r (one net per preference) at compute 0; phn: q = 0.8
    whatever the request; DYMU (weights): q = 0.7 + r at compute c; edges: the same, but its compute falls from 1 to
    0 as the budget grows on seed 0."""
    grid = [(k, c) for k in range(len(PREFERENCES)) for c in BUDGETS]
    evaluations = {"anchor": {}, "phn": {}, "edges": {}, "weights": {}}
    for seed in seeds:
        evaluations["anchor"][seed] = [_evaluation(0, 1.0, (1, 1, 1), 1.0)]
        for k, p in enumerate(PREFERENCES):
            evaluations.setdefault(f"hard_p{k}", {})[seed] = [_evaluation(k, 0.0, [0.9 + v for v in p], 0.0)]
        evaluations["phn"][seed] = [_evaluation(k, c, (0.8, 0.8, 0.8), 0.0) for k, c in grid]
        evaluations["weights"][seed] = [_evaluation(k, c, [0.7 + v for v in PREFERENCES[k]], c) for k, c in grid]
        evaluations["edges"][seed] = [
            _evaluation(k, c, [0.7 + v for v in PREFERENCES[k]], 1.0 - c if seed == 0 else c) for k, c in grid
        ]
    return evaluations


def test_summary_and_markdown_from_synthetic_evaluations(tmp_path):
    seeds = [0, 1]
    scores = dynamic.summarise(_synthetic(seeds), seeds, HEADLINE)
    summary = scores["summary"]
    assert summary["anchor"]["hv_all"] == pytest.approx((0.125, 0.0))
    assert summary["anchor"]["hv_budget"][0.0] is None and summary["anchor"]["rho"] is None
    assert summary["phn"]["hv_all"] == pytest.approx((0.3**3, 0.0)) and summary["phn"]["rho"] == (0.0, 0.0)
    assert summary["weights"]["rho"] == pytest.approx((1.0, 0.0))
    assert summary["hard_sharing"]["rho"] == pytest.approx((1.0, 0.0))
    assert summary["weights"]["gap"] == pytest.approx((0.0, 0.0)) and summary["weights"]["monotone_seeds"] == 2
    # edges seed 0: |compute - c| = |1 - 2c| averages 0.6 and the budget holds from c = 0.5 on; seed 1: 0 and all
    assert summary["edges"]["gap"][0] == pytest.approx(0.3) and summary["edges"]["monotone_seeds"] == 1
    assert summary["edges"]["respected"][0] == pytest.approx((0.6 + 1.0) / 2)
    assert summary["weights"]["per_budget"][0.25]["compute"] == pytest.approx((0.25, 0.0))
    expected_hv = dynamic.hypervolume([[0.7 + v for v in p] for p in PREFERENCES], [0.5] * 3)
    assert summary["weights"]["hv_budget"][0.0] == pytest.approx((expected_hv, 0.0))
    payload = {"command": "python -m umadapt.bench dynamic --seeds 0 1", "seeds": seeds, "datasets": {}}
    payload["datasets"]["synthrooms"] = {"title": "SynthRooms", "headline": HEADLINE, **scores}
    text = dynamic.to_markdown(json.loads(json.dumps(payload)))  # as main writes it: through JSON
    anchor = "| anchor (single-task streams) | 0.1250 ± 0.0000 | n/a | 0.1250 ± 0.0000 | n/a | 1.0000 ± 0.0000 | "
    assert anchor + "0.5000 ± 0.0000 | 20.00 ± 0.00 | n/a |" in text
    weights = "| DYMU (architecture + weights) | " + dynamic.report.fmt(*summary["weights"]["hv_all"])
    assert (
        weights in text and "| 1.0000 ± 0.0000 | 0.5000 ± 0.0000 | 0.0000 ± 0.0000 | 100.00 ± 0.00 | yes (2/2" in text
    )
    assert "| DYMU, architecture only (edges) |" in text and "no (1/2 seeds)" in text
    assert "reference point q = (0.5, ..., 0.5)" in text and "hard_p0" in text
    uniform = "| weights-only hypernetwork (PHN-style) | 0.5 | 0.6250 ± 0.0000 | 25.00 ± 0.00 | 0.3200 ± 0.0000 |"
    assert uniform in text
    assert "c=0.25: compute / MMACs" in text


def test_charts_are_written_from_the_points(tmp_path):
    seeds = [0]
    evaluations = _synthetic(seeds)
    points = dynamic.summarise(evaluations, seeds, HEADLINE)["points"]
    dynamic.front_chart(tmp_path / "front.png", points, HEADLINE, 0)
    dynamic.compute_chart(tmp_path / "compute.png", points, seeds, dynamic._compute_range(evaluations, 0))
    front, compute = Image.open(tmp_path / "front.png"), Image.open(tmp_path / "compute.png")
    assert front.width > 3 * dynamic.PANEL and compute.width > 2 * dynamic.PANEL  # 3 task pairs; edges and weights
    assert dynamic._compute_range(evaluations, 0) == (10.0, 30.0)


def test_a_row_missing_a_seed_is_left_out_and_the_anchor_is_required():
    evaluations = _synthetic([0, 1])
    del evaluations["phn"][1]
    assert "phn" not in dynamic.summarise(evaluations, [0, 1], HEADLINE)["summary"]
    del evaluations["anchor"]
    with pytest.raises(ValueError, match="anchor"):
        dynamic.summarise(evaluations, [0, 1], HEADLINE)
