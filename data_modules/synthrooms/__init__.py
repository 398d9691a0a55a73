"""SynthRooms: procedurally generated, ray-cast rooms with exact depth, normals, segmentation and contours.

Two class sets: ``basic`` (5 classes, :data:`CLASS_NAMES`) and ``rich`` (11, :data:`RICH_CLASS_NAMES`, for
informative image-level tags); :func:`class_presence` reports how often each class shows.
"""

from .domain import CameraInfo, SynthRooms, SynthRoomsDataset, class_presence, measure_generation_rate, render_sample
from .render import CLASS_NAMES
from .scene import RICH_CLASS_NAMES

__all__ = [
    "CLASS_NAMES",
    "RICH_CLASS_NAMES",
    "CameraInfo",
    "SynthRooms",
    "SynthRoomsDataset",
    "class_presence",
    "measure_generation_rate",
    "render_sample",
]
