"""The GPU check, in two steps (docs/gpu.md, ``scripts/gpu-check.sh``).

``python -m kvmerge.gpucheck prepare DIR`` (here, with the kvmerge build): compiles every case's
module ahead of time for the GPU (:mod:`kvmerge.aot`, default ``sm_90a``), writes the inputs and
the expected outputs of :mod:`kvmerge.reference` for the small cases, and a manifest
(``DIR/manifest.json``), all well under the 64 MiB a working tree may carry to a GPU machine.

``python -m kvmerge.gpucheck run DIR --out OUT`` (there): needs only Python with NumPy and PyTorch
and a CUDA driver (no LLVM, no MLIR, no kvmerge build, no network). It checks every case against
its expectation (the reference's, or :mod:`kvmerge.torch_ref` on the GPU for caches too large to
ship), times the fused compress against a device-to-device copy and decode attention over the
compressed against the full cache, both against PyTorch eager, and writes everything under OUT.

Modules: :mod:`.cases` (the case grid and the manifest; NumPy only), :mod:`.prepare` (needs the
build), :mod:`.checks` (comparisons and tie-aware diagnosis of slot-map mismatches; torch), :mod:`.run` (the run step).
"""
