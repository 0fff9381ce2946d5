"""Tests of the NumPy reference (kvmerge.reference) against shared/spec/kvmerger.md.

Independent brute-force implementations (plain Python loops, float64 math) are written here and
compared field by field with the vectorised reference on many small random cases.
"""
import math

import ml_dtypes
import numpy as np
import pytest

from kvmerge import reference as R

BF16 = np.dtype(ml_dtypes.bfloat16)
FIELDS = ("keys", "values", "positions", "counts", "scores", "lengths")


# ------------------------------------------------------------------------------------------------
# brute-force, obviously-correct implementations (Python loops, float64)
# ------------------------------------------------------------------------------------------------
def bf_lane_sum(x, y):
    """sum x[d] * y[d] in the documented order (docs/reference.md, choice 3), in Python floats
    (IEEE doubles): lane j adds d = j, j + 16, ... in increasing d; lanes combined by halving."""
    lanes = [0.0] * 16
    for d in range(len(x)):
        lanes[d % 16] = lanes[d % 16] + float(x[d]) * float(y[d])
    w = 16
    while w > 1:
        w //= 2
        lanes = [lanes[j] + lanes[j + w] for j in range(w)]
    return lanes[0]


def bf_cos(x, y):
    """The similarity rule: float64 cosine in that order (0 for a zero norm), clipped, rounded
    once to float32 (math.sqrt is correctly rounded, like every path's sqrt)."""
    den = math.sqrt(bf_lane_sum(x, x)) * math.sqrt(bf_lane_sum(y, y))
    if den == 0.0:
        return np.float32(0.0)
    return np.float32(max(-1.0, min(1.0, bf_lane_sum(x, y) / den)))


def bf_sq_dist(x, y):
    return sum((float(a) - float(b)) ** 2 for a, b in zip(x, y))


def bf_budget(L, budget=None, ratio=None):
    return budget if budget is not None else math.ceil(ratio * L)


def bf_layout(slots_per_head, K, V, A, B):
    """slots_per_head: per head, list of (token list, weights list, pivot)."""
    H, L, D = K.shape
    Dv = V.shape[2]
    out = {
        "keys": np.zeros((H, B, D)), "values": np.zeros((H, B, Dv)),
        "positions": np.zeros((H, B), np.int32), "counts": np.zeros((H, B), np.int32),
        "scores": np.zeros((H, B), np.float32), "lengths": np.zeros(H, np.int32),
    }
    for h, slots in enumerate(slots_per_head):
        out["lengths"][h] = len(slots)
        for j, (toks, ws, p) in enumerate(slots):
            for d in range(D):
                out["keys"][h, j, d] = sum(w * float(K[h, t, d]) for t, w in zip(toks, ws))
            for d in range(Dv):
                out["values"][h, j, d] = sum(w * float(V[h, t, d]) for t, w in zip(toks, ws))
            out["positions"][h, j] = p
            out["counts"][h, j] = len(toks)
            out["scores"][h, j] = sum(float(A[h, t]) for t in toks)
    return out


def bf_singletons(toks):
    return [([t], [1.0], t) for t in toks]


def bf_pivot(A_h, toks):
    p = toks[0]
    for t in toks:
        if A_h[t] >= A_h[p]:  # ties: newest
            p = t
    return p


def bf_weights(K_h, toks, p, sigma):
    n = len(toks)
    d2 = [bf_sq_dist(K_h[p], K_h[i]) for i in toks]
    if n == 1:
        return [1.0]
    if sigma == "auto":
        sig2 = sum(d2[k] for k, i in enumerate(toks) if i != p) / (n - 1)
    elif sigma == "paper":
        s02 = sum(d2) / n
        if s02 == 0.0:
            sig2 = 0.0
        else:
            g0 = [math.exp(-x / (2 * s02)) for x in d2]
            sig = sum(g0) / (math.sqrt(2) * n)
            sig2 = sig * sig
    else:
        sig2 = float(sigma) ** 2
    if sig2 == 0.0:
        return [1.0 / n] * n
    g = [math.exp(-x / (2 * sig2)) for x in d2]
    return [x / sum(g) for x in g]


def bf_compress(K, V, A, *, policy, budget=None, ratio=None, sink=4, recent=None, mode="budget",
                eps=0.75, sigma="paper", heavy=None):
    """Spec v2 by brute force: heavy hitters as singletons, cuts counted per segment."""
    H, L, D = K.shape
    B = L if policy == "full" else bf_budget(L, budget, ratio)
    if recent is None:
        recent = math.ceil(B / 4)
    heads = []
    for h in range(H):
        if L <= B:
            heads.append(bf_singletons(range(L)))
            continue
        if policy == "streaming":
            heads.append(bf_singletons(list(range(sink)) + list(range(L - (B - sink), L))))
            continue
        Mb = B - sink - recent
        mid = list(range(sink, L - recent))
        if policy == "h2o":
            ranked = sorted(mid, key=lambda t: (-float(A[h, t]), -t))
            keep = sorted(ranked[:Mb])
            heads.append(bf_singletons(list(range(sink)) + keep + list(range(L - recent, L))))
            continue
        assert policy == "kvmerger"
        nh = (Mb - 1) // 2 if heavy is None else heavy
        ranked = sorted(mid, key=lambda t: (-float(A[h, t]), -t))
        hh = set(ranked[:nh])
        segments, cur = [], []
        for t in mid:
            if t in hh:
                if cur:
                    segments.append(cur)
                cur = []
            else:
                cur.append(t)
        if cur:
            segments.append(cur)
        sims = {t: bf_cos(K[h, t], K[h, t + 1]) for seg in segments for t in seg[:-1]}
        k = Mb - nh - len(segments)
        cuts = None
        if mode == "threshold":
            cuts = {t for t in sims if sims[t] < np.float32(eps)}  # eps rounded to f32 (choice 4)
            if len(cuts) > k:
                cuts = None
        if cuts is None:
            ordered = sorted(sims, key=lambda t: (sims[t], t))  # ties: older link first
            cuts = set(ordered[:max(k, 0)])
        sets = [[t] for t in hh]
        for seg in segments:
            cur = [seg[0]]
            for t in seg[:-1]:
                if t in cuts:
                    sets.append(cur)
                    cur = [t + 1]
                else:
                    cur.append(t + 1)
            sets.append(cur)
        sets.sort(key=lambda S: S[0])
        slots = bf_singletons(range(sink))
        for S in sets:
            p = bf_pivot(A[h], S)
            slots.append((S, bf_weights(K[h], S, p, sigma), p))
        slots += bf_singletons(range(L - recent, L))
        heads.append(slots)
    return bf_layout(heads, K, V, A, B)


