"""One report writer for every benchmark: mean ± std over seeds, Δ_MTL, gap closed, and the files beside each other:
``<out>.md`` (the tables), ``<out>.json`` (summary, per-run records, wall times) and ``<out>.png`` (a bar chart of the
gap closed per task and method, drawn with PIL)."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from umadapt.bench.registry import Benchmark
from umadapt.metrics import delta_mtl, gap_closed, is_lower_better

__all__ = ["Panel", "bar_chart", "benchmark_markdown", "fmt", "mean_std", "summarise", "write", "write_benchmark"]

PUBLISHED_TITLE = "## Published numbers (quoted from the project's shared benchmark notes)"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(mean: float, std: float) -> str:
    """``mean ± std`` with 2 decimals from 10 up, 4 below; ``n/a`` for NaN."""
    if math.isnan(mean):
        return "n/a"
    digits = 2 if abs(mean) >= 10 else 4
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def arrow(name: str) -> str:
    """`` ↓``/`` ↑`` for a metric of known direction, nothing for others (e.g. the evaluation ``loss``)."""
    try:
        return " ↓" if is_lower_better(name) else " ↑"
    except KeyError:
        return ""


def summarise(bench: Benchmark, records: Mapping[str, list[dict]]) -> dict:
    """Per method: mean ± std of every ``test/<domain>/`` metric, Δ_MTL (%) of the headline metrics against the
    reference, and the fraction of the reference -> oracle gap closed per headline metric."""
    prefix = f"test/{bench.domain}/"
    summary: dict[str, dict] = {}
    for method, runs in records.items():
        names = sorted({k for r in runs for k in r["metrics"] if k.startswith(prefix)})
        stats = {n[len(prefix) :]: mean_std([r["metrics"][n] for r in runs if n in r["metrics"]]) for n in names}
        summary[method] = {"metrics": stats, "seeds": len(runs)}
    reference, oracle = summary.get(bench.reference), summary.get(bench.oracle or "")
    for entry in summary.values():
        means = {k: v[0] for k, v in entry["metrics"].items()}
        if reference is not None:
            shared = [k for k in bench.headline_keys if k in means and k in reference["metrics"]]
            refs = {k: reference["metrics"][k][0] for k in shared}
            entry["delta_mtl"] = delta_mtl({k: means[k] for k in shared}, refs, is_lower_better)
        if reference is not None and oracle is not None:
            entry["gap_closed"] = {}
            for k in bench.headline_keys:
                if k in means and k in reference["metrics"] and k in oracle["metrics"]:
                    gap = _gap(means[k], reference["metrics"][k][0], oracle["metrics"][k][0], k)
                    entry["gap_closed"].update({} if gap is None else {k: gap})
    return summary


def _gap(method: float, reference: float, oracle: float, key: str) -> float | None:
    """:func:`gap_closed`, or ``None`` where the oracle equals the reference (no gap: e.g. both at chance)."""
    return None if oracle == reference else gap_closed(method, reference, oracle, is_lower_better(key))


def headline_header(keys: Sequence[str]) -> str:
    """The headline columns of a table header, each with its direction."""
    return " | ".join(f"{k}{arrow(k)}" for k in keys)


def headline_cells(entry: Mapping, keys: Sequence[str]) -> list[str]:
    """``mean ± std`` of each headline metric of one method's summary entry."""
    return [fmt(*entry["metrics"][k]) if k in entry["metrics"] else "n/a" for k in keys]


