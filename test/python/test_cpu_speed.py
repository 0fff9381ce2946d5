"""The CPU speed work of issue 14, checked for results: the similarity sweep (norms once, chunked
over links in the unfused op), the polynomial exp of the CPU pipeline, and the runtime's caching
allocator (blocks reused across calls, results unchanged). Speed itself is measured by
bench/bench_cpu.py, never here."""

from __future__ import annotations

import numpy as np
import pytest

from kvmerge import compiled, reference

pytestmark = pytest.mark.skipif(not compiled.uses_native(), reason="kvmerge._native not built")


def _similarity_module(shape, dtype) -> str:
    H, L, D = shape
    tk, ts = compiled._ty((H, L, D), dtype), compiled._ty((H, L - 1), np.float32)
    return (f"func.func @sim(%k: {tk}) -> {ts} {{\n"
            f"  %s = kvcache.similarity %k : {tk} -> {ts}\n  return %s : {ts}\n}}\n")


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
@pytest.mark.parametrize("L", [2, 3, 1025, 2500])
def test_similarity_chunks(dtype, L):
    """kvcache.similarity alone (chunks of 1024 links, each with its own last norm): the
    reference's cosines, zero-norm keys included, on both sides of the chunk borders."""
    rng = np.random.default_rng(L)
    k = rng.standard_normal((3, L, 40)).astype(dtype)
    for t in {0, L // 2, L - 1, min(1023, L - 1), min(1024, L - 1)}:
        k[1, t] = 0
    (got,) = compiled.run(_similarity_module(k.shape, k.dtype), "sim", [k], 1)
    ref = reference.adjacent_similarity(k)
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6 if dtype != np.float64 else 1e-6)
    assert (got[1][ref[1] == 0] == 0).all()


def test_exp_approximation():
    """f32 exp in compiled code is upstream's polynomial approximation: within 4e-7 relative of
    the true exp over the normal range, exact at the special values kernels rely on."""
    rng = np.random.default_rng(0)
    special = np.array([0.0, -0.0, -np.inf, np.inf, np.nan, -1e-30, 1.0, -1.0, 88.0, 89.0, -87.0,
                        -104.0, -1e4], np.float32)
    x = np.concatenate([special, rng.uniform(-87, 88, 20000).astype(np.float32),
                        rng.uniform(-2, 2, 20000).astype(np.float32)])
    n = x.size
    t = f"tensor<{n}xf32>"
    module = (f"#map = affine_map<(d0) -> (d0)>\n"
              f"func.func @f(%x: {t}) -> {t} {{\n  %e = tensor.empty() : {t}\n"
              f"  %r = linalg.generic {{indexing_maps = [#map, #map], iterator_types = [\"parallel\"]}}"
              f" ins(%x : {t}) outs(%e : {t}) {{\n  ^bb0(%a: f32, %b: f32):\n"
              f"    %y = math.exp %a : f32\n    linalg.yield %y : f32\n  }} -> {t}\n  return %r : {t}\n}}\n")
    (y,) = compiled.run(module, "f", [x], 1)
    s = special.size
    assert y[0] == 1 and y[1] == 1 and y[2] == 0 and y[3] == np.inf and np.isnan(y[4])
    assert y[9] == np.inf and y[11] == 0 and y[12] == 0
    with np.errstate(over="ignore"):
        ref = np.exp(x[s:].astype(np.float64))
    rel = np.abs(y[s:] - ref) / ref
    assert rel.max() < 4e-7, rel.max()


def test_allocator_reuses_blocks():
    """Compiled code's large buffers come back from the runtime's cache on the next call, and
    the results do not change (nothing depends on fresh memory)."""
    from kvmerge import jit

    rng = np.random.default_rng(7)
    k = rng.standard_normal((4, 6000, 64)).astype(np.float16)
    v = rng.standard_normal((4, 6000, 64)).astype(np.float16)
    a = rng.random((4, 6000), dtype=np.float32)
    first = compiled.compress(k, v, a, ratio=0.5)
    before = jit.allocator_stats()
    again = [compiled.compress(k, v, a, ratio=0.5) for _ in range(3)]
    after = jit.allocator_stats()
    assert after["large_allocations"] > before["large_allocations"]
    assert after["reused"] - before["reused"] == after["large_allocations"] - before["large_allocations"]
    assert after["cached_bytes"] > 0 and after["budget_bytes"] > 0
    jit.release_allocator_cache()
    assert jit.allocator_stats()["cached_bytes"] == 0
    again.append(compiled.compress(k, v, a, ratio=0.5))
    for out in again:
        for name in first:
            assert out[name].tobytes() == first[name].tobytes(), name
    ref = reference.compress(k, v, a, ratio=0.5)
    np.testing.assert_array_equal(first["positions"], ref["positions"])
    np.testing.assert_array_equal(first["counts"], ref["counts"])
