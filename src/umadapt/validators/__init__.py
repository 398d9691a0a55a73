"""Label-free validators: model-selection scores that use no target label (higher is better for every one).

Per validation epoch, :class:`~umadapt.callbacks.ValidatorLogger` logs them as ``val/validator/<name>``; post hoc,
``python -m umadapt.select`` scores every checkpoint of a set of runs with them and reports which run each picks.

==================  ===================================================================  ==========================
name                score                                                                applies to
==================  ===================================================================  ==========================
``source_risk``     −(source validation loss)                                            every model
``entropy``         −(mean entropy of target class predictions)                          label, segmentation
``im``              information maximization: diversity − mean entropy                   label, segmentation
``bnm``             batch nuclear-norm of the target probability matrix                  label, segmentation
``snd``             soft neighbourhood density (Saito et al. 2021)                       label, segmentation
``dev``             −(deep embedded validation risk, You et al. 2019)                    models with features
``agreement``       −(disagreement of target predictions under a flip or shift)          every task
``consistency``     −(UM-Adapt's cross-task energy of target predictions)                models with ``distillation``
``reverse``         −(source risk of a reverse model trained on target pseudo-labels)    every model (post hoc)
==================  ===================================================================  ==========================
"""

from __future__ import annotations

from typing import Any

from umadapt.errors import ConfigError
from umadapt.validators.evidence import Evidence, check_images_only, collect_evidence, validation_loaders
from umadapt.validators.reverse import ReverseValidation
from umadapt.validators.scores import (
    BNM,
    DEV,
    SND,
    CrossTaskConsistency,
    Entropy,
    InfoMax,
    SourceRisk,
    TransformationAgreement,
    Validator,
)

__all__ = [
    "BNM",
    "DEV",
    "SND",
    "VALIDATORS",
    "CrossTaskConsistency",
    "Entropy",
    "Evidence",
    "InfoMax",
    "ReverseValidation",
    "SourceRisk",
    "TransformationAgreement",
    "Validator",
    "build_validator",
    "check_images_only",
    "collect_evidence",
    "evidence_for",
    "validation_loaders",
]

VALIDATORS: dict[str, type[Validator]] = {
    cls.name: cls
    for cls in (
        SourceRisk,
        Entropy,
        InfoMax,
        BNM,
        SND,
        DEV,
        TransformationAgreement,
        CrossTaskConsistency,
        ReverseValidation,
    )
}
"""Every validator by its name."""


def build_validator(name: str, **options: Any) -> Validator:
    """The validator called ``name`` with ``options``; an unknown name or option is a :class:`ConfigError`."""
    if name not in VALIDATORS:
        raise ConfigError(f"Unknown validator {name!r}; valid: {sorted(VALIDATORS)}.")
    try:
        return VALIDATORS[name](**options)
    except TypeError as error:
        raise ConfigError(f"Validator {name!r} with options {options}: {error}.") from None


def evidence_for(validators: list[Validator], model: Any, source_loader: Any, target_loader: Any, **kwargs: Any):
    """:func:`collect_evidence` with what ``validators`` need (features, transformed predictions)."""
    needs = set().union(*(v.needs for v in validators)) if validators else set()
    transforms = sorted(n.split(":", 1)[1] for n in needs if n.startswith("transform:"))
    shifts = {getattr(v, "shift_pixels", 2) for v in validators if isinstance(v, TransformationAgreement)}
    return collect_evidence(
        model,
        source_loader,
        target_loader,
        features="features" in needs,
        transforms=transforms,
        shift_pixels=min(shifts) if shifts else 2,
        **kwargs,
    )
