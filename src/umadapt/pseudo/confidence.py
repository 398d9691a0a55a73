"""Which ensembled predictions become pseudo-labels, and the pseudo-labels themselves in the batch conventions of
:mod:`umadapt.samples` (a masked-out pixel is an *invalid* label: 255 for segmentation, depth 0, a zero normal, label
-100), so every task's own loss trains on them unchanged.

A rule per task, from YAML ``{kind: ..., value: ..., portion: ...}``:

==================  =================================================================================================
``threshold``       class tasks: keep a pixel/image whose top probability is ``>= value`` (DAFormer's ``τ = 0.968``).
``class_balanced``  class tasks: per class ``c``, keep the ``portion`` most confident of the pixels/images predicted
                    as ``c``: ``p_c >= k_c`` with ``k_c`` that class's ``1 - portion`` quantile of the top
                    probability over the calibration images; a class never predicted there uses the quantile over
                    all classes. CBST-style per-class thresholds (Zou et al., ECCV 2018, Sec. 4.2): the label stays
                    ``argmax_c p_c``, where CBST takes ``argmax_c p_c / k_c``.
``agreement``       every task: keep a pixel/image whose disagreement across the transforms
                    (:func:`~umadapt.pseudo.ensemble.view_disagreement`) is ``<= value``, or, with ``portion``, the
                    ``portion`` of pixels that agree best over the calibration images. Needs two transforms or more.
``all``             keep everything.
==================  =================================================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from umadapt.errors import ConfigError
from umadapt.ops import channel_argmax
from umadapt.pseudo.ensemble import CLASS_TASKS
from umadapt.samples import IGNORE_INDEX

__all__ = ["KINDS", "LABEL_IGNORE", "Calibration", "ConfidenceRule", "confident", "parse_rules", "pseudo_targets"]

KINDS = ("threshold", "class_balanced", "agreement", "all")
LABEL_IGNORE = -100
"""The ignored per-image label (``F.cross_entropy``'s default ``ignore_index``)."""
_MAX_CALIBRATION_VALUES = 2_000_000  # per class/task: a fixed-stride subsample beyond it keeps the quantiles cheap
_MAX_VALUES_PER_BATCH = 262_144  # per task and calibration batch: a fixed-stride subsample keeps memory bounded


@dataclass(frozen=True)
class ConfidenceRule:
    """One task's rule (see the module docstring)."""

    kind: str
    value: float | None = None
    portion: float | None = None

    @property
    def needs_calibration(self) -> bool:
        """Whether the rule's thresholds are quantiles over the calibration images."""
        return self.kind == "class_balanced" or (self.kind == "agreement" and self.portion is not None)


def _rule(task: str, spec: Any, views: int) -> ConfidenceRule:
    where = f"model.init_args.confidence.{task}"
    if not isinstance(spec, Mapping) or "kind" not in spec:
        raise ConfigError(
            f"{where} must be a mapping with a kind ({list(KINDS)}), e.g. {{kind: threshold, value: 0.9}}."
        )
    unknown = sorted(set(spec) - {"kind", "value", "portion"})
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {unknown}; valid: kind, value, portion.")
    kind, value, portion = spec["kind"], spec.get("value"), spec.get("portion")
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind {kind!r} is unknown; valid: {list(KINDS)}.")
    if kind in ("threshold", "class_balanced") and task not in CLASS_TASKS:
        raise ConfigError(f"{where}.kind {kind} needs class probabilities; for {task!r} use agreement or all.")
    if kind == "threshold" and (value is None or portion is not None or not 0.0 <= value <= 1.0):
        raise ConfigError(
            f"{where}: threshold takes a value in [0, 1] (the top probability to reach), got {dict(spec)}."
        )
    if kind == "class_balanced" and (portion is None or value is not None or not 0.0 < portion <= 1.0):
        raise ConfigError(f"{where}: class_balanced takes a portion in (0, 1] (kept per class), got {dict(spec)}.")
    if kind == "agreement":
        if (value is None) == (portion is None):
            raise ConfigError(
                f"{where}: agreement takes either value (the largest disagreement) or portion, got {dict(spec)}."
            )
        if portion is not None and not 0.0 < portion <= 1.0:
            raise ConfigError(f"{where}.portion must be in (0, 1], got {portion}.")
        if value is not None and value < 0:
            raise ConfigError(f"{where}.value must be >= 0, got {value}.")
        if views < 2:
            raise ConfigError(
                f"{where}: agreement compares the predictions of several transforms, but only {views} is given: "
                "list two or more in model.init_args.transforms (e.g. [identity, hflip])."
            )
    if kind == "all" and (value is not None or portion is not None):
        raise ConfigError(f"{where}: kind all takes no value or portion.")
    return ConfidenceRule(kind, None if value is None else float(value), None if portion is None else float(portion))


def parse_rules(
    specs: Mapping[str, Any] | None, tasks: Sequence[str], defaults: Mapping[str, Any], views: int
) -> dict[str, ConfidenceRule]:
    """Each task's :class:`ConfidenceRule` from ``specs`` (a task not listed takes ``defaults[task]``)."""
    specs = dict(specs or {})
    unknown = sorted(set(specs) - set(tasks))
    if unknown:
        raise ConfigError(
            f"model.init_args.confidence names {unknown}, which are not among the model's tasks {list(tasks)}."
        )
    return {t: _rule(t, specs[t] if t in specs else defaults[t], views) for t in tasks}


def _class_confidence(probabilities: Tensor) -> tuple[Tensor, Tensor]:
    """``(top probability, predicted class)`` per pixel ``[N, H, W]`` or per image ``[N]``."""
    top = probabilities.max(dim=1)
    return top.values, top.indices


def _subsample(values: np.ndarray) -> np.ndarray:
    step = -(-values.size // _MAX_CALIBRATION_VALUES)
    return values[::step] if step > 1 else values


class Calibration:
    """Quantile thresholds of the rules that need them, from predictions of calibration images.

    :meth:`add` one batch's ensembles and disagreements at a time, then :meth:`finish`; :attr:`thresholds` holds
    ``{task: tensor}`` (``[C]`` per class for class_balanced, a scalar for agreement with a portion)."""

    def __init__(self, rules: Mapping[str, ConfidenceRule], num_classes: int | None) -> None:
        self.rules = {t: r for t, r in rules.items() if r.needs_calibration}
        self.num_classes = num_classes
        self._values: dict[str, list[np.ndarray]] = {t: [] for t in self.rules}
        self._classes: dict[str, list[np.ndarray]] = {t: [] for t in self.rules}
        self.thresholds: dict[str, Tensor] = {}

    def __bool__(self) -> bool:
        return bool(self.rules)

    def add(self, ensembles: Mapping[str, Tensor], disagreements: Mapping[str, Tensor]) -> None:
        """Keep one batch's values (at most ``_MAX_VALUES_PER_BATCH`` per task, a fixed-stride subsample)."""
        for t, rule in self.rules.items():
            if rule.kind == "class_balanced":
                top, classes = _class_confidence(ensembles[t])
                step = -(-top.numel() // _MAX_VALUES_PER_BATCH)
                self._values[t].append(top.flatten()[::step].cpu().numpy())
                self._classes[t].append(classes.flatten()[::step].to(torch.int32).cpu().numpy())
            else:
                values = disagreements[t].flatten()
                self._values[t].append(values[:: -(-values.numel() // _MAX_VALUES_PER_BATCH)].cpu().numpy())

    def finish(self) -> dict[str, Tensor]:
        if self.rules and not any(self._values[t] for t in self.rules):
            raise ConfigError("Self-training calibration saw no target image: the target training split is empty.")
        for t, rule in self.rules.items():
            values = np.concatenate(self._values[t])
            if rule.kind == "agreement":  # keep the `portion` best-agreeing: disagreement <= the portion-quantile
                self.thresholds[t] = torch.tensor(float(np.quantile(_subsample(values), rule.portion)))
                continue
            classes = np.concatenate(self._classes[t])
            overall = float(np.quantile(_subsample(values), 1.0 - rule.portion))
            count = int(self.num_classes or classes.max() + 1)
            per_class = []
            for c in range(count):
                chosen = values[classes == c]
                per_class.append(float(np.quantile(_subsample(chosen), 1.0 - rule.portion)) if chosen.size else overall)
            self.thresholds[t] = torch.tensor(per_class)
        self._values = {t: [] for t in self.rules}
        self._classes = {t: [] for t in self.rules}
        return self.thresholds


def confident(
    task: str, ensemble: Tensor, disagreement: Tensor, rule: ConfidenceRule, thresholds: Mapping[str, Tensor]
) -> Tensor:
    """Boolean mask ``[N, H, W]`` (``[N]`` for ``label``) of the predictions ``rule`` keeps."""
    if rule.kind == "all":
        shape = disagreement.shape
        return torch.ones(shape, dtype=torch.bool, device=ensemble.device)
    if rule.kind == "threshold":
        return _class_confidence(ensemble)[0] >= rule.value
    if rule.needs_calibration and task not in thresholds:
        raise RuntimeError(f"The {rule.kind} rule of {task!r} needs a calibration pass before its first batch.")
    if rule.kind == "class_balanced":
        top, classes = _class_confidence(ensemble)
        return top >= thresholds[task].to(top.device)[classes]
    limit = thresholds[task].to(disagreement.device) if rule.portion is not None else rule.value
    return disagreement <= limit


def pseudo_targets(task: str, ensemble: Tensor, keep: Tensor) -> Tensor:
    """Pseudo-labels of one task in its batch convention, ``keep`` marking the pixels/images that count: class
    tasks the argmax (:data:`~umadapt.samples.IGNORE_INDEX` or :data:`LABEL_IGNORE` elsewhere); depth and normals
    the ensemble (0 elsewhere, the invalid-pixel convention)."""
    if task == "segmentation":
        return torch.where(keep, channel_argmax(ensemble), IGNORE_INDEX)
    if task == "label":
        return torch.where(keep, channel_argmax(ensemble), LABEL_IGNORE)
    return ensemble * keep.unsqueeze(1).to(ensemble.dtype)
