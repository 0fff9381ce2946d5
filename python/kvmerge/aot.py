"""Ahead-of-time artifacts from Python: build with ``kvmerge-aot``, load and call with ctypes.

An artifact is a shared object built by ``kvmerge-aot`` (docs/aot.md) for ``target="cpu"`` or
``target="cuda"``; it needs neither LLVM nor MLIR, and neither does this module: loading and
calling needs only NumPy (and ``ml_dtypes`` for bfloat16 arrays; without it bf16 results come back
as raw ``uint16``). Only :func:`build` needs a kvmerge build (it runs the ``kvmerge-aot`` tool).

    >>> from kvmerge import aot
    >>> art = aot.build(source, "libc.so", target="cuda", chip="sm_90a")   # on the build machine
    >>> art = aot.load("libc.so")                                        # anywhere
    >>> keys, values, positions, counts, scores, lengths = art.call("compress", k, v, a)

Errors: bad arguments raise ``ValueError`` naming the argument; a missing driver or GPU, kernels
that do not load on this GPU and device failures raise :class:`DeviceError`; a file that is not an
artifact raises :class:`ArtifactError`.
"""
from __future__ import annotations

import ctypes
import os
import re
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

try:
    import ml_dtypes

    _BF16: Optional[np.dtype] = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - the project installs ml_dtypes
    _BF16 = None

__all__ = ["ABI_VERSION", "Artifact", "ArtifactError", "DeviceError", "Function", "Value", "build", "load"]

ABI_VERSION = 1  # KVMERGE_AOT_ABI_VERSION
_OK, _INVALID, _DEVICE, _BAD = 0, 1, 2, 3
_DTYPE_NAMES = {1: "f16", 2: "bf16", 3: "f32", 4: "f64", 5: "i8", 6: "i32", 7: "i64"}
_DTYPE_CODES = {v: k for k, v in _DTYPE_NAMES.items()}
_NUMPY = {"f16": np.dtype(np.float16), "f32": np.dtype(np.float32), "f64": np.dtype(np.float64),
          "i8": np.dtype(np.int8), "i32": np.dtype(np.int32), "i64": np.dtype(np.int64)}


class ArtifactError(RuntimeError):
    """The file is not a (compatible) kvmerge-aot artifact."""


class DeviceError(RuntimeError):
    """The artifact's device is unavailable or failed during a call."""


class Value(NamedTuple):
    """One argument or result: MLIR type, dtype name, tensor or scalar, shape (None = dynamic)."""

    type: str
    dtype: str
    is_tensor: bool
    shape: Tuple[Optional[int], ...]


class Function(NamedTuple):
    name: str
    inputs: Tuple[Value, ...]
    results: Tuple[Value, ...]

    def __str__(self) -> str:
        return (f"{self.name}({', '.join(v.type for v in self.inputs)}) -> "
                f"({', '.join(v.type for v in self.results)})")


class _CValue(ctypes.Structure):
    _fields_ = [("type", ctypes.c_char_p), ("dtype", ctypes.c_int32), ("is_tensor", ctypes.c_int32),
                ("rank", ctypes.c_int32), ("shape", ctypes.POINTER(ctypes.c_int64))]


class _CFunction(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("num_inputs", ctypes.c_int32), ("num_results", ctypes.c_int32),
                ("inputs", ctypes.POINTER(_CValue)), ("results", ctypes.POINTER(_CValue))]


class _CTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int32), ("rank", ctypes.c_int32),
                ("shape", ctypes.POINTER(ctypes.c_int64))]


def _numpy_dtype(name: str) -> np.dtype:
    """The NumPy dtype of results of ``name`` (bf16: ml_dtypes, else raw uint16)."""
    if name == "bf16":
        return _BF16 if _BF16 is not None else np.dtype(np.uint16)
    return _NUMPY[name]


def _accepts(array: np.ndarray, name: str) -> bool:
    if name == "bf16":
        return (_BF16 is not None and array.dtype == _BF16) or (array.dtype.kind == "V" and array.dtype.itemsize == 2)
    return array.dtype == _NUMPY[name]


