"""The controllable multi-task benchmark (``make bench-dynamic``): DYMU vs its baselines over preferences x budgets.

DYMU is "Controllable Dynamic Multi-Task Architectures" (Raychaudhuri et al., CVPR 2022); a request is a task
preference ``r`` and a compute budget ``c``.

Per dataset and seed it trains (:func:`umadapt.bench.runner.run_benchmark`) the registry's ``dynamic`` methods: the
anchor (single-task streams), DYMU's edge stage (``edges``: architecture only) and weight stage (``weights``), the
weights-only hypernetwork over one shared stream (``phn``), and hard sharing trained with one fixed preference as
its loss weights, once per grid preference (``hard_p0`` .. ``hard_p6``). Then it evaluates each model in this
process on the **source** test split at every request of :data:`PREFERENCES` x :data:`BUDGETS` it answers
(``model.set_request(r, c)``), caching the evaluations in ``<runs-dir>/<dataset>/<method>/seed<N>/grid.json``.

Scores (per seed, then mean ± std over seeds): each headline metric relative to that seed's anchor, ``q_t`` (1 =
as good as the single-task stream, higher is better), the hypervolume of the ``q`` vectors
(:func:`hypervolume`, reference point :data:`REFERENCE_Q` in every task), preference matching (Spearman correlation
between ``r_t`` and ``q_t`` across the preferences, :func:`spearman`) and compute control (:func:`compute_control`).

    python -m umadapt.bench dynamic --seeds 0 1 2 --out results/dynamic.md --runs-dir results/runs/dynamic
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from umadapt.bench import report
from umadapt.bench.registry import Benchmark, get_benchmark
from umadapt.bench.runner import add_run_arguments, checkpoint_path, run_benchmark, run_dir, select_methods
from umadapt.errors import ConfigError
from umadapt.metrics import is_lower_better, spearman

__all__ = [
    "BUDGETS",
    "PREFERENCES",
    "REFERENCE_Q",
    "compute_control",
    "hypervolume",
    "quality",
    "spearman",
    "summarise",
    "to_markdown",
]

NAME = "dynamic"
PREFERENCES: tuple[tuple[float, ...], ...] = (
    (1 / 3, 1 / 3, 1 / 3),
    (0.6, 0.2, 0.2),
    (0.2, 0.6, 0.2),
    (0.2, 0.2, 0.6),
    (0.2, 0.4, 0.4),
    (0.4, 0.2, 0.4),
    (0.4, 0.4, 0.2),
)
"""The grid's task preferences, in the tasks' order (the first is uniform)."""
BUDGETS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
"""The grid's compute budgets."""
REFERENCE_Q = 0.5
"""The hypervolume's reference point in every task: half as good as the single-task stream."""
TOLERANCE = 1e-9
"""A request's budget counts as respected when the tree's normalised compute is at most ``c + TOLERANCE``."""
GRID_FILE = "grid.json"
HARD = "hard_preference"
"""The registry method trained once per grid preference (``hard_p<k>``)."""


@dataclass(frozen=True)
class Dataset:
    """One dataset of the benchmark: the registry entry, with ``base`` and ``headline`` replaced when given."""

    title: str
    base: str | None = None
    headline: Mapping[str, str] | None = None


DATASETS = {
    "synthrooms": Dataset("SynthRooms (depth, normals, segmentation)"),
    "digits": Dataset(
        "Digits (label, parity, magnitude)",
        "experiments/dynamic_digits/base.yaml",
        {"label": "accuracy", "parity": "accuracy", "magnitude": "accuracy"},
    ),
}


@dataclass(frozen=True)
class Row:
    """One row of the report, drawn from one registry method's runs."""

    name: str
    title: str
    method: str
    budget_input: bool
    """The model takes the budget (its tree follows it)."""
    preference_input: bool
    """The row's answer depends on the preference (a model input, or one network per preference)."""


ROWS = (
    Row("anchor", "anchor (single-task streams)", "anchor", False, False),
    Row("hard_sharing", "hard sharing (preference loss weights, one net per preference)", HARD, False, True),
    Row("phn", "weights-only hypernetwork (PHN-style)", "phn", False, True),
    Row("edges", "DYMU, architecture only (edges)", "edges", True, True),
    Row("weights", "DYMU (architecture + weights)", "weights", True, True),
)
ROW_NAMES = {row.name: row for row in ROWS}


def hard_method(k: int) -> str:
    """The training method of hard sharing at grid preference ``k``."""
    return f"hard_p{k}"


