"""Where and how rendered SynthRooms samples live on disk, so rendering is paid once per machine.

Layout: ``<cache_dir>/synthrooms/<fingerprint>/<look>-seed<seed>-<H>x<W>/<split>/<index>.npz``, one uncompressed
``np.savez`` file per sample holding its stored form (see ``domain._compact``); samples of the rich class set live in
``<look>-rich-seed<seed>-<H>x<W>`` instead. A sample is a pure function of ``(seed, split, index, look, image shape,
class set)`` and of the generator's code, so the split's size is not part of the key and the generator's code is,
through :func:`generator_fingerprint`. ``cache_dir`` defaults to
:func:`default_cache_dir`; ``python -m data_modules.synthrooms --cache-info`` / ``--clear-cache`` inspect and clear it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
"""Version of the on-disk layout and array names; bump it when they change."""

GENERATOR_FILES = ("scene.py", "render.py", "looks.py", "textures.py", "domain.py")
"""The modules, in this package, whose source decides a sample's pixels."""

KEYS = ("image", "depth", "normals", "segmentation", "edges")
"""Array names in each file, in the order of the stored tuple."""

_DTYPES = (np.uint8, np.float32, np.float32, np.uint8, np.uint8)
_CHANNELS = (3, None, 3, None, None)  # trailing channel axis per array, None for (H, W)

_warned_unwritable = False


@lru_cache(maxsize=1)
def generator_fingerprint() -> str:
    """16 hex digits identifying the generator: a hash of the source bytes of the generator modules
    (:data:`GENERATOR_FILES`), the cache format version and the numpy, scikit-image and OpenCV versions.

    Any edit to the generator's code (or an upgrade of those libraries) changes it, so stale samples are never read:
    they stay in another folder until cleared. Computed once per process.
    """
    import cv2
    import skimage

    digest = hashlib.sha256(f"format {FORMAT_VERSION}\n".encode())
    here = Path(__file__).resolve().parent
    for name in GENERATOR_FILES:
        digest.update(f"{name}\n".encode())
        digest.update((here / name).read_bytes())
    versions = {"numpy": np.__version__, "scikit-image": skimage.__version__, "cv2": cv2.__version__}
    digest.update("".join(f"\n{library} {version}" for library, version in versions.items()).encode())
    return digest.hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$UMADAPT_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/umadapt``, else ``~/.cache/umadapt``."""
    if os.environ.get("UMADAPT_CACHE_DIR"):
        return Path(os.environ["UMADAPT_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "umadapt"
    return Path.home() / ".cache" / "umadapt"


def synthrooms_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding every SynthRooms fingerprint folder: ``<cache_dir>/synthrooms``."""
    return (default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()) / "synthrooms"


class SampleStore:
    """The stored samples of one ``(look, seed, image shape, class set)`` under ``cache_dir`` for the current
    generator.

    Holds paths and plain values only, so it pickles into DataLoader workers. Reads are safe against missing,
    truncated or foreign files (they read as ``None``); writes are atomic (a temporary file in the same folder, then
    ``os.replace``), so concurrent processes never see a partial file. If writing fails (read-only folder, full
    disk) it warns once per process and stops writing; the dataset then just renders.
    """

    def __init__(
        self,
        look: str,
        seed: int,
        image_size: tuple[int, int],
        cache_dir: str | os.PathLike | None = None,
        fingerprint: str | None = None,
        classes: str = "basic",
    ) -> None:
        self.shape = (int(image_size[0]), int(image_size[1]))
        self.fingerprint = fingerprint or generator_fingerprint()
        label = look if classes == "basic" else f"{look}-{classes}"  # basic keeps its historical folder names
        name = f"{label}-seed{int(seed)}-{self.shape[0]}x{self.shape[1]}"
        self.folder = synthrooms_root(cache_dir) / self.fingerprint / name
        self.writable = True

    def path(self, split: str, index: int) -> Path:
        """The file of sample ``index`` of ``split``."""
        return self.folder / split / f"{int(index)}.npz"

    def _valid(self, arrays: tuple[np.ndarray, ...]) -> bool:
        for array, dtype, channels in zip(arrays, _DTYPES, _CHANNELS):
            shape = self.shape if channels is None else (*self.shape, channels)
            if array.dtype != dtype or array.shape != shape:
                return False
        return True

    def load(self, split: str, index: int) -> tuple[np.ndarray, ...] | None:
        """The stored tuple of sample ``index`` of ``split``, or ``None`` if it is missing or unusable (truncated,
        corrupt, or with other arrays, shapes or dtypes): the caller renders it again and saves it over the file."""
        try:
            with np.load(self.path(split, index), allow_pickle=False) as archive:
                if sorted(archive.files) != sorted(KEYS):
                    return None
                arrays = tuple(archive[key] for key in KEYS)  # reading checks each member's CRC-32
        except Exception:  # missing or unreadable (OSError, BadZipFile, ValueError, EOFError...): a miss, never a crash
            return None
        return arrays if self._valid(arrays) else None

    def save(self, split: str, index: int, stored: tuple[np.ndarray, ...]) -> None:
        """Write sample ``index`` of ``split`` atomically; on an ``OSError`` warn (once per process), stop writing."""
        if not self.writable:
            return
        target = self.path(split, index)
        temporary = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".tmp", dir=target.parent)
            with os.fdopen(handle, "wb") as file:
                np.savez(file, **dict(zip(KEYS, stored)))
            os.replace(temporary, target)
            temporary = None
        except OSError as error:
            self.writable = False
            _warn_unwritable(self.folder, error)
        finally:
            if temporary is not None:
                try:
                    os.unlink(temporary)
                except OSError:
                    pass


def _warn_unwritable(folder: Path, error: OSError) -> None:
    global _warned_unwritable
    if _warned_unwritable:
        return
    _warned_unwritable = True
    warnings.warn(
        f"SynthRooms disk cache disabled: cannot write under {folder} ({error}); samples are rendered in each "
        "process. Set UMADAPT_CACHE_DIR (or the domain's cache_dir) to a writable folder, or disk_cache: false.",
        RuntimeWarning,
        stacklevel=3,
    )


def cache_summary(cache_dir: str | os.PathLike | None = None) -> list[tuple[str, int, int, bool]]:
    """``(fingerprint, number of files, bytes, is current)`` for each fingerprint folder, sorted by name."""
    root = synthrooms_root(cache_dir)
    if not root.is_dir():
        return []
    current = generator_fingerprint()
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = [p for p in folder.rglob("*") if p.is_file()]
        rows.append((folder.name, len(files), sum(p.stat().st_size for p in files), folder.name == current))
    return rows


def clear_cache(cache_dir: str | os.PathLike | None = None) -> tuple[Path, int, int]:
    """Remove ``<cache_dir>/synthrooms`` (every fingerprint); return that folder, the files and bytes removed."""
    root = synthrooms_root(cache_dir)
    rows = cache_summary(cache_dir)
    if root.exists():
        shutil.rmtree(root)
    return root, sum(row[1] for row in rows), sum(row[2] for row in rows)
