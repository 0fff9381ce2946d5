"""Finds and loads the native extension ``kvmerge._native``.

Search order (first hit wins):

1. ``$KVMERGE_BUILD_DIR/python/kvmerge/_native*.so`` (an explicit build tree);
2. ``_native*.so`` inside this package (``pip install ./python`` copies it there);
3. the repo's ``build/python/kvmerge/_native*.so`` (``scripts/setup.sh``).

``KVMERGE_NO_NATIVE=1`` disables it (everything falls back to the ``kvmerge-run`` subprocess,
or raises :class:`~kvmerge.errors.NativeUnavailableError` where there is no fallback).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Optional

from .errors import CompileError, NativeUnavailableError

_PACKAGE = Path(__file__).resolve().parent
_REPO = _PACKAGE.parents[1]
_lock = threading.Lock()
_state: dict = {}


def _candidates():
    env = os.environ.get("KVMERGE_BUILD_DIR")
    if env:
        yield Path(env) / "python" / "kvmerge"
    yield _PACKAGE
    yield _REPO / "build" / "python" / "kvmerge"


def _find() -> Optional[Path]:
    for directory in _candidates():
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = directory / f"_native{suffix}"
            if path.is_file():
                return path
    return None


def _load() -> ModuleType:
    if os.environ.get("KVMERGE_NO_NATIVE", "") not in ("", "0"):
        raise NativeUnavailableError("kvmerge._native is disabled (KVMERGE_NO_NATIVE is set)")
    path = _find()
    if path is None:
        where = ", ".join(str(d) for d in _candidates())
        raise NativeUnavailableError(
            f"kvmerge._native is not built (looked in {where}): run scripts/setup.sh or "
            f"`ninja -C build _native`, or set KVMERGE_BUILD_DIR")
    spec = importlib.util.spec_from_file_location("kvmerge._native", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as e:
        raise NativeUnavailableError(f"cannot load {path}: {e}") from e
    sys.modules["kvmerge._native"] = module
    module.set_error_class(CompileError)
    return module


def native() -> ModuleType:
    """The loaded ``kvmerge._native`` module; raises NativeUnavailableError if there is none."""
    with _lock:
        if "module" not in _state and "error" not in _state:
            try:
                _state["module"] = _load()
            except NativeUnavailableError as e:
                _state["error"] = e
        if "error" in _state:
            raise _state["error"]
        return _state["module"]


def available() -> bool:
    """Whether the native extension can be loaded (loads it on first call)."""
    try:
        native()
        return True
    except NativeUnavailableError:
        return False


def location() -> Optional[str]:
    """Path of the loaded native extension, or None."""
    return getattr(_state.get("module"), "__file__", None)
