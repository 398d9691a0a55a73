"""Label-free validators: scores of a trained model that use no target label. **Higher is better for every one**
(a risk or a disagreement is negated), so each can be a ``ModelCheckpoint`` monitor with ``mode: max`` and a W&B
sweep metric with ``goal: maximize``.

Each validator reads an :class:`~umadapt.validators.evidence.Evidence` (labelled source validation samples,
unlabelled target validation images) and says what it needs (``needs``) so the evidence is gathered once for all.
The formulas are in :mod:`umadapt.validators.functional`.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from umadapt.checkpoints import load_partial_state
from umadapt.errors import ConfigError
from umadapt.validators import functional as F
from umadapt.validators.evidence import CLASS_TASKS, TRANSFORMS, Evidence, probabilities

__all__ = [
    "BNM",
    "DEV",
    "SND",
    "CrossTaskConsistency",
    "Entropy",
    "InfoMax",
    "SourceRisk",
    "TransformationAgreement",
    "Validator",
]


class Validator(ABC):
    """A label-free score of a model (higher is better), logged as ``val/validator/<name>``.

    ``needs`` lists what :func:`~umadapt.validators.collect_evidence` must gather besides predictions:
    ``features`` (pooled encoder features) or ``transform:<name>`` (predictions of transformed target images).
    ``post_hoc`` validators (reverse validation) train something and are run by ``python -m umadapt.select`` only.
    """

    name: ClassVar[str] = ""
    post_hoc: ClassVar[bool] = False

    @property
    def needs(self) -> frozenset[str]:
        return frozenset()

    def check(self, model: nn.Module) -> None:
        """Raise a :class:`ConfigError` naming this validator and the model when the model cannot be scored."""

    @abstractmethod
    def score(self, evidence: Evidence) -> float:
        """The score of ``evidence.model`` (higher is better)."""

    def describe(self) -> dict[str, Any]:
        """Name and every setting (the public attributes, named as the constructor's arguments), for results files
        and score caches: ``build_validator(**describe())`` rebuilds the validator."""
        return {"name": self.name, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}


def _class_tasks(validator: Validator, model: nn.Module, tasks: Sequence[str] | None) -> list[str]:
    """The class tasks a prediction-based validator scores (default: every class task of the model)."""
    model_tasks = list(getattr(model, "tasks", []))
    chosen = list(tasks) if tasks else [t for t in model_tasks if t in CLASS_TASKS]
    bad = [t for t in chosen if t not in CLASS_TASKS or t not in model_tasks]
    if not chosen or bad:
        raise ConfigError(
            f"Validator {validator.name!r} scores class distributions, but {type(model).__name__} predicts "
            f"{model_tasks} (class tasks: {list(CLASS_TASKS)}); use it on a model with a label or segmentation task, "
            "or use transformation agreement / cross-task consistency for depth and normals."
        )
    return chosen


class _ClassValidator(Validator):
    """A validator on the target class distributions of ``tasks`` (default every class task), averaged over tasks."""

    def __init__(self, tasks: list[str] | None = None) -> None:
        self.tasks = list(tasks or [])

    def check(self, model: nn.Module) -> None:
        _class_tasks(self, model, self.tasks)

    def score(self, evidence: Evidence) -> float:
        tasks = _class_tasks(self, evidence.model, self.tasks)
        values = [self.task_score(probabilities(t, evidence.target_predictions[t])) for t in tasks]
        return float(sum(values) / len(values))

    @abstractmethod
    def task_score(self, probs: Tensor) -> float:
        """The score of one task's ``[M, K]`` target probabilities (one row per image or pixel)."""


class Entropy(_ClassValidator):
    """Negative mean entropy of the target predictions, ``−1/M Σ_m H(p_m)`` (Morerio et al. ICLR 2018 select with
    it; per pixel for segmentation): confident target predictions score high."""

    name = "entropy"

    def task_score(self, probs: Tensor) -> float:
        return -float(F.entropy(probs).mean())


class InfoMax(_ClassValidator):
    """Information maximization ``H(p̄) − 1/M Σ_m H(p_m)`` (Gomes et al. 2010; SHOT, Liang et al. 2020): confident
    *and* diverse target predictions score high (a collapse onto one class does not)."""

    name = "im"

    def task_score(self, probs: Tensor) -> float:
        return F.information_maximization(probs)


class BNM(_ClassValidator):
    """Batch nuclear-norm ``‖P‖_* / M`` of the target probability matrix (Cui et al. CVPR 2020): high for confident
    and diverse predictions."""

    name = "bnm"

    def task_score(self, probs: Tensor) -> float:
        return F.batch_nuclear_norm(probs)


class SND(Validator):
    """Soft neighbourhood density (Saito et al. ICCV 2021): the mean entropy of each target point's softmax over its
    similarities to the others (temperature ``τ``), on the target class probabilities (``on: predictions``, the
    paper's choice) or on the pooled encoder features (``on: features``, for models without a class task).
    Segmentation pixels (and more than ``max_points`` points) are subsampled with a fixed seed."""

    name = "snd"

    def __init__(
        self, on: str = "predictions", temperature: float = 0.05, max_points: int = 2048, seed: int = 0
    ) -> None:
        if on not in ("predictions", "features"):
            raise ConfigError(f"SND(on={on!r}): use 'predictions' or 'features'.")
        self.on, self.temperature, self.max_points, self.seed = on, float(temperature), int(max_points), int(seed)

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({"features"}) if self.on == "features" else frozenset()

    def check(self, model: nn.Module) -> None:
        if self.on == "predictions":
            _class_tasks(self, model, None)
        elif not callable(getattr(model, "features", None)):
            raise ConfigError(
                f"Validator 'snd' (on: features) needs encoder features; {type(model).__name__} has none."
            )

    def _subsample(self, points: Tensor) -> Tensor:
        if points.shape[0] <= self.max_points:
            return points
        generator = torch.Generator().manual_seed(self.seed)
        return points[torch.randperm(points.shape[0], generator=generator)[: self.max_points]]

    def score(self, evidence: Evidence) -> float:
        if self.on == "features":
            if evidence.target_features is None:
                raise ConfigError("Validator 'snd' (on: features): the evidence has no target features.")
            return F.soft_neighborhood_density(self._subsample(evidence.target_features), self.temperature)
        tasks = _class_tasks(self, evidence.model, None)
        values = [
            F.soft_neighborhood_density(
                self._subsample(probabilities(t, evidence.target_predictions[t])), self.temperature
            )
            for t in tasks
        ]
        return float(sum(values) / len(values))


class SourceRisk(Validator):
    """Negative source validation risk, ``−1/N_s Σ_i Σ_t w_t L_t(x_i)``: the no-adaptation baseline of model selection
    (it ignores the target entirely)."""

    name = "source_risk"

    def score(self, evidence: Evidence) -> float:
        return -float(evidence.source_losses.mean())


class DEV(Validator):
    """Deep embedded validation (You et al. ICML 2019): the source validation risk importance-weighted towards the
    target, ``w(x) = p(target|x) / p(source|x) · N_s/N_t`` from a logistic-regression domain classifier on the
    pooled encoder features (cross-fitted over ``folds`` so no sample is weighted by a classifier that saw it),
    with the control variate of the paper's eq. 6; the score is the negated risk."""

    name = "dev"

    def __init__(self, folds: int = 2, seed: int = 0) -> None:
        self.folds, self.seed = int(folds), int(seed)

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({"features"})

    def check(self, model: nn.Module) -> None:
        if not callable(getattr(model, "features", None)):
            raise ConfigError(
                f"Validator 'dev' weighs source samples by a domain classifier on encoder features, but "
                f"{type(model).__name__} has no encoder features (model.features); use another validator."
            )

    def score(self, evidence: Evidence) -> float:
        if evidence.source_features is None or evidence.target_features is None:
            raise ConfigError(
                "Validator 'dev': the evidence has no encoder features (collect them with features=True)."
            )
        weights = F.cross_fitted_weights(
            evidence.source_features, evidence.target_features, folds=self.folds, seed=self.seed
        )
        return -F.dev_risk(evidence.source_losses, weights)


class TransformationAgreement(Validator):
    """Negative disagreement between the predictions of each target image and of its transformed copy mapped back
    (``hflip``: normals' x negated; ``shift``: a circular shift of ``shift_pixels`` columns), averaged over tasks:
    ``−1/T Σ_t 1/N_t Σ_i d_t(ŷ_t(x_i), g⁻¹ ŷ_t(g x_i))`` with the unitless ``d_t`` of
    :func:`~umadapt.validators.functional.prediction_disagreement` (log-depth difference, angle / π, total
    variation of class probabilities). Applies to every task, dense regression included."""

    name = "agreement"

    def __init__(self, transform: str = "hflip", shift_pixels: int = 2, tasks: list[str] | None = None) -> None:
        if transform not in TRANSFORMS:
            raise ConfigError(
                f"TransformationAgreement(transform={transform!r}): valid transforms are {list(TRANSFORMS)}."
            )
        self.transform, self.shift_pixels, self.tasks = transform, int(shift_pixels), list(tasks or [])

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({f"transform:{self.transform}"})

    def check(self, model: nn.Module) -> None:
        unknown = [t for t in self.tasks if t not in getattr(model, "tasks", [])]
        if unknown:
            raise ConfigError(
                f"Validator 'agreement' names tasks {unknown} that {type(model).__name__} does not predict."
            )

    def score(self, evidence: Evidence) -> float:
        transformed = evidence.target_transformed.get(self.transform)
        if transformed is None:
            raise ConfigError(f"Validator 'agreement': the evidence has no {self.transform!r} predictions.")
        values = []
        for t in self.tasks or evidence.tasks:
            a, b = evidence.target_predictions[t], transformed[t]
            if t in CLASS_TASKS:
                a, b = torch.softmax(a.double(), dim=1), torch.softmax(b.double(), dim=1)
            values.append(float(F.prediction_disagreement(t, a, b).mean()))
        return -float(sum(values) / len(values))


class CrossTaskConsistency(Validator):
    """Negative mean cross-task energy of the target predictions, ``−1/N_t Σ_i E(x_i)`` with UM-Adapt's
    ``E(x) = Σ_t w_t d_t(ŷ_t, T_t(ŷ_¬t))`` (Kundu et al. ICCV 2019, the distillation loss re-used as an energy;
    :class:`~umadapt.nn.CrossTaskDistillation`): predictions that agree with each other as they do on the labelled
    source score high. For dense regression tasks, where entropy does not exist.

    The distillation networks ``T_t`` are the model's own (``model.distillation``), with the weights of
    ``checkpoint`` when given (``distillation.*`` of e.g. a UM-Adapt source-phase ``last.ckpt``, trained on source
    labels only). Comparing candidates, give every one the same ``checkpoint``: an adapted UM-Adapt model's own
    networks have been trained as the adversary's discriminator and score on a scale of their own.

    Any other multi-task model (source-only, DANN, ...) is scored by networks built from ``cross_tasks`` and ``net``
    (:class:`~umadapt.nn.CrossTaskNet` options, as the checkpoint's run configured them) with the weights of
    ``checkpoint``, which is then required.
    """

    name = "consistency"

    def __init__(
        self,
        checkpoint: str | None = None,
        batch_size: int = 64,
        cross_tasks: list[str] | None = None,
        net: dict[str, Any] | None = None,
    ) -> None:
        self.checkpoint, self.batch_size = checkpoint, int(batch_size)
        self.cross_tasks, self.net = list(cross_tasks or []), dict(net or {})
        self._cache: tuple[nn.Module, nn.Module] | None = None

    def check(self, model: nn.Module) -> None:
        if isinstance(getattr(model, "distillation", None), nn.Module):
            return
        if not (self.checkpoint and self.cross_tasks):
            raise ConfigError(
                f"Validator 'consistency' needs cross-task distillation networks, but {type(model).__name__} has "
                "none (model.distillation, e.g. umadapt.methods.UMAdapt): set checkpoint (a UM-Adapt run's last.ckpt) "
                "and cross_tasks (with net, that run's CrossTaskNet options), or use 'agreement' for this model."
            )
        missing = [t for t in self.cross_tasks if t not in getattr(model, "tasks", [])]
        if missing:
            raise ConfigError(f"Validator 'consistency': {type(model).__name__} does not predict {missing}.")

    def _own_or_built(self, model: nn.Module) -> nn.Module:
        from functools import partial

        from umadapt.nn import CrossTaskDistillation, CrossTaskNet

        if isinstance(getattr(model, "distillation", None), nn.Module):
            return copy.deepcopy(model.distillation)
        try:
            factory = partial(CrossTaskNet, **self.net)
            return CrossTaskDistillation(self.cross_tasks, getattr(model, "num_classes", None), factory)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"Validator 'consistency' (cross_tasks {self.cross_tasks}, net {self.net}): {error}")

    def _networks(self, model: nn.Module) -> nn.Module:
        self.check(model)
        if self.checkpoint is None:
            return model.distillation
        if self._cache is None or self._cache[0] is not model:
            holder = nn.Module()
            holder.distillation = self._own_or_built(model)
            load_partial_state(
                holder,
                self.checkpoint,
                ["distillation."],
                what="Cross-task networks of the 'consistency' validator",
                hint="Point checkpoint at a UM-Adapt run's last.ckpt (its source phase trains the networks).",
            )
            self._cache = (model, holder.distillation.eval())
        return self._cache[1]

    def score(self, evidence: Evidence) -> float:
        networks = self._networks(evidence.model)
        device = next(networks.parameters()).device
        energies = []
        total = next(iter(evidence.target_predictions.values())).shape[0]
        with torch.no_grad():
            for start in range(0, total, self.batch_size):
                chunk = {
                    t: v[start : start + self.batch_size].to(device) for t, v in evidence.target_predictions.items()
                }
                energies.append(networks.energy(chunk).double().cpu())
        return -float(torch.cat(energies).mean())
