"""The multi-task learning benchmark behind ``make bench-mtl``: one network per task vs shared networks on SynthRooms.

For every seed it runs (with :func:`umadapt.benchmark.run_one`: ``umadapt fit`` then ``umadapt test`` on the last
checkpoint, as separate processes) the three single-task networks first, then hard parameter sharing with each loss
weighting, cross-stitch and progressive networks, and universal representations distilled from *that seed's*
single-task networks. It reports every test metric on SynthRooms' **source** test split (the supervised multi-task
setting) and on its **target** split (the same models under domain shift), and the Δ_MTL of every run against the
single-task reference (the three single-task networks of the same seed), averaged over seeds.

    python -m umadapt.bench_mtl --seeds 0 1 2 --out results/mtl.md --runs-dir results/runs/mtl
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch
import yaml

from umadapt.benchmark import Benchmark, _fmt, _mean_std, run_one
from umadapt.metrics import delta_mtl, is_lower_better

TASKS = ("depth", "normals", "segmentation")
SINGLE = {task: f"single_{task}" for task in TASKS}
"""The single-task run of each task; together they are the Δ_MTL reference (and the teachers of ``universal``)."""
REFERENCE = "single_task"
DOMAINS = ("source", "target")
EPOCH_SCALE = {"progressive": 3}
"""``--epochs N`` gives these runs ``N x scale`` epochs (progressive trains its columns one after the other)."""
TEACHER_METHODS = ("universal",)

BENCH = Benchmark(
    base="experiments/mtl/base.yaml",
    methods={
        **{name: f"experiments/mtl/{name}.yaml" for name in SINGLE.values()},
        **{
            name: f"experiments/mtl/{name}.yaml"
            for name in (
                "hard_fixed", "hard_uncertainty", "hard_dwa", "hard_gradnorm", "hard_pcgrad",
                "cross_stitch", "progressive", "universal",
            )
        },
    },
    headline={"depth": "abs_err", "normals": "mean", "segmentation": "miou"},
    reference=REFERENCE,
    oracle="",
)
"""Headline metrics as in the NYUD-v2 multi-task papers: depth abs err, normal mean angle, segmentation mIoU."""

PUBLISHED = (
    "NYUD-v2 (SegNet), single-task 40.54 mIoU / 0.6276 depth abs err / 24.28 deg normal mean; universal "
    "representations 45.52 / 0.4912 / 24.57, i.e. Δ_MTL +10.95 % over these three metrics, while the best loss "
    "weighting or gradient method reaches +3.11 % (Li, Liu & Bilen, IJCV 2023)."
)


def teacher_paths(runs_dir: Path, seed: int) -> dict[str, str]:
    """The ``last.ckpt`` of each single-task run of ``seed`` (where :func:`run_one` puts it)."""
    return {
        task: str(runs_dir / method / f"seed{seed}" / "checkpoints" / "last.ckpt") for task, method in SINGLE.items()
    }


def single_task_reference(records: dict[str, list[dict]]) -> list[dict]:
    """Per seed, one record whose metrics are each single-task run's metrics of its own task."""
    runs = [records.get(method, []) for method in SINGLE.values()]
    if not all(runs) or len({len(r) for r in runs}) != 1:
        return []
    merged = []
    for per_seed in zip(*runs):
        metrics = {}
        for task, run in zip(SINGLE, per_seed):
            metrics.update({k: v for k, v in run["metrics"].items() if k.split("/")[2] == task})
        merged.append({"metrics": metrics, "seed": per_seed[0].get("seed")})
    return merged


def _domain_metrics(record: dict, domain: str) -> dict[str, float]:
    """``{"task/metric": value}`` of one domain (the total ``loss`` is left out: it is not a task metric)."""
    prefix = f"test/{domain}/"
    return {
        k[len(prefix):]: float(v) for k, v in record["metrics"].items() if k.startswith(prefix) and k.count("/") == 3
    }


