"""Methods: LightningModules configurable from YAML."""

from umadapt.methods.adabn import AdaBN
from umadapt.methods.adaptsegnet import OutputSpaceAdaptation
from umadapt.methods.base import MultiTaskModel
from umadapt.methods.cycada import CyCADATranslator
from umadapt.methods.dann import DANN
from umadapt.methods.dynamic import ControllableMultiTask
from umadapt.methods.reference import SourceOnly, TargetOracle
from umadapt.methods.self_training import SelfTraining
from umadapt.methods.umadapt import UMAdapt
from umadapt.methods.universal import UniversalRepresentations
from umadapt.methods.weak_label import WeakLabelAdaptation

__all__ = ["MultiTaskModel", "SourceOnly", "TargetOracle"]
__all__ += ["AdaBN", "DANN"]
__all__ += ["UMAdapt"]
__all__ += ["UniversalRepresentations"]
__all__ += ["SelfTraining"]
__all__ += ["CyCADATranslator"]
__all__ += ["OutputSpaceAdaptation", "WeakLabelAdaptation"]
__all__ += ["ControllableMultiTask"]