def bf_accumulated(q, k, obs_window=None, scale=None):
    Hq, L, D = q.shape
    scale = 1 / math.sqrt(D) if scale is None else scale
    Hkv = k.shape[0]
    G = Hq // Hkv
    w = L if obs_window is None else obs_window
    a = np.zeros((Hkv, L))
    for j in range(Hq):
        h = j // G
        for i in range(L - w, L):
            logits = [sum(float(q[j, i, d]) * float(k[h, t, d]) for d in range(D)) * scale
                      for t in range(i + 1)]
            m = max(logits)
            e = [math.exp(x - m) for x in logits]
            for t in range(i + 1):
                a[h, t] += e[t] / sum(e)
    return a


def bf_attention(q, keys, values, lengths, counts=None, count_bias=False, scale=None):
    Hq, D = q.shape
    Hkv = keys.shape[0]
    G = Hq // Hkv
    sc = 1 / math.sqrt(D) if scale is None else scale
    out = np.zeros((Hq, values.shape[2]))
    for j in range(Hq):
        h = j // G
        n = int(lengths[h])
        if n == 0:
            continue
        logits = []
        for b in range(n):
            x = sum(float(q[j, d]) * float(keys[h, b, d]) for d in range(D)) * sc
            if count_bias:
                x += math.log(counts[h, b])
            logits.append(x)
        m = max(logits)
        e = [math.exp(x - m) for x in logits]
        for b in range(n):
            out[j] += e[b] / sum(e) * values[h, b].astype(np.float64)
    return out


def assert_same(out, ref, rtol=1e-9, atol=1e-12):
    for f in FIELDS:
        assert out[f].shape == ref[f].shape, f
    for f in ("positions", "counts", "lengths"):
        np.testing.assert_array_equal(out[f], ref[f], err_msg=f)
    for f in ("keys", "values"):
        np.testing.assert_allclose(out[f].astype(np.float64), ref[f], rtol=rtol, atol=atol, err_msg=f)
    np.testing.assert_allclose(out["scores"], ref["scores"], rtol=1e-6, atol=1e-6, err_msg="scores")


# ------------------------------------------------------------------------------------------------
# data helpers
# ------------------------------------------------------------------------------------------------
def smooth_keys(rng, H, L, D, noise=0.3):
    """Keys with high adjacent similarity, like real key states (random walk + noise)."""
    k = np.cumsum(rng.standard_normal((H, L, D)) * 0.4, axis=1) + rng.standard_normal((H, 1, D)) * 2
    return k + noise * rng.standard_normal((H, L, D))


def pooled_keys(rng, H, L, D, pool=4):
    """Keys drawn from a small pool of small-integer vectors: exact ties in similarity and distance.

    Integer entries make every dot product and squared norm exact whatever the summation order, so
    the reference and the brute force round the similarities identically (a zero vector may occur:
    zero-norm keys are exercised too).
    """
    P = rng.integers(-3, 4, (pool, D)).astype(np.float64)
    return P[rng.integers(0, pool, (H, L))]


def rand_case(rng, H=2, L=24, D=4, Dv=3, kind="smooth", int_scores=False):
    if kind == "smooth":
        K = smooth_keys(rng, H, L, D)
    elif kind == "pooled":
        K = pooled_keys(rng, H, L, D)
    else:
        K = rng.standard_normal((H, L, D))
    V = rng.standard_normal((H, L, Dv))
    A = rng.integers(0, 4, (H, L)).astype(np.float64) if int_scores else rng.random((H, L)) * 3
    return K, V, A


