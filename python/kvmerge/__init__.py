"""kvmerge — KV-cache merging (KVMerger) as an MLIR compiler feature.

  kvmerge.reference            NumPy oracle of shared/spec/kvmerger.md (no compiler needed)
  kvmerge.compress(...)        the same function, compiled by kvmerge and run on the CPU
  kvmerge.attention(...)       attention over a compressed cache, compiled
  kvmerge.compiled             MLIR builders and the runner behind them
"""
from . import reference
from .compiled import CompileError, attention, compress

__all__ = ["reference", "compress", "attention", "CompileError"]
