"""Methods: LightningModules configurable from YAML."""

from umadapt.methods.base import MultiTaskModel
from umadapt.methods.reference import SourceOnly, TargetOracle
from umadapt.methods.universal import UniversalRepresentations
from umadapt.methods.dann import DANN
from umadapt.methods.umadapt import UMAdapt

__all__ = ["MultiTaskModel", "SourceOnly", "TargetOracle"]
__all__ += ["DANN"]
__all__ += ["UMAdapt"]
__all__ += ["UniversalRepresentations"]
