"""Compiled kvcache kernels (kvmerge-opt lowering, JIT by kvmerge-run) against the NumPy reference.

Every policy and both merge modes, on fresh random caches (several seeds, odd lengths, caches
within budget, D in {64, 128}, f32/f16/bf16) and on real KV states of real models
(test/data fixtures). Inputs come from fixed seeds (the same data in every run and every build).

Discrete outputs (positions, counts, lengths) must match exactly. Slots that hold one token
(sink, recent, heavy hitters, unmerged tokens, h2o/streaming/full, empty slots) are copies: keys,
values and scores bit for bit. A merged slot's floats follow the error analysis of
:func:`merge_bounds` (both sides compute in f32 with unit roundoff u = 2^-24 and round once to the
storage type):

  keys, values   |got - ref| <= b + ulp_storage(|ref| + b)     (the ulp term for f16/bf16 only)
                 b = 2u sum_i w_i |v_i| (n + 1 + 2 e + delta (x_i + xbar))
  scores         |got - ref| <= 2 (n + 1) u |ref|               (a sum of n non-negative terms)

with w_i the reference's weights, x_i = d_i^2 / (2 sigma^2) the exponent of member i's kernel,
xbar its weighted mean, n = |S|, e the ulps of either side's expf, delta the relative error of the
exponents (in u) for the sigma mode. The bound is relative to the magnitude of what is summed
(sum w_i |v_i|), not to the result, so it holds where a merged value cancels to nearly 0.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import kvmerge
from kvmerge import reference

DATA = Path(__file__).resolve().parents[1] / "data"
BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = [np.dtype(np.float32), np.dtype(np.float16), BF16]

POLICIES = [
    ("kvmerger", dict(ratio=0.5)),                      # spec v2 defaults: heavy, sigma=paper
    ("kvmerger", dict(ratio=0.35, heavy=0, sigma="auto")),  # spec v1
    ("kvmerger", dict(ratio=0.35, heavy=2, mode="threshold", eps=0.9)),
    ("kvmerger", dict(ratio=0.35, sigma="paper")),
    ("kvmerger", dict(ratio=0.35, sigma=0.7, sink=2, recent=3)),
    ("kvmerger", dict(ratio=0.5, mode="threshold", eps=0.2)),   # fewer runs than budget
    ("kvmerger", dict(ratio=0.35, mode="threshold", eps=0.95)),  # too many runs: budget cut
    ("kvmerger", dict(ratio=0.44, recent=0, mode="threshold", eps=0.0)),  # middle up to the end
    ("h2o", dict(ratio=0.5)),
    ("h2o", dict(ratio=0.35, sink=0, recent=1)),
    ("streaming", dict(ratio=0.35)),
    ("full", dict()),
]


def ulp(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """One unit in the last place of `dtype` at the magnitude of x (as f64)."""
    mant = {np.dtype(np.float16): 10, BF16: 7}[dtype]
    x = np.abs(x.astype(np.float64))
    tiny = {np.dtype(np.float16): 2.0 ** -14, BF16: 2.0 ** -126}[dtype]
    return np.exp2(np.floor(np.log2(np.maximum(x, tiny)))) * 2.0 ** -mant


#: ulps of the f32 exp of either side (glibc's expf < 1 ulp, NumPy's SIMD expf < 3 ulps).
EXP_ULPS = 4


def _segsum(x: np.ndarray, slot: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n,) + x.shape[1:])
    np.add.at(out, slot, x)
    return out


def merge_bounds(k, v, exp: dict, sigma) -> tuple:
    """Bounds ``(keys, values)`` (f64, shaped like ``exp``'s) of ``|compiled - reference|`` for the
    merged slots of a kvmerger result ``exp`` of the reference on keys ``k``, values ``v``; 0 on
    singleton and empty slots (copies).

    Error analysis (u the compute dtype's unit roundoff; either side, first order): a squared
    distance d_i^2 (D differences, squares and sums) is off by (D + 2) u relative, in any order.
    The kernel exponent x_i = d_i^2 / (2 sigma^2) then by delta u: D + 4 for a fixed sigma
    (sigma^2 is the same f32 product on both sides), 2D + n + 8 for ``auto`` (sigma^2 a mean of
    n distances), and for ``paper`` (D + 4) + 2 ((n / 2)(2D + n + 8) + n + 8 + e): s0^2 as in
    auto, sigma = sum g0 / (sqrt(2) n) with g0 = exp(-x0), x0 <= n / 2, squared. g_i = exp(-x_i)
    is off by x_i delta u + e u relative; the normalizer sum_j g_j by xbar delta u + (e + n) u
    (xbar = sum_j w_j x_j); so w_i by (x_i + xbar) delta u + (2 e + n + 1) u. The merged value
    sum_i w_i v_i (n products and sums) adds n u sum_i w_i |v_i|. Both sides err, so twice that:
    b = 2 u sum_i w_i |v_i| (n + 1 + 2 e + delta (x_i + xbar)), plus 2^-140 sum_i |v_i| for
    weights that underflow. x_i = ln(w_p / w_i) from the weights (the pivot's kernel is exactly 1).
    """
    kc, vc = np.asarray(k).astype(np.float64), np.asarray(v).astype(np.float64)
    u = 2.0 ** -53 if np.asarray(k).dtype == np.float64 else 2.0 ** -24
    H, L, D = kc.shape
    counts, lengths, pos = (np.asarray(exp[n]) for n in ("counts", "lengths", "positions"))
    slot = np.stack([np.repeat(np.arange(lengths[h]), counts[h, :lengths[h]]) for h in range(H)])
    w = reference.gaussian_weights(k, slot, pos, sigma=sigma).astype(np.float64)
    bounds = []
    for x_in in (kc, vc):
        b = np.zeros((H, counts.shape[1], x_in.shape[2]))
        for h in range(H):
            n_h, sl = int(lengths[h]), slot[h]
            m = counts[h, :n_h][sl].astype(np.float64)  # |S| of every token's set
            wh = w[h]
            wp = wh[pos[h, :n_h][sl]]
            x = np.where(wh > 0, np.log(wp / np.where(wh > 0, wh, 1.0)), 0.0).clip(min=0.0)
            xbar = _segsum(wh * x, sl, n_h)[sl]
            if isinstance(sigma, str) and sigma == "auto":
                delta = 2 * D + m + 8
            elif isinstance(sigma, str):  # paper
                delta = (D + 4) + 2 * ((m / 2) * (2 * D + m + 8) + m + 8 + EXP_ULPS)
            else:
                delta = np.full_like(m, D + 4.0)
            coef = wh * (m + 1 + 2 * EXP_ULPS + delta * (x + xbar))
            a = np.abs(x_in[h])
            b[h, :n_h] = 2 * u * _segsum(coef[:, None] * a, sl, n_h) + 2.0 ** -140 * _segsum(a, sl, n_h)
            b[h, :n_h][counts[h, :n_h] == 1] = 0.0
        bounds.append(b)
    return tuple(bounds)


def assert_same(got: dict, exp: dict, dtype: np.dtype, what: str = "", *, inputs=None):
    """``got`` (a compiled compress) against the reference's ``exp`` within the tolerances of the
    module docstring; ``inputs = (keys, values, kwargs of compress)`` (needed when ``exp`` has
    merged slots, for the bounds)."""
    for name in ("positions", "counts", "lengths"):
        np.testing.assert_array_equal(got[name], exp[name], err_msg=f"{what} {name}")
    assert got["keys"].dtype == exp["keys"].dtype, what
    counts = np.asarray(exp["counts"]).astype(np.float64)
    if (counts > 1).any():
        assert inputs is not None, f"{what}: merged slots need inputs=(keys, values, kwargs) for the bounds"
        k, v, kw = inputs
        bounds = dict(zip(("keys", "values"), merge_bounds(k, v, exp, kw.get("sigma", "paper"))))
    else:
        bounds = {n: np.zeros(np.shape(exp[n])) for n in ("keys", "values")}
    u = 2.0 ** -24
    for name in ("keys", "values", "scores"):
        g = np.asarray(got[name]).astype(np.float64)
        e = np.asarray(exp[name]).astype(np.float64)
        assert g.shape == e.shape, f"{what} {name}: {g.shape} vs {e.shape}"
        if name == "scores":
            tol = np.where(counts > 1, 2 * (counts + 1) * u * np.abs(e), 0.0)
        else:
            tol = bounds[name]
            if dtype in (np.dtype(np.float16), BF16):
                tol = tol + np.where(tol > 0, ulp(np.abs(e) + tol, dtype) * 1.0001, 0.0)
        bad = ~(np.abs(g - e) <= tol)
        if bad.any():
            i = tuple(np.argwhere(bad)[0])
            raise AssertionError(f"{what} {name}: {bad.sum()} elements off, first at {list(i)}: got {g[i]!r}, "
                                 f"expected {e[i]!r}, tolerance {tol[i]:.3g}")


def smooth_cache(rng, H, L, D, dtype):
    """Keys that drift slowly along the sequence (like real keys: adjacent ones similar)."""
    walk = np.cumsum(rng.standard_normal((H, L, D)), axis=1) * 0.15
    k = rng.standard_normal((H, 1, D)) + walk + 0.3 * rng.standard_normal((H, L, D))
    v = rng.standard_normal((H, L, D))
    a = rng.gamma(0.5, 2.0, (H, L))
    return k.astype(dtype), v.astype(dtype), a.astype(np.float32)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("policy,kw", POLICIES, ids=lambda p: str(p))
@pytest.mark.parametrize("seed", [0, 1])
def test_compress_random(policy, kw, dtype, seed):
    # A fixed seed per case (hash() of a str differs from process to process).
    rng = np.random.default_rng(1000 * seed + zlib.crc32(f"{policy}{kw}{dtype.name}".encode()) % 1000)
    H, L, D = (3, 97, 64) if seed == 0 else (2, 130, 128)
    k, v, a = smooth_cache(rng, H, L, D, dtype)
    exp = reference.compress(k, v, a, policy=policy, **kw)
    got = kvmerge.compress(k, v, a, policy=policy, **kw)
    assert_same(got, exp, dtype, f"{policy} {kw}", inputs=(k, v, kw))


@pytest.mark.parametrize("policy", ["kvmerger", "h2o", "streaming"])
def test_compress_within_budget(policy):
    """L <= B: the cache comes back unchanged, zero-padded to B."""
    rng = np.random.default_rng(7)
    k, v, a = smooth_cache(rng, 2, 9, 64, np.float32)
    got = kvmerge.compress(k, v, a, policy=policy, budget=12, sink=4, recent=8)
    exp = reference.compress(k, v, a, policy=policy, budget=12, sink=4, recent=8)
    assert_same(got, exp, np.dtype(np.float32), policy)
    np.testing.assert_array_equal(got["lengths"], [9, 9])


def test_compress_identical_run_loses_nothing():
    """A run of identical keys and values merges back to exactly that key and value."""
    H, L, D = 1, 40, 64
    rng = np.random.default_rng(3)
    k = rng.standard_normal((H, L, D)).astype(np.float32)
    v = rng.standard_normal((H, L, D)).astype(np.float32)
    k[:, 10:30] = k[:, 10]
    v[:, 10:30] = v[:, 10]
    k[:, 9] = k[:, 30] = -k[:, 10]  # cosine -1 on both borders: the weakest links
    a = rng.random((H, L)).astype(np.float32)
    got = kvmerge.compress(k, v, a, policy="kvmerger", budget=20, sink=4, recent=4, heavy=0)
    run = np.flatnonzero(got["counts"][0] == 20)
    assert run.size == 1, got["counts"]
    np.testing.assert_allclose(got["keys"][0, run[0]], k[0, 10], rtol=1e-6)
    np.testing.assert_allclose(got["values"][0, run[0]], v[0, 10], rtol=1e-6)


def test_compress_zero_norm_keys():
    rng = np.random.default_rng(4)
    k, v, a = smooth_cache(rng, 2, 50, 64, np.float32)
    k[:, 20:26] = 0.0
    exp = reference.compress(k, v, a, policy="kvmerger", ratio=0.5)
    got = kvmerge.compress(k, v, a, policy="kvmerger", ratio=0.5)
    assert_same(got, exp, np.dtype(np.float32), "zero-norm keys", inputs=(k, v, {}))
    assert np.isfinite(got["keys"]).all()


@pytest.mark.parametrize("bad,match", [
    (dict(ratio=1.5), "ratio"),
    (dict(budget=3), "budget"),
    (dict(ratio=0.5, eps=2.0, mode="threshold"), "eps"),
    (dict(ratio=0.5, sigma=-1.0), "sigma"),
    (dict(ratio=0.5, device="cuda"), "device"),
    (dict(budget=16, heavy=4), "^heavy"),    # Mb = 8: heavy <= 3
    (dict(budget=16, heavy=-1), "^heavy"),
])
def test_compress_bad_arguments(bad, match):
    k, v, a = smooth_cache(np.random.default_rng(0), 1, 32, 64, np.float32)
    with pytest.raises(ValueError, match=match):
        kvmerge.compress(k, v, a, policy="kvmerger", **bad)


@pytest.mark.parametrize("group", [1, 3, 8])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("count_bias", [False, True])
def test_attention_random(group, dtype, count_bias):
    rng = np.random.default_rng(group * 10 + count_bias)
    Hkv, S, D = 2, 37, 64
    q = rng.standard_normal((Hkv * group, D)).astype(dtype)
    k = rng.standard_normal((Hkv, S, D)).astype(dtype)
    v = rng.standard_normal((Hkv, S, D)).astype(dtype)
    lengths = np.array([S, 11], np.int32)
    counts = rng.integers(1, 6, (Hkv, S)).astype(np.int32)
    exp = reference.attention(q, k, v, lengths, counts=counts, count_bias=count_bias)
    got = kvmerge.attention(q, k, v, lengths, counts=counts, count_bias=count_bias)
    assert got.dtype == exp.dtype == np.float32
    e = exp.astype(np.float64)
    assert (np.abs(got - e) <= 2e-5 * (1 + np.abs(e))).all(), np.max(np.abs(got - e))


# --- real KV states of real models -----------------------------------------------------------


def fixture_layers(name):
    z = np.load(DATA / name)
    return [(int(layer), z["keys"][i], z["values"][i], z["scores"][i], z["scores_obs"][i])
            for i, layer in enumerate(z["layers"])]


@pytest.mark.parametrize("name", ["smollm2_kv.npz", "stories260k_kv.npz"])
@pytest.mark.parametrize("policy,kw", [
    ("kvmerger", dict(ratio=0.5)),
    ("kvmerger", dict(ratio=0.35)),
    ("kvmerger", dict(ratio=0.35, mode="threshold", eps=0.75)),
    ("kvmerger", dict(ratio=0.35, heavy=0, sigma="auto")),
    ("h2o", dict(ratio=0.35)),
    ("streaming", dict(ratio=0.5)),
])
def test_compress_real_fixtures(name, policy, kw):
    """f16 real caches (and bf16 / f32 casts of the first layer) through the compiled path."""
    for layer, k, v, a, a_obs in fixture_layers(name):
        exp = reference.compress(k, v, a, policy=policy, **kw)
        got = kvmerge.compress(k, v, a, policy=policy, **kw)
        assert_same(got, exp, np.dtype(np.float16), f"{name} layer {layer}", inputs=(k, v, kw))
    k32, v32 = k.astype(np.float32), v.astype(np.float32)
    assert_same(kvmerge.compress(k32, v32, a_obs, policy=policy, **kw),
                reference.compress(k32, v32, a_obs, policy=policy, **kw), np.dtype(np.float32), "f32",
                inputs=(k32, v32, kw))
    kb, vb = k.astype(BF16), v.astype(BF16)
    assert_same(kvmerge.compress(kb, vb, a, policy=policy, **kw),
                reference.compress(kb, vb, a, policy=policy, **kw), BF16, "bf16", inputs=(kb, vb, kw))


def test_attention_real_fixture():
    """Decode attention of the real next-token queries over a compressed real cache."""
    z = np.load(DATA / "smollm2_kv.npz")
    k, v, a, q = z["keys"][1], z["values"][1], z["scores"][1], z["q_next"][1][:, 0]
    c = reference.compress(k, v, a, policy="kvmerger", ratio=0.5)
    for bias in (False, True):
        exp = reference.attention(q, c["keys"], c["values"], c["lengths"], counts=c["counts"], count_bias=bias)
        got = kvmerge.attention(q, c["keys"], c["values"], c["lengths"], counts=c["counts"], count_bias=bias)
        e = exp.astype(np.float64)
        assert (np.abs(got - e) <= 2e-5 * (1 + np.abs(e))).all(), np.max(np.abs(got - e))


def _compress_via(k, v, a, kw, path):
    """kvcache.compress through the unfused loops (fuse-merge=false) or the upstream export."""
    import subprocess
    from kvmerge import compiled

    args = reference.resolve_compress_args(k, v, a, policy="kvmerger", **kw)
    text = compiled.compress_module_for(args, k.shape, v.shape, k.dtype)
    inputs = [k, v, np.asarray(args.ac, np.float32)]
    if path == "unfused":
        outs = compiled.run(text, "compress", inputs, 6, pipeline_options="fuse-merge=false")
    else:
        exported = subprocess.run([compiled.tool("kvmerge-opt"), "--kvmerge-export-upstream"], input=text,
                                  capture_output=True, text=True, check=True).stdout
        assert "kvcache." not in exported
        outs = compiled.run(exported, "compress", inputs, 6)
    return dict(zip(("keys", "values", "positions", "counts", "scores", "lengths"), outs))


V2_CASES = [
    dict(ratio=0.35),                                     # v2 defaults: heavy, paper sigma
    dict(ratio=0.5, heavy=3, mode="threshold", eps=0.9),  # per-segment threshold cuts
    dict(ratio=0.35, heavy=0, sigma="auto"),              # v1
]


@pytest.mark.parametrize("path", ["unfused", "export"])
@pytest.mark.parametrize("kw", V2_CASES, ids=str)
def test_compress_v2_unfused_and_export_paths(path, kw):
    """Heavy hitters through the unfused ops and through --kvmerge-export-upstream, random and real."""
    rng = np.random.default_rng(11)
    for dtype in (np.dtype(np.float32), np.dtype(np.float16)):
        k, v, a = smooth_cache(rng, 2, 77, 64, dtype)
        assert_same(_compress_via(k, v, a, kw, path), reference.compress(k, v, a, **kw), dtype,
                    f"{path} random {dtype}", inputs=(k, v, kw))
    layer, k, v, a, _ = fixture_layers("smollm2_kv.npz")[1]
    assert_same(_compress_via(k, v, a, kw, path), reference.compress(k, v, a, **kw), np.dtype(np.float16),
                f"{path} smollm2 layer {layer}", inputs=(k, v, kw))


def test_tolerances_are_not_vacuous():
    """The bounds catch small errors: a merged value moved by a few of its bounds, a singleton
    moved by one ulp (copies must be exact), a merged score moved by four of its bounds."""
    rng = np.random.default_rng(21)
    for dtype in DTYPES:
        k, v, a = smooth_cache(rng, 2, 97, 64, dtype)
        kw = dict(ratio=0.35, heavy=0, sigma="auto")
        exp = reference.compress(k, v, a, **kw)
        assert_same({n: x.copy() for n, x in exp.items()}, exp, dtype, "itself", inputs=(k, v, kw))
        _, bv = merge_bounds(k, v, exp, "auto")
        merged = np.argwhere(exp["counts"] > 1)[0]
        single = np.argwhere(exp["counts"] == 1)[0]
        vals = exp["values"].astype(np.float64)
        for slot, step in ((merged, lambda x: x + 4 * bv[tuple(merged)][0]
                            + (2 * ulp(np.abs(x), dtype) if dtype != np.float32 else 0)),
                           (single, lambda x: np.nextafter(x.astype(dtype), np.asarray(np.inf, dtype)))):
            bad = {n: x.copy() for n, x in exp.items()}
            i = tuple(slot) + (0,)
            bad["values"][i] = np.asarray(step(vals[i] if slot is merged else exp["values"][i])).astype(dtype)
            assert bad["values"][i] != exp["values"][i]
            with pytest.raises(AssertionError, match="values: 1 elements off"):
                assert_same(bad, exp, dtype, "perturbed", inputs=(k, v, kw))
        bad = {n: x.copy() for n, x in exp.items()}
        n = int(exp["counts"][tuple(merged)])
        bad["scores"][tuple(merged)] *= np.float32(1 + 4 * 2 * (n + 1) * 2.0 ** -24)  # 4 bounds
        with pytest.raises(AssertionError, match="scores: 1 elements off"):
            assert_same(bad, exp, dtype, "perturbed", inputs=(k, v, kw))
