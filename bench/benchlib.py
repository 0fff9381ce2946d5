"""Shared pieces of the CPU benchmarks (bench_cpu.py, bench_decode.py, bench_peers.py).

* ``time_ms``: a compiled function timed by ``kvmerge-run --benchmark-repetitions`` (JIT once,
  one warm-up call, then the median of ``reps`` calls on the same buffers), ``rounds`` times in
  separate processes; the smallest median is reported (background load on a shared machine only
  ever adds time).
* ``stream_module``: the bandwidth yardstick of the compress roofline. A kernel that moves exactly
  the bytes the fused KVMerger merge must move: per KV head it reads K once (a sum, the
  similarity sweep's traffic), then K and V again and writes the compressed cache (slot ``s`` =
  rows ``2s`` and ``2s + 1`` added, so ratio 0.5), positions, counts, scores and lengths. It is
  written as ``scf.parallel`` over heads on buffers, like the kvcache lowering, and goes through
  the same pipeline and thread pool, so the comparison is per thread count.
* ``copy_module``: a plain copy of K and V (read once, written once), same structure: the
  machine's copy bandwidth, for context.
* ``ar1_keys``: keys whose adjacent cosine is about 0.8 (an AR(1) process), like real keys.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from kvmerge import compiled  # noqa: E402

_ELT = {"float32": "f32", "float16": "f16"}


def load_text() -> str:
    """``uptime``'s load averages, for the tables' headers."""
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:  # pragma: no cover
        return "?"


def machine() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:  # pragma: no cover
        pass
    return f"{cpu}, {os.cpu_count()} CPUs"


def time_ms(module: str, function: str, inputs, n_outputs: int, *, threads: int, reps: int,
            rounds: int = 1, pipeline_options: str = "", build_dir: str | None = None) -> float:
    """``build_dir``: time with that build's ``bin/kvmerge-run`` (e.g. a baseline checkout)."""
    best = float("inf")
    saved = os.environ.get("KVMERGE_BUILD_DIR")
    if build_dir:
        os.environ["KVMERGE_BUILD_DIR"] = str(build_dir)
    try:
        for _ in range(rounds):
            _, out = compiled.run(module, function, inputs, n_outputs, repetitions=reps, threads=threads,
                                  pipeline_options=pipeline_options)
            best = min(best, float(re.search(r"median_ms: ([0-9.]+)", out).group(1)))
    finally:
        if build_dir:
            if saved is None:
                os.environ.pop("KVMERGE_BUILD_DIR", None)
            else:
                os.environ["KVMERGE_BUILD_DIR"] = saved
    return best


def time_interleaved(kernels: dict, *, threads: int, reps: int, rounds: int) -> dict:
    """``time_ms`` of several kernels (name -> (module, function, inputs, n_outputs,
    pipeline_options[, build_dir])), round after round, so that a burst of background load hits
    them alike; the best median of each."""
    best = {name: float("inf") for name in kernels}
    for _ in range(rounds):
        for name, (module, function, inputs, n_outputs, options, *build) in kernels.items():
            best[name] = min(best[name], time_ms(module, function, inputs, n_outputs, threads=threads,
                                                 reps=reps, pipeline_options=options,
                                                 build_dir=build[0] if build else None))
    return best


def ar1_keys(rng, H: int, L: int, D: int, dtype) -> np.ndarray:
    noise = rng.standard_normal((H, L, D), dtype=np.float32)
    k = np.empty_like(noise)
    k[:, 0] = noise[:, 0]
    for t in range(1, L):
        k[:, t] = 0.8 * k[:, t - 1] + 0.6 * noise[:, t]
    return k.astype(dtype)



