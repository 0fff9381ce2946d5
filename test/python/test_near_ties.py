"""Issue 16, item 7: the compiled paths and the reference make the same selections on near-ties.

KVMerger cuts the weakest links, so where two cosines are equal in exact arithmetic (keys that are
scaled copies of one vector: all 1; sign-alternating copies: all -1) or closer than a rounding
error, the summation order used to decide which link is "weaker" -- and the compiled loops, the
upstream export and NumPy each had their own order. The rule now (docs/reference.md, choice 3):
the similarity is the float64 cosine of the keys' exact float64 values, summed in 16 interleaved
lanes combined by halving, every operation IEEE-rounded in that order (no fused multiply-add),
clipped, rounded once to float32. Every path computes exactly that, so positions, counts and
lengths agree bit for bit, and the tie rules decide real ties.

* ``test_reference.bf_cos`` writes the rule in plain Python floats; the reference must equal it
  bit for bit;
* the compiled ``kvcache.similarity`` (CPU loops, the upstream export; static and dynamic D, D not
  a multiple of 16) must equal the reference bit for bit, f32/f16/bf16/f64 keys;
* ``compress`` on scaled copies and on sign-alternating copies, budget and threshold mode (with
  an ``eps`` on the tie so that lengths depend on it), f32/f16/bf16, through the fused loops, the
  unfused loops and the export: discrete outputs equal, floats within test_compiled's tolerance.
  Before the rule, 20 of the 36 fused cases differed in positions/counts.
"""

from __future__ import annotations

import subprocess

import ml_dtypes
import numpy as np
import pytest

import kvmerge
from kvmerge import compiled, reference
from test_compiled import assert_same
from test_reference import bf_cos  # the documented rule in plain Python floats

BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = [np.dtype(np.float32), np.dtype(np.float16), BF16]


def tie_keys(rng, H, L, D, dtype, kind):
    """Keys that are positive multiples of one vector per head (``scaled``), the same with
    alternating signs (``alternating``), or random (``random``, with zero keys)."""
    u = rng.standard_normal((H, 1, D))
    if kind == "random":
        k = rng.standard_normal((H, L, D))
        k[:, L // 3] = 0.0
        return k.astype(dtype)
    c = rng.uniform(0.25, 4.0, (H, L, 1))
    if kind == "alternating":
        c = c * (-1.0) ** np.arange(L)[None, :, None]
    return (c * u).astype(dtype)


# --------------------------------------------------------------------------------------------
# the rule itself
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES + [np.dtype(np.float64)], ids=lambda d: d.name)
@pytest.mark.parametrize("D", [1, 5, 16, 17, 40])
def test_reference_is_the_documented_rule(dtype, D):
    rng = np.random.default_rng(D)
    for kind in ("scaled", "alternating", "random"):
        k = tie_keys(rng, 2, 13, D, dtype, kind)
        s = reference.adjacent_similarity(k)
        assert s.dtype == np.float32
        exp = np.array([[bf_cos(k[h, t], k[h, t + 1]) for t in range(12)] for h in range(2)])
        np.testing.assert_array_equal(s.view(np.uint32), exp.view(np.uint32), err_msg=kind)


def test_exact_ties_are_ties():
    """Scaled copies have similarity exactly 1, sign-alternating ones exactly -1 (the float64
    error is far below float32's half ulp at 1), so the tie rules decide, not rounding noise."""
    rng = np.random.default_rng(5)
    for dtype in DTYPES:
        for kind, value in (("scaled", 1.0), ("alternating", -1.0)):
            s = reference.adjacent_similarity(tie_keys(rng, 3, 200, 128, np.float32, kind).astype(dtype))
            if dtype == np.float32:
                assert (s == value).all(), (kind, np.unique(s))
            # f16/bf16 rounding makes the stored keys only nearly parallel: within a few ulps.
            assert np.abs(s - value).max() <= 2e-3, (dtype, kind)


# --------------------------------------------------------------------------------------------
# compiled kvcache.similarity == reference, bit for bit
# --------------------------------------------------------------------------------------------
def _similarity_module(shape, dtype, dynamic):
    """``kvcache.similarity`` on keys of static shape, or of shape ``?x?x?`` (the lowering then
    sees a dynamic D; the result is cast to a static shape for the runner)."""
    H, L, _ = shape
    tk, ts = compiled._ty(shape, dtype), compiled._ty((H, L - 1), np.float32)
    if not dynamic:
        return (f"func.func @sim(%k: {tk}) -> {ts} {{\n"
                f"  %s = kvcache.similarity %k : {tk} -> {ts}\n"
                f"  return %s : {ts}\n}}\n")
    dk = "tensor<?x?x?x" + tk.split("x")[-1]
    return (f"func.func @sim(%k: {dk}) -> {ts} {{\n"
            f"  %s = kvcache.similarity %k : {dk} -> tensor<?x?xf32>\n"
            f"  %r = tensor.cast %s : tensor<?x?xf32> to {ts}\n"
            f"  return %r : {ts}\n}}\n")


