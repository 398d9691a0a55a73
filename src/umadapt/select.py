"""Model selection without target labels: ``python -m umadapt.select RUN [RUN ...] --out results/selection_x.md``.

Every checkpoint of the given run folders (``checkpoints/*.ckpt``; a grid saves several per run) is a *candidate*.
Each candidate is scored by every label-free validator (:mod:`umadapt.validators`: labelled source validation
samples, target validation *images*) and, for the report only, on the target **test** labels. Per seed, each
validator picks its best candidate; the report gives, per validator, the target test metrics of its picks, the
*oracle* pick (best by target test labels: an upper bound no user can reach), the *default* pick (the last
checkpoint of the ``--default`` setting), the selection gap (oracle minus pick), the fraction of the oracle's gain
over the default the pick recovers, and the rank correlations (Spearman, Kendall's τ) between validator and target
metric over the candidates, with one scatter plot per validator.

A run folder is ``<runs>/<setting>/seed<N>`` (the benchmark runner's layout) holding ``config.yaml`` and
``checkpoints/``; its setting is the folder's parent name, its seed the config's ``seed_everything``. Scores are
cached per checkpoint in ``<run>/selection/<checkpoint>.json``.

    python -m umadapt.select results/runs/selection_digits/*/seed* --headline label/accuracy \\
        --default mu0_0.01-w_1.0-adv_100 --out results/selection_digits.md
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from umadapt.checkpoints import read_checkpoint
from umadapt.errors import ConfigError
from umadapt.metrics import is_lower_better
from umadapt.metrics.mtl import delta_mtl
from umadapt.samples import collate_samples
from umadapt.tasks import eval_pairs
from umadapt.validators import Validator, build_validator, evidence_for, validation_loaders

__all__ = ["Candidate", "discover", "main", "score_candidates", "summarize"]

ORACLE, DEFAULT, RANDOM = "oracle (target test labels)", "default", "random candidate (expected)"


@dataclass(frozen=True)
class Candidate:
    """One checkpoint of one run."""

    run: Path
    checkpoint: Path
    setting: str
    seed: int
    step: int

    @property
    def label(self) -> str:
        return f"{self.setting} seed{self.seed} step{self.step}"


def _run_config(run: Path) -> dict[str, Any]:
    path = run / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run} is not a run folder: it has no config.yaml (pass <runs>/<setting>/seed<N> folders).")
    return yaml.safe_load(path.read_text())


def _data_identity(config: Mapping[str, Any]) -> str:
    """What two runs must share to be compared: the source and target data and the task set."""
    data = (config.get("data") or {}).get("init_args") or {}
    return json.dumps({k: data.get(k) for k in ("source", "target", "tasks")}, sort_keys=True, default=str)


def discover(runs: Sequence[Path]) -> list[Candidate]:
    """Every candidate checkpoint of ``runs`` (a run's ``last.ckpt`` is dropped when an epoch checkpoint has the
    same step); runs of different data or task sets are refused, naming two of them."""
    candidates: list[Candidate] = []
    first: tuple[Path, str] | None = None
    for run in runs:
        run = Path(run)
        config = _run_config(run)
        identity = _data_identity(config)
        if first is None:
            first = (run, identity)
        elif identity != first[1]:
            raise ConfigError(
                f"Runs {first[0]} and {run} are of different benchmarks or task sets (their data.source, data.target "
                "or data.tasks differ): select among runs of one benchmark."
            )
        by_step: dict[int, Path] = {}
        for checkpoint in sorted((run / "checkpoints").glob("*.ckpt"), key=lambda p: (p.name == "last.ckpt", p.name)):
            step = int(read_checkpoint(checkpoint).get("global_step", 0))
            by_step.setdefault(step, checkpoint)
        if not by_step:
            raise ConfigError(f"Run {run} has no checkpoints/*.ckpt; train it first (or pass finished runs).")
        seed = int(config.get("seed_everything") or 0)
        candidates += [Candidate(run, path, run.parent.name, seed, step) for step, path in sorted(by_step.items())]
    if len(candidates) < 2:
        raise ConfigError(
            f"Model selection needs at least two candidates; found {len(candidates)} in {[str(r) for r in runs]} "
            "(a rank correlation of one point means nothing)."
        )
    return candidates


class RunLoader:
    """Builds each run's model from its ``config.yaml`` (once per run) and the data (once per data config)."""

    def __init__(self) -> None:
        self._run: tuple[Path, Any, Any] | None = None  # (run, model, data): one model at a time, runs in order
        self._data: dict[str, Any] = {}

    def __call__(self, candidate: Candidate) -> tuple[Any, Any]:
        from umadapt.cli import build_cli  # here: the CLI's imports are only needed once a model is built

        run = candidate.run
        if self._run is None or self._run[0] != run:
            config = _run_config(run)
            for key in ("ckpt_path", "weights_only", "untrained"):
                config.pop(key, None)
            config["trainer"] = {**(config.get("trainer") or {}), "logger": False, "callbacks": None}
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
                yaml.safe_dump(config, handle)
            try:
                cli = build_cli(["--config", handle.name], run=False)
            finally:
                Path(handle.name).unlink()
            self._run = (run, cli.model, self._data.setdefault(_data_identity(config), cli.datamodule))
        _, model, datamodule = self._run
        model.load_state_dict(read_checkpoint(candidate.checkpoint)["state_dict"])
        return model.eval(), datamodule


