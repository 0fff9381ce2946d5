"""NumPy reference ("oracle") of the KVMerger contract in ``shared/spec/kvmerger.md``.

Everything here is per layer; every KV head is independent.  Shapes:

* ``keys``   ``[Hkv, L, D]``,  ``values`` ``[Hkv, L, Dv]``,  ``scores`` ``[Hkv, L]``
* ``q``      ``[Hq, L, D]`` (prefill, :func:`accumulated_scores`) or ``[Hq, D]`` (decode,
  :func:`attention`), with ``Hq = G * Hkv``; query head ``j`` uses KV head ``j // G``.

Public entry points (fixed by the spec): :func:`compress`, :func:`attention`,
:func:`accumulated_scores`.  Building blocks mirroring the compiler's dialect ops:
:func:`adjacent_similarity`, :func:`merge_sets`, :func:`pivots`, :func:`gaussian_weights`,
:func:`merge`.

Numerics: f16 / bf16 / f32 inputs are computed in float32 (the "storage" modes); if any float input
is float64 everything is computed in float64 (the "checking" mode).  Output keys / values are cast
back to their input dtype (round-to-nearest-even).  Project choices beyond the spec are listed in
``docs/reference.md``.
"""
from __future__ import annotations

import math
import numbers

from typing import NamedTuple

import numpy as np

try:  # bfloat16 is optional at import time, but the project installs ml_dtypes.
    import ml_dtypes

    _BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover
    _BF16 = None

__all__ = [
    "POLICIES",
    "MODES",
    "adjacent_similarity",
    "merge_sets",
    "pivots",
    "gaussian_weights",
    "merge",
    "accumulated_scores",
    "compress",
    "attention",
    "budget_from_ratio", "append", "default_heavy"]

POLICIES = ("full", "streaming", "h2o", "kvmerger")
MODES = ("budget", "threshold")
SIGMA_MODES = ("auto", "paper")

_FLOAT_DTYPES = tuple(
    d for d in (np.dtype(np.float16), _BF16, np.dtype(np.float32), np.dtype(np.float64)) if d is not None
)


# --------------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------------
def _float_array(x, name: str, ndim: int | None = None) -> np.ndarray:
    """``np.asarray(x)`` checked to be one of the supported float dtypes (and rank ``ndim``)."""
    a = np.asarray(x)
    if a.dtype not in _FLOAT_DTYPES:
        raise ValueError(
            f"{name}: unsupported dtype {a.dtype}; expected float16, bfloat16, float32 or float64"
        )
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name}: expected a rank-{ndim} array, got shape {a.shape}")
    return a


def _score_array(x, name: str, ndim: int) -> np.ndarray:
    """Scores may also be integers (e.g. counts); booleans and complex numbers are rejected."""
    a = np.asarray(x)
    if a.dtype not in _FLOAT_DTYPES and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(
            f"{name}: unsupported dtype {a.dtype}; expected a float (f16/bf16/f32/f64) or integer array"
        )
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected a rank-{ndim} array, got shape {a.shape}")
    return a


def _compute_dtype(*arrays) -> np.dtype:
    """float64 if any input is float64 (checking mode), else float32."""
    for a in arrays:
        if a is not None and a.dtype == np.float64:
            return np.dtype(np.float64)
    return np.dtype(np.float32)


def _to_compute(a: np.ndarray, cd: np.dtype, name: str) -> np.ndarray:
    c = np.asarray(a).astype(cd, copy=True)
    if not np.all(np.isfinite(c)):
        bad = np.argwhere(~np.isfinite(c))[0]
        raise ValueError(f"{name}: contains NaN/Inf (first at index {tuple(int(i) for i in bad)}: {c[tuple(bad)]})")
    return c


def _int_arg(v, name: str, minimum: int | None = None) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Integral, np.integer)):
        raise ValueError(f"{name}: expected an integer, got {v!r}")
    v = int(v)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {v}")
    return v


def _int_array(x, name: str, ndim: int) -> np.ndarray:
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name}: expected an integer array, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected a rank-{ndim} array, got shape {a.shape}")
    return a.astype(np.int64)


def _check_mode(mode) -> str:
    if mode not in MODES:
        raise ValueError(f"mode: unknown mode {mode!r}; expected one of {MODES}")
    return mode


def _check_eps(eps) -> float:
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"eps: expected a real number in [-1, 1], got {eps!r}")
    e = float(eps)
    if not (-1.0 <= e <= 1.0):  # also rejects NaN
        raise ValueError(f"eps: must lie in [-1, 1], got {eps!r}")
    return e


def _check_sigma(sigma):
    if isinstance(sigma, str):
        if sigma not in SIGMA_MODES:
            raise ValueError(f"sigma: unknown sigma mode {sigma!r}; expected 'auto', 'paper' or a positive number")
        return sigma
    if isinstance(sigma, (bool, np.bool_)) or not isinstance(sigma, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"sigma: expected 'auto', 'paper' or a positive number, got {sigma!r}")
    s = float(sigma)
    if not (s > 0.0 and math.isfinite(s)):
        raise ValueError(f"sigma: must be a positive finite number, got {sigma!r}")
    return s


def _check_key_magnitude(kc: np.ndarray, name: str) -> np.ndarray:
    """Squared norms ``[H, L]``; raises if a (pairwise-difference) squared norm could overflow."""
    n2 = np.einsum("...d,...d->...", kc, kc)
    limit = np.finfo(kc.dtype).max / 4  # ||a - b||^2 <= 4 max(||a||^2, ||b||^2)
    if kc.size and not np.all(n2 <= limit):
        bad = np.argwhere(~(n2 <= limit))[0]
        raise ValueError(
            f"{name}: squared key norm {n2[tuple(bad)]} at {tuple(int(i) for i in bad)} overflows "
            f"{kc.dtype} (keys this large are out of scope)"
        )
    return n2


