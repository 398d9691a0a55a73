"""Pseudo-labels from a teacher: multi-transform inference, ensembling, confidence masks, the student's strong
augmentation and the teacher's updates. :class:`umadapt.methods.SelfTraining` puts them together."""

from umadapt.pseudo.augment import PhotometricAugmentation
from umadapt.pseudo.confidence import Calibration, ConfidenceRule, confident, parse_rules, pseudo_targets
from umadapt.pseudo.ensemble import combine_views, predict_views, view_disagreement
from umadapt.pseudo.teacher import copy_weights, ema_update
from umadapt.pseudo.transforms import ViewTransform, hflip_back, parse_transforms

__all__ = ["Calibration", "ConfidenceRule", "PhotometricAugmentation", "ViewTransform"]
__all__ += ["combine_views", "confident", "copy_weights", "ema_update", "hflip_back", "parse_rules"]
__all__ += ["parse_transforms", "predict_views", "pseudo_targets", "view_disagreement"]
