"""The reference algorithms in PyTorch eager ops, on any device (CPU or CUDA).

A straightforward vectorized re-implementation of :mod:`kvmerge.reference` (``compress`` for every
policy, both merge modes and every sigma; decode ``attention`` with GQA, lengths and count bias),
written as an ML engineer would write it in PyTorch. It serves two purposes in the GPU check
(``scripts/gpu-check.sh``, docs/gpu.md):

* expected outputs on the GPU for caches too large to ship (L up to 128K), and
* the "PyTorch eager, same algorithm, same GPU" baseline of the timing tables.

``test/python/test_torch_ref.py`` checks it against the NumPy reference on random and real data:
discrete outputs exactly, floats within the compiled path's tolerances. Compute dtype as in the
reference: f32 for f16/bf16/f32 storage, f64 if any float input is f64. Inputs are torch tensors;
argument validation is the reference's job (:func:`kvmerge.reference.resolve_compress_args`).
"""
from __future__ import annotations

import math

import torch

__all__ = ["adjacent_similarity", "merge_sets", "slot_map_from_counts", "merge", "compress", "attention"]


def _compute_dtype(*tensors) -> torch.dtype:
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


SIMILARITY_LANES = 16
_SIM_BLOCK = 16384  # links per block (bounds the f64 temporaries)


