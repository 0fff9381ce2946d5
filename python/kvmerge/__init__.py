"""kvmerge — KV-cache merging (KVMerger) as an MLIR compiler feature.

Submodules:
  kvmerge.reference  NumPy oracle of shared/spec/kvmerger.md (no compiler needed).
"""
from . import reference

__all__ = ["reference"]
