"""Digit domains: the embedded Digits -> Digits-M benchmark (:mod:`.embedded`) and the real digit datasets in their
distributed formats (:mod:`.real`, :mod:`.formats`): MNIST, MNIST-M, SVHN, USPS."""

from .embedded import LAYOUT, PHOTOS, Digits, DigitsM
from .formats import DigitDataError, MissingDigitFile
from .real import MNIST, MNISTM, SVHN, USPS, RealDigits

__all__ = [
    "LAYOUT",
    "MNIST",
    "MNISTM",
    "PHOTOS",
    "SVHN",
    "USPS",
    "DigitDataError",
    "Digits",
    "DigitsM",
    "MissingDigitFile",
    "RealDigits",
]
