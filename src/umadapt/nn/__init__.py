"""Plain ``nn.Module`` building blocks (encoders and task heads), injectable from YAML through ``class_path``."""

from umadapt.nn.decoders import ClassificationHead, DenseDecoder
from umadapt.nn.encoders import ResNetEncoder, TinyResNetEncoder

__all__ = ["ClassificationHead", "DenseDecoder", "ResNetEncoder", "TinyResNetEncoder"]
