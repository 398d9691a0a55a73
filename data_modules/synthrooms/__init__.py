"""SynthRooms: procedurally generated, ray-cast rooms with exact depth, normals, segmentation and contours."""

from .domain import CameraInfo, SynthRooms, SynthRoomsDataset, measure_generation_rate, render_sample
from .render import CLASS_NAMES

__all__ = ["CLASS_NAMES", "CameraInfo", "SynthRooms", "SynthRoomsDataset", "measure_generation_rate", "render_sample"]