def _check_slot(slot, lengths, L: int, H: int, capacity: int | None = None):
    """Validate a slot map: ``slot [H, L]`` starts at 0, steps by 0 or 1; ``lengths = max + 1``."""
    s = _int_array(slot, "slot", 2)
    if s.shape != (H, L):
        raise ValueError(f"slot: expected shape {(H, L)}, got {s.shape}")
    n = _int_array(lengths, "lengths", 1)
    if n.shape != (H,):
        raise ValueError(f"lengths: expected shape {(H,)}, got {n.shape}")
    if L == 0:
        raise ValueError("slot: needs at least one token (L >= 1)")
    if np.any(s[:, 0] != 0):
        raise ValueError(f"slot: every head must start at slot 0, got {s[:, 0].tolist()}")
    d = np.diff(s, axis=1)
    if np.any((d != 0) & (d != 1)):
        raise ValueError("slot: must be non-decreasing in steps of 0 or 1 (consecutive runs)")
    if np.any(n != s[:, -1] + 1):
        raise ValueError(f"lengths: must equal max(slot) + 1 per head, got {n.tolist()} vs {(s[:, -1] + 1).tolist()}")
    if capacity is not None and np.any(n > capacity):
        raise ValueError(f"capacity: {capacity} is smaller than lengths {n.tolist()}")
    return s, n


def _segment_starts(slot_row: np.ndarray) -> np.ndarray:
    """Index of the first token of every slot (slot row is a valid consecutive map)."""
    return np.flatnonzero(np.concatenate(([True], slot_row[1:] != slot_row[:-1])))


def _segsum(x: np.ndarray, slot_row: np.ndarray, n: int) -> np.ndarray:
    """Per-slot sums of ``x`` (leading axis = tokens), accumulated sequentially in token order."""
    out = np.zeros((n,) + x.shape[1:], dtype=x.dtype)
    np.add.at(out, slot_row, x)
    return out


def budget_from_ratio(ratio, L: int) -> int:
    """``B = ceil(ratio * L)`` evaluated in IEEE float64 (so ``ratio=0.07, L=100`` gives 8).

    ``ratio`` must lie in ``(0, 1]``.
    """
    if isinstance(ratio, (bool, np.bool_)) or not isinstance(ratio, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"ratio: expected a number in (0, 1], got {ratio!r}")
    r = float(ratio)
    if not (0.0 < r <= 1.0):
        raise ValueError(f"ratio: must lie in (0, 1], got {ratio!r}")
    return max(1, int(math.ceil(r * L)))


# --------------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------------
#: Lanes of the similarity's summation order (docs/reference.md, choice 3).
SIMILARITY_LANES = 16
_SIM_BLOCK = 4096  # links per block (bounds the f64 temporaries)


