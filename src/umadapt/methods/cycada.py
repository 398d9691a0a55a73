"""CyCADA's pixel-level stage (Hoffman, Tzeng, Park, Zhu, Isola, Saenko, Efros, Darrell, "CyCADA: Cycle-Consistent
Adversarial Domain Adaptation", ICML 2018): a CycleGAN between the domains whose translations keep what a frozen
source task network reads in them.

Two generators ``G_ST`` (source -> target look) and ``G_TS`` and two PatchGAN discriminators ``D_T``, ``D_S``
(:mod:`umadapt.pixel.networks`) minimise, for the generators,

    L = w_gan [L_GAN(G_ST, D_T) + L_GAN(G_TS, D_S)]                        (CyCADA Eq. 2, least squares)
      + w_cyc [|G_TS(G_ST(x_s)) - x_s|_1 + |G_ST(G_TS(x_t)) - x_t|_1]     (Eq. 3)
      + w_id  [|G_ST(x_t) - x_t|_1 + |G_TS(x_s) - x_s|_1]                  (CycleGAN's identity loss, Sec. 5.2)
      + w_sem Σ_t w_t [L_t(f_S(G_TS(x_t)), p(f_S, x_t)) + L_t(f_S(G_ST(x_s)), p(f_S, x_s))]      (Eq. 4)

where ``f_S`` is the frozen task network of ``task_checkpoint`` (a source-only run, in eval mode) and ``p(f_S, x)``
its prediction as a label (:func:`~umadapt.pixel.semantic_consistency_loss`). The discriminators minimise the
least-squares loss of real images against the current translations (detached); both players update once per batch
from one backward pass (:class:`~umadapt.methods.players.Players`). CycleGAN's pool of 50 past translations is left
out: the discriminators see the current batch's.

The translator is then used, not evaluated as a task model: ``data.init_args.source_translator`` serves the
translated source images (with the source labels) to *any* method (:class:`data_modules.TranslatedDomain`), which is
CyCADA's task stage (pixel-only with a source-only task model, pixel + feature with DANN). Its own ``val``/``test``
score the frozen ``f_S`` on translated images: ``source`` metrics on ``G_ST(x_s)`` against the source labels (how
much of the content the translation keeps), ``target`` metrics on ``G_TS(x_t)`` (the target translated into the
source look, test-time translation), with the cycle reconstruction error ``<stage>/<domain>/cycle_l1``. ``predict``
writes the translations of ``data.predict_domain`` (``translated``), and the image grids show input, translation and
reconstruction side by side.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pytorch_lightning.cli import OptimizerCallable
from torch import nn

from umadapt.checkpoints import load_task_network
from umadapt.errors import ConfigError
from umadapt.methods.base import MultiTaskModel
from umadapt.methods.checks import check_non_negative
from umadapt.methods.players import Players, held_fixed
from umadapt.pixel import (
    TRANSLATOR_KEY,
    PatchDiscriminator,
    ResnetGenerator,
    cycle_loss,
    least_squares_gan_loss,
    semantic_consistency_loss,
)

__all__ = ["CyCADATranslator"]


def _translator_optimizer(params: Any) -> torch.optim.Optimizer:
    """CycleGAN's optimizer: Adam, learning rate 0.0002, betas (0.5, 0.999)."""
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