def summarise(records: dict[str, list[dict]]) -> dict[str, dict]:
    """``{domain: {method: {"metrics": {key: (mean, std)}, "delta": (mean, std), "delta_all": (mean, std)}}}``.

    Δ_MTL is taken per seed against the single-task reference of the same seed (``"delta"`` over the headline
    metrics, ``"delta_all"`` over every metric both have), then averaged over seeds."""
    reference = single_task_reference(records)
    table = dict(records)
    if reference:  # the three single-task runs become one reference row
        table = {REFERENCE: reference, **{m: r for m, r in records.items() if m not in SINGLE.values()}}
    headline = [f"{task}/{metric}" for task, metric in BENCH.headline.items()]
    summary: dict[str, dict] = {}
    for domain in DOMAINS:
        summary[domain] = {}
        for method, runs in table.items():
            per_seed = [_domain_metrics(r, domain) for r in runs]
            names = sorted({k for m in per_seed for k in m})
            entry: dict = {
                "metrics": {n: _mean_std([m[n] for m in per_seed if n in m]) for n in names},
                "seeds": len(runs),
            }
            if reference and len(reference) == len(runs):
                refs = [_domain_metrics(r, domain) for r in reference]
                for key, keys_of in (("delta", lambda m, r: [k for k in headline if k in m and k in r]),
                                     ("delta_all", lambda m, r: sorted(k for k in set(m) & set(r) if r[k] != 0))):
                    deltas = [delta_mtl(m, r, metrics=keys_of(m, r)) for m, r in zip(per_seed, refs) if keys_of(m, r)]
                    if deltas:
                        entry[key] = _mean_std(deltas)
            summary[domain][method] = entry
    return summary


def state_size(run_dir: Path) -> int | None:
    """Number of values in the run's checkpointed state dict (parameters and BatchNorm statistics)."""
    path = run_dir / "checkpoints" / "last.ckpt"
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    return int(sum(v.numel() for v in state.values() if torch.is_tensor(v) and v.is_floating_point()))


def _settings() -> str:
    config = yaml.safe_load(Path(BENCH.base).read_text()) if Path(BENCH.base).is_file() else {}
    try:
        source = config["data"]["init_args"]["source"]["init_args"]
        return (
            f"{config['trainer']['max_epochs']} epochs (progressive: {EPOCH_SCALE['progressive']}x, one phase per "
            f"task), {source['train_size']} source training images of {source['image_size']}x{source['image_size']}, "
            f"batch {config['data']['init_args']['batch_size']}, {source['test_size']} test images per domain "
            "(experiments/synthrooms/base.yaml uses 12 epochs and 2000 images: the MTL benchmark is smaller to fit "
            "11 configs x 3 seeds in about 40 min on 2 CPU cores)"
        )
    except (KeyError, TypeError):
        return "see experiments/mtl/base.yaml"


