"""Readers for real datasets, each exactly as distributed, as :class:`~data_modules.domain.Domain` subclasses.

Every reader takes ``root: str | None = None``; ``None`` resolves to ``$DATA_ROOT/<DatasetFolder>``:

=================================  ======================  ====================================================
reader                             default folder          tasks
=================================  ======================  ====================================================
:class:`NYUDv2`                    ``NYUDv2``              depth, segmentation (40 or 13 classes), official .mat
:class:`NYUDv2MTAN`                ``NYUDv2_MTAN``         depth, normals, segmentation (13), MTAN/LibMTL .npy
:class:`Cityscapes`                ``Cityscapes``          segmentation (19/16/13), depth from disparity
:class:`GTA5`                      ``GTA5``                segmentation (Cityscapes classes)
:class:`SynthiaRandCityscapes`     ``RAND_CITYSCAPES``     segmentation (16/13), depth
:class:`Office31`                  ``Office31``            label (31 classes); amazon, dslr, webcam
:class:`OfficeHome`                ``OfficeHome``          label (65 classes); Art, Clipart, Product, Real World
:class:`FolderDomain`              ``<name>``              your own data: depth, normals, segmentation
=================================  ======================  ====================================================

Nothing is downloaded; a missing root or file raises :class:`DatasetNotFoundError` naming the path tried, the
expected layout and where the dataset is obtained. See ``docs/real_datasets.md``.
"""

from .base import RealDomain
from .cityscapes import Cityscapes
from .errors import CorruptFileError, DatasetNotFoundError
from .folder import FolderDomain
from .gta5 import GTA5
from .io import DATA_ROOT_ENV, LabelMapper, fit_sample, read_image, read_png, resolve_root
from .nyud import NYUDv2, NYUDv2MTAN
from .office import Office31, OfficeHome
from .synthia import SynthiaRandCityscapes

__all__ = [
    "DATA_ROOT_ENV",
    "GTA5",
    "NYUDv2",
    "NYUDv2MTAN",
    "Cityscapes",
    "CorruptFileError",
    "DatasetNotFoundError",
    "FolderDomain",
    "LabelMapper",
    "Office31",
    "OfficeHome",
    "RealDomain",
    "SynthiaRandCityscapes",
    "fit_sample",
    "read_image",
    "read_png",
    "resolve_root",
]
