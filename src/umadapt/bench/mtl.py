"""The multi-task learning benchmark behind ``make bench-mtl``: one network per task vs shared networks on SynthRooms.

Seed by seed it runs (:func:`umadapt.bench.runner.run_benchmark`) the single-task networks first, then hard parameter
sharing with each loss weighting, cross-stitch and progressive networks, and universal representations distilled
from *that seed's* single-task networks, as is cross-stitch initialised from them (the registry's
``single_task_checkpoints``). It reports every test metric on SynthRooms' **source** test split (the supervised
multi-task setting) and on its **target** split (the same models under domain shift), and the Δ_MTL of every run
against the single-task reference (the single-task networks of the same seed), averaged over seeds.

    python -m umadapt.bench mtl --seeds 0 1 2 --out results/mtl.md --runs-dir results/runs/mtl
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from umadapt.bench import report
from umadapt.bench.registry import Benchmark, get_benchmark
from umadapt.bench.runner import add_run_arguments, run_benchmark, run_dir, select_methods
from umadapt.checkpoints import read_state_dict
from umadapt.errors import ConfigError
from umadapt.metrics import delta_mtl

__all__ = ["single_task_reference", "state_size", "summarise", "teacher_paths", "to_markdown"]

NAME = "mtl"
DELTAS = ("delta", "delta_all")


def teacher_paths(bench: Benchmark, runs_dir: Path, seed: int, method: str | None = None) -> dict[str, str]:
    """The ``last.ckpt`` of each single-task run of ``seed`` that ``method`` receives (default, or for a method
    without its own ``runs`` in the registry: the ``single_task`` runs): ``{task: path}``."""
    runs = bench.checkpoint_runs(method) if method is not None else {}
    return {
        task: str(run_dir(runs_dir, producer, seed) / "checkpoints" / "last.ckpt")
        for task, producer in (runs or bench.single_task).items()
    }


def single_task_reference(bench: Benchmark, records: Mapping[str, list[dict]]) -> list[dict]:
    """Per seed, one record whose metrics are each single-task run's metrics of its own task ([] if one is missing)."""
    runs = [records.get(method, []) for method in bench.single_task.values()]
    if not all(runs) or len({len(r) for r in runs}) != 1:
        return []
    merged = []
    for per_seed in zip(*runs):
        metrics = {}
        for task, run in zip(bench.single_task, per_seed):
            metrics.update({k: v for k, v in run["metrics"].items() if k.split("/")[2] == task})
        merged.append({"metrics": metrics, "seed": per_seed[0].get("seed")})
    return merged


def _domain_metrics(record: Mapping, domain: str) -> dict[str, float]:
    """``{"task/metric": value}`` of one domain (the total ``loss`` is left out: it is not a task metric)."""
    prefix = f"test/{domain}/"
    metrics = record["metrics"]
    return {k[len(prefix) :]: float(v) for k, v in metrics.items() if k.startswith(prefix) and k.count("/") == 3}


def _deltas(per_seed: list[dict], refs: list[dict], keys_of) -> tuple[float, float] | None:
    """Mean ± std over seeds of Δ_MTL against the same seed's reference, over ``keys_of(metrics, reference)``
    (averaged within each task first, then over tasks)."""
    deltas = [delta_mtl(m, r, metrics=keys_of(m, r), by_task=True) for m, r in zip(per_seed, refs) if keys_of(m, r)]
    return report.mean_std(deltas) if deltas else None


