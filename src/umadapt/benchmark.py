"""Benchmark runner behind the ``make bench-*`` targets.

For every method and seed it runs ``umadapt fit`` and then ``umadapt test --ckpt_path <run>/checkpoints/last.ckpt``
(the last checkpoint: no target labels choose it) as separate processes, exactly as a user would, then writes a
Markdown table (and a JSON file beside it) of every target-domain test metric as mean ± std over seeds, the
Δ_MTL of each method against source-only and the fraction of the source-only -> oracle gap each method closes.

    python -m umadapt.benchmark synthrooms --methods source_only oracle --seeds 0 1 2 --out results/synthrooms.md
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from umadapt.metrics import delta_mtl, gap_closed, is_lower_better


@dataclass(frozen=True)
class Benchmark:
    """A benchmark: a base config, one config per method, and the headline metric of each task."""

    base: str
    methods: dict[str, str]
    headline: dict[str, str]
    reference: str = "source_only"
    oracle: str = "oracle"
    domain: str = "target"
    extra_report: Callable[[], list[str]] | None = field(default=None, compare=False)
    published: dict[str, str] = field(default_factory=dict, compare=False)
    """Published numbers to print under our table: ``{setting: numbers}``, quoted from BENCHMARKS.md."""


def _synthrooms_generation_report() -> list[str]:
    from data_modules.synthrooms import measure_generation_rate

    lines = []
    for look in ("synthetic", "real"):
        rate = measure_generation_rate(look=look, image_size=64, num_images=200)
        lines.append(f"- SynthRooms generation rate, {look} look, 64x64, one process: {rate:.0f} images/s")
    return lines


BENCHMARKS: dict[str, Benchmark] = {
    "synthrooms": Benchmark(
        base="experiments/synthrooms/base.yaml",
        methods={
            "source_only": "experiments/synthrooms/source_only.yaml",
            "oracle": "experiments/synthrooms/oracle.yaml",
            "dann": "experiments/synthrooms/dann.yaml",
            "umadapt": "experiments/synthrooms/umadapt.yaml",
            "umadapt_no_ccr": "experiments/synthrooms/umadapt_no_ccr.yaml",
            "umadapt_no_energy": "experiments/synthrooms/umadapt_no_energy.yaml",
            "umadapt_semi": "experiments/synthrooms/umadapt_semi.yaml",
        },
        headline={"depth": "rmse", "normals": "mean", "segmentation": "miou"},
        extra_report=_synthrooms_generation_report,
    ),
    "digits": Benchmark(
        base="experiments/digits/base.yaml",
        methods={
            "source_only": "experiments/digits/source_only.yaml",
            "dann": "experiments/digits/dann.yaml",
            "oracle": "experiments/digits/oracle.yaml",
        },
        headline={"label": "accuracy"},
        published={
            "DANN (JMLR 2016), MNIST -> MNIST-M, target accuracy": "source-only 52.25, DANN 76.66, train-on-target "
            "95.96 (DANN closes 56 % of the gap)",
        },
    ),
}

# Real-dataset benchmarks (data under $DATA_ROOT; see data_modules/real and docs/real_datasets.md). The published
# numbers are quoted from BENCHMARKS.md; they use ImageNet-pretrained backbones, which umadapt does not ship.
_PRETRAINED_NOTE = "published numbers use ImageNet-pretrained backbones; umadapt's configs start from random weights"
BENCHMARKS.update(
    {
        "gta5_cityscapes": Benchmark(
            base="experiments/gta5_cityscapes/base.yaml",
            methods={"source_only": "experiments/gta5_cityscapes/source_only.yaml", "oracle": "experiments/gta5_cityscapes/oracle.yaml"},
            headline={"segmentation": "miou"},
            published={
                "GTA5 -> Cityscapes mIoU (19 classes), target test": "DANN 32.8; CyCADA (FCN-8s) 39.5 vs source-only 25.3 "
                "and oracle 67.4; ADVENT 43.8; weak-label UDA 48.2, image-tag WDA 53.0, point WDA 56.4",
                "note": _PRETRAINED_NOTE,
            },
        ),
        "synthia_cityscapes": Benchmark(
            base="experiments/synthia_cityscapes/base.yaml",
            methods={"source_only": "experiments/synthia_cityscapes/source_only.yaml", "oracle": "experiments/synthia_cityscapes/oracle.yaml"},
            headline={"segmentation": "miou", "depth": "abs_rel"},
            published={"SYNTHIA -> Cityscapes": "none listed in BENCHMARKS.md", "note": _PRETRAINED_NOTE},
        ),
        "nyud": Benchmark(
            base="experiments/nyud/base.yaml",
            methods={"reference": "experiments/nyud/reference.yaml"},
            headline={"segmentation": "miou", "depth": "abs_err", "normals": "mean"},
            reference="reference",
            published={
                "NYUD-v2 multi-task (SegNet), mIoU / depth abs err / normal mean angle": "single-task 40.54 / 0.6276 / "
                "24.28; universal representations 45.52 / 0.4912 / 24.57 (Delta_MTL +10.95 %)",
                "NYUD-v2 multi-task (ResNet-50, DeepLabV3+), hard sharing": "54.10 mIoU / 0.3771 depth abs err / 23.53 deg normal mean",
                "note": _PRETRAINED_NOTE,
            },
        ),
        "sim_nyud": Benchmark(
            base="experiments/nyud/base.yaml",
            methods={"source_only": "experiments/nyud/source_only.yaml", "oracle": "experiments/nyud/oracle.yaml"},
            headline={"segmentation": "miou", "depth": "abs_err", "normals": "mean"},
            published={
                "your simulator -> NYUD-v2": "no published numbers (your own source data); the NYUD-v2 oracle here is "
                "comparable to BENCHMARKS.md's NYUD-v2 multi-task rows (see `make bench-nyud`)",
            },
        ),
        "office31": Benchmark(
            base="experiments/office31/base.yaml",
            methods={"source_only": "experiments/office31/source_only.yaml", "oracle": "experiments/office31/oracle.yaml"},
            headline={"label": "accuracy"},
            published={
                "Office-31, DANN (ResNet-50), average accuracy over the six pairs": "82.2 (original), 86.1 "
                "(Transfer-Learning-Library), 88.5 (best listed for DANN on a public leaderboard)",
                "Office-31, domain confusion (Tzeng 2015, AlexNet)": "source CNN 62.0, domain confusion 64.8 average over six pairs",
                "note": _PRETRAINED_NOTE,
            },
        ),
        "officehome": Benchmark(
            base="experiments/officehome/base.yaml",
            methods={"source_only": "experiments/officehome/source_only.yaml", "oracle": "experiments/officehome/oracle.yaml"},
            headline={"label": "accuracy"},
            published={
                "Office-Home, DANN, average accuracy over the twelve pairs": "64.9 - 72.4 depending on backbone and protocol",
                "note": _PRETRAINED_NOTE,
            },
        ),
    }
)


def _run(command: list[str], log: Path) -> float:
    """Run one CLI command, teeing its output to ``log``; return its wall time."""
    start = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        process = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
    if process.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise SystemExit(f"benchmark: command failed ({process.returncode}): {' '.join(command)}\n{tail}")
    return time.perf_counter() - start


def run_one(
    bench: Benchmark, method: str, seed: int, runs_dir: Path, extra: list[str], predict: bool = False, reuse: bool = False
) -> dict:
    """Fit and test one (method, seed) (and, with ``predict``, write a batch of prediction PNGs); returns the
    results record with wall times."""
    run_dir = runs_dir / method / f"seed{seed}"
    saved = run_dir / "benchmark_record.json"
    if reuse and saved.is_file():
        print(f"  reusing {saved} (--reuse)", flush=True)
        return json.loads(saved.read_text())
    configs = ["--config", bench.base, "--config", bench.methods[method]]
    common = [
        f"--seed_everything={seed}",
        f"--trainer.logger.init_args.save_dir={runs_dir}",
        f"--trainer.logger.init_args.name={method}",
        *extra,
    ]
    cli = [sys.executable, "-m", "umadapt"]
    fit_time = _run(
        [*cli, "fit", *configs, *common, f"--trainer.logger.init_args.version=seed{seed}"], run_dir / "fit.log"
    )
    results_path = run_dir / "results.json"
    test_time = _run(
        [
            *cli, "test", *configs, *common,
            f"--trainer.logger.init_args.version=seed{seed}-test",
            f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
            f"--results.path={results_path}",
        ],
        run_dir / "test.log",
    )
    if predict:
        _run(
            [
                *cli, "predict", *configs, *common,
                f"--trainer.logger.init_args.version=seed{seed}-predict",
                f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
                f"--predictions.output_dir={run_dir / 'predictions'}",
                "--trainer.limit_predict_batches=1",
            ],
            run_dir / "predict.log",
        )
    record = json.loads(results_path.read_text())
    record.update(fit_seconds=fit_time, test_seconds=test_time, command_args=[*configs, *common])
    saved.write_text(json.dumps(record, indent=2))
    return record


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(bench: Benchmark, records: dict[str, list[dict]]) -> dict:
    """Mean ± std per metric, Δ_MTL vs the reference and gap closed per task, from the per-seed records."""
    prefix = f"test/{bench.domain}/"
    summary: dict[str, dict] = {}
    for method, runs in records.items():
        names = sorted({k for r in runs for k in r["metrics"] if k.startswith(prefix)})
        stats = {n[len(prefix):]: _mean_std([r["metrics"][n] for r in runs]) for n in names}
        summary[method] = {"metrics": stats, "seeds": len(runs)}
    reference = summary.get(bench.reference)
    oracle = summary.get(bench.oracle)
    for method, entry in summary.items():
        means = {k: v[0] for k, v in entry["metrics"].items()}
        if reference is not None:
            ref_means = {k: v[0] for k, v in reference["metrics"].items()}
            shared = {k: means[k] for k in bench_keys(bench) if k in means and k in ref_means}
            entry["delta_mtl"] = delta_mtl(shared, {k: ref_means[k] for k in shared}, is_lower_better)
        if reference is not None and oracle is not None:
            entry["gap_closed"] = {}
            for key in bench_keys(bench):
                if key in means and key in reference["metrics"] and key in oracle["metrics"]:
                    entry["gap_closed"][key] = gap_closed(
                        means[key], reference["metrics"][key][0], oracle["metrics"][key][0], is_lower_better(key)
                    )
    return summary


def bench_keys(bench: Benchmark) -> list[str]:
    """The headline ``task/metric`` keys (one per task) used for Δ_MTL and gap closed."""
    return [f"{task}/{metric}" for task, metric in bench.headline.items()]


def _arrow(name: str) -> str:
    """`` ↓``/`` ↑`` for a metric of known direction, nothing for others (e.g. the evaluation ``loss``)."""
    try:
        return " ↓" if is_lower_better(name) else " ↑"
    except KeyError:
        return ""


def _fmt(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "n/a"
    digits = 2 if abs(mean) >= 10 else 4
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def to_markdown(name: str, bench: Benchmark, summary: dict, seeds: list[int], wall: dict, argv: list[str]) -> str:
    methods = list(summary)
    metric_names = sorted({k for m in methods for k in summary[m]["metrics"]})
    headline = bench_keys(bench)
    lines = [
        f"# {name}: target-domain test metrics",
        "",
        f"Seeds {seeds}; mean ± std over seeds. Checkpoint: the last epoch (no target labels used to choose it).",
        f"Command: `python -m umadapt.benchmark {' '.join(argv)}`",
        "",
        "## Headline",
        "",
        "| method | " + " | ".join(f"{k} {'↓' if is_lower_better(k) else '↑'}" for k in headline)
        + " | Δ_MTL vs source-only (%) | gap closed (" + ", ".join(headline) + ") |",
        "|---" * (len(headline) + 3) + "|",
    ]
    for m in methods:
        cells = [_fmt(*summary[m]["metrics"][k]) if k in summary[m]["metrics"] else "n/a" for k in headline]
        delta = summary[m].get("delta_mtl")
        gaps = summary[m].get("gap_closed", {})
        gap_text = ", ".join(f"{100 * gaps[k] + 0.0:.0f} %" for k in headline if k in gaps) or "n/a"
        lines.append(
            f"| {m} | " + " | ".join(cells) + f" | {'n/a' if delta is None else f'{delta:+.2f}'} | {gap_text} |"
        )
    lines += ["", "## Every target metric", "", "| metric | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for k in metric_names:
        cells = [_fmt(*summary[m]["metrics"][k]) if k in summary[m]["metrics"] else "n/a" for m in methods]
        lines.append(f"| {k}{_arrow(k)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Cost",
        "",
        f"- Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        *(f"- {m}: {w['runs']} runs, fit {w['fit']:.0f} s + test {w['test']:.0f} s in total" for m, w in wall.items()),
        f"- Whole benchmark: {sum(w['fit'] + w['test'] for w in wall.values()) / 60:.1f} min",
    ]
    if bench.extra_report is not None:
        lines += bench.extra_report()
    if bench.published:
        lines += ["", "## Published numbers (BENCHMARKS.md)", ""]
        lines += [f"- {setting}: {numbers}" for setting, numbers in bench.published.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m umadapt.benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS))
    parser.add_argument("--methods", nargs="+", help="methods to run (default: all of the benchmark's)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="override trainer.max_epochs")
    parser.add_argument("--out", type=Path, required=True, help="Markdown table to write (JSON written beside it)")
    parser.add_argument("--runs-dir", type=Path, default=Path("results/runs"))
    parser.add_argument("--cli-arg", action="append", default=[], help="extra argument passed to every umadapt call")
    parser.add_argument("--predict", action="store_true", help="also write one batch of prediction PNGs per run")
    parser.add_argument(
        "--reuse", action="store_true",
        help="load runs that already finished (their benchmark_record.json) instead of training them again",
    )
    args = parser.parse_args(argv)
    bench = BENCHMARKS[args.benchmark]
    methods = args.methods or list(bench.methods)
    unknown = [m for m in methods if m not in bench.methods]
    if unknown:
        parser.error(f"unknown method(s) {unknown} for {args.benchmark}; valid: {sorted(bench.methods)}")
    extra = list(args.cli_arg) + ([f"--trainer.max_epochs={args.epochs}"] if args.epochs else [])
    records: dict[str, list[dict]] = {}
    wall: dict[str, dict] = {}
    for method in methods:
        for seed in args.seeds:
            print(f"benchmark {args.benchmark}: {method} seed {seed} ...", flush=True)
            record = run_one(bench, method, seed, args.runs_dir, extra, predict=args.predict, reuse=args.reuse)
            records.setdefault(method, []).append(record)
            w = wall.setdefault(method, {"runs": 0, "fit": 0.0, "test": 0.0})
            w["runs"] += 1
            w["fit"] += record["fit_seconds"]
            w["test"] += record["test_seconds"]
            print(f"  done in {record['fit_seconds'] + record['test_seconds']:.0f} s", flush=True)
    summary = summarise(bench, records)
    text = to_markdown(args.benchmark, bench, summary, args.seeds, wall, argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({"summary": summary, "runs": records, "wall": wall}, indent=2))
    print(text)
    print(f"Table written to {args.out} (and {args.out.with_suffix('.json')}).")
    print(f"Per run, under {args.runs_dir}/<method>/seed<N>/: config.yaml, run_record.json, metrics.csv, checkpoints/last.ckpt,")
    print("images/ (validation grids: input, ground truth, prediction), results.json, fit.log and test.log"
          + (", predictions/ (colourised prediction PNGs)" if args.predict else "") + ".")


if __name__ == "__main__":
    main()
