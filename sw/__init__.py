"""fxbp's software side: fixed-point core, golden model, float reference, runtimes, CLI.

The names below load on first use, so ``fxbp --help`` (and anything else that does
not compute) never imports numba. Before numba is first imported, a numba cache
directory that works is arranged (:func:`_ensure_numba_cache`).
"""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["FxbpError", "QFormat", "Rounding", "Overflow", "CastEvents", "cast", "quantize",
           "exact_matmul", "PrecisionProfile", "Stage", "load_profile", "TrainConfig", "Trainer"]

_EXPORTS = {
    "FxbpError": "errors", "QFormat": "fixed", "Rounding": "fixed", "Overflow": "fixed",
    "CastEvents": "fixed", "cast": "fixed", "quantize": "fixed", "exact_matmul": "fixed",
    "PrecisionProfile": "profile", "Stage": "profile", "load_profile": "profile",
    "TrainConfig": "train", "Trainer": "train",
}


#: The temporary numba cache directory fxbp set up, when no other was writable (else None).
numba_cache_fallback: str | None = None


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


def _can_cache_in(directory: Path) -> bool:
    """Whether numba could keep its cache in ``directory``: the same test numba makes
    (create the directory, then a temporary file in it)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=directory).close()
        return True
    except OSError:
        return False


def numba_user_cache_dir() -> Path:
    """numba's user-wide cache directory on this platform (its fallback when the
    package directory is read-only), without importing numba."""
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "numba" / "cache"
    if os.uname().sysname == "Darwin":
        return Path.home() / "Library" / "Caches" / "numba"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "numba"


def _ensure_numba_cache() -> None:
    """Give numba a writable cache before it is imported.

    numba caches compiled kernels (``cache=True``) next to the sources, else in the
    user cache directory, and raises on import when neither is writable (a
    read-only install with an unwritable home). Then ``NUMBA_CACHE_DIR`` is set to
    a fresh temporary directory, removed at exit. A ``NUMBA_CACHE_DIR`` the user
    set is left alone.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    here = Path(__file__).resolve().parent
    sources = [d for d in (here, here.parent / "sim", here.parent / "hw") if d.is_dir()]
    if all(_can_cache_in(d / "__pycache__") for d in sources):
        return
    try:
        if _can_cache_in(numba_user_cache_dir()):
            return
    except (OSError, RuntimeError):          # no home directory at all
        pass
    global numba_cache_fallback
    fallback = tempfile.mkdtemp(prefix="fxbp-numba-cache-")
    atexit.register(shutil.rmtree, fallback, ignore_errors=True)
    os.environ["NUMBA_CACHE_DIR"] = numba_cache_fallback = fallback


_ensure_numba_cache()
