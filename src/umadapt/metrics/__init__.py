"""Evaluation metrics (torchmetrics ``Metric`` subclasses, reducible across DDP ranks) and multi-task summaries.

Every metric's ``compute()`` returns a dict of scalar tensors; the keys are listed in ``*_KEYS``. Values over an
update stream with no valid pixel/sample are ``NaN``.

States are updated out of place (``self.x = self.x + ...``, never ``+=``): under ``ddp_spawn`` the model reaches the
workers through torch multiprocessing, which puts CPU tensors in shared memory, so an in-place update would add
every rank's counts into one tensor.
"""

from umadapt.metrics.classification import CLASSIFICATION_KEYS, ClassificationMetrics
from umadapt.metrics.depth import DEPTH_KEYS, DepthMetrics
from umadapt.metrics.mtl import HIGHER_IS_BETTER, LOWER_IS_BETTER, delta_mtl, gap_closed, is_lower_better, spearman
from umadapt.metrics.normals import NORMAL_KEYS, NormalMetrics
from umadapt.metrics.segmentation import (
    SEGMENTATION_KEYS,
    SegmentationMetrics,
    confusion_matrix_scores,
    per_class_iou,
)

__all__ = [
    "DepthMetrics",
    "NormalMetrics",
    "SegmentationMetrics",
    "ClassificationMetrics",
    "DEPTH_KEYS",
    "NORMAL_KEYS",
    "SEGMENTATION_KEYS",
    "CLASSIFICATION_KEYS",
    "per_class_iou",
    "confusion_matrix_scores",
    "delta_mtl",
    "gap_closed",
    "is_lower_better",
    "spearman",
    "LOWER_IS_BETTER",
    "HIGHER_IS_BETTER",
]
