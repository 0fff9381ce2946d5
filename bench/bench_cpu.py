"""CPU benchmark of the compiled KVMerger merge (issue 4).

For each cache length L (Hkv = 8, D = 128) and storage type, in one run on one machine:
  * the NumPy reference's compress (kvmerge.reference, median of a few runs),
  * the compiled compress (kvmerge-opt --kvmerge-lower-to-llvm, JIT by kvmerge-run, median),
  * a compiled copy of K and V through the same pipeline (linalg.copy), as the bandwidth yardstick.
GB/s of the merge counts bytes read (K, V, scores) + bytes written (compressed cache: keys, values,
positions, counts, scores, lengths); GB/s of the copy counts K, V read + written.

    .venv/bin/python bench/bench_cpu.py [--lengths 4096 16384 65536] [--ratio 0.5] [--reps 5]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from kvmerge import compiled, reference  # noqa: E402


def median_ms(stdout: str) -> float:
    return float(re.search(r"median_ms: ([0-9.]+)", stdout).group(1))


def copy_module(shape, dtype) -> str:
    t = compiled._ty(shape, dtype)
    return (f"func.func @copy(%k: {t}, %v: {t}) -> ({t}, {t}) {{\n"
            f"  %e0 = tensor.empty() : {t}\n  %e1 = tensor.empty() : {t}\n"
            f"  %0 = linalg.copy ins(%k : {t}) outs(%e0 : {t}) -> {t}\n"
            f"  %1 = linalg.copy ins(%v : {t}) outs(%e1 : {t}) -> {t}\n"
            f"  return %0, %1 : {t}, {t}\n}}\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384, 65536])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float16"])
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--numpy-reps", type=int, default=3)
    opts = ap.parse_args()

    H, D = 8, 128
    rows = []
    for dtype in opts.dtypes:
        for L in opts.lengths:
            rng = np.random.default_rng(L)
            # AR(1) keys: adjacent cosine ~0.8, like real keys, stationary in L.
            noise = rng.standard_normal((H, L, D), dtype=np.float32)
            k32 = np.empty_like(noise)
            k32[:, 0] = noise[:, 0]
            for t in range(1, L):
                k32[:, t] = 0.8 * k32[:, t - 1] + 0.6 * noise[:, t]
            k = k32.astype(dtype)
            v = rng.standard_normal((H, L, D), dtype=np.float32).astype(dtype)
            a = rng.random((H, L), dtype=np.float32)
            args = reference.resolve_compress_args(k, v, a, policy="kvmerger", ratio=opts.ratio)
            module = compiled.compress_module(k.shape, v.shape, k.dtype, policy="kvmerger", B=args.B,
                                              sink=args.sink, recent=args.recent, mode=args.mode,
                                              eps=args.eps, sigma=args.sigma)
            outs, out = compiled.run(module, "compress", [k, v, a], 6, repetitions=opts.reps)
            t_mlir = median_ms(out)
            _, out_unfused = compiled.run(module, "compress", [k, v, a], 6, repetitions=opts.reps,
                                          pipeline_options="fuse-merge=false")
            t_unfused = median_ms(out_unfused)
            t_np = []
            for _ in range(opts.numpy_reps):
                t0 = time.perf_counter()
                ref = reference.compress(k, v, a, policy="kvmerger", ratio=opts.ratio)
                t_np.append((time.perf_counter() - t0) * 1e3)
            t_np = statistics.median(t_np)
            # Same merge sets as the reference? (f32 summation order can flip a near-tie of two
            # adjacent similarities at the cut; the tests check exact agreement on real data.)
            same = np.mean(np.all(outs[2] == ref["positions"], axis=1) & np.all(outs[3] == ref["counts"], axis=1))
            _, cout = compiled.run(copy_module(k.shape, k.dtype), "copy", [k, v], 2, repetitions=opts.reps)
            t_copy = median_ms(cout)
            merge_bytes = k.nbytes + v.nbytes + a.nbytes + sum(o.nbytes for o in outs)
            copy_bytes = 2 * (k.nbytes + v.nbytes)
            gbs = merge_bytes / t_mlir / 1e6
            copy_gbs = copy_bytes / t_copy / 1e6
            rows.append((L, np.dtype(dtype).name, t_np, t_mlir, t_unfused, t_np / t_mlir, gbs, copy_gbs,
                         gbs / copy_gbs, same))
            print(f"  L={L} {np.dtype(dtype).name}: numpy {t_np:.1f} ms, compiled {t_mlir:.2f} ms", file=sys.stderr)

    print(f"\nKVMerger compress, Hkv={H}, D={D}, ratio={opts.ratio}, budget mode, sigma=auto "
          f"(medians; {opts.reps} compiled / {opts.numpy_reps} NumPy runs)\n")
    print("| L | dtype | NumPy ref (ms) | compiled (ms) | unfused (ms) | speed-up | compiled GB/s "
          "| copy GB/s | % of copy | heads with identical sets |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for L, dt, tn, tm, tu, sp, g, cg, frac, same in rows:
        print(f"| {L} | {dt} | {tn:.1f} | {tm:.2f} | {tu:.2f} | {sp:.1f}x | {g:.2f} | {cg:.2f} "
              f"| {100 * frac:.0f}% | {100 * same:.0f}% |")
    print("\ncompiled = the default CPU pipeline (fused per-head merge); unfused = fuse-merge=false;"
          "\nspeed-up and GB/s are of the default pipeline.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