# -- the scores -----------------------------------------------------------------------------------------------------
def quality(metrics: Mapping[str, float], anchor: Mapping[str, float], headline: Mapping[str, str]) -> list[float]:
    """``q_t`` per headline ``task/metric``: ``m / anchor`` for a higher-is-better metric, ``anchor / m`` for a
    lower-is-better one, so 1 is as good as the anchor and more is better. ``NaN`` where it is undefined (a zero
    denominator, a missing or non-finite value)."""
    values = []
    for task, name in headline.items():
        key = f"{task}/{name}"
        m, a = float(metrics.get(key, math.nan)), float(anchor.get(key, math.nan))
        numerator, denominator = (a, m) if is_lower_better(key) else (m, a)
        ok = math.isfinite(numerator) and math.isfinite(denominator) and denominator != 0
        values.append(numerator / denominator if ok else math.nan)
    return values


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """The volume dominated by ``points`` and bounded below by ``reference`` (maximisation), exact in any number of
    objectives (slicing along the last objective, recursively). A coordinate below the reference is clipped to it,
    so a point that does not dominate the reference adds nothing; points with a non-finite coordinate are left
    out."""
    ref = [float(v) for v in reference]
    clipped = [[max(float(v), r) for v, r in zip(p, ref)] for p in points if all(math.isfinite(v) for v in p)]
    return _slices([p for p in clipped if all(v > r for v, r in zip(p, ref))], ref)


def _slices(points: list[list[float]], ref: list[float]) -> float:
    if not points:
        return 0.0
    if len(ref) == 1:
        return max(p[0] for p in points) - ref[0]
    points = sorted(points, key=lambda p: p[-1], reverse=True)
    volume = 0.0
    for i, point in enumerate(points):  # the slab between this point's last coordinate and the next one's
        floor = points[i + 1][-1] if i + 1 < len(points) else ref[-1]
        if point[-1] > floor:
            volume += (point[-1] - floor) * _slices([p[:-1] for p in points[: i + 1]], ref[:-1])
    return volume


def compute_control(points: Sequence[Mapping[str, Any]], budgets: Sequence[float] = BUDGETS) -> dict[str, Any]:
    """Compute control of one model over the grid from its points (``budget``, ``compute``: normalised, ``mmacs``):
    per budget the mean compute and MMACs over the preferences; ``monotone``: the mean compute does not decrease as
    the budget grows; the mean ``|compute - c|``; the fraction of requests with ``compute <= c`` (+ 1e-9)."""
    per_budget = {}
    for c in budgets:
        at = [p for p in points if p["budget"] == c]
        if at:
            per_budget[c] = {
                "compute": sum(p["compute"] for p in at) / len(at),
                "mmacs": sum(p["mmacs"] for p in at) / len(at),
            }
    means = [per_budget[c]["compute"] for c in budgets if c in per_budget]
    return {
        "per_budget": per_budget,
        "compute": sum(p["compute"] for p in points) / len(points),
        "gap": sum(abs(p["compute"] - p["budget"]) for p in points) / len(points),
        "respected": sum(p["compute"] <= p["budget"] + TOLERANCE for p in points) / len(points),
        "monotone": all(b >= a - TOLERANCE for a, b in zip(means, means[1:])),
    }


# -- the grid -------------------------------------------------------------------------------------------------------
def requests(method: str) -> list[tuple[int, float]]:
    """The ``(preference index, budget)`` requests a training method is evaluated at: the anchor once (it takes no
    request), ``hard_p<k>`` once at its own preference, the other models at every request of the grid (the
    weights-only hypernetwork too: its hypernetwork reads the budget as well as the preference)."""
    if method == "anchor":
        return [(0, 1.0)]
    if method.startswith("hard_p"):
        return [(int(method[len("hard_p") :]), 0.0)]
    return [(k, c) for k in range(len(PREFERENCES)) for c in BUDGETS]


def _key(preference: Sequence[float], budget: float) -> str:
    return json.dumps([[round(float(v), 9) for v in preference], round(float(budget), 9)])


def _eval_overrides(record: Mapping[str, Any]) -> list[str]:
    """The data and model arguments a run was trained with (from its record's command line), without the
    previous stage's checkpoint: the state comes from the run's own ``last.ckpt``."""
    args, skip = [], False
    for arg in record.get("command_args", []):
        if skip or arg == "--config":
            skip = not skip
            continue
        if arg.startswith(("--data.", "--model.", "--seed_everything")):
            args.append(arg)
    return [*args, "--model.init_args.init_checkpoint=null"]