def _lane_sum(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``sum_d x[..., d] * y[..., d]`` (float64) in the project's order: lane ``j`` adds the
    products of ``d = j, j + 16, ...`` in increasing ``d`` (each product and each addition rounded,
    no fused multiply-add), then the 16 lanes are combined by halving (lane ``j`` += lane ``j + w``
    for ``w = 8, 4, 2, 1``)."""
    W = SIMILARITY_LANES
    D = x.shape[-1]
    acc = np.zeros(x.shape[:-1] + (W,), np.float64)
    for c in range(0, D, W):
        w = min(W, D - c)
        acc[..., :w] += x[..., c:c + w] * y[..., c:c + w]
    while W > 1:
        W //= 2
        acc = acc[..., :W] + acc[..., W:2 * W]
    return acc[..., 0]


def _adjacent_similarity(kc: np.ndarray) -> np.ndarray:
    """``s [H, L-1]`` float32 (choice 3): the float64 cosine of the exact float64 values of the
    keys, summed in :func:`_lane_sum`'s order, 0 where ``sqrt(|a|^2) * sqrt(|b|^2)`` is 0, clipped
    to [-1, 1], rounded once to float32 -- bit for bit what every compiled path computes."""
    H, L, _ = kc.shape
    out = np.zeros((H, max(L - 1, 0)), np.float32)
    for lo in range(0, L - 1, _SIM_BLOCK):
        hi = min(L - 1, lo + _SIM_BLOCK)
        k = kc[:, lo:hi + 1].astype(np.float64)
        a, b = k[:, :-1], k[:, 1:]
        dot = _lane_sum(a, b)
        den = np.sqrt(_lane_sum(a, a)) * np.sqrt(_lane_sum(b, b))
        ok = den > 0
        s = np.where(ok, dot / np.where(ok, den, 1.0), 0.0)
        out[:, lo:hi] = np.clip(s, -1.0, 1.0).astype(np.float32)
    return out


def adjacent_similarity(keys) -> np.ndarray:
    """Cosine similarity of consecutive keys.

    Args:
        keys: ``[Hkv, L, D]`` float array (f16/bf16/f32 computed in f32, f64 in f64).

    Returns:
        ``s [Hkv, L-1]`` float32 (every dtype) with
        ``s[h, t] = dot(K[h,t], K[h,t+1]) / (||K[h,t]|| * ||K[h,t+1]||)``, clipped to ``[-1, 1]``,
        computed in float64 in a fixed summation order (16 interleaved lane sums, combined by
        halving) and rounded once to float32: the compiled paths compute the same bits
        (docs/reference.md, choice 3).  If either norm is zero (or, for float64 keys, the product
        of the norms underflows to zero) the similarity is ``0`` -- never NaN.

    Raises:
        ValueError: wrong rank, unsupported dtype, NaN/Inf, or keys whose squared norm overflows.
    """
    k = _float_array(keys, "keys", 3)
    kc = _to_compute(k, _compute_dtype(k), "keys")
    _check_key_magnitude(kc, "keys")
    return _adjacent_similarity(kc)


def _heavy_mask(ac: np.ndarray, sink: int, recent: int, heavy: int) -> np.ndarray:
    """``[H, L]`` bool: the ``heavy`` middle tokens of largest score (ties: the newer token)."""
    H, L = ac.shape
    mask = np.zeros((H, L), dtype=bool)
    lo, hi = sink, L - recent
    if heavy <= 0 or hi <= lo:
        return mask
    t = np.arange(lo, hi)
    for h in range(H):
        order = np.lexsort((-t, -ac[h, lo:hi]))[:heavy]
        mask[h, t[order]] = True
    return mask


def _merge_sets(sim: np.ndarray, sink: int, recent: int, bm: int, mode: str, eps: float,
                heavy_mask: np.ndarray | None = None):
    """Slot map; ``bm`` = all middle slots (``Mb``), ``heavy_mask`` marks the heavy hitters."""
    H, Lm1 = sim.shape
    L = Lm1 + 1
    lo, hi = sink, L - recent - 1  # middle links: t in [lo, hi) joins t and t+1, both in the middle
    cut = np.ones((H, Lm1), dtype=bool)
    nlinks = max(0, hi - lo)
    if nlinks > 0:
        ms = sim[:, lo:hi]
        if heavy_mask is None:
            heavy_mask = np.zeros((H, L), dtype=bool)
        hv = heavy_mask[:, lo:L - recent]  # [H, |M|]
        forced = hv[:, :-1] | hv[:, 1:]  # a link touching a heavy hitter is always cut
        nheavy = hv.sum(axis=1)
        # segments: maximal runs of mergeable middle tokens
        seg_start = ~hv & np.concatenate((np.ones((H, 1), bool), hv[:, :-1]), axis=1)
        nseg = seg_start.sum(axis=1)
        c = np.zeros((H, nlinks), dtype=bool)
        for h in range(H):
            k = min(bm - int(nheavy[h]) - int(nseg[h]), nlinks)
            free = np.flatnonzero(~forced[h])
            if mode == "threshold":
                thr = free[ms[h, free] < np.asarray(eps, dtype=ms.dtype)]
                if thr.size <= k:
                    c[h, thr] = True
                    continue
            if k > 0:
                # Stable sort: among equal similarities the older (smaller index) link comes first.
                order = free[np.argsort(ms[h, free], kind="stable")[:k]]
                c[h, order] = True
        cut[:, lo:hi] = c | forced
    slot = np.concatenate((np.zeros((H, 1), np.int64), np.cumsum(cut, axis=1)), axis=1)
    lengths = slot[:, -1] + 1
    return slot.astype(np.int32), lengths.astype(np.int32)


def default_heavy(slots_middle: int) -> int:
    """The spec's default number of heavy hitters, ``floor((Mb - 1) / 2)`` (0 when ``Mb < 1``)."""
    return max(0, (int(slots_middle) - 1) // 2)


def _check_heavy(heavy, bm: int) -> int:
    h = _int_arg(heavy, "heavy", 0)
    if 2 * h + 1 > bm:
        raise ValueError(f"heavy: 2 * heavy + 1 = {2 * h + 1} exceeds the {bm} middle slots "
                         f"(heavy must be <= floor((Mb - 1) / 2) = {default_heavy(bm)})")
    return h


def merge_sets(sim, *, sink, recent, slots_middle, mode="budget", eps=0.75, scores=None, heavy=0):
    """Merging-set identification (spec step 1) as a *slot map*.

    Args:
        sim: ``[Hkv, L-1]`` adjacent similarities (see :func:`adjacent_similarity`); ``L`` is
            inferred as ``sim.shape[1] + 1``.
        sink: number of oldest tokens kept as singletons.
        recent: number of newest tokens kept as singletons (``sink + recent <= L``).
        slots_middle: ``Bm >= 1``, slots available for the middle ``[sink, L - recent)``.
        mode: ``"budget"`` -- cut the middle at its ``Bm - 1`` lowest links (ties: the older link is
            cut first), giving exactly ``min(Bm, |M|)`` runs; ``"threshold"`` -- cut every middle
            link with ``sim < eps``; if that makes more than ``Bm`` runs, fall back to the budget cut.
        eps: threshold in ``[-1, 1]`` (rounded to the dtype of ``sim``; only used by ``threshold``).
        scores: ``[Hkv, L]`` accumulated attention, needed when ``heavy > 0``.
        heavy: number of heavy hitters (spec v2): the ``heavy`` middle tokens of largest score (ties:
            the newer) are singleton runs and never merged; the other middle tokens form
            ``slots_middle - heavy`` runs, cuts counted per segment (``Bm - n_seg``).
            ``2 * heavy + 1 <= slots_middle``.

    Returns:
        ``(slot [Hkv, L] int32, lengths [Hkv] int32)``: ``slot[h, t]`` is the output slot that token
        ``t`` lands in.  Sink tokens get ``0..sink-1``, the middle runs consecutive slots from
        ``sink``, the recent tokens follow one slot each.  ``slot`` is non-decreasing in steps of
        0/1 per head; ``lengths[h] = slot[h, -1] + 1`` (the number of used slots).

    Raises:
        ValueError: on bad rank/dtype, NaN/Inf in ``sim``, negative ``sink``/``recent``,
            ``sink + recent > L``, ``slots_middle < 1``, unknown ``mode``, ``eps`` outside [-1, 1].
    """
    s = _float_array(sim, "sim", 2)
    s = _to_compute(s, _compute_dtype(s), "sim")
    L = s.shape[1] + 1
    sink = _int_arg(sink, "sink", 0)
    recent = _int_arg(recent, "recent", 0)
    bm = _int_arg(slots_middle, "slots_middle", 1)
    if sink + recent > L:
        raise ValueError(f"sink/recent: sink + recent = {sink + recent} exceeds L = {L}")
    mode = _check_mode(mode)
    eps = _check_eps(eps)
    heavy = _check_heavy(heavy, bm)
    hm = None
    if heavy > 0:
        if scores is None:
            raise ValueError("scores: heavy > 0 needs the accumulated scores")
        a = _score_array(scores, "scores", 2)
        if a.shape != (s.shape[0], L):
            raise ValueError(f"scores: expected shape {(s.shape[0], L)}, got {a.shape}")
        ac = _to_compute(a, _compute_dtype(a), "scores")
        if np.any(ac < 0):
            raise ValueError(f"scores: must be non-negative, min is {ac.min()}")
        hm = _heavy_mask(ac, sink, recent, heavy)
    return _merge_sets(s, sink, recent, bm, mode, eps, hm)


def _pivots(ac: np.ndarray, slot: np.ndarray, lengths: np.ndarray, capacity: int) -> np.ndarray:
    H, L = ac.shape
    out = np.full((H, capacity), -1, dtype=np.int32)
    t = np.arange(L)
    for h in range(H):
        starts = _segment_starts(slot[h])
        segmax = np.maximum.reduceat(ac[h], starts)
        is_max = ac[h] == segmax[slot[h]]
        # the newest token reaching the maximum (ties: newest)
        out[h, : lengths[h]] = np.maximum.reduceat(np.where(is_max, t, -1), starts)
    return out


def pivots(scores, slot, lengths, capacity):
    """Pivot of every slot (spec step 2): the token with the largest score, ties -> newest.

    Args:
        scores: ``[Hkv, L]`` non-negative accumulated attention (compared after conversion to f32,
            or f64 if ``scores`` is float64).
        slot, lengths: a slot map from :func:`merge_sets`.
        capacity: number of output slots (``>= max(lengths)``).

    Returns:
        ``[Hkv, capacity]`` int32 token index of each slot's pivot; ``-1`` for unused slots.
    """
    a = _score_array(scores, "scores", 2)
    ac = _to_compute(a, _compute_dtype(a), "scores")
    if np.any(ac < 0):
        raise ValueError(f"scores: must be non-negative, min is {ac.min()}")
    H, L = ac.shape
    capacity = _int_arg(capacity, "capacity", 1)
    s, n = _check_slot(slot, lengths, L, H, capacity)
    return _pivots(ac, s, n, capacity)


def _gaussian_weights(kc: np.ndarray, slot: np.ndarray, lengths: np.ndarray, piv: np.ndarray, sigma):
    H, L, _ = kc.shape
    cd = kc.dtype
    w = np.empty((H, L), dtype=cd)
    for h in range(H):
        sl = slot[h]
        n = int(lengths[h])
        starts = _segment_starts(sl)
        cnt = np.diff(np.append(starts, L))
        ptok = piv[h, :n][sl]  # pivot token of every token's set
        diff = kc[h] - kc[h][ptok]
        d2 = np.einsum("ld,ld->l", diff, diff)  # pivot itself: exactly 0
        sumd2 = _segsum(d2, sl, n)
        if isinstance(sigma, str) and sigma == "auto":
            sig2 = sumd2 / np.maximum(cnt - 1, 1).astype(cd)
            equal = (cnt == 1) | (sig2 == 0)
        elif isinstance(sigma, str) and sigma == "paper":
            s02 = sumd2 / cnt.astype(cd)
            equal0 = s02 == 0
            s02_safe = np.where(equal0, 1, s02).astype(cd)
            g0 = np.exp(-d2 / (cd.type(2) * s02_safe[sl]))
            sig = _segsum(g0, sl, n) / (np.sqrt(cd.type(2)) * cnt.astype(cd))
            sig2 = sig * sig
            equal = (cnt == 1) | equal0 | (sig2 == 0)
        else:
            sig2 = np.full(n, cd.type(sigma) * cd.type(sigma), dtype=cd)
            equal = (cnt == 1) | (sig2 == 0)
        sig2_safe = np.where(equal, 1, sig2).astype(cd)
        g = np.exp(-d2 / (cd.type(2) * sig2_safe[sl]))
        gsum = _segsum(g, sl, n)  # >= 1: the pivot has g = 1
        wh = g / gsum[sl]
        eq_tok = equal[sl]
        wh[eq_tok] = (cd.type(1) / cnt.astype(cd))[sl][eq_tok]
        w[h] = wh
    return w


def gaussian_weights(keys, slot, pivots, *, sigma="auto"):
    """Gaussian-kernel weight of every token within its set (spec step 3).

    ``g_i = exp(-||K[p] - K[i]||^2 / (2 sigma^2))``, ``w_i = g_i / sum_{j in S} g_j``.

    Args:
        keys: ``[Hkv, L, D]``.
        slot: ``[Hkv, L]`` slot map (see :func:`merge_sets`); ``lengths`` is derived from it.
        pivots: ``[Hkv, C]`` pivot token per slot (``C >= lengths``; see :func:`pivots`); each
            pivot must lie inside its own set.
        sigma: ``"auto"`` (``sigma^2`` = mean over ``i != p`` of ``d_i^2``), ``"paper"`` (two-step
            resolution of ``sigma = sum g / (sqrt(2)|S|)`` with ``s0^2`` = mean over all of ``S``),
            or a positive number.  If ``sigma^2 == 0`` or ``|S| == 1`` the weights are ``1/|S|``.

    Returns:
        ``[Hkv, L]`` weights in the compute dtype (f32, or f64 for f64 keys); they sum to 1 per set.
    """
    k = _float_array(keys, "keys", 3)
    kc = _to_compute(k, _compute_dtype(k), "keys")
    _check_key_magnitude(kc, "keys")
    sigma = _check_sigma(sigma)
    H, L, _ = kc.shape
    if H < 1 or L < 1:
        raise ValueError(f"keys: needs at least one head and one token, got shape {kc.shape}")
    s = _int_array(slot, "slot", 2)
    if s.shape != (H, L):
        raise ValueError(f"slot: expected shape {(H, L)}, got {s.shape}")
    s, n = _check_slot(s, s[:, -1] + 1, L, H)
    p = _int_array(pivots, "pivots", 2)
    if p.shape[0] != H or p.shape[1] < n.max():
        raise ValueError(f"pivots: expected shape ({H}, >= {int(n.max())}), got {p.shape}")
    for h in range(H):
        ph = p[h, : n[h]]
        if np.any(ph < 0) or np.any(ph >= L) or np.any(s[h][np.clip(ph, 0, L - 1)] != np.arange(n[h])):
            raise ValueError(f"pivots: head {h} has a pivot outside its set: {ph.tolist()[:16]}")
    return _gaussian_weights(kc, s, n, p, sigma)


def _empty_output(H: int, B: int, D: int, Dv: int, cd):
    return dict(
        keys=np.zeros((H, B, D), dtype=cd),
        values=np.zeros((H, B, Dv), dtype=cd),
        positions=np.zeros((H, B), dtype=np.int32),
        counts=np.zeros((H, B), dtype=np.int32),
        scores=np.zeros((H, B), dtype=np.float32),
        lengths=np.zeros((H,), dtype=np.int32),
    )


def _finish(out: dict, kdt, vdt) -> dict:
    out["keys"] = out["keys"].astype(kdt)
    out["values"] = out["values"].astype(vdt)
    return out


def _merge(kc, vc, ac, slot, lengths, capacity, sigma, kdt, vdt):
    H, L, D = kc.shape
    Dv = vc.shape[2]
    cd = kc.dtype
    piv = _pivots(ac, slot, lengths, capacity)
    w = _gaussian_weights(kc, slot, lengths, piv, sigma)
    out = _empty_output(H, capacity, D, Dv, cd)
    for h in range(H):
        n = int(lengths[h])
        starts = _segment_starts(slot[h])
        wh = w[h][:, None]
        # sequential accumulation in token order (np.add.at)
        out["keys"][h, :n] = _segsum(wh * kc[h], slot[h], n)
        out["values"][h, :n] = _segsum(wh * vc[h], slot[h], n)
        out["positions"][h, :n] = piv[h, :n]
        out["counts"][h, :n] = np.diff(np.append(starts, L))
        out["scores"][h, :n] = _segsum(ac[h], slot[h], n)
        out["lengths"][h] = n
    return _finish(out, kdt, vdt)


def _prepare_kvs(keys, values, scores):
    k = _float_array(keys, "keys", 3)
    v = _float_array(values, "values", 3)
    a = _score_array(scores, "scores", 2)
    if v.shape[:2] != k.shape[:2]:
        raise ValueError(f"values: shape {v.shape} does not match keys {k.shape} in [Hkv, L]")
    if a.shape != k.shape[:2]:
        raise ValueError(f"scores: expected shape {k.shape[:2]} (= keys[Hkv, L]), got {a.shape}")
    if k.shape[0] < 1:
        raise ValueError(f"keys: needs at least one KV head, got shape {k.shape}")
    if k.shape[1] < 1:
        raise ValueError(f"keys: needs at least one token (L >= 1), got shape {k.shape}")
    cd = _compute_dtype(k, v, a)
    kc = _to_compute(k, cd, "keys")
    vc = _to_compute(v, cd, "values")
    ac = _to_compute(a, cd, "scores")
    if np.any(ac < 0):
        bad = np.argwhere(ac < 0)[0]
        raise ValueError(f"scores: must be non-negative, got {ac[tuple(bad)]} at {tuple(int(i) for i in bad)}")
    return k, v, kc, vc, ac


def merge(keys, values, scores, slot, lengths, *, capacity, sigma="auto"):
    """Merge every set of a slot map into one slot (spec steps 2 and 3 plus the output layout).

    Args:
        keys ``[Hkv, L, D]``, values ``[Hkv, L, Dv]``, scores ``[Hkv, L]`` (non-negative).
        slot, lengths: slot map (see :func:`merge_sets`).
        capacity: number of output slots ``B >= max(lengths)``.
        sigma: see :func:`gaussian_weights`.

    Returns:
        dict like :func:`compress`: ``keys [Hkv, B, D]`` and ``values [Hkv, B, Dv]`` (input dtypes,
        accumulated in f32 / f64), ``positions`` (pivot token, i32), ``counts`` (``|S|``, i32),
        ``scores`` (sum over the set, f32), ``lengths`` (i32).  Slots ``>= lengths`` are zero.
    """
    k, v, kc, vc, ac = _prepare_kvs(keys, values, scores)
    _check_key_magnitude(kc, "keys")
    H, L, _ = kc.shape
    capacity = _int_arg(capacity, "capacity", 1)
    s, n = _check_slot(slot, lengths, L, H, capacity)
    sigma = _check_sigma(sigma)
    return _merge(kc, vc, ac, s, n, capacity, sigma, k.dtype, v.dtype)


# --------------------------------------------------------------------------------------------------
# policies
# --------------------------------------------------------------------------------------------------
def _gather(kc, vc, ac, idx: np.ndarray, B: int, kdt, vdt) -> dict:
    """Keep tokens ``idx [H, n]`` (sorted per head) as singleton slots in the first n of B slots."""
    H, L, D = kc.shape
    n = idx.shape[1]
    out = _empty_output(H, B, D, vc.shape[2], kc.dtype)
    out["keys"][:, :n] = np.take_along_axis(kc, idx[:, :, None], axis=1)
    out["values"][:, :n] = np.take_along_axis(vc, idx[:, :, None], axis=1)
    out["positions"][:, :n] = idx
    out["counts"][:, :n] = 1
    out["scores"][:, :n] = np.take_along_axis(ac, idx, axis=1)
    out["lengths"][:] = n
    return _finish(out, kdt, vdt)


def _h2o_keep(ac: np.ndarray, sink: int, recent: int, bm: int) -> np.ndarray:
    H, L = ac.shape
    lo, hi = sink, L - recent
    t = np.arange(lo, hi)
    mid = ac[:, lo:hi]
    keep = np.empty((H, bm), dtype=np.int64)
    for h in range(H):
        # primary: larger score first; secondary: newer token first (ties -> newer kept)
        order = np.lexsort((-t, -mid[h]))[:bm]
        keep[h] = np.sort(t[order])
    base = np.broadcast_to(np.arange(sink), (H, sink))
    tail = np.broadcast_to(np.arange(L - recent, L), (H, recent))
    return np.concatenate((base, keep, tail), axis=1)


class CompressArgs(NamedTuple):
    """Validated, normalized arguments of :func:`compress` (shared with the compiled path)."""

    policy: str
    kc: np.ndarray
    vc: np.ndarray
    ac: np.ndarray
    kdt: np.dtype
    vdt: np.dtype
    B: int
    sink: int
    recent: int
    mode: str
    eps: float
    sigma: object
    heavy: int = 0


def resolve_compress_args(keys, values, scores, *, policy="kvmerger", budget=None, ratio=None, sink=4,
                          recent=None, heavy=None, mode="budget", eps=0.75, sigma="paper") -> CompressArgs:
    """Validates :func:`compress`'s arguments and resolves the budget ``B`` and ``recent``.

    Raises the same ValueErrors as :func:`compress`, naming the offending argument.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy: unknown policy {policy!r}; expected one of {POLICIES}")
    k, v, kc, vc, ac = _prepare_kvs(keys, values, scores)
    H, L, D = kc.shape
    sink = _int_arg(sink, "sink", 0)
    if recent is not None:
        recent = _int_arg(recent, "recent", 0)
    mode = _check_mode(mode)
    eps = _check_eps(eps)
    sigma = _check_sigma(sigma)
    if budget is not None and ratio is not None:
        raise ValueError(f"budget/ratio: give exactly one of budget and ratio, got budget={budget!r}, ratio={ratio!r}")
    if budget is not None:
        B = _int_arg(budget, "budget", 1)
    elif ratio is not None:
        B = budget_from_ratio(ratio, L)
    elif policy == "full":
        B = L
    else:
        raise ValueError(f"budget/ratio: policy {policy!r} needs one of budget and ratio (both are None)")
    if policy == "full":
        B = L
    if recent is None:
        recent = (B + 3) // 4  # ceil(B / 4)
    if L > B:
        if policy == "streaming" and B < sink:
            raise ValueError(f"budget: {B} is smaller than sink = {sink} (streaming keeps sink + B - sink newest)")
        if policy in ("h2o", "kvmerger") and B - sink - recent < 1:
            raise ValueError(
                f"budget: B = {B} leaves {B - sink - recent} middle slots (sink = {sink}, recent = {recent}); "
                f"{policy} needs budget > sink + recent"
            )
        if policy == "kvmerger":
            _check_key_magnitude(kc, "keys")
    if heavy is not None and policy != "kvmerger":
        raise ValueError(f"heavy: only policy 'kvmerger' takes heavy hitters, got policy {policy!r} "
                         f"(h2o keeps its whole middle by score; streaming/full have no middle)")
    hv = 0
    if policy == "kvmerger":
        bm = B - sink - recent
        if heavy is None:
            hv = default_heavy(bm)
        elif L > B:
            hv = _check_heavy(heavy, bm)
        else:
            hv = _int_arg(heavy, "heavy", 0)
    return CompressArgs(policy, kc, vc, ac, k.dtype, v.dtype, B, sink, recent, mode, eps, sigma, hv)


def compress(keys, values, scores, *, policy="kvmerger", budget=None, ratio=None, sink=4, recent=None,
             heavy=None, mode="budget", eps=0.75, sigma="paper"):
    """Compress one layer's KV cache to ``B`` slots per KV head.

    Args:
        keys: ``[Hkv, L, D]``; values: ``[Hkv, L, Dv]`` (f16/bf16/f32, or f64 = checking mode).
        scores: ``[Hkv, L]`` non-negative accumulated attention (:func:`accumulated_scores`).
        policy: ``"kvmerger"`` (spec), ``"h2o"``, ``"streaming"`` or ``"full"`` (identity, ``B = L``).
        budget / ratio: exactly one (``full`` needs neither): ``B = budget`` or
            ``B = ceil(ratio * L)`` (float64 arithmetic, see :func:`budget_from_ratio`).
        sink: oldest tokens always kept (default 4).
        recent: newest tokens always kept (default ``ceil(B / 4)``; unused by ``streaming``).
        heavy: kvmerger only: middle tokens of largest score kept exactly, never merged (default
            ``floor((Mb - 1) / 2)``, ``Mb = B - sink - recent``; ``0`` is the spec's version 1).
            ``2 * heavy + 1 <= Mb``.
        mode: ``"budget"`` (exactly ``B`` slots) or ``"threshold"`` (``sim >= eps`` joins; may yield
            fewer slots, never more than ``B``).  kvmerger only.
        eps: similarity threshold in ``[-1, 1]`` for ``threshold`` mode.
        sigma: ``"paper"`` (default), ``"auto"`` or a positive number (Gaussian kernel width).

    Returns:
        dict with ``keys [Hkv, B, D]``, ``values [Hkv, B, Dv]`` (input dtypes), ``positions`` i32
        (token / pivot position), ``counts`` i32 (tokens per slot), ``scores`` f32 (summed score per
        slot), ``lengths [Hkv]`` i32.  Slots ``>= lengths[h]`` are zero-filled.  If ``L <= B`` the
        cache is returned unchanged in the first ``L`` slots (``lengths = L``).

    Raises:
        ValueError naming the offending argument (shapes, dtypes, NaN/Inf, negative scores,
        budget/ratio, sink/recent, mode, eps, sigma, policy).
    """
    args = resolve_compress_args(keys, values, scores, policy=policy, budget=budget, ratio=ratio,
                                 sink=sink, recent=recent, heavy=heavy, mode=mode, eps=eps, sigma=sigma)
    kc, vc, ac = args.kc, args.vc, args.ac
    H, L, _ = kc.shape
    B, sink, recent, mode, eps, sigma = args.B, args.sink, args.recent, args.mode, args.eps, args.sigma
    kdt, vdt = args.kdt, args.vdt

    if L <= B:
        return _gather(kc, vc, ac, np.broadcast_to(np.arange(L), (H, L)), B, kdt, vdt)

    if policy == "streaming":
        idx = np.concatenate((np.arange(sink), np.arange(L - (B - sink), L)))
        return _gather(kc, vc, ac, np.broadcast_to(idx, (H, B)), B, kdt, vdt)

    bm = B - sink - recent
    if policy == "h2o":
        return _gather(kc, vc, ac, _h2o_keep(ac, sink, recent, bm), B, kdt, vdt)

    # kvmerger
    _check_key_magnitude(kc, "keys")
    sim = _adjacent_similarity(kc)
    hm = _heavy_mask(ac, sink, recent, args.heavy) if args.heavy > 0 else None
    slot, lengths = _merge_sets(sim, sink, recent, bm, mode, eps, hm)
    return _merge(kc, vc, ac, slot.astype(np.int64), lengths.astype(np.int64), B, sigma, kdt, vdt)


# --------------------------------------------------------------------------------------------------
# attention
# --------------------------------------------------------------------------------------------------
def accumulated_scores(q, k, *, obs_window=None, normalize=False, scale=None):
    """Accumulated attention ``a [Hkv, L]`` of a causal prefill (H2O / SnapKV style).

    ``a[h, t] = sum over observation queries i and over the G query heads j of KV head h
    (j // G == h) of softmax_t'((q[j, i] . k[h, t']) * scale, t' <= i)[t]``, ``scale = 1/sqrt(D)``.

    Args:
        q: ``[Hq, L, D]`` queries (post-RoPE); ``Hq`` a multiple of ``Hkv``.
        k: ``[Hkv, L, D]`` keys (post-RoPE).
        obs_window: ``None`` -- all ``L`` queries observe; an int ``w`` in ``[1, L]`` -- only the
            last ``w`` queries.
        normalize: divide ``a[h, t]`` by the number of observation queries that see token ``t``
            (``L - max(t, L - w)``), i.e. the mean attention per observing query instead of the sum
            (kvpress's ObservedAttention). Removes the sum's bias toward old tokens, which are seen by
            more queries. Default off (the spec's sum).
        scale: the logit scale; ``None`` -- ``1/sqrt(D)``. Models with their own scale (Granite's
            ``attention_multiplier``, Gemma 2's ``query_pre_attn_scalar``) score with it.

    Returns:
        ``[Hkv, L]`` in f32 (f64 if either input is float64).  Computed in query chunks, so memory
        stays ``O(G * chunk * L)``.
    """
    qa = _float_array(q, "q", 3)
    ka = _float_array(k, "k", 3)
    if qa.shape[1:] != ka.shape[1:]:
        raise ValueError(f"q: shape {qa.shape} does not match k {ka.shape} in [L, D]")
    Hq, L, D = qa.shape
    Hkv = ka.shape[0]
    if Hkv < 1 or Hq % Hkv != 0:
        raise ValueError(f"q: Hq = {Hq} is not a multiple of Hkv = {Hkv}")
    G = Hq // Hkv
    if obs_window is None:
        w = L
    else:
        w = _int_arg(obs_window, "obs_window", 1)
        if w > L:
            raise ValueError(f"obs_window: {w} exceeds L = {L}")
    cd = _compute_dtype(qa, ka)
    qc = _to_compute(qa, cd, "q")
    kc = _to_compute(ka, cd, "k")
    scale = _scale_arg(scale, D, cd)
    acc = np.zeros((Hkv, L), dtype=cd)
    first = L - w
    chunk = max(1, min(w, (1 << 22) // max(1, G * L)))
    for h in range(Hkv):
        qh = qc[h * G:(h + 1) * G]  # [G, L, D]
        for i0 in range(first, L, chunk):
            i1 = min(L, i0 + chunk)
            logits = np.matmul(qh[:, i0:i1], kc[h, :i1].T) * scale  # [G, c, i1]
            rows = np.arange(i0, i1)[:, None]
            logits = np.where(np.arange(i1)[None, :] <= rows, logits, -np.inf)
            logits -= logits.max(axis=-1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=-1, keepdims=True)
            acc[h, :i1] += p.sum(axis=(0, 1))
    if normalize:
        seen = (L - np.maximum(np.arange(L), first)).astype(cd)
        acc /= seen[None, :]
    return acc


class AttentionArgs(NamedTuple):
    """Validated, normalized arguments of :func:`attention` (shared with the compiled path)."""

    qc: np.ndarray      # [Hq, D] in the compute dtype
    kc: np.ndarray      # [Hkv, B, D]
    vc: np.ndarray      # [Hkv, B, Dv]
    lengths: np.ndarray  # [Hkv] int
    valid: np.ndarray   # [Hkv, B] bool
    bias: np.ndarray    # [Hkv, B] log(count) on valid slots (0 without count_bias)
    scale: object       # the logit scale, in the compute dtype
    group: int          # G = Hq / Hkv


def append(cache, added, lengths):
    """The ``kvcache.append`` of a decode step: per head ``h``, the ``n = lengths[h]`` valid slots
    (clamped to ``[0, P]``), then the ``T`` added entries, then zeros.

    Args: ``cache [H, P, ...]``, ``added [H, T, ...]`` (same trailing dims and dtype),
    ``lengths [H]``.  Returns ``(result [H, P + T, ...], new_lengths [H] int32)``.
    """
    c, a = np.asarray(cache), np.asarray(added)
    n = _int_array(lengths, "lengths", 1)
    if c.ndim < 2:
        raise ValueError(f"cache: expected rank >= 2 [H, P, ...], got shape {c.shape}")
    if a.ndim != c.ndim or a.shape[0] != c.shape[0] or a.shape[2:] != c.shape[2:]:
        raise ValueError(f"added: shape {a.shape} does not match the cache {c.shape} but for T")
    if a.dtype != c.dtype:
        raise ValueError(f"added: dtype {a.dtype} differs from the cache's {c.dtype}")
    if n.shape != (c.shape[0],):
        raise ValueError(f"lengths: expected shape {(c.shape[0],)}, got {n.shape}")
    H, P, T = c.shape[0], c.shape[1], a.shape[1]
    out = np.zeros((H, P + T) + c.shape[2:], dtype=c.dtype)
    valid = np.clip(n, 0, P)
    for h in range(H):
        out[h, :valid[h]] = c[h, :valid[h]]
        out[h, valid[h]:valid[h] + T] = a[h]
    return out, (valid + T).astype(np.int32)


def resolve_attention_args(q, keys, values, lengths, *, counts=None, count_bias=False,
                           scale=None) -> AttentionArgs:
    """Validates :func:`attention`'s arguments (same ValueErrors) and converts them."""
    qa = _float_array(q, "q", 2)
    ka = _float_array(keys, "keys", 3)
    va = _float_array(values, "values", 3)
    Hq, D = qa.shape
    Hkv, B, Dk = ka.shape
    if Dk != D:
        raise ValueError(f"keys: head dim {Dk} does not match q head dim {D}")
    if va.shape[:2] != (Hkv, B):
        raise ValueError(f"values: shape {va.shape} does not match keys {ka.shape} in [Hkv, B]")
    if Hkv < 1 or Hq % Hkv != 0:
        raise ValueError(f"q: Hq = {Hq} is not a multiple of Hkv = {Hkv}")
    G = Hq // Hkv
    n = _int_array(lengths, "lengths", 1)
    if n.shape != (Hkv,):
        raise ValueError(f"lengths: expected shape {(Hkv,)}, got {n.shape}")
    if np.any(n < 0) or np.any(n > B):
        raise ValueError(f"lengths: must lie in [0, {B}], got {n.tolist()}")
    cd = _compute_dtype(qa, ka, va)
    qc = _to_compute(qa, cd, "q")
    kc = _to_compute(ka, cd, "keys")
    vc = _to_compute(va, cd, "values")
    valid = np.arange(B)[None, :] < n[:, None]  # [Hkv, B]
    bias = np.zeros((Hkv, B), dtype=cd)
    if counts is not None:
        c = _int_array(counts, "counts", 2)
        if c.shape != (Hkv, B):
            raise ValueError(f"counts: expected shape {(Hkv, B)}, got {c.shape}")
        if count_bias:
            if np.any(valid & (c < 1)):
                raise ValueError("counts: must be >= 1 on every valid slot when count_bias is set")
            bias = np.where(valid, np.log(np.maximum(c, 1).astype(cd)), 0).astype(cd)
    elif count_bias:
        raise ValueError("counts: count_bias=True needs counts")
    return AttentionArgs(qc, kc, vc, n, valid, bias, _scale_arg(scale, D, cd), G)


def _scale_arg(scale, D, cd):
    """The logit scale in the compute dtype: ``1/sqrt(D)`` for ``None``, else a finite number."""
    if scale is None:
        return cd.type(1.0 / math.sqrt(D)) if D else cd.type(1)
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, (numbers.Real, np.floating, np.integer)) \
            or not math.isfinite(float(scale)):
        raise ValueError(f"scale: expected a finite number, got {scale!r}")
    return cd.type(scale)


def attention(q, keys, values, lengths, *, counts=None, count_bias=False, scale=None, mask=None):
    """One decode step of scaled-dot-product attention over a (compressed) cache.

    Args:
        q: ``[Hq, D]``; query head ``j`` reads KV head ``j // G``.
        keys: ``[Hkv, B, D]``; values: ``[Hkv, B, Dv]``.
        lengths: ``[Hkv]`` valid slots per head; slots ``>= lengths[h]`` are masked.
        counts: ``[Hkv, B]`` tokens per slot (needed when ``count_bias``; must be >= 1 on valid slots).
        count_bias: add ``log(count)`` to every valid logit (ToMe-style; default off).
        scale: logit scale, default ``1/sqrt(D)``; logits are ``(q . k) * scale``.
        mask: ``[Hm, B]`` (``Hq % Hm == 0``; query head ``j`` reads row ``j // (Hq // Hm)``): a float
            mask is added to the logits, a boolean one says which slots are visible (the
            ``mask`` operand of ``kvcache.attention``, one query row).

    Returns:
        ``[Hq, Dv]`` in f32 (f64 if any input is float64).  A head that sees no slot (``lengths ==
        0``, a fully masked row, only ``-inf`` logits, a zero-capacity cache ``B == 0``) outputs 0.
    """
    args = resolve_attention_args(q, keys, values, lengths, counts=counts, count_bias=count_bias,
                                  scale=scale)
    qc, kc, vc, valid, bias, sc, G = args.qc, args.kc, args.vc, args.valid, args.bias, args.scale, args.group
    Hkv = kc.shape[0]
    cd = qc.dtype
    kv = np.repeat(np.arange(Hkv), G)  # query head -> KV head
    logits = np.einsum("jd,jbd->jb", qc, kc[kv]) * sc + bias[kv]
    vmask = valid[kv]
    if mask is not None:
        Hq, B = logits.shape
        ma = np.asarray(mask)
        if ma.ndim != 2 or ma.shape[1] != B or ma.shape[0] < 1 or Hq % ma.shape[0]:
            raise ValueError(f"mask: expected shape [Hm, {B}] with Hm dividing Hq = {Hq}, got {ma.shape}")
        rows = ma[np.arange(Hq) // (Hq // ma.shape[0])]
        if ma.dtype == np.bool_:
            vmask = vmask & rows
        elif ma.dtype.kind == "f" or (_BF16 is not None and ma.dtype == _BF16):
            logits = logits + rows.astype(cd)
            vmask = vmask & (logits > -np.inf)
        else:
            raise ValueError(f"mask: expected a float or bool array, got {ma.dtype}")
    logits = np.where(vmask, logits, -np.inf)
    m = np.max(logits, axis=1, keepdims=True, initial=-np.inf)  # B = 0: no slot, output 0
    m = np.where(np.isfinite(m), m, 0)
    p = np.where(vmask, np.exp(logits - m), 0)
    den = p.sum(axis=1, keepdims=True)
    p = p / np.where(den > 0, den, 1)
    return np.einsum("jb,jbv->jv", p, vc[kv]).astype(cd, copy=False)