def to_markdown(summary: dict, seeds: list[int], wall: dict, sizes: dict, argv: list[str], epochs: int | None) -> str:
    headline = [f"{task}/{metric}" for task, metric in BENCH.headline.items()]
    settings = _settings() if epochs is None else f"{epochs} epochs (overridden; progressive x3)"
    lines = [
        "# mtl: multi-task learning on SynthRooms",
        "",
        f"Seeds {seeds}; mean ± std over seeds. Every model trains on the labelled synthetic source only and is "
        "tested from its last checkpoint. Settings: " + settings + ".",
        f"Command: `python -m umadapt.bench_mtl {' '.join(argv)}`",
        "",
        "Δ_MTL (Maninis et al.): mean over metrics of the signed relative change against the single-task networks of "
        "the same seed, in %; positive is better. *Δ_MTL* uses the headline metrics (" + ", ".join(
            f"{k} {'↓' if is_lower_better(k) else '↑'}" for k in headline
        ) + "), as the NYUD-v2 papers do; *Δ_MTL all* every metric. `single_task` is the three single-task networks.",
    ]
    for domain, title in (("source", "Source test split (supervised multi-task)"),
                          ("target", "Target test split (real look: the same models under domain shift)")):
        methods = list(summary[domain])
        lines += [
            "",
            f"## {title}",
            "",
            "| method | " + " | ".join(f"{k} {'↓' if is_lower_better(k) else '↑'}" for k in headline)
            + " | Δ_MTL (%) | Δ_MTL all (%) | state size |",
            "|---" * (len(headline) + 4) + "|",
        ]
        for m in methods:
            entry = summary[domain][m]
            cells = [_fmt(*entry["metrics"][k]) if k in entry["metrics"] else "n/a" for k in headline]
            deltas = [f"{entry[key][0]:+.2f} ± {entry[key][1]:.2f}" if key in entry else "n/a" for key in ("delta", "delta_all")]
            size = sizes.get(m)
            lines.append(f"| {m} | " + " | ".join(cells + deltas) + f" | {'n/a' if size is None else f'{size / 1e3:.0f} k'} |")
    for domain in DOMAINS:
        methods = list(summary[domain])
        names = sorted({k for m in methods for k in summary[domain][m]["metrics"]})
        lines += ["", f"## Every {domain} metric", "", "| metric | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
        for k in names:
            cells = [_fmt(*summary[domain][m]["metrics"][k]) if k in summary[domain][m]["metrics"] else "n/a" for m in methods]
            lines.append(f"| {k} {'↓' if is_lower_better(k) else '↑'} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Cost",
        "",
        f"- Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        *(f"- {m}: {w['runs']} run(s), {w['fit'] + w['test']:.0f} s (fit {w['fit']:.0f} s + test {w['test']:.0f} s)"
          for m, w in wall.items()),
        f"- Whole benchmark: {sum(w['fit'] + w['test'] for w in wall.values()) / 60:.1f} min",
        "",
        "## Published anchor",
        "",
        f"- {PUBLISHED}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m umadapt.bench_mtl", description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", help=f"runs to make (default all): {list(BENCH.methods)}")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="override trainer.max_epochs (progressive gets 3x)")
    parser.add_argument("--out", type=Path, required=True, help="Markdown table to write (JSON written beside it)")
    parser.add_argument("--runs-dir", type=Path, default=Path("results/runs/mtl"))
    parser.add_argument("--resume", action="store_true", help="reuse runs whose results.json already exists")
    parser.add_argument("--cli-arg", action="append", default=[], help="extra argument passed to every umadapt call")
    args = parser.parse_args(argv)
    methods = args.methods or list(BENCH.methods)
    unknown = [m for m in methods if m not in BENCH.methods]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; valid: {list(BENCH.methods)}")
    order = [m for m in BENCH.methods if m in methods]  # single-task runs first: they are the teachers
    records: dict[str, list[dict]] = {}
    wall: dict[str, dict] = {}
    for seed in args.seeds:
        for method in order:
            extra = list(args.cli_arg)
            if args.epochs:
                extra.append(f"--trainer.max_epochs={args.epochs * EPOCH_SCALE.get(method, 1)}")
            if method in TEACHER_METHODS:
                teachers = teacher_paths(args.runs_dir, seed)
                missing = [p for p in teachers.values() if not Path(p).is_file()]
                if missing:
                    raise SystemExit(f"bench_mtl: {method} needs the single-task checkpoints {missing}; run the "
                                     "single_* methods of this seed first (they run first by default).")
                extra.append(f"--model.init_args.teachers={json.dumps(teachers)}")
            run_dir = args.runs_dir / method / f"seed{seed}"
            results, timing = run_dir / "results.json", run_dir / "bench_seconds.json"
            if args.resume and results.is_file():
                seconds = json.loads(timing.read_text()) if timing.is_file() else {"fit_seconds": 0.0, "test_seconds": 0.0}
                record = {**json.loads(results.read_text()), **seconds}
                print(f"bench_mtl: {method} seed {seed}: reusing {results}", flush=True)
            else:
                print(f"bench_mtl: {method} seed {seed} ...", flush=True)
                record = run_one(BENCH, method, seed, args.runs_dir, extra)
                timing.write_text(json.dumps({k: record[k] for k in ("fit_seconds", "test_seconds")}))
                print(f"  done in {record['fit_seconds'] + record['test_seconds']:.0f} s", flush=True)
            records.setdefault(method, []).append(record)
            w = wall.setdefault(method, {"runs": 0, "fit": 0.0, "test": 0.0})
            w["runs"] += 1
            w["fit"] += record["fit_seconds"]
            w["test"] += record["test_seconds"]
    summary = summarise(records)
    sizes = {m: state_size(args.runs_dir / m / f"seed{args.seeds[0]}") for m in order}
    if all(m in sizes and sizes[m] is not None for m in SINGLE.values()):
        sizes[REFERENCE] = sum(sizes[m] for m in SINGLE.values())  # type: ignore[misc]
    text = to_markdown(summary, args.seeds, wall, sizes, argv, args.epochs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({"summary": summary, "runs": records, "wall": wall}, indent=2))
    print(text)
    print(f"Table written to {args.out}; per-run logs, checkpoints and results under {args.runs_dir}/")


if __name__ == "__main__":
    main()
