"""The compiled path: kvcache ops built as MLIR, lowered by kvmerge and run on the CPU.

``compress`` and ``attention`` take the same arguments as :mod:`kvmerge.reference` and return the
same results, computed by code that the kvmerge CPU pipeline (``--kvmerge-lower-to-llvm``)
generates and ``mlir::ExecutionEngine`` JIT-compiles. Arguments are validated by the reference's
own checks first, so bad input raises the same ``ValueError`` on both paths.

Two ways to run, same results:

* in-process, through the native extension (:mod:`kvmerge.jit`) when it is built: each module is
  compiled once per process and cached by its source text, so repeated calls with the same shapes
  and policy only run;
* otherwise (or with ``KVMERGE_NO_NATIVE=1``, or for ``repetitions`` benchmarks) a ``kvmerge-run``
  subprocess per call, with ``.npy`` files in a temporary directory.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from . import _loader, reference
from .errors import CompileError

__all__ = ["compress", "attention", "compress_module", "attention_module", "run", "CompileError", "tool", "opt",
           "uses_native"]

_REPO = Path(__file__).resolve().parents[2]

_MLIR_TYPES = {
    np.dtype(np.float32): "f32",
    np.dtype(np.float16): "f16",
    np.dtype(np.float64): "f64",
    np.dtype(np.int32): "i32",
}
try:  # bfloat16 comes from ml_dtypes
    import ml_dtypes

    _MLIR_TYPES[np.dtype(ml_dtypes.bfloat16)] = "bf16"
except ImportError:  # pragma: no cover
    ml_dtypes = None


def tool(name: str) -> str:
    """Path of a kvmerge tool: ``$KVMERGE_BUILD_DIR/bin``, the repo's ``build/bin``, or ``PATH``."""
    for base in (os.environ.get("KVMERGE_BUILD_DIR"), _REPO / "build"):
        if base and (Path(base) / "bin" / name).is_file():
            return str(Path(base) / "bin" / name)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found: build the project (scripts/setup.sh) or set KVMERGE_BUILD_DIR")
    return found


def opt(text: str, *flags: str, stderr: bool = False):
    """``kvmerge-opt flags...`` on ``text``: the output IR (and the diagnostics with
    ``stderr=True``); :class:`kvmerge.CompileError` with the diagnostics on failure."""
    proc = subprocess.run([tool("kvmerge-opt"), *flags], input=text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CompileError(f"kvmerge-opt {' '.join(flags)} failed:\n{proc.stderr.strip()[-4000:]}")
    return (proc.stdout, proc.stderr) if stderr else proc.stdout


def _ty(shape, dtype) -> str:
    try:
        elt = _MLIR_TYPES[np.dtype(dtype)]
    except KeyError:
        raise ValueError(f"dtype: {np.dtype(dtype)} is not supported by the compiled path "
                         f"(expected one of f32, f16, bf16, f64)") from None
    return "tensor<" + "x".join(str(int(d)) for d in shape) + ("x" if len(shape) else "") + elt + ">"


def _float_attr(x: float, name: str = "value") -> str:
    """``x`` as an MLIR float literal that parses back to the same double: ``repr``'s shortest
    round-trip digits with the ``.0`` MLIR needs before an exponent (``1e-05`` is not MLIR
    syntax, ``1.0e-05`` is)."""
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"{name}: expected a finite number, got {x!r}")
    mantissa, e, exponent = repr(x).partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + e + exponent


def compress_module(shape_k, shape_v, dtype, *, policy: str, B: int, sink: int, recent: int, mode: str,
                    eps: float, sigma, heavy: int | None = None) -> str:
    """MLIR source of ``func.func @compress`` for the given shapes and resolved policy
    (``heavy=None``: the policy's default number of heavy hitters, ``floor((Mb - 1) / 2)``)."""
    H, L, D = shape_k
    Dv = shape_v[2]
    parts = [policy]
    if policy != "full":
        parts.append(f"slots = {B}")
        parts.append(f"sink = {sink}")
        if policy != "streaming":
            parts.append(f"recent = {recent}")
        if policy == "kvmerger":
            if heavy is not None:
                parts.append(f"heavy = {int(heavy)}")
            parts.append(f"mode = {mode}")
            parts.append(f"eps = {_float_attr(eps, 'eps')}")
            parts.append(f"sigma = {sigma if isinstance(sigma, str) else _float_attr(sigma, 'sigma')}")
    tk, tv, ta = _ty((H, L, D), dtype), _ty((H, L, Dv), dtype), _ty((H, L), np.float32)
    results = [_ty((H, B, D), dtype), _ty((H, B, Dv), dtype), _ty((H, B), np.int32), _ty((H, B), np.int32),
               _ty((H, B), np.float32), _ty((H,), np.int32)]
    res = ", ".join(results)
    return (
        f"func.func @compress(%k: {tk}, %v: {tv}, %a: {ta}) -> ({res}) {{\n"
        f"  %r:6 = kvcache.compress %k, %v, %a {{policy = #kvcache.policy<{', '.join(parts)}>}}\n"
        f"      : {tk}, {tv}, {ta} -> {res}\n"
        f"  return %r#0, %r#1, %r#2, %r#3, %r#4, %r#5 : {res}\n"
        f"}}\n"
    )


