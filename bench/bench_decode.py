"""Decode attention over a compressed cache vs over the full cache (issue 14, item 3).

One new token's attention (kvcache.attention, compiled by the default CPU pipeline, timed by
kvmerge-run) over a layer's cache of L tokens, f16, D = 128, Hq = 32 query heads with GQA 8:1
(Hkv = 4) and 4:1 (Hkv = 8):

  * full: the cache as it is (capacity L, every slot valid);
  * compressed: the same cache compressed by the compiled KVMerger compress (the spec's default
    policy) to B = ceil(r L) slots, attended with its lengths and counts.

Both are timed in the same run, per thread count, round after round (interleaved). The time ratio (compressed / full) is compared
with the budget ratio B / L: attention reads every valid K and V row once per query head, so
time should follow the number of slots. GB/s = K + V bytes of the valid slots read per call /
time. The compiled attention is checked against kvmerge.reference.attention on each cache.

    .venv/bin/python bench/bench_decode.py [--lengths 4096 16384 65536] [--budgets 0.5 0.35]
        [--groups 8 4] [--threads 1 2] [--reps 15] [--rounds 2] [--baseline BUILD_DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import compiled  # noqa: E402
from kvmerge import reference  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384, 65536])
    ap.add_argument("--budgets", type=float, nargs="+", default=[0.5, 0.35])
    ap.add_argument("--groups", type=int, nargs="+", default=[8, 4], help="Hq / Hkv")
    ap.add_argument("--heads", type=int, default=32, help="Hq")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", metavar="BUILD_DIR",
                    help="also time every kernel with that build's kvmerge-run (e.g. a checkout of an "
                         "older commit), interleaved with the others: columns 'baseline full/compressed (ms)'")
    opts = ap.parse_args()

    Hq, D, dt = opts.heads, 128, np.float16
    load_before = benchlib.load_text()
    rows = []
    for G in opts.groups:
        Hkv = Hq // G
        for L in opts.lengths:
            rng = np.random.default_rng(L + G)
            k = benchlib.ar1_keys(rng, Hkv, L, D, dt)
            v = rng.standard_normal((Hkv, L, D), dtype=np.float32).astype(dt)
            a = rng.random((Hkv, L), dtype=np.float32)
            q = (rng.standard_normal((Hq, D), dtype=np.float32) * 0.3).astype(dt)
            caches = {"full": (k, v, np.full(Hkv, L, np.int32), np.ones((Hkv, L), np.int32))}
            for r in opts.budgets:
                c = compiled.compress(k, v, a, ratio=r)
                caches[r] = (c["keys"], c["values"], c["lengths"], c["counts"])
            times, kernels = {}, {}
            for name, (ck, cv, ln, cnt) in caches.items():
                got = compiled.attention(q, ck, cv, ln, counts=cnt)
                want = reference.attention(q, ck, cv, ln, counts=cnt)
                np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)
                module = compiled.attention_module((Hq, 1, D), ck.shape, cv.shape, np.dtype(dt),
                                                   count_bias=False, scale=None)
                kernels[name] = (module, "attention", [q[:, None, :], ck, cv, ln, cnt], 1, "")
                if opts.baseline:
                    kernels[("base", name)] = kernels[name] + (opts.baseline,)
            for th in opts.threads:
                t = benchlib.time_interleaved(kernels, threads=th, reps=opts.reps, rounds=opts.rounds)
                for name in kernels:
                    times[(name, th)] = t[name]
            for r in opts.budgets:
                B = caches[r][0].shape[1]
                for th in opts.threads:
                    tf, tc = times[("full", th)], times[(r, th)]
                    valid = int(caches[r][2].sum())
                    rows.append(dict(G=G, Hkv=Hkv, L=L, r=r, B=B, th=th, tf=tf, tc=tc,
                                     bf=times.get((("base", "full"), th)), bc=times.get((("base", r), th)),
                                     gf=2 * Hkv * L * D * 2 / tf / 1e6, gc=2 * valid * D * 2 / tc / 1e6))
                    print(f"  {Hq}:{Hkv} L={L} r={r} threads={th}: full {tf:.3f} ms, compressed {tc:.3f} ms",
                          file=sys.stderr, flush=True)

    print(f"\nDecode attention, one token, f16, D={D}, Hq={Hq} (median of {opts.reps} calls, best of "
          f"{opts.rounds} processes)")
    print(f"machine: {benchlib.machine()}; load average before: {load_before}, after: {benchlib.load_text()}\n")
    base_h = " baseline full (ms) | baseline compressed (ms) | full vs baseline |" if opts.baseline else ""
    print("| GQA | L | budget | slots B | threads | full (ms) | compressed (ms) | time ratio | budget ratio B/L "
          "| time ratio / budget ratio | full GB/s | compressed GB/s |" + base_h)
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" * 3 if opts.baseline else ""))
    for x in rows:
        tr, br = x["tc"] / x["tf"], x["B"] / x["L"]
        base = (f" {x['bf']:.3f} | {x['bc']:.3f} | {x['bf'] / x['tf']:.2f}x |" if opts.baseline else "")
        print(f"| {opts.heads}:{x['Hkv']} ({x['G']}:1) | {x['L']} | {x['r']} | {x['B']} | {x['th']} | {x['tf']:.3f} "
              f"| {x['tc']:.3f} | {tr:.3f} | {br:.3f} | {tr / br:.2f} | {x['gf']:.1f} | {x['gc']:.1f} |" + base)
    print("\nGB/s = bytes of the valid K and V rows / time (each row is read once per query head of its group).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
