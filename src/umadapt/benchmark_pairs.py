"""Run a class-folder benchmark (Office-31, Office-Home) over all its domain pairs and average, as the papers report.

One base config serves every pair: the pair is a command-line override of the two domains
(``--data.init_args.source.init_args.domain=...``). For each pair this calls :mod:`umadapt.benchmark` (fit + test
per method and seed, one Markdown/JSON table per pair under ``--out-dir``), then writes ``<out-dir>/summary.md``:
target accuracy per pair and method (mean ± std over seeds), the average over pairs, and the published numbers.

    python -m umadapt.benchmark_pairs office31 --seeds 0 1 2 --out-dir results/office31
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from umadapt import benchmark

PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "office31": tuple(
        (s, t) for s, t in (("amazon", "webcam"), ("dslr", "webcam"), ("webcam", "dslr"), ("amazon", "dslr"),
                            ("dslr", "amazon"), ("webcam", "amazon"))
    ),
    "officehome": tuple(
        (s, t) for s in ("Art", "Clipart", "Product", "Real World") for t in ("Art", "Clipart", "Product", "Real World")
        if s != t
    ),
}
"""The domain pairs of each benchmark, in the order the papers' tables list them (Office-31: A->W, D->W, W->D, A->D,
D->A, W->A; Office-Home: all twelve ordered pairs)."""


def pair_tag(source: str, target: str) -> str:
    return f"{source}_to_{target}".replace(" ", "_")


def pair_args(source: str, target: str) -> list[str]:
    return [
        f"--cli-arg=--data.init_args.source.init_args.domain={source}",
        f"--cli-arg=--data.init_args.target.init_args.domain={target}",
    ]


def summary_markdown(name: str, results: dict[str, dict], metric: str = "label/accuracy") -> str:
    """The per-pair and average table from each pair's benchmark JSON (``{pair tag: json}``)."""
    methods = sorted({m for r in results.values() for m in r["summary"]})
    lines = [
        f"# {name}: target {metric} per domain pair (mean ± std over seeds) and the average over pairs",
        "",
        "| pair | " + " | ".join(methods) + " |",
        "|---" * (len(methods) + 1) + "|",
    ]
    per_method: dict[str, list[float]] = {m: [] for m in methods}
    for tag, record in results.items():
        cells = []
        for method in methods:
            stats = record["summary"].get(method, {}).get("metrics", {}).get(metric)
            if stats is None:
                cells.append("n/a")
                continue
            per_method[method].append(100 * stats[0])
            cells.append(f"{100 * stats[0]:.1f} ± {100 * stats[1]:.1f}")
        lines.append(f"| {tag} | " + " | ".join(cells) + " |")
    averages = [f"{statistics.fmean(v):.1f}" if len(v) == len(results) else "n/a" for v in per_method.values()]
    lines.append("| **average** | " + " | ".join(averages) + " |")
    published = benchmark.BENCHMARKS[name].published
    if published:
        lines += ["", "## Published numbers (BENCHMARKS.md)", ""]
        lines += [f"- {setting}: {numbers}" for setting, numbers in published.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m umadapt.benchmark_pairs", description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", choices=sorted(PAIRS))
    parser.add_argument("--methods", nargs="+")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--pairs", nargs="+", help="only these pairs, as SOURCE_to_TARGET tags (default: all)")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--runs-dir", type=Path, default=Path("results/runs"))
    parser.add_argument("--cli-arg", action="append", default=[])
    args = parser.parse_args(argv)
    pairs = PAIRS[args.benchmark]
    if args.pairs:
        unknown = sorted(set(args.pairs) - {pair_tag(*p) for p in pairs})
        if unknown:
            parser.error(f"unknown pair(s) {unknown}; valid: {[pair_tag(*p) for p in pairs]}")
        pairs = tuple(p for p in pairs if pair_tag(*p) in args.pairs)
    results: dict[str, dict] = {}
    for source, target in pairs:
        tag = pair_tag(source, target)
        out = args.out_dir / f"{tag}.md"
        common = [
            args.benchmark, "--seeds", *map(str, args.seeds), "--out", str(out),
            "--runs-dir", str(args.runs_dir / args.benchmark / tag), *pair_args(source, target),
            *(f"--cli-arg={a}" for a in args.cli_arg),
        ]
        if args.methods:
            common += ["--methods", *args.methods]
        if args.epochs:
            common += ["--epochs", str(args.epochs)]
        print(f"benchmark_pairs {args.benchmark}: {source} -> {target}", flush=True)
        benchmark.main(common)
        results[tag] = json.loads(out.with_suffix(".json").read_text())
    text = summary_markdown(args.benchmark, results)
    (args.out_dir / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