class CyCADATranslator(MultiTaskModel):
    """CyCADA's image translation stage (see the module docstring).

    Args (besides the base model's, which describe the frozen task network ``f_S``: ``encoder``, heads, tasks):
        task_checkpoint: ``last.ckpt`` of a run of the same tasks and architecture trained on the source (its
            ``encoder.*`` and ``heads.*`` are read with ``weights_only=True``); required when ``semantic_weight`` > 0.
        generator: keyword arguments of :class:`~umadapt.pixel.ResnetGenerator` (``width``, ``downsamples``,
            ``blocks``), for both generators.
        discriminator: keyword arguments of :class:`~umadapt.pixel.PatchDiscriminator` (``width``, ``layers``).
        gan_weight, cycle_weight, identity_weight, semantic_weight: ``w_gan``, ``w_cyc`` (CycleGAN: 10), ``w_id``
            (CycleGAN: half of ``w_cyc``), ``w_sem`` (CyCADA: 1); the task weights ``w_t`` are ``loss_weights``.
        optimizer: the generators' optimizer (default: CycleGAN's Adam, lr 0.0002, betas (0.5, 0.999)).
        discriminator_optimizer: the discriminators' (default: the same as ``optimizer``).
    """

    def __init__(
        self,
        task_checkpoint: str | None = None,
        generator: dict[str, int] | None = None,
        discriminator: dict[str, int] | None = None,
        gan_weight: float = 1.0,
        cycle_weight: float = 10.0,
        identity_weight: float = 5.0,
        semantic_weight: float = 1.0,
        discriminator_optimizer: OptimizerCallable | None = None,
        optimizer: OptimizerCallable = _translator_optimizer,
        **kwargs: Any,
    ) -> None:
        super().__init__(optimizer=optimizer, **kwargs)
        self.automatic_optimization = False
        if self.lr_multipliers:
            raise ConfigError(
                "CyCADATranslator trains its generators and discriminators only: drop model.lr_multipliers."
            )
        check_non_negative(
            gan_weight=gan_weight,
            cycle_weight=cycle_weight,
            identity_weight=identity_weight,
            semantic_weight=semantic_weight,
        )
        if semantic_weight > 0 and not task_checkpoint:
            raise ConfigError(
                "CyCADA's semantic consistency reads the translations with a frozen source task network: set "
                "model.init_args.task_checkpoint to the last.ckpt of a source-only run of the same tasks, or "
                "semantic_weight: 0 (a plain CycleGAN)."
            )
        self.generator_options = dict(generator or {})
        self.discriminator_options = dict(discriminator or {})
        try:
            self.generators = nn.ModuleDict(
                {d: ResnetGenerator(**self.generator_options) for d in ("source_to_target", "target_to_source")}
            )
            self.discriminators = nn.ModuleDict(
                {d: PatchDiscriminator(**self.discriminator_options) for d in ("source", "target")}
            )
        except TypeError as error:
            raise ConfigError(f"model.init_args.generator or discriminator: {error}") from None
        multiple = self.generators["source_to_target"].multiple
        image_size = tuple(self.hparams.get("image_size") or ())
        if image_size and any(side % multiple for side in image_size):
            raise ConfigError(
                f"The generator downsamples {multiple}x, but the images are {image_size[0]}x{image_size[1]}: use sides "
                f"that are multiples of {multiple}, or fewer generator.downsamples."
            )
        self.task_network = nn.ModuleDict({"encoder": self.encoder, "heads": self.heads})
        self.task_network.requires_grad_(False)
        self.task_checkpoint = task_checkpoint
        self.gan_weight, self.cycle_weight = float(gan_weight), float(cycle_weight)
        self.identity_weight, self.semantic_weight = float(identity_weight), float(semantic_weight)
        self.discriminator_optimizer_factory = discriminator_optimizer
        self.players = Players()

    # -- the frozen task network -----------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> CyCADATranslator:
        """Train mode for the generators and discriminators; the task network stays in eval mode (its BatchNorm
        statistics are the checkpoint's)."""
        super().train(mode)
        self.task_network.eval()
        return self

    def optimized_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The generators' and discriminators' parameters (the task network is frozen)."""
        return [(n, p) for n, p in self.named_parameters() if n.startswith(("generators.", "discriminators."))]

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage != "fit":
            return
        if self.task_checkpoint:
            load_task_network(
                self.task_network,
                self.task_checkpoint,
                "model.init_args.task_checkpoint",
                self.tasks,
                self.num_classes,
                "Use a task network with the same encoder and heads as this config (its run's config.yaml).",
            )
        self.task_network.eval()

    # -- translation ----------------------------------------------------------------------------------------------
    def translate(self, images: torch.Tensor, domain: str) -> torch.Tensor:
        """``images`` of ``domain`` (``source`` or ``target``) in the other domain's look."""
        return self.generators["source_to_target" if domain == "source" else "target_to_source"](images)

    def image_columns(self, images: torch.Tensor, domain: str) -> dict[str, torch.Tensor]:
        """What the image grids show of a domain's images: input, translation and its translation back."""
        translated = self.translate(images, domain)
        other = "target" if domain == "source" else "source"
        return {"input": images, "translated": translated, "reconstructed": self.translate(translated, other)}

    def eval_forward(self, image: torch.Tensor, domain: str, stage: str) -> dict[str, torch.Tensor]:
        """The frozen task network on the translation of ``image``, and ``<stage>/<domain>/cycle_l1`` logged."""
        columns = self.image_columns(image, domain)
        reconstruction = cycle_loss(columns["reconstructed"], image)
        self.log(f"{stage}/{domain}/cycle_l1", reconstruction, batch_size=image.shape[0], add_dataloader_idx=False)
        return self(columns["translated"])

    def predict_step(
        self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, torch.Tensor]:
        """The images of ``data.predict_domain`` and their translations."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        domain = getattr(datamodule, "predict_domain", "target")
        return {"image": batch["image"], "translated": self.translate(batch["image"], domain)}

    # -- training ---------------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        return self.players.configure(
            {
                "generators": self.optimizer_factory(self.generators.parameters()),
                "discriminators": (self.discriminator_optimizer_factory or self.optimizer_factory)(
                    self.discriminators.parameters()
                ),
            }
        )

    def optimizer_steps_per_batch(self) -> float:
        """The generators and the discriminators step once per batch each."""
        return 2.0

    def _semantic_terms(self, original: torch.Tensor, translated: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each task's semantic-consistency term between the task network's reading of ``original`` and of
        ``translated`` (gradients reach the generator through the frozen network)."""
        with torch.no_grad():
            on_original = self(original)
        on_translated = self(translated)
        return {t: semantic_consistency_loss(self.task_specs[t], on_translated[t], on_original[t]) for t in self.tasks}

    def training_step(self, batch: Mapping[str, Mapping[str, torch.Tensor]], batch_idx: int) -> None:
        source, target = batch["source"]["image"], batch["target"]["image"]  # the images only, never a label
        size = source.shape[0]
        fake_target = self.translate(source, "source")
        fake_source = self.translate(target, "target")
        generator_terms: dict[str, torch.Tensor] = {}
        with held_fixed(self.discriminators):  # the generators' adversarial terms reach the generators only
            generator_terms["gan"] = least_squares_gan_loss(
                self.discriminators["target"](fake_target), True
            ) + least_squares_gan_loss(self.discriminators["source"](fake_source), True)
        generator_terms["cycle"] = cycle_loss(self.translate(fake_target, "target"), source) + cycle_loss(
            self.translate(fake_source, "source"), target
        )
        if self.identity_weight > 0:
            generator_terms["identity"] = cycle_loss(self.translate(target, "source"), target) + cycle_loss(
                self.translate(source, "target"), source
            )
        if self.semantic_weight > 0:
            semantic = self._semantic_terms(source, fake_target)
            for t, term in self._semantic_terms(target, fake_source).items():
                semantic[t] = semantic[t] + term
            self.log_losses("semantic", semantic, size)
            generator_terms["semantic"] = sum(self.loss_weights[t] * semantic[t] for t in self.tasks)
        weights = {"gan": self.gan_weight, "cycle": self.cycle_weight, "identity": self.identity_weight}
        weights["semantic"] = self.semantic_weight
        generator_loss = sum(weights[name] * term for name, term in generator_terms.items())

        discriminator_loss = 0.5 * (
            least_squares_gan_loss(self.discriminators["target"](target), True)
            + least_squares_gan_loss(self.discriminators["target"](fake_target.detach()), False)
            + least_squares_gan_loss(self.discriminators["source"](source), True)
            + least_squares_gan_loss(self.discriminators["source"](fake_source.detach()), False)
        )
        lr = self.lr_schedule(self.progress(batch_idx))
        self.players.step(self, generator_loss + discriminator_loss, ["generators", "discriminators"], lr)

        for name, term in generator_terms.items():
            self.log(f"train/generator/{name}", term.detach(), batch_size=size)
        self.log("train/discriminator/loss", discriminator_loss.detach(), batch_size=size)
        self.log("train/loss", generator_loss.detach(), prog_bar=True, batch_size=size)

    # -- the translator checkpoint ------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        image_size = self.hparams.get("image_size")
        checkpoint[TRANSLATOR_KEY] = {
            "generator": dict(self.generator_options),
            "image_size": list(image_size) if image_size is not None else None,
        }
