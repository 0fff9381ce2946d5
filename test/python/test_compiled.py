"""Compiled kvcache kernels (kvmerge-opt lowering, JIT by kvmerge-run) against the NumPy reference.

Every policy and both merge modes, on fresh random caches (several seeds, odd lengths, caches
within budget, D in {64, 128}, f32/f16/bf16) and on real KV states of real models
(test/data fixtures). Discrete outputs (positions, counts, lengths) must match exactly; float
outputs within the tolerance of their dtype:

  f32   |got - ref| <= 2e-5 * (1 + |ref|)   (f32 accumulation, different summation order;
        also attention outputs, which are f32 for every storage type, like the reference's)
  f16   1 ulp of f16   (both sides accumulate in f32 and round once; order may flip a rounding)
  bf16  1 ulp of bf16
        plus 4 f32 roundings of the tensor's largest magnitude: a merged row is a weighted mean,
        and where its terms cancel, the f32 summation order alone moves a small result by more
        than its own ulp (seen: an f16 subnormal off by 2 ulps, the f64 truth between the two)
"""

from __future__ import annotations

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


def assert_same(got: dict, exp: dict, dtype: np.dtype, what: str = ""):
    for name in ("positions", "counts", "lengths"):
        np.testing.assert_array_equal(got[name], exp[name], err_msg=f"{what} {name}")
    assert got["keys"].dtype == exp["keys"].dtype, what
    for name in ("keys", "values", "scores"):
        g = np.asarray(got[name]).astype(np.float64)
        e = np.asarray(exp[name]).astype(np.float64)
        assert g.shape == e.shape, f"{what} {name}: {g.shape} vs {e.shape}"
        if name == "scores" or dtype == np.float32:
            tol = 2e-5 * (1 + np.abs(e))
        else:
            tol = ulp(e, dtype) * 1.0001 + 4 * 2.0 ** -24 * np.max(np.abs(e), initial=0)
        bad = np.abs(g - e) > tol
        assert not bad.any(), (f"{what} {name}: {bad.sum()} elements off, worst "
                               f"{np.max(np.abs(g - e)):.3g} at {np.argwhere(bad)[0]}")


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
    rng = np.random.default_rng(1000 * seed + hash((policy, str(kw), dtype.name)) % 1000)
    H, L, D = (3, 97, 64) if seed == 0 else (2, 130, 128)
    k, v, a = smooth_cache(rng, H, L, D, dtype)
    exp = reference.compress(k, v, a, policy=policy, **kw)
    got = kvmerge.compress(k, v, a, policy=policy, **kw)
    assert_same(got, exp, dtype, f"{policy} {kw}")


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
    assert_same(got, exp, np.dtype(np.float32), "zero-norm keys")
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
        assert_same(got, exp, np.dtype(np.float16), f"{name} layer {layer}")
    k32, v32 = k.astype(np.float32), v.astype(np.float32)
    assert_same(kvmerge.compress(k32, v32, a_obs, policy=policy, **kw),
                reference.compress(k32, v32, a_obs, policy=policy, **kw), np.dtype(np.float32), "f32")
    kb, vb = k.astype(BF16), v.astype(BF16)
    assert_same(kvmerge.compress(kb, vb, a, policy=policy, **kw),
                reference.compress(kb, vb, a, policy=policy, **kw), BF16, "bf16")


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
                    f"{path} random {dtype}")
    layer, k, v, a, _ = fixture_layers("smollm2_kv.npz")[1]
    assert_same(_compress_via(k, v, a, kw, path), reference.compress(k, v, a, **kw), np.dtype(np.float16),
                f"{path} smollm2 layer {layer}")
