"""Comparisons of the GPU check, in torch on the device (the caches are too large for the host).

The tolerances are the CPU path's (``test/python/test_compiled.py``): discrete outputs (positions,
counts, lengths) exactly; keys and values within 1 ulp of their storage type plus 4 f32 roundings
of the tensor's largest magnitude (2e-5 * (1 + |ref|) for f32); scores and attention outputs
within 2e-5 * (1 + |ref|).

KVMerger's slot map depends on which similarities are the smallest. Every path computes the
similarity in one fixed order (docs/reference.md, choice 3: float64 lane sums, rounded once to
float32), the GPU kernel and :func:`kvmerge.torch_ref.adjacent_similarity` included, so the
discrete outputs must be identical: any difference fails. To say what went wrong, a kvmerger
mismatch is diagnosed: the kernel's own slot map (read off its counts) is validated against the
similarities with a slack of :data:`DELTA` -- a map that only decides near-ties differently means
the kernel's similarities do not follow the shared order; any other map breaks the spec -- and its
merged keys, values, pivots and scores are checked against the expectation's merge of that slot
map (:func:`kvmerge.torch_ref.merge`), which tells a wrong selection from a wrong merge.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from .. import torch_ref

# Two f32 cosines of D <= 256 terms each err by at most about (D + 2) * 2^-24 < 1e-5.
DELTA = 2e-5

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def torch_dtype(name: str) -> torch.dtype:
    return TORCH_DTYPES[name]


def synthetic(H: int, L: int, D: int, dtype: str, seed: int, device) -> Tuple[torch.Tensor, ...]:
    """(keys, values, scores) on ``device`` from ``seed``: the distribution of
    :func:`kvmerge.gpucheck.cases.synthetic_numpy` (runs of similar keys, random values,
    gamma(1/2, 2) scores)."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    run_id = torch.cumsum((torch.rand((H, L), generator=g, device=device) < 0.25).to(torch.int64), dim=1)
    bases = torch.randn((H, L + 1, D), generator=g, device=device)
    noise = 0.05 + 1.45 * torch.rand((H, L, 1), generator=g, device=device)
    k = bases.gather(1, run_id[..., None].expand(H, L, D))
    del bases
    k += noise * torch.randn((H, L, D), generator=g, device=device)
    v = torch.randn((H, L, D), generator=g, device=device)
    a = torch.randn((H, L), generator=g, device=device) ** 2
    td = torch_dtype(dtype)
    return k.to(td), v.to(td), a.to(torch.float32)


def synthetic_query(Hq: int, D: int, dtype: str, seed: int, device) -> torch.Tensor:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return torch.randn((Hq, D), generator=g, device=device).to(torch_dtype(dtype))


def ulp(e64: torch.Tensor, dtype: str) -> torch.Tensor:
    """One unit in the last place of ``dtype`` (f16 or bf16) at the magnitude of ``e64``."""
    mant = {"float16": 10, "bfloat16": 7}[dtype]
    tiny = {"float16": 2.0 ** -14, "bfloat16": 2.0 ** -126}[dtype]
    return torch.exp2(torch.floor(torch.log2(e64.abs().clamp(min=tiny)))) * 2.0 ** -mant


def tolerance(e64: torch.Tensor, dtype: str, name: str) -> torch.Tensor:
    if name in ("scores", "out") or dtype == "float32":
        return 2e-5 * (1 + e64.abs())
    peak = e64.abs().max() if e64.numel() else torch.zeros((), dtype=e64.dtype, device=e64.device)
    return ulp(e64, dtype) * 1.0001 + 4 * 2.0 ** -24 * peak


def _index(flat: int, shape) -> Tuple[int, ...]:
    out = []
    for s in reversed(shape):
        out.append(flat % s)
        flat //= s
    return tuple(reversed(out))