def evaluate_run(
    bench: Benchmark,
    runs_dir: Path,
    method: str,
    seed: int,
    record: Mapping[str, Any],
    accelerator: str = "cpu",
) -> list[dict[str, Any]]:
    """Evaluate one trained (method, seed) on the source test split at each of :func:`requests`, reusing the
    evaluations of its ``grid.json`` when it is newer than the run's ``last.ckpt``. A model whose output depends only
    on the tree (every stage but ``weights``) is evaluated once per distinct tree."""
    ckpt = checkpoint_path(runs_dir, method, seed)
    cache_file = run_dir(runs_dir, method, seed) / GRID_FILE
    cached: dict[str, dict] = {}
    if cache_file.is_file() and ckpt.is_file() and cache_file.stat().st_mtime >= ckpt.stat().st_mtime:
        cached = {_key(e["preference"], e["budget"]): e for e in json.loads(cache_file.read_text())["evaluations"]}
    wanted = [(list(PREFERENCES[k]), c) for k, c in requests(method)]
    missing = [(r, c) for r, c in wanted if _key(r, c) not in cached]
    if missing:
        import pytorch_lightning as pl

        from umadapt.bench.speed import build
        from umadapt.checkpoints import read_state_dict

        model, datamodule = build(_eval_overrides(record), bench.stack(method))
        model.load_state_dict(read_state_dict(ckpt, f"{method} seed {seed} checkpoint"))
        logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)  # not "GPU available" per model
        trainer = pl.Trainer(
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            accelerator=accelerator,
            devices=1,
        )
        done: dict[Any, dict] = {}
        prefix = f"test/{bench.domain}/"
        for r, c in missing:
            model.set_request(r, c)
            tree = model.tree_for()
            setting = (tree.choice, _key(r, c) if model.stage == "weights" else None)
            if setting not in done:
                trainer.test(model, datamodule=datamodule, verbose=False)
                logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
                done[setting] = {
                    "metrics": {k[len(prefix) :]: v for k, v in logged.items() if k.startswith(prefix)},
                    "compute": logged.get("test/tree/compute", tree.normalized_compute(model.depth_macs)),
                    "mmacs": logged.get("test/tree/mmacs", tree.macs(model.depth_macs) / 1e6),
                    "tree": [list(row) for row in tree.choice],
                    "tasks": list(model.tasks),
                }
            cached[_key(r, c)] = {"preference": r, "budget": c, **done[setting]}
        cache_file.write_text(json.dumps({"method": method, "seed": seed, "evaluations": list(cached.values())}))
    return [cached[_key(r, c)] for r, c in wanted]


def row_points(row: Row, evaluations: Mapping[str, Mapping[int, list[dict]]], seed: int) -> list[dict] | None:
    """The row's answer to every request of the grid for ``seed`` (``k``: preference index, ``budget``, ``metrics``,
    ``compute``, ``mmacs``), or ``None`` if a run it needs was not evaluated. The anchor answers every request with
    its one evaluation, hard sharing request ``(r_k, c)`` with network ``hard_p<k>``."""

    def find(method: str, k: int, c: float) -> dict | None:
        for e in evaluations.get(method, {}).get(seed, []):
            if _key(e["preference"], e["budget"]) == _key(PREFERENCES[k], c):
                return e
        return None

    points = []
    for k in range(len(PREFERENCES)):
        for c in BUDGETS:
            if row.method == "anchor":
                found = find("anchor", 0, 1.0)
            elif row.method == HARD:
                found = find(hard_method(k), k, 0.0)
            else:
                found = find(row.method, k, c)
            if found is None:
                return None
            points.append({"k": k, "budget": c, **{n: found[n] for n in ("metrics", "compute", "mmacs")}})
    return points


def seed_scores(row: Row, points: Sequence[Mapping], anchor: Mapping[str, float], headline: Mapping[str, str]) -> dict:
    """One seed's scores of a row: ``q`` per point, hypervolumes (all requests; per budget, ``None`` where a model
    without a budget input exceeds it), preference matching ``rho`` (``None`` for a row without a preference), the
    compute control and the metrics at the uniform preference per budget."""
    tasks = len(headline)
    ref = [REFERENCE_Q] * tasks
    q = [quality(p["metrics"], anchor, headline) for p in points]
    hv_budget: dict[float, float | None] = {}
    for c in BUDGETS:
        at = [i for i, p in enumerate(points) if p["budget"] == c]
        fits = row.budget_input or all(points[i]["compute"] <= c + TOLERANCE for i in at)
        hv_budget[c] = hypervolume([q[i] for i in at], ref) if fits else None
    rho = None
    if row.preference_input:
        values = []
        for c in BUDGETS:
            at = sorted((p["k"], q[i]) for i, p in enumerate(points) if p["budget"] == c)
            for t in range(tasks):
                values.append(spearman([PREFERENCES[k][t] for k, _ in at], [v[t] for _, v in at]))
        rho = sum(values) / len(values)
    uniform = {c: next(p for p in points if p["k"] == 0 and p["budget"] == c) for c in BUDGETS}
    return {
        "q": q,
        "hv_all": hypervolume(q, ref),
        "hv_budget": hv_budget,
        "rho": rho,
        "control": compute_control(points),
        "uniform": {c: {**p["metrics"], "compute": p["compute"], "mmacs": p["mmacs"]} for c, p in uniform.items()},
    }


