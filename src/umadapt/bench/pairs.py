"""A class-folder benchmark (Office-31, Office-Home) over all its domain pairs and their average, as papers report.

One base config serves every pair: the pair is a command-line override of the two domains
(``--data.init_args.source.init_args.domain=...``). For each pair of the registry this runs the benchmark's methods
and seeds (:func:`umadapt.bench.runner.run_benchmark`) and writes one report per pair under ``--out-dir``
(``<SOURCE>_to_<TARGET>.md|json|png``), then ``<out-dir>/summary.md`` (and ``summary.png``): target accuracy per pair
and method (mean ± std over seeds), the average over pairs, and the published numbers.

    python -m umadapt.bench pairs office31 --seeds 0 1 2 --out-dir results/office31
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Mapping
from pathlib import Path

from umadapt.bench import report
from umadapt.bench.registry import Benchmark, get_benchmark
from umadapt.bench.runner import add_run_arguments, run_benchmark, select_methods
from umadapt.errors import ConfigError

__all__ = ["pair_args", "pair_tag", "summary_markdown"]


def pair_tag(source: str, target: str) -> str:
    """``amazon_to_webcam``; spaces become underscores (``Real_World_to_Art``)."""
    return f"{source}_to_{target}".replace(" ", "_")


def pair_args(source: str, target: str) -> list[str]:
    """The umadapt arguments that select the pair."""
    return [
        f"--data.init_args.source.init_args.domain={source}",
        f"--data.init_args.target.init_args.domain={target}",
    ]


def summary_markdown(
    bench: Benchmark, summaries: Mapping[str, Mapping], chart: list[str] = (), metric: str = "label/accuracy"
) -> str:
    """The per-pair and average table from each pair's summary (``{pair tag: summary}``, see
    :func:`~umadapt.bench.report.summarise`), then ``chart`` (Markdown lines) and the published numbers."""
    methods = list(dict.fromkeys(m for summary in summaries.values() for m in summary))
    lines = [
        f"# {bench.name}: target {metric} per domain pair (mean ± std over seeds) and the average over pairs",
        "",
        "| pair | " + " | ".join(methods) + " |",
        "|---" * (len(methods) + 1) + "|",
    ]
    per_method: dict[str, list[float]] = {m: [] for m in methods}
    for tag, summary in summaries.items():
        cells = []
        for method in methods:
            stats = summary.get(method, {}).get("metrics", {}).get(metric)
            if stats is None:
                cells.append("n/a")
                continue
            per_method[method].append(100 * stats[0])
            cells.append(f"{100 * stats[0]:.1f} ± {100 * stats[1]:.1f}")
        lines.append(f"| {tag} | " + " | ".join(cells) + " |")
    averages = [f"{statistics.fmean(v):.1f}" if len(v) == len(summaries) else "n/a" for v in per_method.values()]
    lines.append("| **average** | " + " | ".join(averages) + " |")
    return "\n".join([*lines, *chart, *report.published_lines(bench.published)]) + "\n"


def summary_panel(bench: Benchmark, summaries: Mapping[str, Mapping]) -> report.Panel | None:
    """Gap closed (%) of the headline metric per pair and method."""
    key = bench.headline_keys[0]
    values = {}
    for tag, summary in summaries.items():
        for method, entry in summary.items():
            if key in entry.get("gap_closed", {}):
                values.setdefault(method, {})[tag] = 100 * entry["gap_closed"][key]
    if not values:
        return None
    title = f"{bench.name}: gap closed of {key} per domain pair ({bench.reference} = 0 %, {bench.oracle} = 100 %)"
    return report.Panel(title, "gap closed (%)", values, marks=(0.0, 100.0), legend="pair")


def main(argv: list[str] | None = None) -> None:
    """``python -m umadapt.bench pairs <benchmark> ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m umadapt.bench pairs", description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", help="a benchmark of experiments/benchmarks.yaml that lists pairs")
    parser.add_argument("--pairs", nargs="+", help="only these pairs, as SOURCE_to_TARGET tags (default: all)")
    parser.add_argument("--out-dir", type=Path, required=True)
    add_run_arguments(parser, "results/runs", out=False)
    args = parser.parse_args(argv)
    bench = get_benchmark(args.benchmark, args.registry)
    if not bench.pairs:
        raise ConfigError(f"Benchmark {bench.name!r} lists no pairs; use `python -m umadapt.bench run {bench.name}`.")
    pairs = bench.pairs
    if args.pairs:
        unknown = sorted(set(args.pairs) - {pair_tag(*p) for p in pairs})
        if unknown:
            raise ConfigError(f"Unknown pair(s) {unknown} for {bench.name}; valid: {[pair_tag(*p) for p in pairs]}.")
        pairs = tuple(p for p in pairs if pair_tag(*p) in args.pairs)
    methods = select_methods(bench, args.methods)
    summaries: dict[str, dict] = {}
    for index, (source, target) in enumerate(pairs, 1):
        tag = pair_tag(source, target)
        print(f"bench pairs {bench.name}: pair {index}/{len(pairs)}, {source} -> {target}", flush=True)
        extra = [*pair_args(source, target), *args.cli_arg]
        options = dict(epochs=args.epochs, predict=args.predict, resume=args.resume, jobs=args.jobs)
        options["label"] = f"bench {bench.name} {tag}"
        runs = run_benchmark(bench, methods, args.seeds, args.runs_dir / bench.name / tag, extra, **options)
        command = f"python -m umadapt.bench pairs {' '.join(argv)}"
        out = args.out_dir / f"{tag}.md"
        summaries[tag] = report.write_benchmark(bench, runs.records, runs.wall, args.seeds, out, command)
    panel = summary_panel(bench, summaries)
    out = args.out_dir / "summary.md"
    text = summary_markdown(bench, summaries, report.chart_line(out, "gap closed per pair") if panel else [])
    report.write(out, text, panels=[panel] if panel else [])
    print(text)