def compare_floats(name: str, got: torch.Tensor, exp: torch.Tensor, dtype: str) -> Optional[str]:
    """None if ``got`` is within the tolerance of ``exp``, else what is off (NaN is always off)."""
    if tuple(got.shape) != tuple(exp.shape):
        return f"{name}: shape {tuple(got.shape)}, expected {tuple(exp.shape)}"
    g = got.to(torch.float64)
    e = exp.to(torch.float64)
    err = (g - e).abs()
    bad = ~(err <= tolerance(e, dtype, name))
    n = int(bad.sum())
    if not n:
        return None
    err = torch.where(torch.isnan(err), torch.full_like(err, float("inf")), err)
    worst = int(torch.argmax(torch.where(bad, err, torch.zeros_like(err))))
    i = _index(worst, tuple(g.shape))
    return (f"{name}: {n} of {g.numel()} elements off, worst at {list(i)}: got {float(g[i]):.9g}, "
            f"expected {float(e[i]):.9g}")


def compare_exact(name: str, got: torch.Tensor, exp: torch.Tensor) -> Optional[str]:
    if tuple(got.shape) != tuple(exp.shape):
        return f"{name}: shape {tuple(got.shape)}, expected {tuple(exp.shape)}"
    diff = got.to(torch.int64) != exp.to(torch.int64)
    n = int(diff.sum())
    if not n:
        return None
    i = _index(int(torch.argmax(diff.to(torch.int8))), tuple(got.shape))
    return f"{name}: {n} of {got.numel()} differ, first at {list(i)}: got {int(got[i])}, expected {int(exp[i])}"


def compare_compress(got: Dict[str, torch.Tensor], exp: Dict[str, torch.Tensor], dtype: str) -> List[str]:
    """Every difference between two compress results beyond the tolerances."""
    problems = []
    for name in ("lengths", "positions", "counts"):
        p = compare_exact(name, got[name], exp[name])
        if p:
            problems.append(p)
    for name in ("keys", "values"):
        if got[name].dtype != torch_dtype(dtype):
            problems.append(f"{name}: dtype {got[name].dtype}, expected {dtype}")
    for name in ("keys", "values", "scores"):
        p = compare_floats(name, got[name], exp[name], dtype)
        if p:
            problems.append(p)
    return problems


def cuts(slot: torch.Tensor) -> torch.Tensor:
    """``[H, L-1]``: whether link (t, t+1) separates two slots."""
    return slot[:, 1:] != slot[:, :-1]


def validate_kvmerger_slots(keys: torch.Tensor, slot: torch.Tensor, args: dict, delta: float = DELTA,
                            scores: Optional[torch.Tensor] = None) -> Optional[str]:
    """None if the slot map ``slot [H, L]`` is one the spec allows for ``keys`` up to near-ties
    within ``delta`` of the similarities (:func:`kvmerge.torch_ref.adjacent_similarity`, the
    shared rule); else why not.  With ``args["heavy"] > 0`` the
    heavy hitters come from ``scores`` (exact inputs, no slack): links touching them must be cut,
    and the rules apply to the other middle links with ``Bm - n_seg`` cuts per head (spec v2)."""
    sim = torch_ref.adjacent_similarity(keys)
    H, L = slot.shape
    sink, recent, B, mode, eps = args["sink"], args["recent"], args["B"], args["mode"], args["eps"]
    bm = B - sink - recent
    lo, hi = sink, L - recent - 1
    c_all = cuts(slot)
    steps = slot[:, 1:] - slot[:, :-1]
    if bool(((steps != 0) & (steps != 1)).any()) or bool((slot[:, 0] != 0).any()):
        return "the slot map is not consecutive slots in token order"
    outside = torch.ones_like(c_all)
    if hi > lo:
        outside[:, lo:hi] = False
    if not bool(c_all[outside].all()):
        return "a link outside the middle (sink or recent tokens) was merged"
    nlinks = max(0, hi - lo)
    if nlinks == 0:
        return None
    heavy = int(args.get("heavy", 0) or 0)
    if heavy > 0 and scores is None:
        return "heavy hitters need the scores to be checked"
    hmask = torch_ref.heavy_mask(scores.to(torch.float64), sink, recent, heavy) if heavy > 0 else None
    k = min(bm - 1, nlinks)

    def budget(ms, c) -> Optional[str]:
        n = int(c.sum())
        if n != k:
            return f"{n} middle links cut, the budget cuts exactly {k}"
        if 0 < k < ms.numel():
            top, bottom = float(ms[c].max()), float(ms[~c].min())
            if top > bottom + delta:
                return (f"a cut link has similarity {top:.9f} above a merged link's {bottom:.9f} "
                        f"(beyond the slack {delta})")
        return None

    def threshold(ms, c) -> Optional[str]:
        n = int(c.sum())
        if n > bm_h - 1:
            return f"{n} middle links cut, more than the budget's {bm_h - 1}"
        if n and float(ms[c].max()) >= eps + delta:
            return f"a link with similarity {float(ms[c].max()):.9f} >= eps = {eps} was cut"
        if n < ms.numel() and float(ms[~c].min()) < eps - delta:
            return f"a link with similarity {float(ms[~c].min()):.9f} < eps = {eps} was merged"
        return None

    for h in range(H):
        ms, c = sim[h, lo:hi], c_all[h, lo:hi]
        if hmask is not None:
            hv = hmask[h, lo:L - recent]
            forced = hv[:-1] | hv[1:]
            if not bool(c[forced].all()):
                return f"head {h}: a link touching a heavy hitter was merged"
            nseg = int((~hv & torch.cat((torch.ones(1, dtype=torch.bool), hv[:-1]))).sum())
            ms, c = ms[~forced], c[~forced]
            k = min(bm - heavy - nseg, int(ms.numel()))
            bm_h = k + 1  # threshold: at most k cuts among the free links
        else:
            bm_h = bm
        if mode == "budget":
            why = budget(ms, c)
        else:  # the spec: threshold cuts, unless more than bm - 1 links are below eps
            rules = []
            if int((ms < eps - delta).sum()) <= bm_h - 1:
                rules.append(threshold)
            if int((ms < eps + delta).sum()) > bm_h - 1:
                rules.append(budget)
            whys = [rule(ms, c) for rule in rules]
            why = None if any(w is None for w in whys) else "; ".join(w for w in whys if w)
        if why:
            return f"head {h}: {why}"
    return None


