"""Multi-task summary scores: the Delta_MTL relative change, the fraction of a domain gap closed, and Spearman's rank
correlation (preference matching, task affinity)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = ["LOWER_IS_BETTER", "HIGHER_IS_BETTER", "is_lower_better", "delta_mtl", "gap_closed", "spearman"]

LOWER_IS_BETTER = frozenset({"abs_rel", "sq_rel", "rmse", "rmse_log", "abs_err", "mean", "median"})
"""Metric keys (of :class:`DepthMetrics` and :class:`NormalMetrics`) where lower is better. ``rmse`` is
lower-better for both depth and normals."""

HIGHER_IS_BETTER = frozenset(
    {
        "delta1", "delta2", "delta3",
        "within_11_25", "within_22_5", "within_30",
        "miou", "pixel_acc", "mean_acc",
        "accuracy",
    }
)  # fmt: skip
"""Metric keys of the umadapt metrics where higher is better."""


def is_lower_better(name: str) -> bool:
    """Whether lower is better for the metric ``name``, one of the keys of the umadapt metrics.

    A prefixed name such as ``"val/target/depth/abs_rel"`` is judged by its last ``/``-separated part. An unknown
    name raises ``KeyError`` rather than silently guessing a direction.
    """
    key = name.rsplit("/", 1)[-1]
    if key.startswith("iou_"):  # a class's IoU (SegmentationMetrics with class_names)
        return False
    if key in LOWER_IS_BETTER:
        return True
    if key in HIGHER_IS_BETTER:
        return False
    raise KeyError(
        f"Unknown metric {name!r}: its direction is not known. Known lower-is-better keys: {sorted(LOWER_IS_BETTER)}; "
        f"higher-is-better keys: {sorted(HIGHER_IS_BETTER)}. Pass lower_is_better explicitly."
    )


def _direction(lower_is_better: Iterable[str] | Callable[[str], bool]) -> Callable[[str], bool]:
    if callable(lower_is_better):
        return lower_is_better
    if isinstance(lower_is_better, str):
        raise TypeError("lower_is_better must be an iterable of metric names or a predicate, not a single string.")
    names = frozenset(lower_is_better)
    return names.__contains__


def delta_mtl(
    results: Mapping[str, float],
    reference: Mapping[str, float],
    lower_is_better: Iterable[str] | Callable[[str], bool] = is_lower_better,
    *,
    metrics: Iterable[str] | None = None,
    by_task: bool = False,
) -> float:
    """Multi-task performance change Delta_MTL (Maninis et al., CVPR 2019; Vandenhende et al., TPAMI 2021), percent.

    ``Delta_MTL = 1/K * sum_k (-1)^{l_k} * 100 * (M_k - R_k) / R_k`` over the ``K`` metrics, where ``M_k`` is the
    model's value, ``R_k`` the reference's (usually the single-task baselines), and ``l_k = 1`` if lower is better
    for metric ``k``. Positive means better than the reference on average. By default the average is taken over
    **metrics** (every key counts once); with ``by_task`` it is taken within each task first, then over tasks
    (``1/T sum_t 1/K_t sum_{k in t} ...``, as LibMTL does), so a task with many metrics weighs as much as one with a
    single metric. A metric's task is its name up to the last ``/`` (``depth/rmse`` -> ``depth``).

    Args:
        results: metric name -> value of the model under evaluation (floats or scalar tensors).
        reference: metric name -> reference value; must hold every metric used, and none of them may be 0.
        lower_is_better: the names of lower-is-better metrics (matched exactly against the keys), or a predicate on
            a name. The default :func:`is_lower_better` knows the keys of the umadapt metrics (also with a
            ``"prefix/"``) and raises ``KeyError`` on any other.
        metrics: the metric names to average over; by default every key of ``results``.

    Raises:
        ValueError: no metric to average, or a reference value is 0.
        KeyError: a metric is missing from ``results`` or ``reference``.
    """
    lower = _direction(lower_is_better)
    names = list(results.keys()) if metrics is None else list(metrics)
    if not names:
        raise ValueError("delta_mtl needs at least one metric.")
    missing = [n for n in names if n not in reference]
    if missing:
        raise KeyError(f"Metrics missing from the reference: {missing} (reference has {sorted(reference)}).")
    missing = [n for n in names if n not in results]
    if missing:
        raise KeyError(f"Metrics missing from the results: {missing} (results have {sorted(results)}).")
    changes: dict[str, list[float]] = {}
    for name in names:
        value, ref = float(results[name]), float(reference[name])
        if ref == 0:
            raise ValueError(f"Reference value of {name!r} is 0: the relative change is undefined.")
        change = 100.0 * (value - ref) / ref
        group = name.rsplit("/", 1)[0] if by_task and "/" in name else name
        changes.setdefault(group, []).append(-change if lower(name) else change)
    return sum(sum(c) / len(c) for c in changes.values()) / len(changes)


def gap_closed(method: float, source_only: float, oracle: float, lower_is_better: bool) -> float:
    """Fraction of the source-only -> oracle gap that ``method`` closes:
    ``(method - source_only) / (oracle - source_only)``.

    Returned as a **fraction** (``1.0`` = matches the oracle, ``0.0`` = no better than source-only; it can be
    negative or exceed 1); multiply by 100 for percent. The ratio is the same for either direction of metric, e.g.
    for a lower-is-better ``abs_rel`` with source-only 0.5, oracle 0.2 and method 0.35 it is 0.5.
    ``lower_is_better`` is used to check that the oracle is indeed better than source-only: if it is not, a
    ``UserWarning`` is issued (the value is still returned). Raises ``ValueError`` if ``oracle == source_only``
    (no gap). NaN inputs give NaN.
    """
    method, source_only, oracle = float(method), float(source_only), float(oracle)
    gap = oracle - source_only
    if gap == 0:
        raise ValueError(f"oracle == source_only == {oracle}: there is no gap to close.")
    if not math.isnan(gap) and (gap > 0) == bool(lower_is_better):
        warnings.warn(
            f"The oracle ({oracle}) is not better than source-only ({source_only}) for a "
            f"{'lower' if lower_is_better else 'higher'}-is-better metric; the gap-closed fraction is not meaningful.",
            UserWarning,
            stacklevel=2,
        )
    return (method - source_only) / gap


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation, with average ranks for ties. A constant vector (no ranking) gives 0, no
    association: a model whose quality does not move with the preference matches it no better than chance. ``NaN``
    if a value is. Used for preference matching (``umadapt.bench.dynamic``) and task affinity
    (:func:`umadapt.methods.dynamic.task_affinity`)."""
    from scipy.stats import rankdata

    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"spearman needs two vectors of the same length >= 2, got {len(x)} and {len(y)}.")
    if not all(math.isfinite(v) for v in (*x, *y)):
        return math.nan
    rx, ry = rankdata(x, method="average"), rankdata(y, method="average")
    dx, dy = rx - rx.mean(), ry - ry.mean()
    norm = math.sqrt(float((dx * dx).sum()) * float((dy * dy).sum()))
    return 0.0 if norm == 0 else float((dx * dy).sum()) / norm