def _stats(values: Sequence[float | None]) -> tuple[float, float] | None:
    """Mean ± std over seeds; ``None`` when a seed has no value."""
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return None
    return report.mean_std([float(v) for v in values])


def summarise(
    evaluations: Mapping[str, Mapping[int, list[dict]]], seeds: Sequence[int], headline: Mapping[str, str]
) -> dict[str, Any]:
    """``{"points": {row: {seed: points}}, "per_seed": {row: {seed: scores}}, "summary": {row: aggregates}}`` from
    the evaluations ``{method: {seed: [evaluation]}}``; rows without every seed's evaluations are left out."""
    points: dict[str, dict[int, list]] = {}
    for row in ROWS:
        found = {s: row_points(row, evaluations, s) for s in seeds}
        if all(v is not None for v in found.values()):
            points[row.name] = found  # type: ignore[assignment]
    if "anchor" not in points:
        raise ConfigError("the dynamic benchmark normalises by the anchor's runs: evaluate the anchor of every seed.")
    per_seed = {
        name: {s: seed_scores(ROW_NAMES[name], pts[s], _anchor(points, s), headline) for s in seeds}
        for name, pts in points.items()
    }
    keys = [f"{t}/{m}" for t, m in headline.items()]
    summary: dict[str, Any] = {}
    for name, scores in per_seed.items():
        runs = [scores[s] for s in seeds]
        control = [r["control"] for r in runs]
        summary[name] = {
            "hv_all": _stats([r["hv_all"] for r in runs]),
            "hv_budget": {c: _stats([r["hv_budget"][c] for r in runs]) for c in BUDGETS},
            "rho": _stats([r["rho"] for r in runs]),
            "compute": _stats([x["compute"] for x in control]),
            "gap": _stats([x["gap"] for x in control]),
            "respected": _stats([x["respected"] for x in control]),
            "monotone_seeds": sum(x["monotone"] for x in control),
            "seeds": len(runs),
            "per_budget": {
                c: {
                    n: _stats([x["per_budget"][c][n] for x in control if c in x["per_budget"]])
                    for n in ("compute", "mmacs")
                }
                for c in BUDGETS
            },
            "uniform": {
                c: {k: _stats([r["uniform"][c].get(k) for r in runs]) for k in (*keys, "compute", "mmacs")}
                for c in BUDGETS
            },
        }
    return {"points": points, "per_seed": per_seed, "summary": summary}


def _anchor(points: Mapping[str, Mapping[int, list]], seed: int) -> dict[str, float]:
    return points["anchor"][seed][0]["metrics"]


# -- the report -----------------------------------------------------------------------------------------------------
def _cell(stats: tuple[float, float] | None, scale: float = 1.0) -> str:
    return "n/a" if stats is None else report.fmt(stats[0] * scale, stats[1] * scale)


def _budget(c: float) -> str:
    return f"{c:g}"


def protocol_lines(command: str, seeds: Sequence[int], datasets: Sequence[str]) -> list[str]:
    """The header: what was run and how it is scored."""
    grid = ", ".join("(" + ", ".join(f"{v:.2f}" for v in p) + ")" for p in PREFERENCES)
    return [
        f"# {NAME}: controllable dynamic multi-task architectures (DYMU)",
        "",
        f"Command: `{command}`",
        "",
        f"Datasets: {', '.join(datasets)}. Seeds {list(seeds)}; every number is mean ± std over seeds of a per-seed "
        "score. Every model trains on the labelled source training split and is tested from its last checkpoint on "
        "the **source** test split.",
        "",
        "Protocol:",
        "",
        f"- Request grid: preferences r (in the tasks' order) {grid} × budgets c {list(BUDGETS)} = "
        f"{len(PREFERENCES) * len(BUDGETS)} requests.",
        "- DYMU (both stages) and the weights-only hypernetwork are evaluated at every request "
        "(`model.set_request(r, c)`); the anchor once (it takes no request: one point, normalised compute 1); hard "
        f"sharing is one network per preference (`hard_p0` .. `hard_p{len(PREFERENCES) - 1}`, trained with "
        "`model.init_args.train_preference` = r as loss weights), each evaluated once and answering every budget "
        "(normalised compute 0).",
        "- Normalisation: per seed and task, the headline metric relative to that seed's anchor, q_t = m_t / "
        "anchor_t for a higher-is-better metric and anchor_t / m_t for a lower-is-better one (q_t = 1: as good as "
        "the single-task stream; higher is better).",
        f"- Hypervolume (HV) of a row's q vectors (maximisation), reference point q = ({REFERENCE_Q}, ..., "
        f"{REFERENCE_Q}); coordinates below the reference are clipped to it. *HV all*: every request; *HV at c*: the "
        "requests of budget c only. A model without a budget input (the anchor) enters a budget's column only if its "
        "compute fits that budget (n/a otherwise); DYMU enters every budget with whatever tree it chose.",
        "- Preference matching ρ: for each task and budget, Spearman's rank correlation (average ranks for ties) "
        f"across the {len(PREFERENCES)} preferences between r_t and q_t, averaged over tasks and budgets; a row whose "
        "q_t does not change with the preference scores 0. Not defined for the anchor.",
        "- Compute: normalised compute of the chosen tree (0: one shared stream, 1: one stream per task) and its "
        "encoder MMACs per image (heads excluded). *mean compute* and *|compute − c|* average over all requests; "
        f"*budget respected*: requests with compute ≤ c (+{TOLERANCE:g}); *monotone*: the mean compute over the "
        "preferences does not decrease as the budget grows (seeds where it holds).",
    ]


