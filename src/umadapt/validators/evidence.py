"""What label-free validators may see, gathered in one pass: :class:`Evidence` and :func:`collect_evidence`.

A validator scores a model from **labelled source validation** samples and **unlabelled target validation** images.
The target loader is built from ``datamodule.images_dataset("target", "val")``, whose samples carry the image only
(the guarantee the training loaders give); :func:`check_images_only` refuses any target batch with another key, so
no validator can reach a target label even when handed the wrong loader.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from umadapt.errors import ConfigError
from umadapt.validators.functional import hflip_back

__all__ = ["TRANSFORMS", "Evidence", "check_images_only", "collect_evidence", "validation_loaders"]

IMAGE_KEYS = frozenset({"image", "edges"})
"""Keys a target batch may carry: the image and what is computed from it alone (edge maps)."""

CLASS_TASKS = ("label", "segmentation")
"""Tasks whose prediction is a class distribution (entropy, IM, BNM, SND apply to them)."""

TRANSFORMS = ("hflip", "shift")
"""Transformations of :class:`~umadapt.validators.TransformationAgreement`: a horizontal flip (normals' x negated
when mapped back), or a circular shift of ``shift_pixels`` columns (mapped back by the opposite shift)."""


def evaluation_mode(model: nn.Module) -> Callable[[], None]:
    """Put ``model`` in eval mode; return the function that restores every submodule's own mode (a model may keep
    frozen parts in eval mode while training, e.g. UM-Adapt's adaptation phase)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()

    def restore() -> None:
        for module, training in modes:
            module.training = training

    return restore


def check_images_only(batch: Mapping[str, Any], where: str = "a validator") -> None:
    """Raise a :class:`ConfigError` if a target batch carries anything besides the image (a label, a depth map)."""
    extra = sorted(set(batch) - IMAGE_KEYS)
    if extra:
        raise ConfigError(
            f"{where} was given a target batch with {extra} besides the image: validators read target images only. "
            "Build the target loader from datamodule.images_dataset('target', 'val') (see validation_loaders)."
        )


def validation_loaders(datamodule: Any, batch_size: int | None = None) -> tuple[DataLoader, DataLoader]:
    """``(labelled source validation loader, target validation images loader)`` of a paired data module."""
    for name in ("eval_dataset", "images_dataset"):
        if not callable(getattr(datamodule, name, None)):
            raise ConfigError(
                f"Validators need a paired data module with eval_dataset and images_dataset (e.g. "
                f"data_modules.PairedDataModule); {type(datamodule).__name__} has no {name}."
            )
    size = int(batch_size or getattr(datamodule, "eval_batch_size", 32))
    labelled = datamodule.eval_dataset("source", "val", native=False)  # validators score at image_size
    source = DataLoader(labelled, batch_size=size, shuffle=False)
    target = DataLoader(datamodule.images_dataset("target", "val"), batch_size=size, shuffle=False)
    return source, target


def probabilities(task: str, prediction: Tensor) -> Tensor:
    """A class task's prediction (logits, class dimension 1) as float64 probabilities, one row per image or pixel,
    ``[M, K]``."""
    probs = torch.softmax(prediction.double(), dim=1)
    return probs if probs.dim() == 2 else probs.movedim(1, -1).reshape(-1, probs.shape[1])


@dataclass
class Evidence:
    """A model's outputs on the validation data a validator may use (everything on the CPU).

    Attributes:
        model: the scored model (validators with networks of their own, e.g. cross-task consistency, read it).
        tasks: the model's tasks.
        source_predictions, target_predictions: ``{task: outputs}`` as the model's ``forward`` returns them (depth
            in metres, unit normals, class logits).
        source_labels: ``{task: labels}`` of the source validation samples.
        source_losses: ``[N_s]`` per-sample source loss ``Σ_t w_t L_t`` (``model.loss_weights``).
        source_features, target_features: ``[N, D]`` encoder features (the deepest map, average-pooled; a per-task
            encoder's tasks concatenated), or ``None`` when not collected.
        target_transformed: ``{transform: {task: outputs}}``: predictions of transformed target images, mapped back
            to the original images' frame.
    """

    model: nn.Module
    tasks: list[str]
    source_predictions: dict[str, Tensor]
    source_labels: dict[str, Tensor]
    source_losses: Tensor
    target_predictions: dict[str, Tensor]
    source_features: Tensor | None = None
    target_features: Tensor | None = None
    target_transformed: dict[str, dict[str, Tensor]] = field(default_factory=dict)

    def class_tasks(self) -> list[str]:
        return [t for t in self.tasks if t in CLASS_TASKS]

    def is_finite(self) -> bool:
        """Whether every prediction and feature is finite; a diverged model's are not, and it scores NaN."""
        tensors = [*self.source_predictions.values(), *self.target_predictions.values(), self.source_losses]
        tensors += [t for t in (self.source_features, self.target_features) if t is not None]
        tensors += [v for outputs in self.target_transformed.values() for v in outputs.values()]
        return all(bool(torch.isfinite(t).all()) for t in tensors)


