"""Plain ``nn.Module`` building blocks (encoders and task heads), injectable from YAML through ``class_path``."""

from umadapt.nn.adversaries import (
    ClassWiseDiscriminator,
    DomainAdversary,
    FeatureDiscriminator,
    MultiScaleDiscriminator,
    OutputDiscriminator,
    SpatialDiscriminator,
    domain_adversarial_loss,
)
from umadapt.nn.contour import ContourDecoder
from umadapt.nn.cross_task import CrossTaskDistillation, CrossTaskNet
from umadapt.nn.decoders import ClassificationHead, DenseDecoder
from umadapt.nn.digits import DigitEncoder, MLPClassificationHead
from umadapt.nn.dynamic import EdgeHypernet, Tree, TreeEncoder, WeightHypernet
from umadapt.nn.encoders import ResNetEncoder, TinyResNetEncoder
from umadapt.nn.gradient_reversal import GradientReversal, grad_reverse
from umadapt.nn.multitask import CrossStitchEncoder, CrossStitchUnit, ProgressiveEncoder

__all__ = ["ClassificationHead", "DenseDecoder", "ResNetEncoder", "TinyResNetEncoder"]
__all__ += [
    "DigitEncoder",
    "DomainAdversary",
    "FeatureDiscriminator",
    "GradientReversal",
    "MLPClassificationHead",
    "MultiScaleDiscriminator",
    "ClassWiseDiscriminator",
    "OutputDiscriminator",
    "SpatialDiscriminator",
    "domain_adversarial_loss",
    "grad_reverse",
]
__all__ += ["ContourDecoder", "CrossTaskDistillation", "CrossTaskNet"]
__all__ += ["CrossStitchEncoder", "CrossStitchUnit", "ProgressiveEncoder"]
__all__ += ["EdgeHypernet", "Tree", "TreeEncoder", "WeightHypernet"]