def dataset_lines(name: str, title: str, summary: Mapping[str, Any], headline: Mapping[str, str]) -> list[str]:
    """One dataset's tables: the scores per row, the compute control per budget, the metrics at uniform preference."""
    rows = [row for row in ROWS if row.name in summary]
    lines = [
        "",
        f"## {title}",
        "",
        "| row | HV all | HV at c=0 | HV at c=1 | preference matching ρ | mean compute | \\|compute − c\\| | "
        "budget respected (%) | monotone |",
        "|---" * 9 + "|",
    ]
    for row in rows:
        entry = summary[row.name]
        monotone = "n/a"
        if row.budget_input:
            all_seeds = entry["monotone_seeds"] == entry["seeds"]
            monotone = f"{'yes' if all_seeds else 'no'} ({entry['monotone_seeds']}/{entry['seeds']} seeds)"
        cells = [
            _cell(entry["hv_all"]),
            _cell(entry["hv_budget"][0.0]),
            _cell(entry["hv_budget"][1.0]),
            _cell(entry["rho"]),
            _cell(entry["compute"]),
            _cell(entry["gap"]),
            _cell(entry["respected"], 100.0),
            monotone,
        ]
        lines.append(f"| {row.title} | " + " | ".join(cells) + " |")
    controllable = [row for row in rows if row.budget_input]
    if controllable:
        lines += [
            "",
            f"### {name}: compute control per budget (mean over the preferences)",
            "",
            "| row | " + " | ".join(f"c={_budget(c)}: compute / MMACs" for c in BUDGETS) + " |",
            "|---" * (len(BUDGETS) + 1) + "|",
        ]
        for row in controllable:
            per = summary[row.name]["per_budget"]
            cells = [f"{_cell(per[c]['compute'])} / {_cell(per[c]['mmacs'])}" for c in BUDGETS]
            lines.append(f"| {row.title} | " + " | ".join(cells) + " |")
    keys = [f"{t}/{m}" for t, m in headline.items()]
    lines += [
        "",
        f"### {name}: headline metrics at the uniform preference, per budget",
        "",
        f"| row | c | {report.headline_header(keys)} | compute | MMACs |",
        "|---" * (len(keys) + 4) + "|",
    ]
    for row in rows:
        for c in BUDGETS:
            values = summary[row.name]["uniform"][c]
            cells = [_cell(values[k]) for k in (*keys, "compute", "mmacs")]
            lines.append(f"| {row.title} | {_budget(c)} | " + " | ".join(cells) + " |")
    return lines


def to_markdown(payload: Mapping[str, Any]) -> str:
    """The Markdown report from the JSON payload (``command``, ``seeds``, ``datasets``: per dataset its
    ``title``, ``headline``, ``summary`` and ``charts``)."""
    datasets = payload["datasets"]
    lines = protocol_lines(payload["command"], payload["seeds"], list(datasets))
    for name, data in datasets.items():
        summary = {row: _restore(entry) for row, entry in data["summary"].items()}
        lines += dataset_lines(name, data["title"], summary, data["headline"])
        lines += [f"\n![{name}: {what}]({file})" for what, file in data.get("charts", {}).items()]
    return "\n".join(lines) + "\n"


def _restore(entry: Any) -> Any:
    """A summary entry read back from JSON: budget keys as floats, ``[mean, std]`` as tuples."""
    if isinstance(entry, Mapping):
        return {(_float_key(k)): _restore(v) for k, v in entry.items()}
    if isinstance(entry, list) and len(entry) == 2 and all(isinstance(v, (int, float)) for v in entry):
        return tuple(entry)
    return entry