def _pooled(features: Any) -> Tensor:
    """The deepest feature map average-pooled to ``[B, C]`` (per-task features: concatenated in task order)."""
    if isinstance(features, Mapping):
        return torch.cat([_pooled(f) for f in features.values()], dim=1)
    deepest = features[-1] if isinstance(features, (list, tuple)) else features
    return deepest.float().mean(dim=(2, 3)) if deepest.dim() == 4 else deepest.float().flatten(1)


def transform_images(images: Tensor, transform: str, shift_pixels: int = 2) -> Tensor:
    if transform == "hflip":
        return images.flip(-1)
    if transform == "shift":
        return images.roll(shift_pixels, dims=-1)
    raise ConfigError(f"Unknown transform {transform!r}; valid: {list(TRANSFORMS)}.")


def map_back(task: str, prediction: Tensor, transform: str, shift_pixels: int = 2) -> Tensor:
    """A prediction made on a transformed image, in the original image's frame (per-image tasks are unchanged)."""
    if transform == "hflip":
        return hflip_back(task, prediction)
    return prediction if prediction.dim() == 2 else prediction.roll(-shift_pixels, dims=-1)


def per_sample_losses(model: Any, predictions: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
    """``Σ_t w_t L_t`` of each sample of a labelled batch, with the model's fixed loss weights."""
    size = batch["image"].shape[0]
    losses = torch.zeros(size, dtype=torch.float64)
    for t in model.tasks:
        spec, weight = model.task_specs[t], float(model.loss_weights.get(t, 1.0))
        for i in range(size):
            losses[i] += weight * float(spec.loss(predictions[t][i : i + 1].float(), batch[t][i : i + 1]))
    return losses


def collect_evidence(
    model: nn.Module,
    source_loader: Iterable[Mapping[str, Tensor]],
    target_loader: Iterable[Mapping[str, Tensor]],
    *,
    features: bool = False,
    transforms: Iterable[str] = (),
    shift_pixels: int = 2,
    max_batches: int | None = None,
) -> Evidence:
    """Run ``model`` (in eval mode, without gradients) over both loaders and gather the :class:`Evidence`.

    ``features``: also collect pooled encoder features (needs ``model.features``); ``transforms``: also predict
    each target image under these :data:`TRANSFORMS`; ``max_batches``: read at most this many batches per loader.
    """
    if features and not callable(getattr(model, "features", None)):
        raise ConfigError(f"{type(model).__name__} has no encoder features (model.features) to collect.")
    transforms = list(transforms)
    for transform in transforms:
        if transform not in TRANSFORMS:
            raise ConfigError(f"Unknown transform {transform!r}; valid: {list(TRANSFORMS)}.")
    tasks = list(model.tasks)
    device = next(model.parameters()).device
    restore = evaluation_mode(model)
    gathered: dict[str, list[Tensor]] = {}

    def keep(key: str, value: Tensor) -> None:
        gathered.setdefault(key, []).append(value.detach().float().cpu())

    def predict(images: Tensor, prefix: str) -> dict[str, Tensor]:
        if features:
            feats = model.features(images)
            outputs = model.decode(feats, tuple(images.shape[-2:]))
            keep(f"{prefix}features", _pooled(feats))
        else:
            outputs = model(images)
        return outputs

    try:
        with torch.no_grad():
            for index, batch in enumerate(source_loader):
                if max_batches is not None and index >= max_batches:
                    break
                missing = [t for t in tasks if t not in batch]
                if missing:
                    raise ConfigError(f"The source validation batch has no labels for {missing}; validators need them.")
                outputs = predict(batch["image"].to(device), "source/")
                outputs = {t: v.float().cpu() for t, v in outputs.items()}
                for t in tasks:
                    keep(f"source/{t}", outputs[t])
                    gathered.setdefault(f"label/{t}", []).append(batch[t])
                gathered.setdefault("losses", []).append(per_sample_losses(model, outputs, batch))
            for index, batch in enumerate(target_loader):
                if max_batches is not None and index >= max_batches:
                    break
                check_images_only(batch, "collect_evidence")
                images = batch["image"].to(device)
                for t, v in predict(images, "target/").items():
                    keep(f"target/{t}", v)
                for transform in transforms:
                    outputs = model(transform_images(images, transform, shift_pixels))
                    for t, v in outputs.items():
                        keep(f"{transform}/{t}", map_back(t, v.float(), transform, shift_pixels))
    finally:
        restore()

    def cat(key: str) -> Tensor:
        if key not in gathered:
            raise ConfigError(f"collect_evidence: the {key.split('/')[0]} validation loader yielded no batch.")
        return torch.cat(gathered[key])

    return Evidence(
        model=model,
        tasks=tasks,
        source_predictions={t: cat(f"source/{t}") for t in tasks},
        source_labels={t: cat(f"label/{t}") for t in tasks},
        source_losses=torch.cat(gathered.get("losses", [torch.zeros(0, dtype=torch.float64)])),
        target_predictions={t: cat(f"target/{t}") for t in tasks},
        source_features=cat("source/features") if features else None,
        target_features=cat("target/features") if features else None,
        target_transformed={transform: {t: cat(f"{transform}/{t}") for t in tasks} for transform in transforms},
    )