def _run_similarity(k, path, dynamic):
    text = _similarity_module(k.shape, k.dtype, dynamic)
    if path == "export":
        text = subprocess.run([compiled.tool("kvmerge-opt"), "--kvmerge-export-upstream"], input=text,
                              capture_output=True, text=True, check=True).stdout
        assert "kvcache." not in text
    return compiled.run(text, "sim", [k], 1)[0]


@pytest.mark.parametrize("path", ["loops", "export"])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("dtype", DTYPES + [np.dtype(np.float64)], ids=lambda d: d.name)
def test_compiled_similarity_is_bitwise_the_reference(path, dynamic, dtype):
    rng = np.random.default_rng(7)
    for D in ((1, 17, 64, 130) if path == "loops" else (5, 64)):
        for kind in ("scaled", "alternating", "random"):
            k = tie_keys(rng, 2, 37, D, dtype, kind)
            got = _run_similarity(k, path, dynamic)
            exp = reference.adjacent_similarity(k)
            assert got.dtype == np.float32 and got.shape == exp.shape
            diff = np.flatnonzero(got.view(np.uint32) != exp.view(np.uint32))
            assert diff.size == 0, (f"D={D} {kind}: {diff.size} similarities differ, first "
                                    f"{got.ravel()[diff[0]]!r} vs {exp.ravel()[diff[0]]!r}")


# --------------------------------------------------------------------------------------------
# compress on near-ties: every path agrees with the reference
# --------------------------------------------------------------------------------------------
# eps on the tie: scaled copies have s = 1 (a run continues iff s >= 1), alternating ones s = -1
# (cut iff s < -1 + 2^-23, the next float32 above -1), so lengths depend on every tie.
MODES = [
    ("budget", {}),
    ("threshold", dict(eps=0.75)),
    ("threshold", "tie"),
]


def _tie_eps(kind):
    return 1.0 if kind == "scaled" else float(np.nextafter(np.float32(-1.0), np.float32(0.0)))


def _compress_via(k, v, a, kw, path):
    if path == "fused":
        return kvmerge.compress(k, v, a, **kw)
    args = reference.resolve_compress_args(k, v, a, policy="kvmerger", **kw)
    text = compiled.compress_module_for(args, k.shape, v.shape, k.dtype)
    inputs = [k, v, np.asarray(args.ac, np.float32)]
    if path == "unfused":
        outs = compiled.run(text, "compress", inputs, 6, pipeline_options="fuse-merge=false")
    else:
        text = subprocess.run([compiled.tool("kvmerge-opt"), "--kvmerge-export-upstream"], input=text,
                              capture_output=True, text=True, check=True).stdout
        outs = compiled.run(text, "compress", inputs, 6)
    return dict(zip(("keys", "values", "positions", "counts", "scores", "lengths"), outs))


@pytest.mark.parametrize("kind", ["scaled", "alternating"])
@pytest.mark.parametrize("mode,mkw", MODES, ids=["budget", "threshold", "threshold-eps-on-tie"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_compress_near_ties_fused(kind, mode, mkw, dtype):
    for seed in range(3):
        rng = np.random.default_rng(100 * seed + len(kind))
        H, L, D = 2, 96, 64
        k = tie_keys(rng, H, L, D, dtype, kind)
        v = rng.standard_normal((H, L, D)).astype(dtype)
        a = rng.random((H, L)).astype(np.float32)
        eps = dict(eps=_tie_eps(kind)) if mkw == "tie" else mkw
        for heavy in (None, 0):
            kw = dict(ratio=0.5, mode=mode, heavy=heavy, **eps)
            exp = reference.compress(k, v, a, **kw)
            assert_same(kvmerge.compress(k, v, a, **kw), exp, dtype, f"seed {seed} {kw}", inputs=(k, v, kw))


@pytest.mark.parametrize("path", ["unfused", "export"])
@pytest.mark.parametrize("kind", ["scaled", "alternating"])
def test_compress_near_ties_other_paths(path, kind):
    rng = np.random.default_rng(9)
    for dtype in DTYPES:
        k = tie_keys(rng, 2, 70, 48, dtype, kind)
        v = rng.standard_normal((2, 70, 48)).astype(dtype)
        a = rng.random((2, 70)).astype(np.float32)
        for mode, eps in (("budget", 0.75), ("threshold", _tie_eps(kind))):
            kw = dict(ratio=0.4, mode=mode, eps=eps, heavy=0)
            assert_same(_compress_via(k, v, a, kw, path), reference.compress(k, v, a, **kw), dtype,
                        f"{path} {dtype} {mode}", inputs=(k, v, kw))
