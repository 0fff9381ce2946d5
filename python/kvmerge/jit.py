"""In-process JIT: compile an MLIR module once, call its functions on NumPy arrays.

The module is lowered with the kvmerge CPU pipeline and JIT-compiled by ``mlir::ExecutionEngine``
in this process (``kvmerge::runtime::Runner``, the library behind ``kvmerge-run``), on first use.
Inputs are borrowed without a copy when they are C-contiguous and of the function's element type;
outputs are freshly allocated NumPy arrays.

>>> exe = kvmerge.jit.load(src)             # cached by source text
>>> exe.functions
['compress']
>>> keys, values, positions, counts, scores, lengths = exe.run("compress", k, v, a)

Element types: f16, bf16 (``ml_dtypes.bfloat16``), f32, f64, i8, i32, i64. Needs ``kvmerge._native``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ._loader import native
from .ir import _text

try:
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None

__all__ = ["Executable", "TensorSpec", "Signature", "load", "clear_cache", "DTYPES", "default_threads",
           "allocator_stats", "release_allocator_cache"]

#: MLIR element type -> NumPy dtype.
DTYPES = {
    "f16": np.dtype(np.float16),
    "f32": np.dtype(np.float32),
    "f64": np.dtype(np.float64),
    "i8": np.dtype(np.int8),
    "i32": np.dtype(np.int32),
    "i64": np.dtype(np.int64),
}
if ml_dtypes is not None:
    DTYPES["bf16"] = np.dtype(ml_dtypes.bfloat16)
_ELEMENT_TYPES = {dtype: name for name, dtype in DTYPES.items()}


class TensorSpec(NamedTuple):
    """One argument or result: MLIR element type, NumPy dtype, shape (None = dynamic)."""
    element_type: str
    dtype: Optional[np.dtype]
    shape: Tuple[Optional[int], ...]
    is_tensor: bool


class Signature(NamedTuple):
    inputs: Tuple[TensorSpec, ...]
    results: Tuple[TensorSpec, ...]


def _spec(t) -> TensorSpec:
    elt, shape, is_tensor = t
    return TensorSpec(elt, DTYPES.get(elt), tuple(shape), bool(is_tensor))


def _buffer(a: np.ndarray):
    """What the native side reads: bf16 travels as its uint16 bit pattern (no buffer format)."""
    return a.view(np.uint16) if ml_dtypes is not None and a.dtype == DTYPES.get("bf16") else a


class Executable:
    """A parsed and verified MLIR module whose public functions can be called on NumPy arrays.

    Parsing happens here (errors raise :class:`kvmerge.CompileError`); lowering and JIT compilation
    happen on :meth:`compile` or the first :meth:`run`.
    """

    def __init__(self, source: str, *, name: str = "<source>", opt_level: int = 3):
        if not isinstance(opt_level, int) or not 0 <= opt_level <= 3:
            raise ValueError(f"opt_level: expected an int in 0..3, got {opt_level!r}")
        self._exe = native().Executable(_text(source, "source"), _text(name, "name"), opt_level)
        self._signatures = {}

    @property
    def functions(self) -> List[str]:
        """Names of the runnable public functions of the module."""
        return list(self._exe.functions)

    def signature(self, function: str) -> Signature:
        """Element types and shapes of ``function``'s inputs and results."""
        sig = self._signatures.get(function)
        if sig is None:
            inputs, results = self._exe.signature(_text(function, "function"))
            sig = Signature(tuple(map(_spec, inputs)), tuple(map(_spec, results)))
            self._signatures[function] = sig
        return sig

    def compile(self) -> "Executable":
        """Lowers and JIT-compiles the module now (otherwise the first run does). Idempotent."""
        self._exe.compile()
        return self

    def run(self, function: str, *inputs, threads: Optional[int] = None) -> List[np.ndarray]:
        """Calls ``function`` on ``inputs`` and returns its results as new NumPy arrays.

        Each input must have the argument's element type (NumPy arrays are not cast: a wrong dtype
        raises ValueError naming ``inputs[i]``) and shape; Python scalars and lists are converted.
        Non-contiguous arrays are copied. Compiled code never writes into inputs. ``threads``: the
        threads its parallel loops run on (None: :func:`default_threads`); results do not depend
        on it.
        """
        nthreads = check_threads(threads)
        sig = self.signature(function)
        if len(inputs) != len(sig.inputs):
            raise ValueError(f"inputs: {function!r} takes {len(sig.inputs)} input"
                             f"{'' if len(sig.inputs) == 1 else 's'}, got {len(inputs)}")
        args = [self._input(i, x, spec) for i, (x, spec) in enumerate(zip(inputs, sig.inputs))]
        outputs = []
        for i, spec in enumerate(sig.results):
            if spec.dtype is None or any(d is None for d in spec.shape):
                raise ValueError(f"{function}: result {i} has type {spec.element_type} with shape "
                                 f"{spec.shape}: results need static shapes and a supported type")
            outputs.append(np.zeros(spec.shape, spec.dtype))
        self._exe.invoke(function, [(s.element_type, _buffer(a)) for a, s in zip(args, sig.inputs)],
                         [(s.element_type, _buffer(o)) for o, s in zip(outputs, sig.results)], nthreads)
        return outputs

    __call__ = run

    @staticmethod
    def _input(i: int, x, spec: TensorSpec) -> np.ndarray:
        if spec.dtype is None:
            raise ValueError(f"inputs[{i}]: element type {spec.element_type} is not supported")
        if isinstance(x, np.ndarray) or hasattr(x, "__array_interface__"):
            a = np.asarray(x)
            if a.dtype != spec.dtype:
                raise ValueError(f"inputs[{i}]: expected dtype {spec.dtype.name} "
                                 f"({spec.element_type}), got {a.dtype.name}")
        else:
            a = np.asarray(x, dtype=spec.dtype)
        if a.ndim != len(spec.shape) or any(d is not None and d != n for d, n in zip(spec.shape, a.shape)):
            want = "x".join("?" if d is None else str(d) for d in spec.shape)
            raise ValueError(f"inputs[{i}]: expected shape [{want}], got {list(a.shape)}")
        return np.ascontiguousarray(a)


