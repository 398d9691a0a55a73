"""Callbacks: image grids, prediction PNGs, results JSON."""

from umadapt.callbacks.outputs import ImageGridLogger, PredictionWriter, ResultsWriter

__all__ = ["ImageGridLogger", "PredictionWriter", "ResultsWriter"]