# ------------------------------------------------------------------------------------------------
# brute-force agreement
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(30))
def test_kvmerger_matches_bruteforce(seed):
    rng = np.random.default_rng(seed)
    kind = ("smooth", "pooled", "random")[seed % 3]
    L = int(rng.integers(12, 40))
    K, V, A = rand_case(rng, H=2, L=L, D=int(rng.integers(2, 6)), Dv=3, kind=kind,
                        int_scores=bool(seed % 2))
    sink = int(rng.integers(0, 5))
    B = int(rng.integers(sink + 3, L + 3))
    recent = None if seed % 4 else int(rng.integers(0, 4))
    rec = math.ceil(B / 4) if recent is None else recent
    if B - sink - rec < 1:
        B = sink + rec + 1
    for mode, eps in (("budget", 0.75), ("threshold", 0.75), ("threshold", float(rng.uniform(-0.5, 0.99)))):
        for sigma in ("auto", "paper", 0.7):
            Mb = B - sink - rec
            for heavy in sorted({None, 0, (Mb - 1) // 2, min(1, (Mb - 1) // 2)}, key=str):
                kw = dict(policy="kvmerger", budget=B, sink=sink, recent=recent, mode=mode, eps=eps,
                          sigma=sigma, heavy=heavy)
                out = R.compress(K, V, A, **kw)
                assert_same(out, bf_compress(K, V, A, **kw))
                assert out["keys"].dtype == np.float64


def test_heavy_hitters_kept_exactly_and_never_merged():
    rng = np.random.default_rng(77)
    K, V, A = rand_case(rng, H=3, L=96, D=8, Dv=6, kind="smooth")
    B, sink = 40, 4
    rec = 10
    Mb = B - sink - rec  # 26 -> default heavy 12
    out = R.compress(K, V, A, budget=B, sink=sink)
    assert out["lengths"].tolist() == [B] * 3
    for h in range(3):
        mid = np.arange(sink, 96 - rec)
        top = mid[np.lexsort((-mid, -A[h, mid]))[:12]]
        for t in top:  # each heavy hitter is its own slot, bit-exact
            j = int(np.flatnonzero(out["positions"][h] == t)[0])
            assert out["counts"][h, j] == 1
            np.testing.assert_array_equal(out["keys"][h, j], K[h, t])
            np.testing.assert_array_equal(out["values"][h, j], V[h, t])
        # positions stay in token order; counts add up to L
        assert np.all(np.diff(out["positions"][h]) > 0)
        assert out["counts"][h].sum() == 96
    # heavy = 0 is v1: no such guarantee, and a different result
    v1 = R.compress(K, V, A, budget=B, sink=sink, heavy=0, sigma="auto")
    assert not np.array_equal(v1["positions"], out["positions"])


def test_heavy_validation_names_heavy():
    rng = np.random.default_rng(78)
    K, V, A = rand_case(rng, H=1, L=64, D=4, Dv=2)
    # B = 20: recent 5, Mb = 11 -> heavy <= 5
    R.compress(K, V, A, budget=20, heavy=5)
    with pytest.raises(ValueError, match=r"^heavy: 2 \* heavy \+ 1 = 13 exceeds the 11 middle slots"):
        R.compress(K, V, A, budget=20, heavy=6)
    with pytest.raises(ValueError, match="^heavy: must be >= 0"):
        R.compress(K, V, A, budget=20, heavy=-1)
    with pytest.raises(ValueError, match="^heavy: expected an integer"):
        R.compress(K, V, A, budget=20, heavy=2.5)
    for policy in ("h2o", "streaming", "full"):
        with pytest.raises(ValueError, match="^heavy: only policy 'kvmerger'"):
            R.compress(K, V, A, policy=policy, budget=20, heavy=1)
    with pytest.raises(ValueError, match="^heavy: "):
        R.merge_sets(R.adjacent_similarity(K), sink=4, recent=5, slots_middle=11, scores=A, heavy=6)
    with pytest.raises(ValueError, match="^scores: heavy > 0 needs"):
        R.merge_sets(R.adjacent_similarity(K), sink=4, recent=5, slots_middle=11, heavy=2)


def test_per_segment_cuts_exact_budget():
    # heavy hitters at 3 places split the middle into 4 segments; budget mode: exactly Mb slots
    sim = np.full((1, 19), 0.9)
    sim[0, [5, 9, 13]] = 0.1  # the weakest links (would be the v1 cuts)
    A = np.zeros((1, 20))
    A[0, [4, 8, 15]] = 5.0  # heavy hitters (middle = [2, 18))
    slot, n = R.merge_sets(sim, sink=2, recent=2, slots_middle=8, scores=A, heavy=3)
    # segments [2,3], [5,6,7], [9..14], [16,17] -> n_seg = 4, Bm = 5 -> 1 extra cut: link 5 (the
    # oldest of the equal-weakest links 5, 9, 13 inside segments)
    assert n.tolist() == [2 + 8 + 2]
    assert slot[0].tolist() == [0, 1, 2, 2, 3, 4, 5, 5, 6, 7, 7, 7, 7, 7, 7, 8, 9, 9, 10, 11]
    # threshold mode with eps = 0.5: 3 links below eps inside segments (5, 9, 13) > 5 - 4 = 1: budget cut
    slot_t, n_t = R.merge_sets(sim, sink=2, recent=2, slots_middle=8, scores=A, heavy=3, mode="threshold",
                               eps=0.5)
    np.testing.assert_array_equal(slot_t, slot)
    # eps = 0.05: no link below eps -> one run per segment: 2 + 3 + 4 + 2 slots
    slot_f, n_f = R.merge_sets(sim, sink=2, recent=2, slots_middle=8, scores=A, heavy=3, mode="threshold",
                               eps=0.05)
    assert n_f.tolist() == [2 + 3 + 4 + 2]


def test_normalized_accumulated_scores():
    rng = np.random.default_rng(79)
    q = rng.standard_normal((4, 10, 3))
    k = rng.standard_normal((2, 10, 3))
    for w in (None, 4):
        a = R.accumulated_scores(q, k, obs_window=w)
        an = R.accumulated_scores(q, k, obs_window=w, normalize=True)
        first = 0 if w is None else 10 - w
        seen = np.array([10 - max(t, first) for t in range(10)])
        np.testing.assert_allclose(an, bf_accumulated(q, k, w) / seen, rtol=1e-12)
        np.testing.assert_allclose(an * seen, a, rtol=1e-12)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("policy", ["h2o", "streaming", "full"])
def test_baselines_match_bruteforce(seed, policy):
    rng = np.random.default_rng(1000 + seed)
    L = int(rng.integers(8, 40))
    K, V, A = rand_case(rng, H=3, L=L, D=3, Dv=2, kind="random", int_scores=bool(seed % 2))
    A = A.astype(np.float32)
    sink = int(rng.integers(0, 5))
    B = int(rng.integers(sink + 3, L + 4))
    rec = math.ceil(B / 4)
    if policy == "h2o" and B - sink - rec < 1:
        B = sink + rec + 1
    kw = dict(policy=policy, sink=sink)
    if policy != "full":
        kw["budget"] = B
    out = R.compress(K.astype(np.float32), V.astype(np.float32), A, **kw)
    ref = bf_compress(K.astype(np.float32), V.astype(np.float32), A, **kw)
    assert_same(out, ref, rtol=0, atol=0)  # selection only: exact


def test_ratio_and_default_recent():
    rng = np.random.default_rng(7)
    K, V, A = rand_case(rng, H=2, L=100, D=4)
    for r in (0.07, 0.35, 0.5, 1.0):
        out = R.compress(K, V, A, ratio=r)
        assert out["keys"].shape[1] == math.ceil(r * 100)
        assert_same(out, bf_compress(K, V, A, policy="kvmerger", ratio=r))
    assert R.budget_from_ratio(0.07, 100) == 8  # IEEE: 0.07 * 100 = 7.000000000000001
    assert R.budget_from_ratio(0.35, 100) == 35
    assert R.budget_from_ratio(1e-9, 10) == 1


# ------------------------------------------------------------------------------------------------
# structural properties
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(10))
def test_budget_mode_holds_budget_exactly(seed):
    rng = np.random.default_rng(seed)
    K, V, A = rand_case(rng, H=4, L=200, D=16, Dv=16, kind=("smooth", "random")[seed % 2])
    for r in (0.1, 0.35, 0.5, 0.9):
        out = R.compress(K.astype(np.float32), V.astype(np.float32), A.astype(np.float32), ratio=r)
        B = math.ceil(r * 200)
        assert out["lengths"].tolist() == [B] * 4
        assert out["counts"].sum(axis=1).tolist() == [200] * 4
        np.testing.assert_allclose(out["scores"].sum(axis=1), A.sum(axis=1), rtol=1e-5)
        assert np.all(np.diff(out["positions"], axis=1) > 0)  # pivots strictly increasing


@pytest.mark.parametrize("seed", range(10))
def test_slot_map_structure(seed):
    rng = np.random.default_rng(seed)
    H, L = 3, 60
    sim = rng.uniform(-1, 1, (H, L - 1))
    sink, recent, bm = int(rng.integers(0, 6)), int(rng.integers(0, 6)), int(rng.integers(1, 30))
    for mode in ("budget", "threshold"):
        slot, lengths = R.merge_sets(sim, sink=sink, recent=recent, slots_middle=bm, mode=mode, eps=0.2)
        assert slot.dtype == np.int32 and lengths.dtype == np.int32 and slot.shape == (H, L)
        mlen = L - sink - recent
        for h in range(H):
            s = slot[h]
            assert s[0] == 0 and set(np.diff(s).tolist()) <= {0, 1}
            assert lengths[h] == s[-1] + 1
            np.testing.assert_array_equal(s[:sink], np.arange(sink))  # sink: singletons
            rs = s[L - recent:]
            np.testing.assert_array_equal(rs, rs[0] + np.arange(recent) if recent else rs)
            if recent:
                assert rs[0] == s[L - recent - 1] + 1  # no run crosses the recent border
            if sink:
                assert s[sink] == sink  # first middle token starts a new slot
            nruns = lengths[h] - sink - recent
            if mode == "budget":
                assert nruns == min(bm, mlen)
            else:
                assert 1 <= nruns <= bm
                # each middle link inside a run has sim >= eps, unless it fell back to budget
                within = [t for t in range(sink, L - recent - 1) if s[t] == s[t + 1]]
                if (sim[h, sink:L - recent - 1] < 0.2).sum() + 1 <= bm:
                    assert all(sim[h, t] >= 0.2 for t in within)


def test_merge_sets_tie_older_link_cut_first():
    # middle = tokens 1..7 (sink 1, recent 1, L 9) -> links 1..6 ; three links tie at 0.1
    sim = np.array([[0.9, 0.5, 0.1, 0.8, 0.1, 0.7, 0.1, 0.3]])
    slot, n = R.merge_sets(sim, sink=1, recent=1, slots_middle=3, mode="budget")
    # two cuts: the older two of the tied links (t=2 and t=4), not t=6
    assert slot[0].tolist() == [0, 1, 1, 2, 2, 3, 3, 3, 4]
    assert n.tolist() == [5]
    # border links (t=0 and t=7) are always cut regardless of similarity
    slot, _ = R.merge_sets(np.ones((1, 8)), sink=1, recent=1, slots_middle=1)
    assert slot[0].tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 2]