def default_threads() -> int:
    """Threads compiled code uses when none are given: ``$KVMERGE_THREADS``, else every CPU this
    process may run on. ValueError names ``KVMERGE_THREADS`` when it is set but invalid."""
    return native().default_threads()


def allocator_stats() -> dict:
    """Counters of the runtime's caching allocator, through which compiled code allocates its
    buffers: ``large_allocations`` (of 64 KiB or more), ``reused`` (served from freed blocks),
    ``cached_bytes`` / ``cached_blocks`` (kept now), ``budget_bytes`` (``$KVMERGE_ALLOC_CACHE_MB``,
    default 1024; 0 turns the cache off)."""
    return dict(native().allocator_stats())


def release_allocator_cache() -> None:
    """Frees the blocks the runtime's allocator keeps for reuse."""
    native().release_allocator_cache()


def check_threads(threads) -> int:
    """``threads`` as the native side takes it (0 = default); ValueError naming ``threads``."""
    if threads is None:
        default_threads()  # an invalid KVMERGE_THREADS raises here
        return 0
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= 1024:
        raise ValueError(f"threads: expected None or an int in 1..1024, got {threads!r}")
    return int(threads)


_CACHE_SIZE = 64
_cache: "OrderedDict[tuple, Executable]" = OrderedDict()
_cache_lock = threading.Lock()


def load(source: str, *, name: str = "<source>", opt_level: int = 3) -> Executable:
    """An :class:`Executable` for ``source``, shared by every call with the same text.

    Keeps the last 64 modules (compiled code included), so repeated calls with the same shapes
    and policy compile once per process.
    """
    key = (source, name, opt_level)
    with _cache_lock:
        exe = _cache.get(key)
        if exe is not None:
            _cache.move_to_end(key)
            return exe
    exe = Executable(source, name=name, opt_level=opt_level)
    with _cache_lock:
        exe = _cache.setdefault(key, exe)
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return exe


def clear_cache() -> None:
    """Forgets every cached :class:`Executable` (their compiled code is freed once unreferenced)."""
    with _cache_lock:
        _cache.clear()


def cache_info() -> dict:
    with _cache_lock:
        return {"size": len(_cache), "capacity": _CACHE_SIZE}