class Artifact:
    """A loaded artifact. Call :meth:`call` (or index it: ``art["compress"](k, v, a)``)."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"path: no artifact at '{self.path}'")
        try:
            # RTLD_LOCAL: every artifact keeps its own runtime state.
            self._lib = ctypes.CDLL(str(self.path.resolve()), mode=os.RTLD_NOW | os.RTLD_LOCAL)
        except OSError as e:
            raise ArtifactError(f"cannot load '{self.path}': {e}") from None
        lib = self._lib
        try:
            lib.kvmerge_aot_abi_version.restype = ctypes.c_int32
            lib.kvmerge_aot_target.restype = ctypes.c_char_p
            lib.kvmerge_aot_num_functions.restype = ctypes.c_int32
            lib.kvmerge_aot_function_at.restype = ctypes.POINTER(_CFunction)
            lib.kvmerge_aot_function_at.argtypes = [ctypes.c_int32]
            lib.kvmerge_aot_initialize.restype = ctypes.c_int32
            lib.kvmerge_aot_device.restype = ctypes.c_char_p
            lib.kvmerge_aot_call.restype = ctypes.c_int32
            lib.kvmerge_aot_call.argtypes = [ctypes.c_char_p, ctypes.POINTER(_CTensor), ctypes.c_int32,
                                             ctypes.POINTER(_CTensor), ctypes.c_int32]
            lib.kvmerge_aot_last_error.restype = ctypes.c_char_p
            lib.kvmerge_aot_set_kernel_timing.argtypes = [ctypes.c_int32]
            lib.kvmerge_aot_kernel_times.restype = ctypes.c_char_p
        except AttributeError as e:
            raise ArtifactError(f"'{self.path}' is not a kvmerge-aot artifact ({e})") from None
        version = lib.kvmerge_aot_abi_version()
        if version != ABI_VERSION:
            raise ArtifactError(f"'{self.path}' has ABI version {version}; this module speaks {ABI_VERSION}")
        count = lib.kvmerge_aot_num_functions()
        if count == 0:
            raise ArtifactError(f"'{self.path}': {self._last_error()}")
        self.target: str = lib.kvmerge_aot_target().decode()
        words = self.target.split()
        self.kind: str = words[0]
        self.chip: Optional[str] = words[1] if self.kind == "cuda" and len(words) > 1 else None
        self.functions: Dict[str, Function] = {}
        for i in range(count):
            f = lib.kvmerge_aot_function_at(i).contents
            fn = Function(f.name.decode(), tuple(self._value(f.inputs[j]) for j in range(f.num_inputs)),
                          tuple(self._value(f.results[j]) for j in range(f.num_results)))
            self.functions[fn.name] = fn
        self._lock = threading.Lock()

    @staticmethod
    def _value(v: _CValue) -> Value:
        shape = tuple(None if v.shape[d] == -1 else int(v.shape[d]) for d in range(v.rank))
        return Value(v.type.decode(), _DTYPE_NAMES[v.dtype], bool(v.is_tensor), shape)

    def _last_error(self) -> str:
        return self._lib.kvmerge_aot_last_error().decode(errors="replace")

    def __repr__(self) -> str:
        return f"<kvmerge.aot.Artifact '{self.path}' target='{self.target}' functions={list(self.functions)}>"

    def __getitem__(self, name: str):
        self._function(name)
        return lambda *inputs, **kw: self.call(name, *inputs, **kw)

    def _function(self, name: str) -> Function:
        if name not in self.functions:
            raise ValueError(f"function: '{name}' is not in '{self.path}' (available: {', '.join(self.functions)})")
        return self.functions[name]

    def initialize(self) -> str:
        """Opens the device; returns its description ("cpu", "NVIDIA H200 (sm_90)")."""
        if self._lib.kvmerge_aot_initialize() != _OK:
            raise DeviceError(self._last_error())
        return self._lib.kvmerge_aot_device().decode()

    @property
    def device(self) -> str:
        return self.initialize()

    def call(self, name: str, *inputs, outputs: Optional[Sequence[np.ndarray]] = None) -> List[np.ndarray]:
        """Runs ``name`` on NumPy ``inputs``; returns its results (or fills ``outputs``)."""
        f = self._function(name)
        if len(inputs) != len(f.inputs):
            raise ValueError(f"inputs: '{name}' takes {len(f.inputs)} inputs ({f}), got {len(inputs)}")
        keep = []  # arrays and shapes that must live through the call
        c_inputs = (_CTensor * max(1, len(inputs)))()
        for i, (x, spec) in enumerate(zip(inputs, f.inputs)):
            where = f"inputs[{i}] (argument {i} of '{name}', {spec.type})"
            if spec.is_tensor:
                a = np.ascontiguousarray(x)
                if not _accepts(a, spec.dtype):
                    raise ValueError(f"{where}: dtype {a.dtype} does not match {spec.dtype}")
                if a.ndim != len(spec.shape) or any(s is not None and s != d for s, d in zip(spec.shape, a.shape)):
                    raise ValueError(f"{where}: shape {a.shape} does not match {spec.type}")
            else:
                if np.ndim(x) != 0 or spec.dtype == "bf16":
                    raise ValueError(f"{where}: expected a Python or NumPy scalar")
                a = np.asarray(x, dtype=_NUMPY[spec.dtype]).reshape(())
                if np.asarray(x) != a:
                    raise ValueError(f"{where}: {x!r} is not representable as {spec.dtype}")
            shape = (ctypes.c_int64 * max(1, a.ndim))(*a.shape)
            keep += [a, shape]
            c_inputs[i] = _CTensor(a.ctypes.data, _DTYPE_CODES[spec.dtype], a.ndim, shape)
        if outputs is None:
            outputs = [np.empty(v.shape, _numpy_dtype(v.dtype)) for v in f.results]
        else:
            outputs = list(outputs)
            if len(outputs) != len(f.results):
                raise ValueError(f"outputs: '{name}' has {len(f.results)} results, got {len(outputs)} buffers")
            for i, (o, spec) in enumerate(zip(outputs, f.results)):
                if not isinstance(o, np.ndarray) or not o.flags.c_contiguous or not o.flags.writeable \
                        or not _accepts(o, spec.dtype) or o.shape != spec.shape:
                    raise ValueError(f"outputs[{i}] (result {i} of '{name}'): expected a writable C-contiguous "
                                     f"{spec.type} array")
        c_outputs = (_CTensor * max(1, len(outputs)))()
        for i, (o, spec) in enumerate(zip(outputs, f.results)):
            shape = (ctypes.c_int64 * max(1, o.ndim))(*o.shape)
            keep.append(shape)
            c_outputs[i] = _CTensor(o.ctypes.data, _DTYPE_CODES[spec.dtype], o.ndim, shape)
        status = self._lib.kvmerge_aot_call(name.encode(), c_inputs, len(inputs), c_outputs, len(outputs))
        if status != _OK:
            message = self._last_error()
            if status == _INVALID:
                raise ValueError(message)
            if status == _BAD:
                raise ArtifactError(message)
            raise DeviceError(message)
        return outputs

    # Kernel timing (CUDA artifacts; no-ops on CPU artifacts).
    def set_kernel_timing(self, enabled: bool) -> None:
        """Times every kernel launch with CUDA events (launches become synchronous)."""
        self._lib.kvmerge_aot_set_kernel_timing(1 if enabled else 0)

    def kernel_times(self) -> Dict[str, Tuple[int, float]]:
        """``{kernel: (calls, total_ms)}`` since the last :meth:`reset_kernel_times`."""
        text = self._lib.kvmerge_aot_kernel_times().decode()
        return parse_kernel_times(text)

    def reset_kernel_times(self) -> None:
        self._lib.kvmerge_aot_reset_kernel_times()


_KERNEL_TIME = re.compile(r"kvmerge-cuda-kernel-time (\S+) calls=(\d+) total_ms=([\d.]+) mean_us=([\d.]+)")


def parse_kernel_times(text: str) -> Dict[str, Tuple[int, float]]:
    """``{kernel: (calls, total_ms)}`` from ``kvmerge-cuda-kernel-time`` lines."""
    return {m.group(1): (int(m.group(2)), float(m.group(3))) for m in _KERNEL_TIME.finditer(text)}


_cache: Dict[Path, Artifact] = {}
_cache_lock = threading.Lock()


def load(path) -> Artifact:
    """Loads an artifact (once per resolved path and process)."""
    p = Path(path).resolve()
    with _cache_lock:
        if p not in _cache:
            _cache[p] = Artifact(p)
        return _cache[p]


def build(source, output, *, target: str = "cpu", chip: str = "sm_90a", gpu_format: str = "fatbin",
          mcpu: Optional[str] = None, pipeline_options: str = "", extra_args: Sequence[str] = ()) -> Artifact:
    """Compiles MLIR ``source`` (text, or a path to an .mlir file) into the artifact ``output``
    with the ``kvmerge-aot`` tool and loads it. Raises :class:`kvmerge.CompileError` with the
    tool's diagnostics when compilation fails. A process that has loaded an artifact keeps
    that one (dlopen caches by path): build a changed module to a new path."""
    from .compiled import tool
    from .errors import CompileError

    if target not in ("cpu", "cuda"):
        raise ValueError(f"target: expected 'cpu' or 'cuda', got {target!r}")
    output = Path(output)
    with tempfile.TemporaryDirectory(prefix="kvmerge-aot-") as tmp:
        if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and source.endswith(".mlir")
                                        and Path(source).is_file()):
            src = Path(source)
        else:
            src = Path(tmp) / "module.mlir"
            src.write_text(source)
        cmd = [tool("kvmerge-aot"), str(src), f"--target={target}", "-o", str(output)]
        if target == "cuda":
            cmd += [f"--chip={chip}", f"--gpu-format={gpu_format}"]
        if mcpu:
            cmd.append(f"--mcpu={mcpu}")
        if pipeline_options:
            cmd.append(f"--pipeline-options={pipeline_options}")
        cmd += list(extra_args)
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CompileError(f"kvmerge-aot failed ({proc.returncode}):\n{proc.stderr.strip()}")
    with _cache_lock:
        _cache.pop(output.resolve(), None)  # a rebuilt file is a new artifact
    return Artifact(output)