def test_threshold_mode_fewer_and_more_runs():
    sim = np.array([[0.9, 0.95, 0.2, 0.9, 0.9, 0.3, 0.8, 0.9, 0.1, 0.9, 0.4]])  # L = 12
    kw = dict(sink=1, recent=1, slots_middle=6)
    # eps 0.5: middle links 1..9 below eps: t=2, 5, 8 -> 4 runs < Bm = 6
    slot, n = R.merge_sets(sim, mode="threshold", eps=0.5, **kw)
    assert n.tolist() == [1 + 4 + 1]
    assert slot[0].tolist() == [0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 5]
    # eps 0.92: below eps: t=1,2,3,4,5,6,7,8,9 -> 10 runs > 6 -> the 5 lowest links stay cut
    slot_t, n_t = R.merge_sets(sim, mode="threshold", eps=0.92, **kw)
    slot_b, n_b = R.merge_sets(sim, mode="budget", **kw)
    np.testing.assert_array_equal(slot_t, slot_b)
    assert n_t.tolist() == [8]
    # exactly Bm runs in threshold mode: no fallback needed, same as cutting at sim < eps
    slot_e, n_e = R.merge_sets(sim, mode="threshold", eps=0.85, sink=1, recent=1, slots_middle=5)
    assert n_e.tolist() == [7]
    # Bm + 1 runs in threshold mode: too many -> the Bm - 1 = 3 lowest links (t=8, 2, 5) stay cut
    slot_f, n_f = R.merge_sets(sim, mode="threshold", eps=0.85, sink=1, recent=1, slots_middle=4)
    assert n_f.tolist() == [6]
    assert slot_f[0].tolist() == [0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 5]
    # a link with sim == eps exactly continues the run (cut iff sim < eps)
    slot_q, n_q = R.merge_sets(sim, mode="threshold", eps=0.9, **kw)
    assert n_q.tolist() == [1 + 5 + 1]
    assert slot_q[0].tolist() == [0, 1, 1, 2, 2, 2, 3, 4, 4, 5, 5, 6]
    # via compress: fewer slots than B, zero-filled tail
    rng = np.random.default_rng(3)
    K = np.repeat(rng.standard_normal((1, 1, 8)), 40, axis=1) + 1e-3 * rng.standard_normal((1, 40, 8))
    V = rng.standard_normal((1, 40, 4))
    A = rng.random((1, 40))
    out = R.compress(K, V, A, budget=20, mode="threshold", eps=0.5, heavy=0)
    assert out["lengths"].tolist() == [4 + 1 + 5]
    assert np.all(out["keys"][0, 10:] == 0) and np.all(out["counts"][0, 10:] == 0)
    assert np.all(out["positions"][0, 10:] == 0)
    assert_same(out, bf_compress(K, V, A, policy="kvmerger", budget=20, mode="threshold", eps=0.5, heavy=0))
    # v2 default (heavy = 5 of Mb = 11): every heavy hitter is a slot, each segment one run
    out2 = R.compress(K, V, A, budget=20, mode="threshold", eps=0.5)
    assert_same(out2, bf_compress(K, V, A, policy="kvmerger", budget=20, mode="threshold", eps=0.5))
    assert 4 + 5 + 1 + 5 <= out2["lengths"][0] <= 20


def test_pivot_ties_newest_and_h2o_ties_newer():
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0, 0.0]])
    slot = np.array([[0, 1, 1, 1, 2, 2]])
    p = R.pivots(scores, slot, [3], capacity=5)
    assert p.tolist() == [[0, 2, 4, -1, -1]]
    # h2o: middle = 1..8 (sink 1, recent 1, L 10), Bm = 3, scores tie -> newer kept
    A = np.array([[9, 5, 5, 1, 5, 5, 0, 2, 2, 9]], dtype=np.float32)
    K = np.zeros((1, 10, 2), np.float32)
    out = R.compress(K, K, A, policy="h2o", budget=5, sink=1, recent=1)
    assert out["positions"][0].tolist() == [0, 2, 4, 5, 9]


