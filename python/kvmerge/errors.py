"""Exceptions of the kvmerge package."""

from __future__ import annotations

__all__ = ["CompileError", "NativeUnavailableError"]


class CompileError(RuntimeError):
    """MLIR could not parse, verify, lower or JIT-compile a module.

    The message carries the MLIR diagnostics (``<source>:LINE:COL: error: ...``), whether they
    come from the in-process bindings (``kvmerge._native``) or from a ``kvmerge-run`` subprocess.
    """


class NativeUnavailableError(ImportError):
    """The native extension ``kvmerge._native`` is not built or cannot be loaded.

    Build it with ``scripts/setup.sh`` (or ``ninja -C build _native``), point ``KVMERGE_BUILD_DIR``
    at the build tree, or ``pip install ./python`` after building. ``kvmerge.reference`` and
    ``kvmerge.compress`` / ``kvmerge.attention`` (through ``kvmerge-run``) work without it.
    """