def _float_key(key: Any) -> Any:
    try:
        return float(key)
    except (TypeError, ValueError):
        return key


# -- the charts (PIL, like report.bar_chart) ------------------------------------------------------------------------
MARKERS = ("circle", "square", "triangle", "diamond", "cross")
PANEL = 300


def _dashed(draw: ImageDraw.ImageDraw, a: tuple[float, float], b: tuple[float, float], fill: str) -> None:
    length = math.dist(a, b)
    steps = max(1, int(length // 6))
    for i in range(0, steps, 2):
        t0, t1 = i / steps, min(1.0, (i + 1) / steps)
        draw.line([(a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t) for t in (t0, t1)], fill=fill)


def _marker(draw: ImageDraw.ImageDraw, kind: str, x: float, y: float, color: str, size: float = 4) -> None:
    if kind == "circle":
        draw.ellipse([x - size, y - size, x + size, y + size], outline=color, width=2)
    elif kind == "square":
        draw.rectangle([x - size, y - size, x + size, y + size], outline=color, width=2)
    elif kind == "triangle":
        draw.polygon([(x, y - size - 1), (x - size, y + size), (x + size, y + size)], outline=color, width=2)
    elif kind == "diamond":
        draw.polygon([(x, y - size - 1), (x + size + 1, y), (x, y + size + 1), (x - size - 1, y)], outline=color)
    else:
        draw.line([(x - size, y - size), (x + size, y + size)], fill=color, width=2)
        draw.line([(x - size, y + size), (x + size, y - size)], fill=color, width=2)


class _Axes:
    """One scatter/line panel: data coordinates to pixels, ticks, axis labels and title."""

    def __init__(self, xs: Sequence[float], ys: Sequence[float], title: str, xlabel: str, ylabel: str) -> None:
        def ticks(values: Sequence[float]) -> list[float]:
            finite = [v for v in values if math.isfinite(v)] or [0.0, 1.0]
            low, high = min(finite), max(finite)
            return report._ticks(low, high if high > low else low + 1.0, count=5)

        self.xt, self.yt = ticks(xs), ticks(ys)
        self.left, self.top, self.size = 62, 34, PANEL
        self.image = Image.new("RGB", (self.left + self.size + 16, self.top + self.size + 48), "white")
        self.draw = ImageDraw.Draw(self.image)
        small = report._font(12)
        for t in self.xt:
            self.draw.line([self.px(t, self.yt[0]), self.px(t, self.yt[-1])], fill="#e4e4e4")
            x, y = self.px(t, self.yt[0])
            self.draw.text((x, y + 4), f"{t:g}", fill="black", font=small, anchor="ma")
        for t in self.yt:
            self.draw.line([self.px(self.xt[0], t), self.px(self.xt[-1], t)], fill="#e4e4e4")
            x, y = self.px(self.xt[0], t)
            self.draw.text((x - 4, y), f"{t:g}", fill="black", font=small, anchor="rm")
        box = [self.px(self.xt[0], self.yt[-1]), self.px(self.xt[-1], self.yt[0])]
        self.draw.rectangle(box, outline="black")
        self.draw.text(
            (self.left + self.size / 2, self.top + self.size + 24), xlabel, fill="black", font=small, anchor="ma"
        )
        self.draw.text((self.left, 10), title, fill="black", font=report._font(13))
        label = Image.new("RGB", (int(self.draw.textlength(ylabel, font=small)) + 4, 16), "white")
        ImageDraw.Draw(label).text((2, 1), ylabel, fill="black", font=small)
        label = label.rotate(90, expand=True)
        self.image.paste(label, (4, int(self.top + (self.size - label.height) / 2)))

    def px(self, x: float, y: float) -> tuple[float, float]:
        fx = (x - self.xt[0]) / (self.xt[-1] - self.xt[0])
        fy = (y - self.yt[0]) / (self.yt[-1] - self.yt[0])
        return self.left + fx * self.size, self.top + (1 - fy) * self.size


def _legend(entries: Sequence[tuple[str, str, str]], height: int) -> Image.Image:
    """A legend column: (label, colour, marker or ``line``) per entry."""
    small = report._font(12)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength
    width = int(max((measure(label, font=small) for label, _, _ in entries), default=0)) + 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for i, (label, color, kind) in enumerate(entries):
        y = 40 + 20 * i
        if kind == "line":
            draw.line([(6, y), (22, y)], fill=color, width=2)
        else:
            _marker(draw, kind, 14, y, color)
        draw.text((28, y), label, fill="black", font=small, anchor="lm")
    return image


def _side_by_side(images: Sequence[Image.Image]) -> Image.Image:
    chart = Image.new("RGB", (sum(i.width for i in images), max(i.height for i in images)), "white")
    left = 0
    for image in images:
        chart.paste(image, (left, 0))
        left += image.width
    return chart


def front_chart(path: Path, points: Mapping[str, Mapping[int, list]], headline: Mapping[str, str], seed: int) -> None:
    """``q_i`` vs ``q_j`` for each pair of tasks: every row's points of ``seed``, the reference point marked."""
    tasks = list(headline)
    anchor = points["anchor"][seed][0]["metrics"]
    qs = {name: [quality(p["metrics"], anchor, headline) for p in pts[seed]] for name, pts in points.items()}
    panels, entries = [], []
    names = [row.name for row in ROWS if row.name in qs]
    for n, name in enumerate(names):
        entries.append((ROW_NAMES[name].title, report.PALETTE[n % len(report.PALETTE)], MARKERS[n % len(MARKERS)]))
    for i in range(len(tasks)):
        for j in range(i + 1, len(tasks)):
            xs = [q[i] for v in qs.values() for q in v] + [REFERENCE_Q]
            ys = [q[j] for v in qs.values() for q in v] + [REFERENCE_Q]
            axes = _Axes(xs, ys, f"seed {seed}: q_{tasks[j]} vs q_{tasks[i]}", f"q_{tasks[i]}", f"q_{tasks[j]}")
            x0, y0 = axes.px(REFERENCE_Q, REFERENCE_Q)
            _dashed(axes.draw, axes.px(REFERENCE_Q, axes.yt[-1]), (x0, y0), "#909090")
            _dashed(axes.draw, axes.px(axes.xt[-1], REFERENCE_Q), (x0, y0), "#909090")
            _marker(axes.draw, "cross", x0, y0, "black", 5)
            for n, name in enumerate(names):
                color, kind = entries[n][1], entries[n][2]
                for q in dict.fromkeys(tuple(q) for q in qs[name]):  # each distinct point once
                    if math.isfinite(q[i]) and math.isfinite(q[j]):
                        _marker(axes.draw, kind, *axes.px(q[i], q[j]), color)
            panels.append(axes.image)
    entries.append((f"reference point ({REFERENCE_Q}, {REFERENCE_Q})", "black", "cross"))
    _side_by_side([*panels, _legend(entries, panels[0].height)]).save(path)


def compute_chart(path: Path, points: Mapping[str, Mapping[int, list]], seeds: Sequence[int], mmacs: tuple) -> None:
    """Normalised compute of the chosen trees vs the budget (mean over seeds), one line per preference, per
    controllable row, with ``y = x``; ``mmacs``: the encoder MMACs of compute 0 and 1, for the axis label."""
    panels = []
    rows = [row for row in ROWS if row.budget_input and row.name in points]
    for row in rows:
        ylabel = f"normalised compute (0 = {mmacs[0]:.1f}, 1 = {mmacs[1]:.1f} MMACs)"
        axes = _Axes([0.0, 1.0], [0.0, 1.0], f"{row.name}: compute vs budget (mean over seeds)", "budget c", ylabel)
        _dashed(axes.draw, axes.px(0.0, 0.0), axes.px(1.0, 1.0), "#909090")
        for k in range(len(PREFERENCES)):
            line = []
            for c in BUDGETS:
                values = [p["compute"] for s in seeds for p in points[row.name][s] if p["k"] == k and p["budget"] == c]
                line.append(axes.px(c, sum(values) / len(values)))
            color = report.PALETTE[k % len(report.PALETTE)]
            axes.draw.line(line, fill=color, width=2)
            for x, y in line:
                _marker(axes.draw, MARKERS[k % len(MARKERS)], x, y, color, 3)
        panels.append(axes.image)
    if not panels:
        return
    entries = [
        ("r = (" + ", ".join(f"{v:.2f}" for v in p) + ")", report.PALETTE[k % len(report.PALETTE)], "line")
        for k, p in enumerate(PREFERENCES)
    ]
    entries.append(("y = x", "#909090", "line"))
    _side_by_side([*panels, _legend(entries, panels[0].height)]).save(path)


def _compute_range(evaluations: Mapping[str, Mapping[int, list]], seed: int) -> tuple[float, float]:
    """The encoder MMACs of one shared stream (compute 0) and of the anchor (compute 1)."""
    anchor = evaluations["anchor"][seed][0]["mmacs"]
    tasks = len(PREFERENCES[0])
    return anchor / tasks, anchor


# -- the command ----------------------------------------------------------------------------------------------------
def dataset_bench(bench: Benchmark, name: str) -> Benchmark:
    """The registry entry for dataset ``name`` with one ``hard_p<k>`` method per grid preference."""
    spec = DATASETS[name]
    if spec.base is not None:
        if not (bench.root / spec.base).is_file():
            raise ConfigError(f"--datasets {name} needs {spec.base}, which does not exist; leave {name} out.")
        bench = replace(bench, name=f"{NAME}_{name}", base=spec.base, headline=dict(spec.headline or {}))
    hard = {hard_method(k): bench.methods[HARD] for k in range(len(PREFERENCES))}
    return replace(bench, methods={**bench.methods, **hard})


def train_methods(bench: Benchmark, requested: Sequence[str] | None) -> list[str]:
    """The training methods for the requested registry methods (the anchor always: it normalises every score)."""
    grid = {hard_method(k) for k in range(len(PREFERENCES))}
    registered = {m: files for m, files in bench.methods.items() if m not in grid}
    chosen = select_methods(replace(bench, methods=registered), requested)
    order = [m for m in ("anchor", "edges", "weights", "phn") if m == "anchor" or m in chosen]
    return order + ([hard_method(k) for k in range(len(PREFERENCES))] if HARD in chosen else [])


def preference_args(method: str, seed: int) -> list[str]:
    """``hard_p<k>`` trains with grid preference ``k`` as its loss weights."""
    if not method.startswith("hard_p"):
        return []
    return [f"--model.init_args.train_preference={json.dumps(list(PREFERENCES[int(method[len('hard_p') :])]))}"]


def main(argv: list[str] | None = None) -> None:
    """``python -m umadapt.bench dynamic ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m umadapt.bench dynamic", description=__doc__.splitlines()[0])
    add_run_arguments(parser, "results/runs/dynamic", out=False)
    parser.add_argument("--out", type=Path, default=Path("results/dynamic.md"), help="Markdown report (.json, PNGs)")
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--eval-accelerator", default="cpu", help="accelerator of the grid evaluation (default cpu)")
    args = parser.parse_args(argv)
    registry = get_benchmark(NAME, args.registry)
    payload: dict[str, Any] = {"command": f"python -m umadapt.bench {NAME} {' '.join(argv)}", "seeds": args.seeds}
    payload.update(grid={"preferences": PREFERENCES, "budgets": BUDGETS}, reference_point=REFERENCE_Q, datasets={})
    for name in args.datasets:
        bench = dataset_bench(registry, name)
        runs_dir = args.runs_dir / name
        methods = train_methods(bench, args.methods)
        options = dict(epochs=args.epochs, predict=args.predict, resume=args.resume, jobs=args.jobs)
        options.update(run_args=preference_args, label=f"{NAME} {name}")
        runs = run_benchmark(bench, methods, args.seeds, runs_dir, args.cli_arg, **options)
        evaluations: dict[str, dict[int, list]] = {}
        for method in methods:
            for seed, record in zip(args.seeds, runs.records[method]):
                print(f"{NAME} {name}: evaluating {method} seed {seed} on the request grid", flush=True)
                evaluations.setdefault(method, {})[seed] = evaluate_run(
                    bench, runs_dir, method, seed, record, args.eval_accelerator
                )
        tasks = {tuple(e["tasks"]) for runs_of in evaluations.values() for e in sum(runs_of.values(), [])}
        if tasks != {tuple(bench.headline)}:
            raise ConfigError(
                f"{name}: the models' tasks {sorted(tasks)} differ from the headline's {list(bench.headline)}; the "
                "grid's preferences follow the tasks' order, so list the headline in that order."
            )
        scores = summarise(evaluations, args.seeds, bench.headline)
        charts = {
            "q of every request, each pair of tasks": args.out.with_name(f"{NAME}_{name}_front.png"),
            "normalised compute vs budget": args.out.with_name(f"{NAME}_{name}_compute.png"),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        front_chart(charts["q of every request, each pair of tasks"], scores["points"], bench.headline, args.seeds[0])
        mmacs = _compute_range(evaluations, args.seeds[0])
        compute_chart(charts["normalised compute vs budget"], scores["points"], args.seeds, mmacs)
        payload["datasets"][name] = {
            "title": DATASETS[name].title,
            "headline": bench.headline,
            "runs_dir": str(runs_dir),
            "charts": {what: path.name for what, path in charts.items() if path.is_file()},
            "evaluations": evaluations,
            **{k: v for k, v in scores.items() if k != "points"},  # the points repeat the evaluations
            "wall": runs.wall,
        }
    payload = json.loads(json.dumps(payload))  # budget and seed keys as JSON writes them
    text = to_markdown(payload)
    report.write(args.out, text, payload)
    print(text)
    print(f"Report written to {args.out} (and {args.out.with_suffix('.json')}, the PNGs beside it).")