def test_weights_sum_to_one_and_sigma_modes():
    rng = np.random.default_rng(11)
    K = smooth_keys(rng, 2, 50, 8)
    A = rng.random((2, 50))
    sim = R.adjacent_similarity(K)
    slot, n = R.merge_sets(sim, sink=2, recent=3, slots_middle=6)
    piv = R.pivots(A, slot, n, capacity=11)
    ws = {}
    for sigma in ("auto", "paper", 0.5, 100.0):
        w = R.gaussian_weights(K, slot, piv, sigma=sigma)
        ws[sigma] = w
        for h in range(2):
            sums = np.bincount(slot[h], weights=w[h])
            np.testing.assert_allclose(sums, 1.0, rtol=1e-12)
            assert np.all(w[h] > 0)
            # pivot has the largest weight of its set
            for s_ in range(n[h]):
                members = np.flatnonzero(slot[h] == s_)
                assert w[h, piv[h, s_]] == w[h, members].max()
    # a huge sigma tends to equal weights; a tiny one concentrates on the pivot
    for h in range(2):
        cnt = np.bincount(slot[h])
        np.testing.assert_allclose(ws[100.0][h], 1.0 / cnt[slot[h]], rtol=1e-2)
    w_tiny = R.gaussian_weights(K, slot, piv, sigma=1e-6)
    for h in range(2):
        np.testing.assert_allclose(w_tiny[h][piv[h, : n[h]]], 1.0)


def test_sigma_hand_computed():
    # one set of 3 tokens (sink 0, recent 0, Bm 1), pivot = token 1 (largest score)
    K = np.array([[[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]]])
    A = np.array([[0.1, 0.5, 0.2]])
    slot = np.zeros((1, 3), int)
    piv = R.pivots(A, slot, [1], capacity=1)
    assert piv.tolist() == [[1]]
    d2 = np.array([1.0, 0.0, 4.0])
    # auto: sigma^2 = mean over i != p = 2.5
    g = np.exp(-d2 / 5.0)
    np.testing.assert_allclose(R.gaussian_weights(K, slot, piv, sigma="auto")[0], g / g.sum(), rtol=1e-14)
    # paper: s0^2 = 5/3 ; g0 ; sigma = sum g0 / (sqrt2 * 3)
    g0 = np.exp(-d2 / (2 * 5 / 3))
    sig = g0.sum() / (math.sqrt(2) * 3)
    g = np.exp(-d2 / (2 * sig * sig))
    np.testing.assert_allclose(R.gaussian_weights(K, slot, piv, sigma="paper")[0], g / g.sum(), rtol=1e-14)
    g = np.exp(-d2 / (2 * 1.5 ** 2))
    np.testing.assert_allclose(R.gaussian_weights(K, slot, piv, sigma=1.5)[0], g / g.sum(), rtol=1e-14)
    # all keys equal -> sigma^2 = 0 -> equal weights (never NaN)
    Kc = np.ones((1, 3, 2))
    for sigma in ("auto", "paper", 1.0):
        np.testing.assert_array_equal(R.gaussian_weights(Kc, slot, piv, sigma=sigma)[0], [1 / 3] * 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, BF16, np.float64])
def test_identical_runs_lose_nothing(dtype):
    # runs of identical keys and identical values merge into exactly that key/value
    rng = np.random.default_rng(5)
    runs = [3, 1, 5, 2, 4, 6, 1, 2]
    base_k = rng.standard_normal((len(runs), 8))
    base_v = rng.standard_normal((len(runs), 8))
    idx = np.repeat(np.arange(len(runs)), runs)
    sink, recent = 2, 2
    K = np.concatenate([rng.standard_normal((sink, 8)), base_k[idx], rng.standard_normal((recent, 8))])[None]
    V = np.concatenate([rng.standard_normal((sink, 8)), base_v[idx], rng.standard_normal((recent, 8))])[None]
    K, V = K.astype(dtype), V.astype(dtype)
    A = rng.random((1, K.shape[1]))
    B = sink + len(runs) + recent
    out = R.compress(K, V, A, budget=B, sink=sink, recent=recent, heavy=0)
    assert out["keys"].dtype == dtype and out["values"].dtype == dtype
    assert out["counts"][0].tolist() == [1, 1] + runs + [1, 1]
    exp_k = np.concatenate([K[0, :sink], base_k.astype(dtype), K[0, -recent:]])
    exp_v = np.concatenate([V[0, :sink], base_v.astype(dtype), V[0, -recent:]])
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(out["keys"][0].astype(np.float64), exp_k.astype(np.float64), rtol=tol, atol=tol)
    np.testing.assert_allclose(out["values"][0].astype(np.float64), exp_v.astype(np.float64), rtol=tol, atol=tol)


@pytest.mark.parametrize("policy", ["full", "streaming", "h2o", "kvmerger"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, BF16])
def test_short_cache_unchanged(policy, dtype):
    rng = np.random.default_rng(2)
    K = rng.standard_normal((2, 10, 4)).astype(dtype)
    V = rng.standard_normal((2, 10, 6)).astype(dtype)
    A = rng.random((2, 10)).astype(np.float32)
    kw = {} if policy == "full" else {"budget": 16}
    out = R.compress(K, V, A, policy=policy, **kw)
    B = 10 if policy == "full" else 16
    assert out["keys"].shape == (2, B, 4) and out["values"].shape == (2, B, 6)
    assert out["keys"].dtype == dtype and out["values"].dtype == dtype
    np.testing.assert_array_equal(out["keys"][:, :10], K)
    np.testing.assert_array_equal(out["values"][:, :10], V)
    np.testing.assert_array_equal(out["scores"][:, :10], A)
    assert out["lengths"].tolist() == [10, 10]
    assert out["positions"].dtype == np.int32 and out["counts"].dtype == np.int32
    assert out["scores"].dtype == np.float32 and out["lengths"].dtype == np.int32
    np.testing.assert_array_equal(out["positions"][:, :10], np.tile(np.arange(10), (2, 1)))
    np.testing.assert_array_equal(out["counts"][:, :10], 1)
    assert np.all(out["keys"][:, 10:] == 0) and np.all(out["counts"][:, 10:] == 0)


