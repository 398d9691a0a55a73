"""Errors of the real-dataset readers: each names the path tried, the layout expected and where the data comes from.

Both are :class:`~umadapt.errors.ConfigError` (``ValueError``): the ``umadapt`` command prints them as one line.
They survive DataLoader workers: pickling keeps the constructor's arguments, and torch's re-raise in the main
process (``type(error)(text)``, ``text`` holding the worker's whole traceback) is rebuilt into the original message.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from umadapt.errors import ConfigError

DOWNLOAD_FIX = "Replace the file from the original download"
OWN_DATA_FIX = "Fix or remove that file (`umadapt check-data --config ...` lists every bad file at once)"
SKIP_HINT = ", or set skip_bad_files: true to skip unreadable files (each skip is counted and reported)."


def worker_message(text: str, error_type: type) -> str:
    """The original message inside ``text`` when ``text`` is the one string torch's DataLoader passes when it
    re-raises a worker's error ("Caught X in DataLoader worker process N. Original Traceback ... module.X: <message>");
    ``text`` itself otherwise."""
    marker = f"{error_type.__module__}.{error_type.__qualname__}: "
    at = text.rfind(marker)
    if not text.startswith(f"Caught {error_type.__name__} ") or at < 0:
        return text
    return text[at + len(marker) :].rstrip()


class ReaderError(ConfigError):
    """Base of the readers' errors: pickles by its constructor's arguments (so it crosses process boundaries)."""

    def __init__(self, message: str, init_args: tuple[Any, ...]) -> None:
        super().__init__(message)
        self.init_args = init_args

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return type(self), self.init_args


class DatasetNotFoundError(ReaderError, FileNotFoundError):
    """A dataset root, split file or expected folder is missing.

    A ``ValueError`` (so the ``umadapt`` command prints it without a traceback) and a ``FileNotFoundError``.
    ``DatasetNotFoundError(message)`` alone rebuilds an error re-raised from a DataLoader worker.
    """

    def __init__(
        self, dataset: str, tried: str | Path | None = None, layout: str = "", obtain: str = "", hint: str = ""
    ) -> None:
        self.dataset, self.tried, self.layout, self.obtain = dataset, str(tried or ""), layout, obtain
        if tried is None:
            message = worker_message(dataset, type(self))
        else:
            message = f"{dataset}: not found: {tried}\nExpected layout:\n{layout.rstrip()}\nObtain it from: {obtain}"
            if hint:
                message += f"\n{hint}"
        super().__init__(message, (dataset, tried, layout, obtain, hint))


class CorruptFileError(ReaderError):
    """A data file exists but cannot be read (truncated, not an image, wrong shape or dtype), or is inconsistent.

    Args:
        path: the file (or folder) at fault.
        problem: what is wrong with it; ``None``: ``path`` is a whole message (a DataLoader worker's re-raise).
        fix: what to do about it: :data:`DOWNLOAD_FIX` for datasets as distributed, :data:`OWN_DATA_FIX` for a
            user's own files.
    """

    def __init__(self, path: str | Path, problem: str | None = None, fix: str = DOWNLOAD_FIX) -> None:
        if problem is None:
            message = worker_message(str(path), type(self))
            found = re.match(r"Cannot read (.+?): (.*)", message, re.DOTALL)
            self.path, self.problem = (found.group(1), found.group(2)) if found else ("", message)
        else:
            self.path, self.problem = str(path), problem
            message = f"Cannot read {path}: {problem}. {fix}{SKIP_HINT}"
        self.fix = fix
        super().__init__(message, (path, problem, fix))

    def with_fix(self, fix: str) -> CorruptFileError:
        """The same error, with another fix (a reader of a user's own files uses :data:`OWN_DATA_FIX`)."""
        return self if self.init_args[1] is None else type(self)(self.path, self.problem, fix)
