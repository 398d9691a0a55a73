"""Reverse validation (Zhong et al. ECML 2010; the DANN paper's protocol, Ganin et al. JMLR 2016, section 5.1.2).

The model pseudo-labels the unlabelled target training images; a *reverse* model of the same architecture, freshly
initialised, is trained on those pseudo-labels; its risk on the labelled **source validation** samples is the score
(negated: higher is better). A model whose target predictions are right teaches a reverse model that transfers
back to the source. Ganin et al. train the reverse model with DANN itself (pseudo-labelled target as its source,
the source images as its target); here it is trained on the pseudo-labels alone (no adaptation in the reverse
direction), Zhong et al.'s original form, so the score does not depend on the adversary's own settings.

It costs a short training per candidate, so it is a post-hoc validator of ``python -m umadapt.select``, not logged
every epoch.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from umadapt.errors import ConfigError
from umadapt.validators.evidence import CLASS_TASKS, Evidence, check_images_only, evaluation_mode, per_sample_losses
from umadapt.validators.scores import Validator

__all__ = ["ReverseValidation", "pseudo_labels", "reinitialized_copy"]


def pseudo_labels(model: nn.Module, images: Tensor, batch_size: int = 64) -> dict[str, Tensor]:
    """The model's predictions of ``images`` as training targets: class indices (argmax) for class tasks, the
    predicted depth / normals for dense regression tasks."""
    device = next(model.parameters()).device
    restore = evaluation_mode(model)
    out: dict[str, list[Tensor]] = {}
    try:
        with torch.no_grad():
            for start in range(0, images.shape[0], batch_size):
                for t, v in model(images[start : start + batch_size].to(device)).items():
                    v = v.argmax(dim=1) if t in CLASS_TASKS else v.float()
                    out.setdefault(t, []).append(v.cpu())
    finally:
        restore()
    return {t: torch.cat(v) for t, v in out.items()}


def reinitialized_copy(model: nn.Module, seed: int) -> nn.Module:
    """A deep copy of ``model`` with every parameter re-initialised (``reset_parameters``; BatchNorm statistics
    reset too), trainable, deterministic in ``seed``."""
    reverse = copy.deepcopy(model)
    torch.manual_seed(seed)
    for module in reverse.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset) and module is not reverse:
            reset()
    return reverse.requires_grad_(True)


class ReverseValidation(Validator):
    """Negative source validation risk of a reverse model trained on the target pseudo-labels (module docstring).

    Args:
        steps: optimizer steps of the reverse model (Adam).
        lr: its learning rate.
        batch_size: its batch size.
        max_images: target training images pseudo-labelled (the first ones; all when fewer).
        seed: seed of the reverse model's initialisation and batch order.
    """

    name = "reverse"
    post_hoc = True

    def __init__(
        self, steps: int = 300, lr: float = 1e-3, batch_size: int = 32, max_images: int = 2000, seed: int = 0
    ) -> None:
        if steps < 1 or batch_size < 1 or max_images < 1 or lr <= 0:
            raise ConfigError(
                f"ReverseValidation needs steps, batch_size, max_images >= 1 and lr > 0; got {steps}, {batch_size}, "
                f"{max_images}, {lr}."
            )
        self.steps, self.lr, self.batch_size, self.max_images, self.seed = steps, lr, batch_size, max_images, seed

    def score(self, evidence: Evidence) -> float:
        raise ConfigError(
            "Validator 'reverse' trains a reverse model: run it with python -m umadapt.select (score_model), not "
            "from evidence or the per-epoch ValidatorLogger."
        )

    def score_model(
        self, model: nn.Module, target_images: Dataset, source_loader: Iterable[Mapping[str, Tensor]]
    ) -> float:
        """Pseudo-label ``target_images`` (a dataset of image-only samples), train the reverse model, return its
        negated source validation risk ``−1/N_s Σ_i Σ_t w_t L_t(x_i)``."""
        count = min(len(target_images), self.max_images)  # type: ignore[arg-type]
        samples = [target_images[i] for i in range(count)]
        for sample in samples[:1]:
            check_images_only(sample, "Validator 'reverse'")
        images = torch.stack([s["image"] for s in samples])
        targets = pseudo_labels(model, images)
        reverse = reinitialized_copy(model, self.seed)
        device = next(reverse.parameters()).device
        optimizer = torch.optim.Adam(reverse.parameters(), lr=self.lr)
        generator = torch.Generator().manual_seed(self.seed)
        reverse.train()
        order = torch.randperm(count, generator=generator)
        position = 0
        for _ in range(self.steps):
            if position + self.batch_size > count:
                order, position = torch.randperm(count, generator=generator), 0
            index = order[position : position + self.batch_size]
            position += self.batch_size
            predictions = reverse(images[index].to(device))
            loss = sum(
                float(reverse.loss_weights.get(t, 1.0))
                * reverse.task_specs[t].loss(predictions[t], targets[t][index].to(device))
                for t in reverse.tasks
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        reverse.eval()
        losses = []
        with torch.no_grad():
            for batch in source_loader:
                outputs = {t: v.float().cpu() for t, v in reverse(batch["image"].to(device)).items()}
                losses.append(per_sample_losses(reverse, outputs, batch))
        return -float(torch.cat(losses).mean())