def target_test_metrics(model: Any, datamodule: Any) -> dict[str, float]:
    """``{task/metric: value}`` of ``model`` on the target test split (for the report: these use target labels)."""
    dataset = datamodule.eval_dataset("target", "test")
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=False, collate_fn=collate_samples)
    metrics = model.metrics["test_target"]
    for metric in metrics.values():
        metric.reset()
    with torch.no_grad():
        for batch in loader:
            predictions = model(batch["image"])
            for t in model.tasks:  # as MultiTaskModel's test step: batches with a label (metrics skip invalid ones)
                pairs = eval_pairs(model.task_specs[t], predictions[t], batch)  # native labels when served
                if any(model.task_specs[t].labelled(target).any() for _, target in pairs):
                    for prediction, target in pairs:
                        metrics[t].update(prediction, target)
    values = {f"{t}/{name}": float(v) for t in model.tasks for name, v in metrics[t].compute().items()}
    for metric in metrics.values():
        metric.reset()
    return values


def _cache_path(candidate: Candidate) -> Path:
    return candidate.run / "selection" / f"{candidate.checkpoint.stem}.json"


def score_candidates(
    candidates: Sequence[Candidate],
    validators: Sequence[Validator],
    per_seed_options: Mapping[str, Mapping[str, Any]] | None = None,
    load: RunLoader | None = None,
    log: Any = print,
) -> list[dict[str, Any]]:
    """``[{candidate fields, scores: {validator: score}, metrics: {task/metric: target test value}}]``, reusing
    cached scores of validators with the same settings. ``per_seed_options``: ``{validator: {option: value with
    {seed}}}`` (e.g. the consistency validator's checkpoint of each seed's source phase)."""
    load = load or RunLoader()
    records = []
    for index, candidate in enumerate(candidates, 1):
        path = _cache_path(candidate)
        cached = _read_cache(path)
        if cached.get("mtime") != candidate.checkpoint.stat().st_mtime:
            cached = {}
        seeded = _seeded_validators(validators, per_seed_options or {}, candidate.seed)
        todo = [v for v in seeded if cached.get("settings", {}).get(v.name) != _settings(v)]
        if todo or "metrics" not in cached:
            model, datamodule = load(candidate)
            cached.setdefault("scores", {})
            cached.setdefault("settings", {})
            if "metrics" not in cached:
                cached["metrics"] = target_test_metrics(model, datamodule)
            source_loader, target_loader = validation_loaders(datamodule)
            for validator in todo:
                validator.check(model)
            online = [v for v in todo if not v.post_hoc]
            evidence = evidence_for(online, model, source_loader, target_loader) if online else None
            diverged = evidence is not None and not evidence.is_finite()
            for validator in todo:
                if diverged:  # a diverged model: NaN predictions score NaN, never picked
                    score = math.nan
                elif validator.post_hoc:
                    score = validator.score_model(model, datamodule.images_dataset("target", "train"), source_loader)
                else:
                    score = validator.score(evidence)
                cached["scores"][validator.name] = score
                cached["settings"][validator.name] = _settings(validator)
            cached["mtime"] = candidate.checkpoint.stat().st_mtime
            _write_cache(path, cached)
            log(f"select: [{index}/{len(candidates)}] scored {candidate.label}")
        records.append(
            {
                "setting": candidate.setting,
                "seed": candidate.seed,
                "step": candidate.step,
                "checkpoint": str(candidate.checkpoint),
                "scores": {v.name: cached["scores"][v.name] for v in seeded},
                "metrics": cached["metrics"],
            }
        )
    return records


