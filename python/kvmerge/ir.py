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

#: Targets :func:`compile` knows; only "cpu" is built.
TARGETS = ("cpu", "nvvm")


def parse(source: str, *, name: str = "<source>", generic: bool = False) -> str:
    """Parses and verifies ``source`` and prints it back (``generic=True``: generic op form).

    Raises :class:`kvmerge.CompileError` with the diagnostics (``name:line:col: error: ...``)
    when the text does not parse or verify.
    """
    return native().parse(_text(source, "source"), _text(name, "name"), bool(generic))


def compile(source: str, target: str = "cpu", *, name: str = "<source>",
            emit_c_interface: bool = True) -> str:
    """Compiles ``source`` to LLVM IR text.

    ``target="cpu"``: the kvmerge CPU pipeline (``kvmerge-lower-to-llvm``: decompose, loops,
    bufferize, LLVM dialect), then MLIR's LLVM IR translation. Public functions take their
    tensor results as out-parameters; with ``emit_c_interface`` each also gets an
    ``_mlir_ciface_NAME`` wrapper taking memref descriptors.

    ``target="nvvm"`` raises NotImplementedError (the GPU backend is not built yet); another
    target raises ValueError. Compilation failures raise :class:`kvmerge.CompileError`.
    """
    if target == "nvvm":
        raise NotImplementedError(
            "target 'nvvm': the GPU (NVVM/PTX) backend of kvmerge is not built yet; "
            "only target='cpu' is available")
    if target != "cpu":
        raise ValueError(f"target: unknown target {target!r} (available: 'cpu'; 'nvvm' is planned)")
    return native().translate_to_llvm_ir(_text(source, "source"), _text(name, "name"),
                                         bool(emit_c_interface))


def _text(value, argument: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{argument}: expected MLIR text (str), got {type(value).__name__}")
    return value
