"""kvmerge — KV-cache merging (KVMerger) as an MLIR compiler feature.

NumPy in, NumPy out (same arguments, same results):

  kvmerge.reference            NumPy oracle of the spec (no compiler needed)
  kvmerge.compress(...)        the same function, compiled by kvmerge and run on the CPU
  kvmerge.attention(...)       attention over a compressed cache, compiled
  kvmerge.compiled             the MLIR builders and the runner behind them

The compiler, on MLIR text (needs the native extension ``kvmerge._native``):

  kvmerge.parse(src)                                 parse + verify + print (kvcache + upstream)
  kvmerge.passes.run(src, "builtin.module(kvmerge-decompose-compress)")
  kvmerge.compile(src, target="cpu")                 LLVM IR text (target="nvvm": {kernel: PTX})
  kvmerge.jit.load(src).run("fn", *arrays)           in-process JIT on NumPy arrays

Errors: MLIR failures raise :class:`CompileError` (a RuntimeError) carrying the diagnostics; bad
arguments raise ValueError naming the argument. ``kvmerge.native_available()`` tells whether the
extension loads (it is looked up in ``$KVMERGE_BUILD_DIR``, this package, then the repo's
``build/``); without it ``compress``/``attention`` run through a ``kvmerge-run`` subprocess.
See docs/python.md.
"""
from . import reference
from ._loader import available as native_available
from .compiled import attention, compress
from .errors import CompileError, NativeUnavailableError
from .ir import compile, parse
from . import ir, jit, passes  # noqa: E402  (after the names they import)

__all__ = ["reference", "compress", "attention", "CompileError", "NativeUnavailableError",
           "parse", "compile", "ir", "passes", "jit", "native_available"]