def attention_module(shape_q, shape_k, shape_v, dtype, *, count_bias: bool, scale,
                     mask=None) -> str:
    """MLIR source of ``func.func @attention`` (one decode step, ``q [Hq, 1, D]``); ``mask``: the
    ``(shape [Hm, S], dtype)`` of a mask argument, passed as ``[Hm, 1, S]``."""
    Hq, _, D = shape_q
    Hkv, S, _ = shape_k
    Dv = shape_v[2]
    tq, tk, tv = _ty((Hq, 1, D), dtype), _ty((Hkv, S, D), dtype), _ty((Hkv, S, Dv), dtype)
    # Like the reference, the output has the compute type: f32 (f64 for f64 inputs).
    out_dtype = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    tl, tc, to = _ty((Hkv,), np.int32), _ty((Hkv, S), np.int32), _ty((Hq, 1, Dv), out_dtype)
    extra = " count_bias" if count_bias else ""
    if scale is not None:
        extra = f" scale({_float_attr(scale, 'scale')})" + extra
    marg = mop = ""
    if mask is not None:
        (hm, _), mdtype = mask
        tm = _ty((hm, 1, S), mdtype)
        marg, mop = f", %mask: {tm}", f" mask(%mask : {tm})"
    return (
        f"func.func @attention(%q: {tq}, %k: {tk}, %v: {tv}, %len: {tl}, %cnt: {tc}{marg}) -> {to} {{\n"
        f"  %init = tensor.empty() : {to}\n"
        f"  %o = kvcache.attention ins(%q, %k, %v : {tq}, {tk}, {tv}) lengths(%len : {tl})\n"
        f"      counts(%cnt : {tc}){mop} outs(%init : {to}){extra}\n"
        f"  return %o : {to}\n"
        f"}}\n"
    )


def _bf16_view(a: np.ndarray) -> np.ndarray:
    """.npy has no bfloat16: raw 2-byte records ('<V2') are bf16 here."""
    if a.dtype.kind == "V" and a.dtype.itemsize == 2 and ml_dtypes is not None:
        return a.view(ml_dtypes.bfloat16)
    return a


def uses_native() -> bool:
    """Whether :func:`run` calls the in-process JIT (``kvmerge._native``) rather than kvmerge-run."""
    return _loader.available()


def run(module: str, function: str, inputs, n_outputs: int, *, repetitions: int = 0,
        pipeline_options: str = "", threads=None):
    """Compiles ``module`` and runs ``function`` on NumPy ``inputs``.

    In-process (:func:`kvmerge.jit.load`, cached by source text) when the native extension is
    available and ``repetitions`` is 0; otherwise through a kvmerge-run subprocess. Returns the
    list of outputs (and kvmerge-run's stdout, its timing report, when ``repetitions`` > 0).
    MLIR failures raise :class:`kvmerge.CompileError` on both paths.
    """
    if not repetitions and not pipeline_options and _loader.available():
        from . import jit

        outs = jit.load(module).run(function, *[np.asarray(x) for x in inputs], threads=threads)
        if len(outs) != n_outputs:
            raise CompileError(f"{function}: expected {n_outputs} results, the module returns {len(outs)}")
        return outs
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
                                or not 1 <= threads <= 1024):
        raise ValueError(f"threads: expected None or an int in 1..1024, got {threads!r}")
    return _run_subprocess(module, function, inputs, n_outputs, repetitions=repetitions,
                           pipeline_options=pipeline_options, threads=threads)


def _run_subprocess(module: str, function: str, inputs, n_outputs: int, *, repetitions: int = 0,
                    pipeline_options: str = "", threads=None):
    """``run`` through ``kvmerge-run`` (a process per call, .npy files in a temporary directory)."""
    with tempfile.TemporaryDirectory(prefix="kvmerge-") as tmp:
        tmp = Path(tmp)
        (tmp / "module.mlir").write_text(module)
        cmd = [tool("kvmerge-run"), str(tmp / "module.mlir"), f"--function={function}"]
        for i, x in enumerate(inputs):
            np.save(tmp / f"in{i}.npy", np.ascontiguousarray(x))
            cmd.append(f"--input=@{tmp / f'in{i}.npy'}")
        for i in range(n_outputs):
            cmd.append(f"--output=@{tmp / f'out{i}.npy'}")
        if pipeline_options:
            cmd.append(f"--pipeline-options={pipeline_options}")
        if repetitions:
            cmd.append(f"--benchmark-repetitions={repetitions}")
        if threads is not None:
            cmd.append(f"--threads={int(threads)}")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise CompileError(f"kvmerge-run failed ({proc.returncode}):\n{proc.stderr.strip()}")
        outs = [_bf16_view(np.load(tmp / f"out{i}.npy")) for i in range(n_outputs)]
    return (outs, proc.stdout) if repetitions else outs