def _lane_sum(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``sum_d x * y`` (float64) in the reference's order (:func:`kvmerge.reference._lane_sum`):
    16 interleaved lane sums, separate multiply and add roundings, combined by halving."""
    W = SIMILARITY_LANES
    D = x.shape[-1]
    acc = torch.zeros(x.shape[:-1] + (W,), dtype=torch.float64, device=x.device)
    for c in range(0, D, W):
        w = min(W, D - c)
        acc[..., :w] += x[..., c:c + w] * y[..., c:c + w]
    while W > 1:
        W //= 2
        acc = acc[..., :W] + acc[..., W:2 * W]
    return acc[..., 0]


def adjacent_similarity(kc: torch.Tensor, exact: bool = True) -> torch.Tensor:
    """``s [H, L-1]`` float32: cosine of consecutive keys exactly as the reference and the
    compiled paths compute it (docs/reference.md, choice 3): float64 in a fixed summation order,
    0 where a norm is 0, clipped to [-1, 1], rounded once to float32.

    ``exact=False``: what an ML engineer would write (``vector_norm``/``vecdot`` in the compute
    dtype, no [H, L, D] temporary); faster, but a near-tie may then be cut differently from the
    reference (the benchmark's torch peer, bench/bench_peers.py)."""
    if not exact:
        n = torch.linalg.vector_norm(kc, dim=-1)
        dot = torch.linalg.vecdot(kc[:, :-1], kc[:, 1:])
        den = n[:, :-1] * n[:, 1:]
        ok = den > 0
        s = torch.where(ok, dot / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(den))
        return s.clamp(-1, 1).to(torch.float32)
    H, L, _ = kc.shape
    out = torch.zeros((H, max(L - 1, 0)), dtype=torch.float32, device=kc.device)
    for lo in range(0, L - 1, _SIM_BLOCK):
        hi = min(L - 1, lo + _SIM_BLOCK)
        k = kc[:, lo:hi + 1].to(torch.float64)
        a, b = k[:, :-1], k[:, 1:]
        dot = _lane_sum(a, b)
        den = torch.sqrt(_lane_sum(a, a)) * torch.sqrt(_lane_sum(b, b))
        ok = den > 0
        s = torch.where(ok, dot / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(den))
        out[:, lo:hi] = s.clamp(-1, 1).to(torch.float32)
    return out


def heavy_mask(ac: torch.Tensor, sink: int, recent: int, heavy: int) -> torch.Tensor:
    """``[H, L]`` bool: the ``heavy`` middle tokens of largest score, ties to the newer (spec v2)."""
    H, L = ac.shape
    mask = torch.zeros((H, L), dtype=torch.bool, device=ac.device)
    lo, hi = sink, L - recent
    if heavy <= 0 or hi <= lo:
        return mask
    mid = ac[:, lo:hi]
    # newest first, then a stable sort by descending score: ties keep the newer token
    rev = torch.flip(mid, dims=[1])
    order = torch.sort(rev, dim=1, descending=True, stable=True).indices[:, :heavy]
    idx = (hi - 1) - order
    mask.scatter_(1, idx, True)
    return mask


def merge_sets(sim: torch.Tensor, sink: int, recent: int, bm: int, mode: str, eps: float,
               hmask: torch.Tensor | None = None):
    """Slot map ``[H, L]`` (int64) and ``lengths [H]``, as :func:`kvmerge.reference.merge_sets`
    (``bm`` = all middle slots, ``hmask`` the heavy hitters: cuts counted per segment)."""
    H, Lm1 = sim.shape
    L = Lm1 + 1
    lo, hi = sink, L - recent - 1
    dev = sim.device
    cut = torch.ones((H, Lm1), dtype=torch.bool, device=dev)
    nlinks = max(0, hi - lo)
    if nlinks > 0:
        ms = sim[:, lo:hi]
        if hmask is None:
            hmask = torch.zeros((H, L), dtype=torch.bool, device=dev)
        hv = hmask[:, lo:L - recent]
        forced = hv[:, :-1] | hv[:, 1:]
        first = torch.ones((H, 1), dtype=torch.bool, device=dev)
        nseg = (~hv & torch.cat((first, hv[:, :-1]), dim=1)).sum(dim=1)
        k = torch.clamp(bm - hv.sum(dim=1) - nseg, min=0)  # [H]
        # forced links sort last; stable sort: among equal similarities the older link first
        big = torch.tensor(float("inf"), dtype=ms.dtype, device=dev)
        keyed = torch.where(forced, big, ms)
        order = torch.sort(keyed, dim=1, stable=True).indices
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(nlinks, device=dev).expand(H, nlinks).contiguous())
        c_budget = (rank < k[:, None]) & ~forced
        if mode == "budget":
            c = c_budget
        else:
            c_thr = (ms < torch.tensor(eps, dtype=ms.dtype, device=dev)) & ~forced
            too_many = c_thr.sum(dim=1) > k
            c = torch.where(too_many[:, None], c_budget, c_thr)
        cut[:, lo:hi] = c | forced
    slot = torch.cat((torch.zeros((H, 1), dtype=torch.int64, device=dev),
                      torch.cumsum(cut.to(torch.int64), dim=1)), dim=1)
    return slot, slot[:, -1] + 1


def slot_map_from_counts(counts: torch.Tensor, lengths: torch.Tensor, L: int) -> torch.Tensor:
    """The slot map that compressed outputs describe (slots are in token order, ``counts`` tokens
    each). Raises ValueError if the counts do not cover exactly ``L`` tokens per head."""
    H = counts.shape[0]
    rows = []
    for h in range(H):
        n = int(lengths[h])
        c = counts[h, :n].to(torch.int64)
        if n < 1 or bool((c < 1).any()) or int(c.sum()) != L:
            raise ValueError(f"counts: head {h} has {n} slots with counts summing to {int(c.sum())}, "
                             f"not a partition of {L} tokens")
        rows.append(torch.repeat_interleave(torch.arange(n, device=counts.device), c))
    return torch.stack(rows)


def _segsum(x: torch.Tensor, slot: torch.Tensor, n: int) -> torch.Tensor:
    """Per-slot sums of ``x [H, L, ...]`` into ``[H, n, ...]``."""
    H = x.shape[0]
    out = torch.zeros((H, n) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device)
    index = slot.view(slot.shape + (1,) * (x.dim() - 2)).expand_as(x)
    return out.scatter_add_(1, index, x)


def merge(kc, vc, ac, slot, lengths, capacity: int, sigma, kdt, vdt) -> dict:
    """Spec steps 2 and 3 (pivot, Gaussian weights, merge) for a slot map, in the compute dtype;
    the dict of :func:`kvmerge.reference.compress` (torch tensors)."""
    H, L, D = kc.shape
    cd = kc.dtype
    dev = kc.device
    B = capacity
    t = torch.arange(L, device=dev).expand(H, L)
    # pivot: largest score, ties -> newest
    segmax = torch.full((H, B), -math.inf, dtype=ac.dtype, device=dev).scatter_reduce(1, slot, ac, "amax")
    is_max = ac == segmax.gather(1, slot)
    piv = torch.full((H, B), -1, dtype=torch.int64, device=dev).scatter_reduce(
        1, slot, torch.where(is_max, t, torch.full_like(t, -1)), "amax")
    cnt = torch.zeros((H, B), dtype=torch.int64, device=dev).scatter_add_(1, slot, torch.ones_like(slot))
    ptok = piv.gather(1, slot)
    diff = kc - kc.gather(1, ptok[..., None].expand(H, L, D))
    d2 = torch.linalg.vecdot(diff, diff)
    sumd2 = _segsum(d2, slot, B)
    cntf = cnt.to(cd)
    one = torch.ones((), dtype=cd, device=dev)
    if sigma == "auto":
        sig2 = sumd2 / torch.clamp(cnt - 1, min=1).to(cd)
        equal = (cnt == 1) | (sig2 == 0)
    elif sigma == "paper":
        s02 = sumd2 / torch.clamp(cntf, min=1)
        equal0 = s02 == 0
        s02_safe = torch.where(equal0, one, s02)
        g0 = torch.exp(-d2 / (2 * s02_safe.gather(1, slot)))
        sig = _segsum(g0, slot, B) / (math.sqrt(2.0) * torch.clamp(cntf, min=1))
        sig = sig.to(cd)
        sig2 = sig * sig
        equal = (cnt == 1) | equal0 | (sig2 == 0)
    else:
        s = torch.tensor(float(sigma), dtype=cd, device=dev)
        sig2 = torch.full((H, B), 0, dtype=cd, device=dev) + s * s
        equal = (cnt == 1) | (sig2 == 0)
    sig2_safe = torch.where(equal, one, sig2)
    g = torch.exp(-d2 / (2 * sig2_safe.gather(1, slot)))
    gsum = _segsum(g, slot, B)
    w = g / gsum.gather(1, slot)
    eq_tok = equal.gather(1, slot)
    w = torch.where(eq_tok, (1 / torch.clamp(cntf, min=1)).gather(1, slot), w)
    valid = torch.arange(B, device=dev)[None, :] < lengths[:, None]
    keys = _segsum(w[..., None] * kc, slot, B)
    values = _segsum(w[..., None] * vc, slot, B)
    return dict(keys=keys.to(kdt), values=values.to(vdt),
                positions=torch.where(valid, piv, 0).to(torch.int32),
                counts=cnt.to(torch.int32),
                scores=_segsum(ac, slot, B).to(torch.float32),
                lengths=lengths.to(torch.int32))


def _gather(kc, vc, ac, idx, B, kdt, vdt) -> dict:
    H, L, D = kc.shape
    n = idx.shape[1]
    dev = kc.device
    out = dict(keys=torch.zeros((H, B, D), dtype=kc.dtype, device=dev),
               values=torch.zeros((H, B, vc.shape[2]), dtype=vc.dtype, device=dev),
               positions=torch.zeros((H, B), dtype=torch.int32, device=dev),
               counts=torch.zeros((H, B), dtype=torch.int32, device=dev),
               scores=torch.zeros((H, B), dtype=torch.float32, device=dev),
               lengths=torch.full((H,), n, dtype=torch.int32, device=dev))
    out["keys"][:, :n] = kc.gather(1, idx[..., None].expand(H, n, D))
    out["values"][:, :n] = vc.gather(1, idx[..., None].expand(H, n, vc.shape[2]))
    out["positions"][:, :n] = idx.to(torch.int32)
    out["counts"][:, :n] = 1
    out["scores"][:, :n] = ac.gather(1, idx).to(torch.float32)
    out["keys"], out["values"] = out["keys"].to(kdt), out["values"].to(vdt)
    return out


def h2o_keep(ac, sink: int, recent: int, bm: int):
    """Kept token indices ``[H, B]`` of h2o (middle: largest scores, ties -> newer), sorted."""
    H, L = ac.shape
    dev = ac.device
    lo, hi = sink, L - recent
    mid = torch.flip(ac[:, lo:hi], dims=[1])  # newest first, so a stable sort keeps newer on ties
    order = torch.sort(mid, dim=1, descending=True, stable=True).indices[:, :bm]
    keep = torch.sort((hi - 1) - order, dim=1).values
    base = torch.arange(sink, device=dev).expand(H, sink)
    tail = torch.arange(L - recent, L, device=dev).expand(H, recent)
    return torch.cat((base, keep, tail), dim=1)


def compress(keys, values, scores, *, policy: str, B: int, sink: int, recent: int, mode: str = "budget",
             eps: float = 0.75, sigma="auto", heavy: int = 0, exact_similarity: bool = True) -> dict:
    """:func:`kvmerge.reference.compress` with resolved arguments (``B``, ``recent``: see
    :func:`kvmerge.reference.resolve_compress_args`); returns torch tensors."""
    kdt, vdt = keys.dtype, values.dtype
    cd = _compute_dtype(keys, values, scores)
    kc, vc, ac = keys.to(cd), values.to(cd), scores.to(cd)
    H, L, _ = kc.shape
    dev = kc.device
    if L <= B:
        return _gather(kc, vc, ac, torch.arange(L, device=dev).expand(H, L), B, kdt, vdt)
    if policy == "streaming":
        idx = torch.cat((torch.arange(sink, device=dev), torch.arange(L - (B - sink), L, device=dev)))
        return _gather(kc, vc, ac, idx.expand(H, B), B, kdt, vdt)
    bm = B - sink - recent
    if policy == "h2o":
        return _gather(kc, vc, ac, h2o_keep(ac, sink, recent, bm), B, kdt, vdt)
    if policy != "kvmerger":
        raise ValueError(f"policy: {policy!r} is not one of streaming, h2o, kvmerger")
    hm = heavy_mask(ac, sink, recent, heavy) if heavy > 0 else None
    slot, lengths = merge_sets(adjacent_similarity(kc, exact_similarity), sink, recent, bm, mode, eps, hm)
    return merge(kc, vc, ac, slot, lengths, B, sigma, kdt, vdt)


def attention(q, keys, values, lengths, *, counts=None, count_bias: bool = False, scale=None,
              dtype: torch.dtype | None = None) -> torch.Tensor:
    """One decode step, as :func:`kvmerge.reference.attention`: ``q [Hq, D]`` -> ``[Hq, Dv]``.
    ``dtype`` overrides the compute dtype (e.g. float64 for an accurate expectation)."""
    cd = dtype or _compute_dtype(q, keys, values)
    qc, kc, vc = q.to(cd), keys.to(cd), values.to(cd)
    Hq, D = qc.shape
    Hkv, S, _ = kc.shape
    G = Hq // Hkv
    sc = (1.0 / math.sqrt(D)) if scale is None else float(scale)
    valid = torch.arange(S, device=kc.device)[None, :] < lengths.to(kc.device)[:, None]
    kv = torch.arange(Hkv, device=kc.device).repeat_interleave(G)
    logits = torch.einsum("jd,jbd->jb", qc, kc[kv]) * sc
    if count_bias:
        bias = torch.where(valid, torch.log(torch.clamp(counts.to(cd), min=1)), torch.zeros((), dtype=cd,
                                                                                            device=kc.device))
        logits = logits + bias[kv]
    vmask = valid[kv]
    logits = torch.where(vmask, logits, torch.full((), -math.inf, dtype=cd, device=kc.device))
    m = logits.max(dim=1, keepdim=True).values
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    p = torch.where(vmask, torch.exp(logits - m), torch.zeros((), dtype=cd, device=kc.device))
    den = p.sum(dim=1, keepdim=True)
    p = p / torch.where(den > 0, den, torch.ones_like(den))
    return torch.einsum("jb,jbv->jv", p, vc[kv])


def from_numpy(a, device="cpu") -> torch.Tensor:
    """A NumPy array as a torch tensor on ``device``; bfloat16 (ml_dtypes, or raw 2-byte void
    records as .npy stores them) becomes torch.bfloat16."""
    import numpy as np

    a = np.ascontiguousarray(a)
    if a.dtype.itemsize == 2 and (a.dtype.kind == "V" or a.dtype.name == "bfloat16"):
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16).to(device)
    return torch.from_numpy(a).to(device)


def to_numpy(t: torch.Tensor):
    """A torch tensor as a NumPy array (bfloat16 as ml_dtypes.bfloat16 when available, else the
    raw bits as uint16)."""
    import numpy as np

    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        bits = t.view(torch.int16).numpy().view(np.uint16)
        try:
            import ml_dtypes

            return bits.view(ml_dtypes.bfloat16)
        except ImportError:  # pragma: no cover
            return bits
    return t.numpy()