def _read_cache(path: Path) -> dict[str, Any]:
    """A candidate's cached scores; an unreadable file (an interrupted write) counts as none."""
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        print(f"select: ignoring the unreadable score cache {path}; scoring again", file=sys.stderr)
        return {}


def _write_cache(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data, indent=1))
    partial.replace(path)  # atomic: a killed run never leaves half a file


def _settings(validator: Validator) -> str:
    """What a cached score depends on: the validator's settings and the files they name (by modification time)."""
    settings = validator.describe()
    checkpoint = settings.get("checkpoint")
    if checkpoint and Path(checkpoint).is_file():
        settings["checkpoint_mtime"] = Path(checkpoint).stat().st_mtime
    return json.dumps(settings, sort_keys=True, default=str)


def _seeded_validators(
    validators: Sequence[Validator], options: Mapping[str, Mapping[str, Any]], seed: int
) -> list[Validator]:
    if not options:
        return list(validators)
    out = []
    for validator in validators:
        extra = options.get(validator.name)
        if extra:  # "{seed}" filled in, then read back as YAML: "{seed}" alone becomes the integer seed
            settings = {k: yaml.safe_load(str(v).replace("{seed}", str(seed))) for k, v in extra.items()}
            validator = build_validator(validator.name, **{**_init_options(validator), **settings})
        out.append(validator)
    return out


def _init_options(validator: Validator) -> dict[str, Any]:
    described = dict(validator.describe())
    described.pop("name", None)
    return described


# -- the report ---------------------------------------------------------------------------------------------------
def target_value(metrics: Mapping[str, float], headline: Sequence[str], reference: Mapping[str, float]) -> float:
    """The target metric a selection is judged by: the headline metric itself (one metric), else Δ_MTL in % over
    the headline metrics relative to ``reference`` (the seed's default pick)."""
    if len(headline) == 1:
        return float(metrics[headline[0]])
    return delta_mtl(metrics, reference, metrics=headline)


