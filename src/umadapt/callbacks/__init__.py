"""Callbacks: image grids, prediction PNGs, results JSON, non-finite loss guard, per-run config and record."""

from umadapt.callbacks.guards import NonFiniteLossError, NonFiniteLossGuard
from umadapt.callbacks.outputs import ImageGridLogger, PredictionWriter, ResultsWriter
from umadapt.callbacks.progressive import ProgressiveTraining
from umadapt.callbacks.records import RunConfigSaver

__all__ = [
    "ImageGridLogger",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "PredictionWriter",
    "ResultsWriter",
    "RunConfigSaver",
]
__all__ += ["ProgressiveTraining"]