@pytest.mark.parametrize("dtype", [np.float16, BF16, np.float32])
def test_low_precision_inputs_accumulate_in_f32(dtype):
    rng = np.random.default_rng(9)
    K, V, A = rand_case(rng, H=2, L=64, D=8, Dv=8, kind="smooth")
    K, V, A = K.astype(dtype), V.astype(dtype), A.astype(np.float32)
    out = R.compress(K, V, A, ratio=0.35, sigma="paper")
    assert out["keys"].dtype == dtype and out["values"].dtype == dtype
    # same slot map, computed in float64 from the same (rounded) inputs, then rounded once
    slot, n = R.merge_sets(R.adjacent_similarity(K), sink=4, recent=6, slots_middle=23 - 10,
                           scores=A, heavy=R.default_heavy(23 - 10))
    ref = R.merge(K.astype(np.float64), V.astype(np.float64), A, slot, n, capacity=23, sigma="paper")
    for f in ("positions", "counts", "lengths"):
        np.testing.assert_array_equal(out[f], ref[f])
    # f32 accumulation then one rounding to the storage dtype: within one ulp of the f64 result
    ulp = float(ml_dtypes.finfo(dtype).eps)
    for f in ("keys", "values"):
        np.testing.assert_allclose(out[f].astype(np.float64), ref[f], rtol=ulp, atol=1e-6, err_msg=f)
    # f64 inputs: everything in f64 (checking mode)
    out64 = R.compress(K.astype(np.float64), V.astype(np.float64), A, ratio=0.35)
    assert out64["keys"].dtype == np.float64 and out64["scores"].dtype == np.float32


def test_compress_equals_building_blocks():
    rng = np.random.default_rng(21)
    K, V, A = rand_case(rng, H=3, L=80, D=8, Dv=5, kind="smooth")
    K, V, A = K.astype(np.float32), V.astype(np.float32), A.astype(np.float32)
    for mode in ("budget", "threshold"):
        out = R.compress(K, V, A, budget=30, sink=3, recent=5, mode=mode, eps=0.9, sigma=2.0)
        slot, n = R.merge_sets(R.adjacent_similarity(K), sink=3, recent=5, slots_middle=22, mode=mode, eps=0.9,
                               scores=A, heavy=10)
        ref = R.merge(K, V, A, slot, n, capacity=30, sigma=2.0)
        for f in FIELDS:
            np.testing.assert_array_equal(out[f], ref[f], err_msg=f)
        piv = R.pivots(A, slot, n, capacity=30)
        np.testing.assert_array_equal(np.where(piv < 0, 0, piv), out["positions"])


# ------------------------------------------------------------------------------------------------
# similarity / zero-norm keys
# ------------------------------------------------------------------------------------------------
def test_adjacent_similarity_values_and_zero_norm():
    rng = np.random.default_rng(4)
    K = rng.standard_normal((2, 12, 5))
    K[0, 3] = 0.0
    K[1, 7:9] = 0.0
    s = R.adjacent_similarity(K)
    assert s.shape == (2, 11) and np.all(np.isfinite(s))
    for h in range(2):
        for t in range(11):
            assert s[h, t] == bf_cos(K[h, t], K[h, t + 1])  # bit for bit (choice 3)
    assert s[0, 2] == 0 and s[0, 3] == 0 and s[1, 6] == 0 and s[1, 7] == 0 and s[1, 8] == 0
    s32 = R.adjacent_similarity(K.astype(np.float16))
    assert s32.dtype == np.float32 and np.all(np.abs(s32) <= 1)
    # all-zero keys: compress still works, no NaN anywhere
    Z = np.zeros((2, 30, 4), np.float32)
    Vz = rng.standard_normal((2, 30, 4)).astype(np.float32)
    for sigma in ("auto", "paper", 1.0):
        for mode in ("budget", "threshold"):
            out = R.compress(Z, Vz, np.ones((2, 30)), budget=12, sigma=sigma, mode=mode)
            for f in FIELDS:
                assert np.all(np.isfinite(out[f].astype(np.float64))), f
            assert out["lengths"].tolist() == [12, 12]
    out = R.compress(K, K, np.ones((2, 12)), budget=9, sink=1, recent=1)
    assert np.all(np.isfinite(out["keys"]))