def compress_module_for(args, k_shape, v_shape, dtype) -> str:
    """:func:`compress_module` for arguments resolved by
    :func:`kvmerge.reference.resolve_compress_args` (every policy parameter, heavy hitters
    included, taken from ``args``)."""
    return compress_module(k_shape, v_shape, dtype, policy=args.policy, B=args.B, sink=args.sink,
                           recent=args.recent, mode=args.mode, eps=args.eps, sigma=args.sigma,
                           heavy=args.heavy if args.policy == "kvmerger" else None)


def compress(keys, values, scores, *, policy="kvmerger", budget=None, ratio=None, sink=4, recent=None,
             heavy=None, mode="budget", eps=0.75, sigma="paper", device="cpu", threads=None) -> dict:
    """Compiled :func:`kvmerge.reference.compress`: same arguments, same result dict.

    ``threads``: threads of the per-head parallel loops (None: ``$KVMERGE_THREADS``, else every
    CPU); the result is bitwise the same for every count."""
    if device != "cpu":
        raise ValueError(f"device: {device!r} is not available; the compiled path runs on 'cpu'")
    args = reference.resolve_compress_args(keys, values, scores, policy=policy, budget=budget, ratio=ratio,
                                           sink=sink, recent=recent, heavy=heavy, mode=mode, eps=eps,
                                           sigma=sigma)
    k, v = np.asarray(keys), np.asarray(values)
    if k.dtype != v.dtype:
        raise ValueError(f"values: the compiled path needs keys and values of one dtype, got {k.dtype} and {v.dtype}")
    module = compress_module_for(args, k.shape, v.shape, k.dtype)
    outs = run(module, "compress", [k, v, np.asarray(args.ac, dtype=np.float32)], 6, threads=threads)
    names = ("keys", "values", "positions", "counts", "scores", "lengths")
    return dict(zip(names, outs))


def attention(q, keys, values, lengths, *, counts=None, count_bias=False, scale=None, mask=None,
              device="cpu", threads=None):
    """Compiled :func:`kvmerge.reference.attention` (``q [Hq, D]`` -> ``[Hq, Dv]``); ``threads`` as
    in :func:`compress`."""
    if device != "cpu":
        raise ValueError(f"device: {device!r} is not available; the compiled path runs on 'cpu'")
    reference.resolve_attention_args(q, keys, values, lengths, counts=counts, count_bias=count_bias,
                                     scale=scale)  # the reference's own checks and ValueErrors
    q, k, v = np.asarray(q), np.asarray(keys), np.asarray(values)
    for name, a in (("keys", k), ("values", v)):
        if a.dtype != q.dtype:
            raise ValueError(f"{name}: the compiled path needs q, keys and values of one dtype, "
                             f"got q {q.dtype}, keys {k.dtype}, values {v.dtype}")
    Hkv, S, _ = k.shape
    if counts is None:
        cnt = np.ones((Hkv, S), np.int32)
    else:
        # The kernels take i32 counts: refuse what a conversion would wrap.
        c = np.asarray(counts)
        i32 = np.iinfo(np.int32)
        if c.size and (c.min() < i32.min or c.max() > i32.max):
            raise ValueError(f"counts: the compiled path takes int32 counts, got values in "
                             f"[{int(c.min())}, {int(c.max())}]")
        cnt = c.astype(np.int32)
    inputs = [q[:, None, :], k, v, np.asarray(lengths, np.int32), cnt]
    mspec = None
    if mask is not None:
        m = np.asarray(mask)
        if m.ndim != 2 or m.shape[1] != S or m.shape[0] < 1 or q.shape[0] % m.shape[0]:
            raise ValueError(f"mask: expected shape [Hm, {S}] with Hm dividing Hq = {q.shape[0]}, "
                             f"got {m.shape}")
        if m.dtype == np.bool_:
            # The same attention as an i1 mask (the runner has no i1 arrays).
            m = np.where(m, np.float32(0), np.float32(-np.inf))
        mspec = (m.shape, m.dtype)
        inputs.append(m[:, None, :])
    module = attention_module((q.shape[0], 1, q.shape[1]), k.shape, v.shape, q.dtype,
                              count_bias=count_bias, scale=scale, mask=mspec)
    (out,) = run(module, "attention", inputs, 1, threads=threads)
    return out[:, 0, :]