def summarise(bench: Benchmark, records: Mapping[str, list[dict]]) -> dict[str, dict]:
    """``{domain: {method: {"metrics": {key: (mean, std)}, "delta", "delta_all", "delta_per_task"}}}``.

    Δ_MTL is taken per seed against the single-task reference of the same seed (``"delta"`` over the headline
    metrics, ``"delta_all"`` over every metric both have, averaged within each task first and then over tasks,
    ``"delta_per_task"`` per headline metric), then averaged over seeds."""
    reference = single_task_reference(bench, records)
    table = dict(records)
    if reference:  # the single-task runs become one reference row
        singles = set(bench.single_task.values())
        table = {bench.reference: reference, **{m: r for m, r in records.items() if m not in singles}}
    headline = bench.headline_keys
    summary: dict[str, dict] = {}
    for domain in bench.domains:
        summary[domain] = {}
        for method, runs in table.items():
            per_seed = [_domain_metrics(r, domain) for r in runs]
            names = sorted({k for m in per_seed for k in m})
            entry: dict = {
                "metrics": {n: report.mean_std([m[n] for m in per_seed if n in m]) for n in names},
                "seeds": len(runs),
            }
            if reference and len(reference) == len(runs):
                refs = [_domain_metrics(r, domain) for r in reference]
                for key, keys_of in (
                    ("delta", lambda m, r: [k for k in headline if k in m and k in r]),
                    ("delta_all", lambda m, r: sorted(k for k in set(m) & set(r) if r[k] != 0)),
                ):
                    if (stats := _deltas(per_seed, refs, keys_of)) is not None:
                        entry[key] = stats
                one = {k: (lambda m, r, k=k: [k] if k in m and k in r else []) for k in headline}
                per_task = {k: _deltas(per_seed, refs, keys_of) for k, keys_of in one.items()}
                entry["delta_per_task"] = {k: v for k, v in per_task.items() if v is not None}
            summary[domain][method] = entry
    return summary


def state_size(run: Path) -> int | None:
    """Number of values in the run's checkpointed state dict (parameters and BatchNorm statistics)."""
    path = run / "checkpoints" / "last.ckpt"
    if not path.is_file():
        return None
    state = read_state_dict(path, "benchmark checkpoint")
    return int(sum(v.numel() for v in state.values() if hasattr(v, "is_floating_point") and v.is_floating_point()))


def _settings(bench: Benchmark) -> str:
    base = bench.root / bench.base
    config = yaml.safe_load(base.read_text()) if base.is_file() else {}
    scale = ", ".join(f"{m} {s}" for m, s in bench.epoch_scale.items())
    try:
        source = config["data"]["init_args"]["source"]["init_args"]
        return (
            f"{config['trainer']['max_epochs']} epochs (times {scale}; progressive trains one phase per task), "
            f"{source['train_size']} source training images of {source['image_size']}x{source['image_size']}, batch "
            f"{config['data']['init_args']['batch_size']}, {source['test_size']} test images per domain "
            "(experiments/synthrooms/base.yaml uses 12 epochs and 2000 images: the MTL benchmark is smaller to fit "
            f"{len(bench.methods)} configs x 3 seeds in about an hour on 2 CPU cores)"
        )
    except (KeyError, TypeError):
        return f"see {bench.base}"


def to_markdown(
    bench: Benchmark,
    summary: Mapping,
    seeds: Sequence[int],
    wall: Mapping,
    sizes: Mapping,
    command: str,
    epochs: int | None,
    chart: list[str],
    execution: Mapping | None = None,
) -> str:
    """The Markdown report: per domain a headline table with Δ_MTL and state size, then every metric."""
    headline = bench.headline_keys
    scale = ", ".join(f"{m} x{s}" for m, s in bench.epoch_scale.items())
    settings = _settings(bench) if epochs is None else f"{epochs} epochs (overridden; {scale})"
    lines = [
        f"# {NAME}: multi-task learning on SynthRooms",
        "",
        f"Seeds {list(seeds)}; mean ± std over seeds. Every model trains on the labelled synthetic source only and is "
        "tested from its last checkpoint. Settings: " + settings + ".",
        f"Command: `{command}`",
        "",
        "Δ_MTL (Maninis et al.): mean over metrics of the signed relative change against the single-task networks of "
        "the same seed, in %; positive is better. *Δ_MTL* uses the headline metrics ("
        + report.headline_header(headline).replace(" | ", ", ")
        + "), as the NYUD-v2 papers do; *Δ_MTL all* every metric, averaged within each task first, then over tasks (as "
        f"LibMTL does: each task weighs the same whatever its metric count). `{bench.reference}` is the single-task "
        "networks.",
    ]
    titles = {
        "source": "Source test split (supervised multi-task)",
        "target": "Target test split (real look: the same models under domain shift)",
    }
    for domain in bench.domains:
        lines += [
            "",
            f"## {titles.get(domain, domain)}",
            "",
            f"| method | {report.headline_header(headline)} | Δ_MTL (%) | Δ_MTL all (%) | state size |",
            "|---" * (len(headline) + 4) + "|",
        ]
        for m, entry in summary[domain].items():
            cells = report.headline_cells(entry, headline)
            cells += [f"{entry[k][0]:+.2f} ± {entry[k][1]:.2f}" if k in entry else "n/a" for k in DELTAS]
            size = sizes.get(m)
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {'n/a' if size is None else f'{size / 1e3:.0f} k'} |")
    lines += chart
    for domain in bench.domains:
        lines += report.metric_table(f"Every {domain} metric", summary[domain])
    lines += report.cost_lines(wall, execution)
    lines += report.published_lines(bench.published)
    return "\n".join(lines) + "\n"