def check_compress(args: dict, keys, values, scores, got: Dict[str, torch.Tensor],
                   exp: Dict[str, torch.Tensor], dtype: str, delta: float = DELTA) -> dict:
    """The verdict on one compress result: ``{"status": "PASS"|"FAIL", "problems": [...],
    "note": ...}`` (see the module docstring: discrete outputs identical, floats within the
    tolerances; ``note`` diagnoses a kvmerger slot-map mismatch)."""
    problems = compare_compress(got, exp, dtype)
    if not problems:
        return dict(status="PASS", problems=[], note="")
    discrete = [p for p in problems if p.split(":")[0] in ("lengths", "positions", "counts")]
    if args["policy"] != "kvmerger" or not discrete:
        return dict(status="FAIL", problems=problems, note="")
    H, L, _ = keys.shape
    try:
        slot = torch_ref.slot_map_from_counts(got["counts"], got["lengths"], L)
    except ValueError as e:
        return dict(status="FAIL", problems=problems + [str(e)], note="")
    why = validate_kvmerger_slots(keys, slot, args, delta, scores=scores)
    if why:
        return dict(status="FAIL", problems=problems + [f"the kernel's slot map is not the spec's: {why}"], note="")
    exp_slot = torch_ref.slot_map_from_counts(exp["counts"], exp["lengths"], L)
    flips = int((cuts(slot) != cuts(exp_slot)).sum())
    cd = torch.float64 if keys.dtype == torch.float64 else torch.float32
    again = torch_ref.merge(keys.to(cd), values.to(cd), scores.to(cd), slot, slot[:, -1] + 1, args["B"],
                            args["sigma"], keys.dtype, values.dtype)
    merge_problems = compare_compress(got, again, dtype)
    note = (f"{flips} near-tie link(s) (similarities within {delta} of the selection threshold) decided the "
            f"other way: the kernel's similarities do not follow the shared order (docs/reference.md, "
            f"choice 3); its merge of its own slot map is "
            + ("wrong too" if merge_problems else "right"))
    return dict(status="FAIL", problems=problems + merge_problems, note=note)


def check_attention(got: torch.Tensor, exp: torch.Tensor) -> dict:
    """``got [Hq, 1, Dv]`` (f32) against ``exp [Hq, Dv]``: 2e-5 * (1 + |ref|)."""
    if got.dim() == 3:
        got = got[:, 0]
    p = compare_floats("out", got, exp, "float32")
    return dict(status="FAIL" if p else "PASS", problems=[p] if p else [], note="")