# ------------------------------------------------------------------------------------------------
# attention and accumulated scores
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("obs_window", [None, 1, 4, 10])
@pytest.mark.parametrize("hq,hkv", [(4, 2), (3, 3), (6, 1)])
def test_accumulated_scores_bruteforce(obs_window, hq, hkv):
    rng = np.random.default_rng(hq * 10 + hkv)
    L, D = 10, 4
    q = rng.standard_normal((hq, L, D))
    k = rng.standard_normal((hkv, L, D))
    a = R.accumulated_scores(q, k, obs_window=obs_window)
    np.testing.assert_allclose(a, bf_accumulated(q, k, obs_window), rtol=1e-12)
    w = L if obs_window is None else obs_window
    np.testing.assert_allclose(a.sum(axis=1), (hq // hkv) * w, rtol=1e-12)
    if obs_window is not None:
        assert np.all(a[:, : L - w] >= 0)
    a32 = R.accumulated_scores(q.astype(np.float32), k.astype(BF16), obs_window=obs_window)
    assert a32.dtype == np.float32


@pytest.mark.parametrize("scale", [0.2, 1.0, 3.5])
def test_accumulated_scores_own_scale(scale):
    """A model's own logit scale (Granite's attention_multiplier) replaces 1/sqrt(D)."""
    rng = np.random.default_rng(5)
    q = rng.standard_normal((4, 9, 4))
    k = rng.standard_normal((2, 9, 4))
    a = R.accumulated_scores(q, k, scale=scale)
    np.testing.assert_allclose(a, bf_accumulated(q, k, scale=scale), rtol=1e-12)
    assert not np.allclose(a, R.accumulated_scores(q, k))
    for bad in (float("nan"), float("inf"), "0.5", True):
        with pytest.raises(ValueError, match="scale"):
            R.accumulated_scores(q, k, scale=bad)


def test_accumulated_scores_chunking_consistent():
    # long enough that the query loop is chunked
    rng = np.random.default_rng(8)
    q = rng.standard_normal((4, 1500, 8)).astype(np.float32)
    k = rng.standard_normal((2, 1500, 8)).astype(np.float32)
    a = R.accumulated_scores(q, k, obs_window=700)
    ref = np.zeros((2, 1500))
    qd, kd = q.astype(np.float64), k.astype(np.float64)
    for j in range(4):
        lg = qd[j, 800:] @ kd[j // 2].T / math.sqrt(8)
        lg = np.where(np.arange(1500)[None] <= np.arange(800, 1500)[:, None], lg, -np.inf)
        p = np.exp(lg - lg.max(1, keepdims=True))
        ref[j // 2] += (p / p.sum(1, keepdims=True)).sum(0)
    np.testing.assert_allclose(a, ref, rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("count_bias", [False, True])
@pytest.mark.parametrize("hq,hkv", [(4, 2), (2, 2), (8, 1)])
def test_attention_bruteforce(count_bias, hq, hkv):
    rng = np.random.default_rng(hq + 17 * hkv)
    B, D, Dv = 9, 5, 3
    q = rng.standard_normal((hq, D))
    keys = rng.standard_normal((hkv, B, D))
    values = rng.standard_normal((hkv, B, Dv))
    lengths = rng.integers(1, B + 1, hkv)
    counts = rng.integers(1, 6, (hkv, B))
    o = R.attention(q, keys, values, lengths, counts=counts, count_bias=count_bias)
    np.testing.assert_allclose(o, bf_attention(q, keys, values, lengths, counts, count_bias), rtol=1e-12)
    o2 = R.attention(q, keys, values, lengths, counts=counts, count_bias=count_bias, scale=0.3)
    np.testing.assert_allclose(o2, bf_attention(q, keys, values, lengths, counts, count_bias, 0.3), rtol=1e-12)
    # garbage past lengths is masked
    keys2, values2 = keys.copy(), values.copy()
    for h in range(hkv):
        keys2[h, lengths[h]:] = 50.0
        values2[h, lengths[h]:] = -7.0
    np.testing.assert_allclose(R.attention(q, keys2, values2, lengths, counts=counts, count_bias=count_bias), o,
                               rtol=1e-12)


def test_attention_count_bias_equals_duplicated_tokens():
    # a slot with count c and bias log(c) attends like c identical copies of that token
    rng = np.random.default_rng(12)
    q = rng.standard_normal((2, 4))
    k = rng.standard_normal((1, 3, 4))
    v = rng.standard_normal((1, 3, 2))
    counts = np.array([[1, 3, 2]])
    o = R.attention(q, k, v, [3], counts=counts, count_bias=True)
    kd = np.repeat(k, counts[0], axis=1)
    vd = np.repeat(v, counts[0], axis=1)
    np.testing.assert_allclose(o, R.attention(q, kd, vd, [6]), rtol=1e-12)
    # without bias: counts are ignored
    np.testing.assert_allclose(R.attention(q, k, v, [3], counts=counts), R.attention(q, k, v, [3]), rtol=0)


def test_attention_over_compressed_cache_and_zero_length():
    rng = np.random.default_rng(13)
    K, V, A = rand_case(rng, H=2, L=50, D=8, Dv=8, kind="smooth")
    K, V = K.astype(np.float16), V.astype(np.float16)
    out = R.compress(K, V, A, ratio=0.5)
    q = rng.standard_normal((4, 8)).astype(np.float32)
    o = R.attention(q, out["keys"], out["values"], out["lengths"], counts=out["counts"], count_bias=True)
    assert o.shape == (4, 8) and o.dtype == np.float32 and np.all(np.isfinite(o))
    full = R.compress(K, V, A, policy="full")
    np.testing.assert_array_equal(R.attention(q, full["keys"], full["values"], full["lengths"]),
                                  R.attention(q, K, V, [50, 50]))
    z = R.attention(q, out["keys"], out["values"], [0, out["lengths"][1]])
    assert np.all(z[:2] == 0) and np.all(np.isfinite(z))


# ------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------
def _good():
    rng = np.random.default_rng(0)
    K = rng.standard_normal((2, 20, 4)).astype(np.float32)
    V = rng.standard_normal((2, 20, 3)).astype(np.float32)
    A = rng.random((2, 20)).astype(np.float32)
    return K, V, A


def _with(arr, idx, val):
    a = np.array(arr, copy=True)
    a[idx] = val
    return a


@pytest.mark.parametrize("mutate,kw,match", [
    (lambda K, V, A: (K[0], V, A), {}, "keys"),
    (lambda K, V, A: (K, V[:, :10], A), {}, "values"),
    (lambda K, V, A: (K, V[:1], A), {}, "values"),
    (lambda K, V, A: (K, V, A[:, :5]), {}, "scores"),
    (lambda K, V, A: (K, V, A[0]), {}, "scores"),
    (lambda K, V, A: (_with(K, (0, 3, 1), np.nan), V, A), {}, "keys"),
    (lambda K, V, A: (_with(K, (1, 3, 1), np.inf), V, A), {}, "keys"),
    (lambda K, V, A: (K, _with(V, (0, 0, 0), -np.inf), A), {}, "values"),
    (lambda K, V, A: (K, V, _with(A, (0, 2), np.nan)), {}, "scores"),
    (lambda K, V, A: (K, V, _with(A, (1, 2), -0.5)), {}, "scores"),
    (lambda K, V, A: (K.astype(np.int32), V, A), {}, "keys"),
    (lambda K, V, A: (K, V.astype(np.complex64), A), {}, "values"),
    (lambda K, V, A: (K, V, A > 0.5), {}, "scores"),
    (lambda K, V, A: (K[:, :0], V[:, :0], A[:, :0]), {}, "keys"),
    (lambda K, V, A: (K, V, A), {"budget": 8, "ratio": 0.5}, "budget"),
    (lambda K, V, A: (K, V, A), {"budget": None}, "budget"),
    (lambda K, V, A: (K, V, A), {"budget": None, "ratio": 0.0}, "ratio"),
    (lambda K, V, A: (K, V, A), {"budget": None, "ratio": 1.5}, "ratio"),
    (lambda K, V, A: (K, V, A), {"budget": None, "ratio": float("nan")}, "ratio"),
    (lambda K, V, A: (K, V, A), {"budget": 0}, "budget"),
    (lambda K, V, A: (K, V, A), {"budget": 8.0}, "budget"),
    (lambda K, V, A: (K, V, A), {"budget": 6}, "budget"),              # Bm = 6-4-2 = 0
    (lambda K, V, A: (K, V, A), {"budget": 10, "recent": 6}, "budget"),  # Bm = 0
    (lambda K, V, A: (K, V, A), {"budget": 8, "policy": "h2o", "sink": 7}, "budget"),
    (lambda K, V, A: (K, V, A), {"budget": 3, "policy": "streaming"}, "budget"),
    (lambda K, V, A: (K, V, A), {"sink": -1}, "sink"),
    (lambda K, V, A: (K, V, A), {"recent": -2}, "recent"),
    (lambda K, V, A: (K, V, A), {"eps": 1.5}, "eps"),
    (lambda K, V, A: (K, V, A), {"eps": -1.01, "mode": "threshold"}, "eps"),
    (lambda K, V, A: (K, V, A), {"sigma": 0.0}, "sigma"),
    (lambda K, V, A: (K, V, A), {"sigma": -1.0}, "sigma"),
    (lambda K, V, A: (K, V, A), {"sigma": "median"}, "sigma"),
    (lambda K, V, A: (K, V, A), {"policy": "snapkv"}, "policy"),
    (lambda K, V, A: (K, V, A), {"mode": "adaptive"}, "mode"),
])
def test_compress_validation(mutate, kw, match):
    K, V, A = mutate(*_good())
    args = dict(budget=8)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        R.compress(K, V, A, **args)


def test_compress_validation_messages_name_values():
    K, V, A = _good()
    with pytest.raises(ValueError, match=r"budget.*6.*sink = 4.*recent = 2"):
        R.compress(K, V, A, budget=6)
    with pytest.raises(ValueError, match=r"scores.*\(2, 5\)"):
        R.compress(K, V, A[:, :5], budget=8)
    with pytest.raises(ValueError, match=r"ratio.*1\.5"):
        R.compress(K, V, A, ratio=1.5)
    with pytest.raises(ValueError, match=r"keys.*NaN"):
        R.compress(_with(K, (0, 1, 1), np.nan), V, A, budget=8)


def test_boundary_arguments_accepted():
    K, V, A = _good()
    R.compress(K, V, A, budget=7)  # Bm = 1
    R.compress(K, V, A, budget=4, policy="streaming")  # B == sink
    R.compress(K, V, A, budget=1, policy="streaming", sink=0)
    R.compress(K, V, A, ratio=1)
    R.compress(K, V, A, policy="full")
    R.compress(K, V, A, policy="full", budget=3)  # full ignores the budget (B = L)
    R.compress(K, V, A, budget=8, eps=-1.0, mode="threshold")
    R.compress(K, V, A, budget=8, eps=1.0, mode="threshold")
    R.compress(K, V, A.astype(np.int64), budget=np.int64(8), sink=np.int32(2))
    R.compress(K, V, A, budget=50, sink=30, recent=30)  # L <= B: nothing to check


def test_building_block_validation():
    sim = np.zeros((2, 9))
    with pytest.raises(ValueError, match="slots_middle"):
        R.merge_sets(sim, sink=1, recent=1, slots_middle=0)
    with pytest.raises(ValueError, match="sink"):
        R.merge_sets(sim, sink=6, recent=5, slots_middle=2)
    with pytest.raises(ValueError, match="sim"):
        R.merge_sets(_with(sim, (0, 0), np.nan), sink=1, recent=1, slots_middle=2)
    with pytest.raises(ValueError, match="mode"):
        R.merge_sets(sim, sink=1, recent=1, slots_middle=2, mode="x")
    with pytest.raises(ValueError, match="eps"):
        R.merge_sets(sim, sink=1, recent=1, slots_middle=2, eps=2)
    slot = np.array([[0, 1, 1, 2]])
    with pytest.raises(ValueError, match="slot"):
        R.pivots(np.ones((1, 4)), np.array([[0, 2, 2, 3]]), [4], capacity=4)
    with pytest.raises(ValueError, match="lengths"):
        R.pivots(np.ones((1, 4)), slot, [2], capacity=4)
    with pytest.raises(ValueError, match="capacity"):
        R.pivots(np.ones((1, 4)), slot, [3], capacity=2)
    with pytest.raises(ValueError, match="scores"):
        R.pivots(-np.ones((1, 4)), slot, [3], capacity=4)
    with pytest.raises(ValueError, match="pivots"):
        R.gaussian_weights(np.ones((1, 4, 2)), slot, np.array([[0, 3, 2]]))
    with pytest.raises(ValueError, match="sigma"):
        R.gaussian_weights(np.ones((1, 4, 2)), slot, np.array([[0, 1, 3]]), sigma="nope")
    with pytest.raises(ValueError, match="keys"):
        R.adjacent_similarity(np.full((1, 3, 2), 1e30, np.float32))  # squared norm overflows f32


def test_attention_validation():
    q = np.ones((4, 3))
    k = np.ones((3, 5, 3))
    with pytest.raises(ValueError, match="Hq"):
        R.attention(q, k, k, [5, 5, 5])
    with pytest.raises(ValueError, match="Hq"):
        R.accumulated_scores(np.ones((4, 5, 3)), k)
    k2 = np.ones((2, 5, 3))
    with pytest.raises(ValueError, match="lengths"):
        R.attention(q, k2, k2, [6, 1])
    with pytest.raises(ValueError, match="counts"):
        R.attention(q, k2, k2, [5, 5], count_bias=True)
    with pytest.raises(ValueError, match="counts"):
        R.attention(q, k2, k2, [5, 5], counts=np.zeros((2, 5), int), count_bias=True)
    with pytest.raises(ValueError, match="keys"):
        R.attention(q, np.ones((2, 5, 4)), k2, [5, 5])
    with pytest.raises(ValueError, match="values"):
        R.attention(q, k2, np.ones((2, 4, 3)), [5, 5])
    with pytest.raises(ValueError, match="q"):
        R.attention(_with(q, (0, 0), np.nan), k2, k2, [5, 5])
    with pytest.raises(ValueError, match="scale"):
        R.attention(q, k2, k2, [5, 5], scale=float("inf"))
    with pytest.raises(ValueError, match="obs_window"):
        R.accumulated_scores(np.ones((4, 5, 3)), k2, obs_window=6)
    with pytest.raises(ValueError, match="obs_window"):
        R.accumulated_scores(np.ones((4, 5, 3)), k2, obs_window=0)
    with pytest.raises(ValueError, match="q"):
        R.accumulated_scores(np.ones((4, 6, 3)), k2)