def panels(bench: Benchmark, summary: Mapping) -> list[report.Panel]:
    """Per domain, the change (%) of each headline metric against the single-task networks, per method."""
    result = []
    for domain in bench.domains:
        per_task = {m: e.get("delta_per_task", {}) for m, e in summary[domain].items()}
        values = {m: {k.split("/")[0]: v[0] for k, v in d.items()} for m, d in per_task.items() if d}
        if values:
            title = f"{NAME}, {domain} test split: change per task vs single-task networks ({bench.reference}: 0 %)"
            result.append(report.Panel(title, "change vs single-task (%)", values))
    return result


def main(argv: list[str] | None = None) -> None:
    """``python -m umadapt.bench mtl ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m umadapt.bench mtl", description=__doc__.splitlines()[0])
    add_run_arguments(parser, "results/runs/mtl")
    args = parser.parse_args(argv)
    bench = get_benchmark(NAME, args.registry)
    requested = select_methods(bench, args.methods)
    order = [m for m in bench.methods if m in requested]  # registry order: the single-task teachers first

    def single_task_checkpoints(method: str, seed: int) -> list[str]:
        key = bench.single_task_checkpoints.get(method)
        if key is None:
            return []
        paths = teacher_paths(bench, args.runs_dir, seed, method)
        missing = [p for p in paths.values() if not Path(p).is_file()]
        if missing:
            runs = list(bench.checkpoint_runs(method).values())
            raise ConfigError(
                f"{method} needs the single-task checkpoints {missing}; run {runs} for seed {seed} first (they run "
                "first by default)."
            )
        return [f"--{key}={json.dumps(paths)}"]

    options = dict(epochs=args.epochs, predict=args.predict, resume=args.resume, seed_major=True, jobs=args.jobs)
    options["run_args"] = single_task_checkpoints
    runs = run_benchmark(bench, order, args.seeds, args.runs_dir, args.cli_arg, **options)
    summary = summarise(bench, runs.records)
    sizes = {m: state_size(run_dir(args.runs_dir, m, args.seeds[0])) for m in order}
    singles = [sizes.get(m) for m in bench.single_task.values()]
    if all(s is not None for s in singles):
        sizes[bench.reference] = sum(singles)  # type: ignore[arg-type]
    found = panels(bench, summary)
    chart = report.chart_line(args.out, "change per task vs the single-task networks") if found else []
    command = f"python -m umadapt.bench mtl {' '.join(argv)}"
    text = to_markdown(bench, summary, args.seeds, runs.wall, sizes, command, args.epochs, chart, runs.execution)
    json_out = {"summary": summary, "runs": runs.records, "wall": runs.wall, "execution": runs.execution}
    report.write(args.out, text, json_out, found)
    print(text)
    print(f"Table written to {args.out}; per-run logs, checkpoints and results under {args.runs_dir}/")