def _rank_correlations(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    from scipy.stats import kendalltau, spearmanr

    if len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan, math.nan
    return float(spearmanr(x, y).statistic), float(kendalltau(x, y).statistic)


def summarize(
    records: Sequence[Mapping[str, Any]], validators: Sequence[str], headline: Sequence[str], default: str
) -> dict[str, Any]:
    """Per seed: the oracle, default and each validator's pick, and the rank correlations; then mean ± std over
    seeds. The target value is oriented so that higher is better (a lower-is-better headline metric is negated)."""
    seeds = sorted({r["seed"] for r in records})
    sign = -1.0 if len(headline) == 1 and is_lower_better(headline[0]) else 1.0
    per_seed: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        rows = [r for r in records if r["seed"] == seed]
        defaults = [r for r in rows if r["setting"] == default]
        if not defaults:
            settings = sorted({r["setting"] for r in rows})
            raise ConfigError(f"--default {default!r} has no run of seed {seed}; settings of that seed: {settings}.")
        default_row = max(defaults, key=lambda r: r["step"])
        values = [sign * target_value(r["metrics"], headline, default_row["metrics"]) for r in rows]
        ranked = [v if math.isfinite(v) else -math.inf for v in values]  # a diverged run is never the oracle's pick
        picks: dict[str, int | None] = {ORACLE: max(range(len(rows)), key=ranked.__getitem__)}
        picks[DEFAULT] = rows.index(default_row)
        correlations = {}
        for name in validators:
            scores = [r["scores"][name] for r in rows]
            finite = [i for i, s in enumerate(scores) if math.isfinite(s) and math.isfinite(values[i])]
            picks[name] = max(finite, key=scores.__getitem__) if finite else None  # no finite score: no pick
            correlations[name] = _rank_correlations([scores[i] for i in finite], [values[i] for i in finite])
        per_seed[seed] = {
            "values": values,
            "picks": {
                **{k: _pick(rows, i, values, sign) for k, i in picks.items()},
                RANDOM: _expected(rows, values, sign),
            },
            "correlations": correlations,
        }
    summary: dict[str, Any] = {"seeds": seeds, "headline": list(headline), "per_seed": per_seed, "rows": {}}
    for name in [ORACLE, DEFAULT, RANDOM, *validators]:
        picked = [per_seed[s]["picks"][name] for s in seeds]
        row: dict[str, Any] = {
            "metrics": {k: _mean_std([p["metrics"].get(k, math.nan) for p in picked]) for k in headline},
            "value": _mean_std([p["value"] for p in picked]),
            "picked": [p["setting"] if p["step"] < 0 else f"{p['setting']} step{p['step']}" for p in picked],
        }
        oriented = [sign * p["value"] for p in picked]
        oracle = [sign * per_seed[s]["picks"][ORACLE]["value"] for s in seeds]
        base = [sign * per_seed[s]["picks"][DEFAULT]["value"] for s in seeds]
        row["gap"] = _mean_std([o - v for o, v in zip(oracle, oriented)])
        row["recovered"] = _recovered(oriented, oracle, base)
        chance = [sign * per_seed[s]["picks"][RANDOM]["value"] for s in seeds]
        row["recovered_vs_random"] = _recovered(oriented, oracle, chance)
        if name in validators:
            pairs = [per_seed[s]["correlations"][name] for s in seeds]
            row["spearman"] = _mean_std([p[0] for p in pairs])
            row["kendall"] = _mean_std([p[1] for p in pairs])
        summary["rows"][name] = row
    return summary


def _recovered(picked: Sequence[float], oracle: Sequence[float], reference: Sequence[float]) -> float:
    """``(pick − reference) / (oracle − reference)`` of the means over seeds (NaN when the oracle gains nothing)."""
    gain = statistics.fmean(oracle) - statistics.fmean(reference)
    return (statistics.fmean(picked) - statistics.fmean(reference)) / gain if gain > 0 else math.nan


def _expected(rows: Sequence[Mapping[str, Any]], values: Sequence[float], sign: float) -> dict:
    """What a pick at random gives on average: the mean over the (non-diverged) candidates."""
    kept = [i for i, v in enumerate(values) if math.isfinite(v)]
    metrics = {k: statistics.fmean(rows[i]["metrics"][k] for i in kept) for k in rows[kept[0]]["metrics"]}
    value = statistics.fmean(values[i] for i in kept) * sign
    return {"index": None, "setting": f"mean of {len(kept)} candidates", "step": -1, "metrics": metrics, "value": value}


def _pick(rows: Sequence[Mapping[str, Any]], index: int | None, values: Sequence[float], sign: float) -> dict:
    """The picked candidate (its target value in the metric's own orientation); ``index`` ``None``: no pick."""
    if index is None:
        return {"index": None, "setting": "none (no finite score)", "step": -1, "metrics": {}, "value": math.nan}
    row = rows[index]
    metrics = dict(row["metrics"])
    return {
        "index": index,
        "setting": row["setting"],
        "step": row["step"],
        "metrics": metrics,
        "value": values[index] * sign,
    }


def _mean_std(values: Sequence[float]) -> list[float]:
    """Mean and sample std over seeds; NaN when any seed's value is (a seed without a pick)."""
    values = [float(v) for v in values]
    if not values or any(v != v for v in values):
        return [math.nan, math.nan]
    return [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


def _percent(fraction: float) -> str:
    return "n/a" if fraction != fraction else f"{100 * fraction:.0f} %"


def _fmt(pair: Sequence[float], digits: int = 3) -> str:
    mean, std = pair
    return "n/a" if mean != mean else f"{mean:.{digits}f} ± {std:.{digits}f}"


def render(summary: Mapping[str, Any], title: str, command: str, candidates: int, default: str) -> str:
    """The Markdown report of :func:`summarize`."""
    headline = summary["headline"]
    multi = len(headline) > 1
    value_name = "Δ vs default (%)" if multi else headline[0]
    lines = [
        f"# {title}",
        "",
        f"Command: `{command}`",
        "",
        f"{candidates} candidate checkpoints, seeds {summary['seeds']}; every row is mean ± std over the seeds of "
        f"the candidate picked per seed. Target test metric: {value_name}"
        + (f" (Δ_MTL over {', '.join(headline)} relative to the seed's default pick)" if multi else "")
        + f". Default: the last checkpoint of `{default}`. The oracle row picks with the target test labels: an "
        "upper bound no user can reach; the random row is the mean over all candidates (what a pick at random gives "
        "on average). Gap: oracle minus pick (in the target metric, higher-is-better oriented); recovered: (pick − "
        "default) / (oracle − default), and vs random: (pick − random) / (oracle − random), of the means over seeds; "
        "ρ and τ: Spearman and Kendall rank correlation between validator and target metric over each seed's "
        "candidates.",
        "",
        "| pick by | "
        + " | ".join(headline)
        + (" | Δ vs default (%)" if multi else "")
        + " | gap | recovered | vs random | ρ | τ |",
        "|---" * (len(headline) + (1 if multi else 0) + 6) + "|",
    ]
    for name, row in summary["rows"].items():
        cells = [_fmt(row["metrics"][k]) for k in headline]
        if multi:
            cells.append(_fmt(row["value"], 2))
        cells += [
            _fmt(row["gap"], 3 if not multi else 2),
            *(_percent(row[key]) for key in ("recovered", "recovered_vs_random")),
            _fmt(row.get("spearman", [math.nan, 0]), 2),
            _fmt(row.get("kendall", [math.nan, 0]), 2),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Picks per seed:", ""]
    for name, row in summary["rows"].items():
        lines.append(f"- {name}: " + "; ".join(row["picked"]))
    return "\n".join(lines) + "\n"


def plot(summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]], validator: str, path: Path) -> None:
    """Scatter of validator score vs target metric, one point per candidate, the picks marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 4))
    for seed in summary["seeds"]:
        rows = [r for r in records if r["seed"] == seed]
        values = summary["per_seed"][seed]["values"]
        x = [r["scores"][validator] for r in rows]
        points = axes.scatter(x, values, s=14, alpha=0.7, label=f"seed {seed}")
        picks = summary["per_seed"][seed]["picks"]
        for name, marker in ((validator, "*"), (ORACLE, "^"), (DEFAULT, "s")):
            i = picks[name]["index"]
            if i is None:
                continue
            axes.scatter(
                [x[i]], [values[i]], marker=marker, s=110, facecolors="none", edgecolors=points.get_facecolor()
            )
    value_name = "Δ vs default (%)" if len(summary["headline"]) > 1 else summary["headline"][0]
    axes.set_xlabel(f"{validator} (higher = better)")
    axes.set_ylabel(f"target test {value_name} (higher = better)")
    axes.set_title(f"{validator}: ★ its pick, ▲ oracle, ■ default", fontsize=9)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(
    records: Sequence[Mapping[str, Any]],
    validators: Sequence[str],
    headline: Sequence[str],
    default: str,
    out: Path,
    title: str,
    command: str,
    about: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``out`` (Markdown), its ``.json`` (summary, every candidate and ``about``: e.g. the grid's rule) and one
    ``<stem>_<validator>.png`` per validator; return the summary."""
    summary = summarize(records, validators, headline, default)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(summary, title, command, len(records), default))
    data = {"command": command, **dict(about or {}), "summary": summary, "candidates": list(records)}
    out.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str))
    for name in validators:
        plot(summary, records, name, out.with_name(f"{out.stem}_{name}.png"))
    return summary


