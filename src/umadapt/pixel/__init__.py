"""Pixel-level adaptation: image-to-image translation networks and losses (CycleGAN, CyCADA) and trained
translators applied to datasets (see :class:`umadapt.methods.CyCADATranslator`)."""

from umadapt.pixel.losses import cycle_loss, least_squares_gan_loss, semantic_consistency_loss
from umadapt.pixel.networks import PatchDiscriminator, ResnetGenerator
from umadapt.pixel.translator import DIRECTIONS, TRANSLATOR_KEY, Translator, load_translator

__all__ = ["DIRECTIONS", "TRANSLATOR_KEY", "PatchDiscriminator", "ResnetGenerator", "Translator"]
__all__ += ["cycle_loss", "least_squares_gan_loss", "load_translator", "semantic_consistency_loss"]