def metric_table(title: str, entries: Mapping[str, Mapping]) -> list[str]:
    """A ``## title`` section: one row per metric, one column per method, mean ± std."""
    methods = list(entries)
    names = sorted({k for m in methods for k in entries[m]["metrics"]})
    lines = ["", f"## {title}", "", "| metric | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for k in names:
        cells = [fmt(*entries[m]["metrics"][k]) if k in entries[m]["metrics"] else "n/a" for m in methods]
        lines.append(f"| {k}{arrow(k)} | " + " | ".join(cells) + " |")
    return lines


def cost_lines(wall: Mapping[str, Mapping], execution: Mapping[str, Any] | None = None) -> list[str]:
    """The ``## Cost`` section: machine, per-method wall time, their sum and (given ``execution``: ``jobs``,
    ``threads`` per run, ``elapsed_s``) how the runs were scheduled and the benchmark's wall-clock time."""
    import torch

    total = sum(w["fit"] + w["test"] for w in wall.values())
    threads = (execution or {}).get("threads") or torch.get_num_threads()
    lines = [
        "",
        "## Cost",
        "",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores, {threads} torch threads per run, "
        f"torch {torch.__version__}",
        *(f"- {m}: {w['runs']} runs, fit {w['fit']:.0f} s + test {w['test']:.0f} s in total" for m, w in wall.items()),
        f"- Sum of the runs' wall times: {total / 60:.1f} min",
    ]
    if execution and execution.get("elapsed_s") is not None:
        lines.append(
            f"- Benchmark wall clock: {execution['elapsed_s'] / 60:.1f} min ({execution.get('jobs', 1)} runs side "
            "by side)"
        )
    if execution and execution.get("code_versions"):
        versions = ", ".join(f"`{v}`" for v in execution["code_versions"])
        lines.append(f"- Code version of the runs (`umadapt.bench.runner.code_version`): {versions}")
    return lines


def published_lines(published: Mapping[str, str]) -> list[str]:
    """The published-numbers section (nothing when there are none)."""
    if not published:
        return []
    return ["", PUBLISHED_TITLE, "", *(f"- {setting}: {numbers}" for setting, numbers in published.items())]


def chart_line(out: Path, what: str) -> list[str]:
    """The Markdown image of the chart written beside ``out``."""
    return ["", f"![{what}]({out.with_suffix('.png').name})"]


def benchmark_markdown(
    bench: Benchmark,
    summary: Mapping,
    seeds: Sequence[int],
    wall: Mapping,
    command: str,
    chart: list[str],
    execution: Mapping[str, Any] | None = None,
    selection: Mapping[str, Any] | None = None,
) -> str:
    """The Markdown report of a benchmark run by :mod:`umadapt.bench.runner` (``selection``: the JSON of its
    label-free model selection, :mod:`umadapt.bench.selection`, reported first when given)."""
    methods, headline = list(summary), bench.headline_keys
    lines = [
        f"# {bench.name}: {bench.domain}-domain test metrics",
        "",
        f"Seeds {list(seeds)}; mean ± std over seeds. Checkpoint: the last epoch (no target labels used to choose it).",
        f"Command: `{command}`",
        "",
        *selection_lines(selection),
        METHOD_ROWS_WITH_SELECTION if selection else "## Headline",
        "",
        f"| method | {headline_header(headline)} | Δ_MTL vs {bench.reference.replace('_', '-')} (%) | gap closed ("
        + ", ".join(headline)
        + ") |",
        "|---" * (len(headline) + 3) + "|",
    ]
    for m in methods:
        cells = headline_cells(summary[m], headline)
        delta = summary[m].get("delta_mtl")
        gaps = summary[m].get("gap_closed", {})
        gap_text = ", ".join(f"{100 * gaps[k] + 0.0:.0f} %" if k in gaps else "n/a" for k in headline)
        gap_text = gap_text if gaps else "n/a"
        delta_text = "n/a" if delta is None else f"{delta:+.2f}"
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {delta_text} | {gap_text} |")
    lines += chart
    lines += metric_table(f"Every {bench.domain} metric", summary)
    lines += cost_lines(wall, execution)
    if bench.extra_report is not None:
        module, _, function = bench.extra_report.partition(":")
        lines += getattr(__import__(module, fromlist=[function]), function)()
    lines += published_lines(bench.published)
    return "\n".join(lines) + "\n"


METHOD_ROWS_WITH_SELECTION = (
    "## Methods at their configs' settings (chosen with target labels where the experiment's README says so: "
    "optimistic)"
)


def selection_lines(selection: Mapping[str, Any] | None) -> list[str]:
    """The headline of a label-free model selection (``results/selection_<benchmark>.json``): the rule's picks, the
    default and the oracle, as ``python -m umadapt.bench select`` measured them; nothing without a selection."""
    if not selection:
        return []
    summary, rule = selection["summary"], selection.get("rule")
    rows = summary["rows"]
    if rule not in rows:
        return []
    keys = summary["headline"]
    lines = [
        f"## Headline: {selection.get('method', 'the method')} chosen without target labels",
        "",
        f"Settings and checkpoint picked per seed by the label-free rule fixed in advance ({rule}) among "
        f"{len(selection['candidates'])} candidates ({selection.get('grid', 'a grid')}; `make bench-selection`). The "
        "method rows below use the configs' settings, some chosen with target labels: optimistic.",
        "",
        "| pick by | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for name, label in ((rule, f"{rule} (label-free, the headline)"), ("default", "default settings, last epoch")):
        lines.append(f"| {label} | " + " | ".join(fmt(*rows[name]["metrics"][k]) for k in keys) + " |")
    oracle = next(name for name in rows if name.startswith("oracle"))
    lines.append("| oracle pick (target test labels: unreachable bound) | " + " | ".join(
        fmt(*rows[oracle]["metrics"][k]) for k in keys) + " |")  # fmt: skip
    return [*lines, ""]


def gap_panel(bench: Benchmark, summary: Mapping, title: str | None = None) -> Panel | None:
    """The gap closed (%) per headline task and method, or ``None`` without an oracle."""
    values = {
        m: {k.split("/")[0]: 100 * v for k, v in entry["gap_closed"].items()}
        for m, entry in summary.items()
        if entry.get("gap_closed")
    }
    if not values:
        return None
    title = title or f"{bench.name}: gap closed per task ({bench.reference} = 0 %, {bench.oracle} = 100 %)"
    return Panel(title, "gap closed (%)", values, marks=(0.0, 100.0))


def write(out: Path, text: str, payload: Mapping | None = None, panels: Sequence[Panel] = ()) -> None:
    """Write ``out`` (Markdown), ``out.json`` (``payload``, if any) and ``out.png`` (``panels``, if any)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    if payload is not None:
        out.with_suffix(".json").write_text(json.dumps(payload, indent=2))
    if panels:
        bar_chart(out.with_suffix(".png"), panels)


def write_benchmark(
    bench: Benchmark,
    records: Mapping[str, list[dict]],
    wall: Mapping,
    seeds: Sequence[int],
    out: Path,
    command: str,
    execution: Mapping[str, Any] | None = None,
) -> dict:
    """Summarise the runs of ``bench`` and write its Markdown, JSON and chart (``execution``: see
    :func:`cost_lines`); returns the summary."""
    summary = summarise(bench, records)
    panel = gap_panel(bench, summary)
    chart = chart_line(out, "gap closed per task and method") if panel else []
    selection_file = out.with_name(f"selection_{bench.name}.json")
    selection = json.loads(selection_file.read_text()) if selection_file.is_file() else None
    text = benchmark_markdown(bench, summary, seeds, wall, command, chart, execution, selection)
    payload = {"summary": summary, "runs": records, "wall": wall, "execution": dict(execution or {})}
    write(out, text, payload, [panel] if panel else [])
    return summary


def synthrooms_generation_rate() -> list[str]:
    """Cost lines: SynthRooms rendering rate of each look (the ``extra_report`` of the synthrooms benchmark)."""
    from data_modules.synthrooms import measure_generation_rate

    lines = []
    for look in ("synthetic", "real"):
        rate = measure_generation_rate(look=look, image_size=64, num_images=200)
        lines.append(f"- SynthRooms generation rate, {look} look, 64x64, one process: {rate:.0f} images/s")
    return lines


def synthrooms_weak_class_presence(count: int = 500) -> list[str]:
    """Cost-section lines of the weak-label benchmark: how often each rich SynthRooms class appears (at least one
    pixel) in the first ``count`` training images of the source and target domains of its base config (what image
    tags can tell; read from the disk cache the runs filled)."""
    from data_modules.synthrooms import SynthRooms, class_presence

    looks = {"source (synthetic, seed 0)": SynthRooms("synthetic", classes="rich", seed=0, train_size=count),
             "target (real, seed 1)": SynthRooms("real", classes="rich", seed=1, train_size=count)}  # fmt: skip
    presence = {name: class_presence(domain, "train", count) for name, domain in looks.items()}
    names = list(next(iter(presence.values())))
    lines = ["", f"Class presence (share of the first {count} training images showing the class):", ""]
    lines += ["| domain | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for domain, shares in presence.items():
        lines.append(f"| {domain} | " + " | ".join(f"{100 * shares[n]:.0f} %" for n in names) + " |")
    return lines


# -- the chart --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Panel:
    """One bar chart: a group of bars per method (x axis), one bar per series (task or pair), values in %."""

    title: str
    ylabel: str
    values: Mapping[str, Mapping[str, float]]
    marks: tuple[float, ...] = (0.0,)
    """Values drawn as darker horizontal lines (e.g. 0 % = reference, 100 % = oracle)."""
    legend: str = "task"


PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974")
BAR, PLOT_HEIGHT = 18, 260


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def _ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values covering ``[low, high]`` (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first, last = math.floor(low / step), math.ceil(high / step)
    return [i * step for i in range(first, last + 1)]


def _draw_panel(panel: Panel) -> Image.Image:
    font, small = _font(15), _font(13)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength
    methods = list(panel.values)
    series = list(dict.fromkeys(s for m in methods for s in panel.values[m]))
    finite = [v for m in methods for v in panel.values[m].values() if math.isfinite(v)]
    ticks = _ticks(min([*finite, *panel.marks]), max([*finite, *panel.marks, min(panel.marks) + 1]))
    low, high = ticks[0], ticks[-1]
    labels = [f"{t:g}" for t in ticks]
    groups = [max(len(series) * BAR + 20, measure(m, font=small) + 14) for m in methods]
    left = 30 + max(measure(t, font=small) for t in labels)
    legend = max(measure(s, font=small) for s in [*series, panel.legend]) + 44
    top, bottom, plot_width = 40, 50, sum(groups)
    width = max(left + plot_width + legend + 10, left + measure(panel.title, font=font) + 10)  # the title fits
    image = Image.new("RGB", (int(width), top + PLOT_HEIGHT + bottom), "white")
    draw = ImageDraw.Draw(image)

    def y(value: float) -> float:
        return top + PLOT_HEIGHT * (high - value) / (high - low)

    for tick, label in zip(ticks, labels):
        color = "#909090" if tick in panel.marks else "#e4e4e4"
        draw.line([(left, y(tick)), (left + plot_width, y(tick))], fill=color)
        draw.text((left - 5, y(tick)), label, fill="black", font=small, anchor="rm")
    for mark in (m for m in panel.marks if m not in ticks):
        draw.line([(left, y(mark)), (left + plot_width, y(mark))], fill="#909090")
    draw.line([(left, top), (left, top + PLOT_HEIGHT)], fill="black")
    x = left
    for method, width in zip(methods, groups):
        start = x + (width - len(series) * BAR) / 2
        for i, name in enumerate(series):
            value = panel.values[method].get(name, math.nan)
            if math.isfinite(value):
                box = [start + i * BAR + 2, min(y(0), y(value)), start + (i + 1) * BAR - 2, max(y(0), y(value))]
                draw.rectangle(box, fill=PALETTE[i % len(PALETTE)])
        draw.text((x + width / 2, top + PLOT_HEIGHT + 6), method, fill="black", font=small, anchor="ma")
        x += width
    draw.text((left + plot_width / 2, top + PLOT_HEIGHT + 28), "method", fill="black", font=small, anchor="ma")
    draw.text((left, 12), panel.title, fill="black", font=font)
    ylabel = Image.new("RGB", (int(measure(panel.ylabel, font=small)) + 4, 18), "white")
    ImageDraw.Draw(ylabel).text((2, 1), panel.ylabel, fill="black", font=small)
    ylabel = ylabel.rotate(90, expand=True)
    image.paste(ylabel, (4, int(top + (PLOT_HEIGHT - ylabel.height) / 2)))
    legend_x = left + plot_width + 14
    draw.text((legend_x, top), panel.legend, fill="black", font=small)
    for i, name in enumerate(series):
        row = top + 22 + 20 * i
        draw.rectangle([legend_x, row, legend_x + 12, row + 12], fill=PALETTE[i % len(PALETTE)])
        draw.text((legend_x + 18, row + 6), name, fill="black", font=small, anchor="lm")
    return image


def bar_chart(path: Path, panels: Sequence[Panel]) -> None:
    """Draw ``panels`` one under another into the PNG ``path``."""
    images = [_draw_panel(p) for p in panels]
    chart = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    top = 0
    for image in images:
        chart.paste(image, (0, top))
        top += image.height
    chart.save(path)
