"""MLIR text in and out: parse/verify/print and compile to LLVM IR (needs ``kvmerge._native``).

Every function takes MLIR source text that may use the ``kvcache`` dialect and any upstream
dialect (func, tensor, linalg, arith, math, scf, memref, llvm, ...).

>>> import kvmerge
>>> text = kvmerge.ir.parse(src)                      # canonical pretty form, verified
>>> llvm_ir = kvmerge.compile(src, target="cpu")      # '; ModuleID = ...' with 'define ...'
"""

from __future__ import annotations

from ._loader import native

__all__ = ["parse", "compile", "TARGETS"]

#: Targets :func:`compile` knows.
TARGETS = ("cpu", "nvvm")


def parse(source: str, *, name: str = "<source>", generic: bool = False) -> str:
    """Parses and verifies ``source`` and prints it back (``generic=True``: generic op form).

    Raises :class:`kvmerge.CompileError` with the diagnostics (``name:line:col: error: ...``)
    when the text does not parse or verify.
    """
    return native().parse(_text(source, "source"), _text(name, "name"), bool(generic))


def compile(source: str, target: str = "cpu", *, name: str = "<source>",
            emit_c_interface: bool = True, chip: str = "sm_90a", features: str = "+ptx80"):
    """Compiles ``source`` for a target.

    ``target="cpu"``: the kvmerge CPU pipeline (``kvmerge-lower-to-llvm``: decompose, loops,
    bufferize, LLVM dialect), then MLIR's LLVM IR translation; returns the LLVM IR text. Public
    functions take their tensor results as out-parameters; with ``emit_c_interface`` each also
    gets an ``_mlir_ciface_NAME`` wrapper taking memref descriptors.

    ``target="nvvm"``: the GPU pipeline (``kvmerge-lower-to-nvvm{chip, features}``, see
    docs/gpu.md); returns ``{kernel: PTX text}``, one entry per GPU kernel (the host side that
    launches them stays inside kvmerge). Any other target raises ValueError; compilation failures
    raise :class:`kvmerge.CompileError`.
    """
    if target == "nvvm":
        return _compile_ptx(_text(source, "source"), _text(chip, "chip"), _text(features, "features"))
    if target != "cpu":
        raise ValueError(f"target: unknown target {target!r} (available: {', '.join(TARGETS)})")
    return native().translate_to_llvm_ir(_text(source, "source"), _text(name, "name"),
                                         bool(emit_c_interface))


def _compile_ptx(source: str, chip: str, features: str) -> dict:
    import tempfile
    from pathlib import Path

    if not chip.startswith("sm_") or any(c in chip + features for c in " {}="):
        raise ValueError(f"chip/features: expected e.g. chip='sm_90a', features='+ptx80', "
                         f"got {chip!r}, {features!r}")
    with tempfile.TemporaryDirectory(prefix="kvmerge-ptx-") as tmp:
        native().run_pipeline(source, f"builtin.module(kvmerge-lower-to-nvvm{{chip={chip} "
                                      f"features={features} dump-ptx={tmp}}})")
        return {p.name.split(".")[0]: p.read_text() for p in sorted(Path(tmp).glob("*.ptx"))}


def _text(value, argument: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{argument}: expected MLIR text (str), got {type(value).__name__}")
    return value
