"""Run MLIR pass pipelines (kvmerge and upstream passes) on MLIR text (needs ``kvmerge._native``).

>>> import kvmerge
>>> out = kvmerge.passes.run(src, "builtin.module(kvmerge-decompose-compress)")
>>> out = kvmerge.passes.run(src, "kvmerge-decompose-compress,canonicalize")   # same nesting
>>> llvm_dialect = kvmerge.passes.lower_to_llvm(src)

Pass names are those of ``kvmerge-opt --help``: ``kvmerge-decompose-compress``,
``convert-kvcache-to-loops``, the pipeline ``kvmerge-lower-to-llvm``, and every upstream pass.
"""

from __future__ import annotations

from ._loader import native
from .ir import _text

__all__ = ["run", "decompose", "lower_to_llvm"]


def run(source: str, pipeline: str, *, name: str = "<source>", generic: bool = False) -> str:
    """Runs ``pipeline`` on the module in ``source`` and returns the printed result.

    ``pipeline`` is MLIR's textual pipeline syntax, either anchored
    (``"builtin.module(kvmerge-decompose-compress)"``) or a bare list of module passes
    (``"kvmerge-decompose-compress,cse"``). An unknown pass or bad option raises ValueError
    naming ``pipeline``; a failing pass raises :class:`kvmerge.CompileError` with its diagnostics.
    """
    return native().run_pipeline(_text(source, "source"), _text(pipeline, "pipeline"),
                                 _text(name, "name"), bool(generic))


def decompose(source: str, *, name: str = "<source>") -> str:
    """``kvcache.compress`` ops split into the spec's steps (``kvmerge-decompose-compress``)."""
    return run(source, "builtin.module(kvmerge-decompose-compress)", name=name)


def lower_to_llvm(source: str, *, name: str = "<source>") -> str:
    """The whole CPU lowering (``kvmerge-lower-to-llvm``), as LLVM-dialect MLIR text."""
    return run(source, "builtin.module(kvmerge-lower-to-llvm)", name=name)
