"""Methods: LightningModules configurable from YAML."""

from umadapt.methods.base import MultiTaskModel
from umadapt.methods.reference import SourceOnly, TargetOracle

__all__ = ["MultiTaskModel", "SourceOnly", "TargetOracle"]
