"""Errors of the real-dataset readers: each names the path tried, the layout expected and where the data comes from."""

from __future__ import annotations

from pathlib import Path

from umadapt.errors import ConfigError


class DatasetNotFoundError(ConfigError, FileNotFoundError):
    """A dataset root, split file or expected folder is missing.

    A ``ValueError`` (so the ``umadapt`` command prints it without a traceback) and a ``FileNotFoundError``.
    """

    def __init__(self, dataset: str, tried: str | Path, layout: str, obtain: str, hint: str = "") -> None:
        self.dataset, self.tried, self.layout, self.obtain = dataset, str(tried), layout, obtain
        message = (
            f"{dataset}: not found: {tried}\n"
            f"Expected layout:\n{layout.rstrip()}\n"
            f"Obtain it from: {obtain}"
        )
        if hint:
            message += f"\n{hint}"
        super().__init__(message)


class CorruptFileError(ValueError):
    """A data file exists but cannot be read (truncated, not an image, wrong shape or dtype)."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        super().__init__(
            f"Cannot read {path}: {problem}. Replace the file from the original download, or set "
            "skip_bad_files: true to skip unreadable files (each skip is counted and reported)."
        )