def layer_inputs(H: int, L: int, D: int, dtype, seed: int):
    """One layer's cache for the compress benchmarks: AR(1) keys (``ar1_keys``), standard normal
    values and uniform scores, ``[H, L, D]`` / ``[H, L]``, from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    k = ar1_keys(rng, H, L, D, dtype)
    v = rng.standard_normal((H, L, D), dtype=np.float32).astype(dtype)
    a = rng.random((H, L), dtype=np.float32)
    return k, v, a

def _tt(shape, elt):
    return "tensor<" + "x".join(map(str, shape)) + "x" + elt + ">"


def _mt(shape, elt):
    return "memref<" + "x".join(map(str, shape)) + "x" + elt + ">"


def stream_module(H: int, L: int, D: int, dtype) -> str:
    """``func.func @stream(%k, %v, %a)`` with the results of ``compress`` at ratio 0.5 (see the
    module docstring); ``L`` must be even."""
    if L % 2:
        raise ValueError("stream_module: L must be even (ratio 0.5)")
    elt = _ELT[np.dtype(dtype).name]
    B = L // 2
    tk, tout, mk, mout = _tt((H, L, D), elt), _tt((H, B, D), elt), _mt((H, L, D), elt), _mt((H, B, D), elt)
    ta, ma = _tt((H, L), "f32"), _mt((H, L), "f32")
    ti, mi, tf, mf = _tt((H, B), "i32"), _mt((H, B), "i32"), _tt((H, B), "f32"), _mt((H, B), "f32")
    tl, ml = _tt((H,), "i32"), _mt((H,), "i32")
    fm = "fastmath<reassoc,contract>"

    def load(mem, idx, name):
        if elt == "f32":
            return f"%{name} = memref.load {mem}[{idx}] : {mk}\n"
        return (f"%{name}_s = memref.load {mem}[{idx}] : {mk}\n"
                f"        %{name} = arith.extf %{name}_s : {elt} to f32\n")

    def store(val, mem, idx, name):
        if elt == "f32":
            return f"memref.store {val}, {mem}[{idx}] : {mout}\n"
        return (f"%{name} = arith.truncf {val} : f32 to {elt}\n"
                f"        memref.store %{name}, {mem}[{idx}] : {mout}\n")

    results = f"{tout}, {tout}, {ti}, {ti}, {tf}, {tl}"
    return f"""func.func @stream(%k: {tk}, %v: {tk}, %a: {ta}) -> ({results}) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %cH = arith.constant {H} : index
  %cL = arith.constant {L} : index
  %cB = arith.constant {B} : index
  %cD = arith.constant {D} : index
  %two = arith.constant 2 : i32
  %nB = arith.constant {B} : i32
  %zero = arith.constant 0.0 : f32
  %kb = bufferization.to_buffer %k read_only : {tk} to {mk}
  %vb = bufferization.to_buffer %v read_only : {tk} to {mk}
  %ab = bufferization.to_buffer %a read_only : {ta} to {ma}
  %ok = memref.alloc() : {mout}
  %ov = memref.alloc() : {mout}
  %op = memref.alloc() : {mi}
  %oc = memref.alloc() : {mi}
  %os = memref.alloc() : {mf}
  %ol = memref.alloc() : {ml}
  scf.parallel (%h) = (%c0) to (%cH) step (%c1) {{
    %sum = scf.for %t = %c0 to %cL step %c1 iter_args(%acc = %zero) -> f32 {{
      %r = scf.for %d = %c0 to %cD step %c1 iter_args(%acc2 = %acc) -> f32 {{
        {load("%kb", "%h, %t, %d", "x")}        %n = arith.addf %acc2, %x {fm} : f32
        scf.yield %n : f32
      }}
      scf.yield %r : f32
    }}
    scf.for %s = %c0 to %cB step %c1 {{
      %t0 = arith.muli %s, %c2 : index
      %t1 = arith.addi %t0, %c1 : index
      scf.for %d = %c0 to %cD step %c1 {{
        {load("%kb", "%h, %t0, %d", "k0")}        {load("%kb", "%h, %t1, %d", "k1")}        %ks = arith.addf %k0, %k1 {fm} : f32
        {store("%ks", "%ok", "%h, %s, %d", "kt")}        {load("%vb", "%h, %t0, %d", "v0")}        {load("%vb", "%h, %t1, %d", "v1")}        %vs = arith.addf %v0, %v1 {fm} : f32
        {store("%vs", "%ov", "%h, %s, %d", "vt")}      }}
      %a0 = memref.load %ab[%h, %t0] : {ma}
      %a1 = memref.load %ab[%h, %t1] : {ma}
      %as = arith.addf %a0, %a1 : f32
      memref.store %as, %os[%h, %s] : {mf}
      %p = arith.index_cast %t0 : index to i32
      memref.store %p, %op[%h, %s] : {mi}
      memref.store %two, %oc[%h, %s] : {mi}
    }}
    // Keep the first sweep: its sum enters the first score (times 0).
    %s0 = memref.load %os[%h, %c0] : {mf}
    %z = arith.mulf %sum, %zero : f32
    %s1 = arith.addf %s0, %z : f32
    memref.store %s1, %os[%h, %c0] : {mf}
    memref.store %nB, %ol[%h] : {ml}
    scf.reduce
  }}
  %rk = bufferization.to_tensor %ok restrict writable : {mout} to {tout}
  %rv = bufferization.to_tensor %ov restrict writable : {mout} to {tout}
  %rp = bufferization.to_tensor %op restrict writable : {mi} to {ti}
  %rc = bufferization.to_tensor %oc restrict writable : {mi} to {ti}
  %rs = bufferization.to_tensor %os restrict writable : {mf} to {tf}
  %rl = bufferization.to_tensor %ol restrict writable : {ml} to {tl}
  return %rk, %rv, %rp, %rc, %rs, %rl : {results}
}}
"""


def check_stream(k, v, a, outs) -> None:
    """The yardstick computes what it says (so no loop of it can be dropped)."""
    f32 = np.float32
    for x, o in ((k, outs[0]), (v, outs[1])):
        want = (x[:, 0::2].astype(f32) + x[:, 1::2].astype(f32)).astype(x.dtype)
        np.testing.assert_allclose(o.astype(f32), want.astype(f32), rtol=2e-3, atol=1e-3)
    assert (outs[2] == np.arange(0, k.shape[1], 2, dtype=np.int32)).all() and (outs[3] == 2).all()
    assert (outs[5] == k.shape[1] // 2).all()


def copy_module(H: int, L: int, D: int, dtype) -> str:
    """``func.func @copy(%k, %v)``: K and V copied, one parallel iteration per head."""
    elt = _ELT[np.dtype(dtype).name]
    t, m = _tt((H, L, D), elt), _mt((H, L, D), elt)
    return f"""func.func @copy(%k: {t}, %v: {t}) -> ({t}, {t}) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %cH = arith.constant {H} : index
  %cL = arith.constant {L} : index
  %cD = arith.constant {D} : index
  %kb = bufferization.to_buffer %k read_only : {t} to {m}
  %vb = bufferization.to_buffer %v read_only : {t} to {m}
  %ok = memref.alloc() : {m}
  %ov = memref.alloc() : {m}
  scf.parallel (%h) = (%c0) to (%cH) step (%c1) {{
    scf.for %t = %c0 to %cL step %c1 {{
      scf.for %d = %c0 to %cD step %c1 {{
        %x = memref.load %kb[%h, %t, %d] : {m}
        memref.store %x, %ok[%h, %t, %d] : {m}
        %y = memref.load %vb[%h, %t, %d] : {m}
        memref.store %y, %ov[%h, %t, %d] : {m}
      }}
    }}
    scf.reduce
  }}
  %rk = bufferization.to_tensor %ok restrict writable : {m} to {t}
  %rv = bufferization.to_tensor %ov restrict writable : {m} to {t}
  return %rk, %rv : {t}, {t}
}}
"""
