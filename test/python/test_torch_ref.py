"""kvmerge.torch_ref (the PyTorch eager re-implementation used by the GPU check) against the
NumPy reference: every policy, both modes, every sigma, f32/f16/bf16, random and real caches;
decode attention with GQA, lengths and count bias. Same tolerances as the compiled path
(test_compiled.py). Runs on the CPU (torch's CPU build)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kvmerge import reference

torch = pytest.importorskip("torch")
from kvmerge import torch_ref  # noqa: E402

from test_compiled import BF16, DTYPES, POLICIES, assert_same, smooth_cache  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"


def run_torch(k, v, a, policy, **kw):
    args = reference.resolve_compress_args(k, v, a, policy=policy, **kw)
    out = torch_ref.compress(torch_ref.from_numpy(k), torch_ref.from_numpy(v),
                             torch_ref.from_numpy(np.asarray(args.ac, np.float32)), policy=args.policy,
                             B=args.B, sink=args.sink, recent=args.recent, mode=args.mode, eps=args.eps,
                             sigma=args.sigma, heavy=args.heavy)
    return {name: torch_ref.to_numpy(t) for name, t in out.items()}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("policy,kw", [p for p in POLICIES if p[0] != "full"], ids=lambda p: str(p))
@pytest.mark.parametrize("seed", [0, 1])
def test_compress_random(policy, kw, dtype, seed):
    rng = np.random.default_rng(77 + seed)
    H, L, D = (3, 97, 64) if seed == 0 else (2, 300, 128)
    k, v, a = smooth_cache(rng, H, L, D, dtype)
    assert_same(run_torch(k, v, a, policy, **kw), reference.compress(k, v, a, policy=policy, **kw), dtype,
                f"{policy} {kw}", inputs=(k, v, kw))


@pytest.mark.parametrize("policy", ["kvmerger", "h2o", "streaming"])
def test_compress_within_budget(policy):
    k, v, a = smooth_cache(np.random.default_rng(7), 2, 9, 64, np.float32)
    kw = dict(budget=12, sink=4, recent=8)
    assert_same(run_torch(k, v, a, policy, **kw), reference.compress(k, v, a, policy=policy, **kw),
                np.dtype(np.float32), policy)


def test_compress_ties():
    """Equal scores (h2o keeps the newer; pivots are the newest) and zero-norm keys."""
    rng = np.random.default_rng(5)
    k, v, a = smooth_cache(rng, 2, 80, 64, np.float32)
    a = np.round(a * 2) / 2  # many exact ties
    k[:, 30:36] = 0
    for policy, kw in [("h2o", dict(ratio=0.4)), ("kvmerger", dict(ratio=0.4)),
                       ("kvmerger", dict(ratio=0.4, sigma="paper"))]:
        assert_same(run_torch(k, v, a, policy, **kw), reference.compress(k, v, a, policy=policy, **kw),
                    np.dtype(np.float32), f"ties {policy}", inputs=(k, v, kw))


@pytest.mark.parametrize("policy,kw", [("kvmerger", dict(ratio=0.5)), ("kvmerger", dict(ratio=0.35, sigma="paper")),
                                       ("kvmerger", dict(ratio=0.35, mode="threshold", eps=0.75)),
                                       ("h2o", dict(ratio=0.35)), ("streaming", dict(ratio=0.5))])
def test_compress_real_fixture(policy, kw):
    z = np.load(DATA / "smollm2_kv.npz")
    for i in range(z["keys"].shape[0]):
        k, v, a = z["keys"][i], z["values"][i], z["scores"][i]
        assert_same(run_torch(k, v, a, policy, **kw), reference.compress(k, v, a, policy=policy, **kw),
                    np.dtype(np.float16), f"smollm2 layer {i}", inputs=(k, v, kw))
    kb, vb = k.astype(BF16), v.astype(BF16)
    assert_same(run_torch(kb, vb, a, policy, **kw), reference.compress(kb, vb, a, policy=policy, **kw), BF16,
                "bf16", inputs=(kb, vb, kw))


def test_slot_map_from_counts():
    rng = np.random.default_rng(2)
    k, v, a = smooth_cache(rng, 2, 200, 64, np.float32)
    out = reference.compress(k, v, a, policy="kvmerger", ratio=0.3)
    slot = torch_ref.slot_map_from_counts(torch.from_numpy(out["counts"]), torch.from_numpy(out["lengths"]), 200)
    sim = reference.adjacent_similarity(k)
    args = reference.resolve_compress_args(k, v, a, policy="kvmerger", ratio=0.3)
    exp, _ = reference.merge_sets(sim, sink=args.sink, recent=args.recent,
                                  slots_middle=args.B - args.sink - args.recent, scores=a, heavy=args.heavy)
    np.testing.assert_array_equal(slot.numpy(), exp)
    bad = out["counts"].copy()
    bad[0, 3] += 1
    with pytest.raises(ValueError, match="counts: head 0"):
        torch_ref.slot_map_from_counts(torch.from_numpy(bad), torch.from_numpy(out["lengths"]), 200)


@pytest.mark.parametrize("group", [1, 4])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("count_bias", [False, True])
def test_attention(group, dtype, count_bias):
    rng = np.random.default_rng(group + 10 * count_bias)
    Hkv, S, D = 2, 37, 64
    q = rng.standard_normal((Hkv * group, D)).astype(dtype)
    k = rng.standard_normal((Hkv, S, D)).astype(dtype)
    v = rng.standard_normal((Hkv, S, D)).astype(dtype)
    lengths = np.array([S, 0], np.int32)  # an empty head gives 0
    counts = rng.integers(1, 6, (Hkv, S)).astype(np.int32)
    exp = reference.attention(q, k, v, lengths, counts=counts, count_bias=count_bias).astype(np.float64)
    for dt in (None, torch.float64):
        got = torch_ref.attention(torch_ref.from_numpy(q), torch_ref.from_numpy(k), torch_ref.from_numpy(v),
                                  torch.from_numpy(lengths), counts=torch.from_numpy(counts),
                                  count_bias=count_bias, dtype=dt).numpy().astype(np.float64)
        assert (np.abs(got - exp) <= 2e-5 * (1 + np.abs(exp))).all(), np.max(np.abs(got - exp))
