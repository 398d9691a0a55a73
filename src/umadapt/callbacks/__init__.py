"""Callbacks: image grids, prediction PNGs, results JSON, non-finite loss guard, per-run config and record, all
written into the run's own folder (:func:`run_folder`); label-free validator scores (:class:`ValidatorLogger`)."""

from umadapt.callbacks.guards import NonFiniteLossError, NonFiniteLossGuard
from umadapt.callbacks.outputs import ImageGridLogger, PredictionWriter, ResultsWriter
from umadapt.callbacks.progressive import ProgressiveTraining
from umadapt.callbacks.records import RunConfigSaver
from umadapt.callbacks.run_folder import RunFolderCallback, run_folder
from umadapt.callbacks.validators import ValidatorLogger

__all__ = [
    "ImageGridLogger",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "PredictionWriter",
    "ProgressiveTraining",
    "ResultsWriter",
    "RunConfigSaver",
    "RunFolderCallback",
    "ValidatorLogger",
    "run_folder",
]