def _validator_options(text: str | None) -> dict[str, dict[str, Any]]:
    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f'--validator-options is not JSON ({error}); e.g. \'{{"reverse": {{"steps": 200}}}}\'.')
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise ConfigError("--validator-options must map validator names to option mappings.")
    return options


def check_headline(headline: Sequence[str]) -> None:
    """Refuse a headline metric whose direction umadapt does not know (a typo), before any scoring."""
    for name in headline:
        try:
            is_lower_better(name)
        except KeyError:
            raise ConfigError(f"Unknown headline metric {name!r}: name a task/metric such as label/accuracy.") from None


def _split_options(options: Mapping[str, Mapping[str, Any]], seeded: bool) -> dict[str, dict[str, Any]]:
    """The options whose value holds ``{seed}`` (``seeded``, filled per candidate) or those without it."""
    return {n: {k: v for k, v in o.items() if ("{seed}" in str(v)) == seeded} for n, o in options.items()}


def per_seed_options(options: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The validator options :func:`score_candidates` fills in per candidate seed (values with ``{seed}``)."""
    return _split_options(options, seeded=True)


def build_validators(names: Sequence[str], options: Mapping[str, Mapping[str, Any]]) -> list[Validator]:
    """The validators ``names`` with ``options`` (those with ``{seed}`` are set per candidate, see
    :func:`per_seed_options`)."""
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ConfigError(f"--validator-options names {unknown}, which are not among --validators {list(names)}.")
    static = _split_options(options, seeded=False)
    return [build_validator(name, **static.get(name, {})) for name in names]


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m umadapt.select", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders <runs>/<setting>/seed<N>")
    parser.add_argument("--out", type=Path, required=True, help="Markdown report (.json and PNGs beside it)")
    parser.add_argument("--headline", nargs="+", required=True, help="target metric(s), e.g. label/accuracy")
    parser.add_argument("--default", required=True, help="the setting whose last checkpoint is the default pick")
    parser.add_argument("--validators", nargs="+", default=["source_risk", "entropy", "im", "bnm", "snd", "dev"])
    parser.add_argument(
        "--validator-options",
        help="JSON {validator: {option: value}}; a value with {seed} is filled per candidate, e.g. "
        '\'{"consistency": {"checkpoint": "runs/source_phase/seed{seed}/checkpoints/last.ckpt"}}\'',
    )
    parser.add_argument("--title", default="Model selection without target labels")
    args = parser.parse_args(argv)
    try:
        options = _validator_options(args.validator_options)
        validators = build_validators(args.validators, options)
        check_headline(args.headline)
        candidates = discover(args.runs)
        records = score_candidates(candidates, validators, per_seed_options(options))
        command = "python -m umadapt.select " + " ".join(argv)
        write_report(records, args.validators, args.headline, args.default, args.out, args.title, command)
    except ValueError as error:  # includes ConfigError
        print(f"umadapt.select: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(args.out.read_text())


if __name__ == "__main__":
    main()
