"""Data modules and datasets: the paired source/target module, the embedded benchmarks, augmentation presets."""

from data_modules.domain import Domain
from data_modules.paired import PairedDataModule

__all__ = ["Domain", "PairedDataModule"]
