"""CPU benchmark of the compiled KVMerger compress: roofline and threads (issues 4 and 14).

For each cache length L (Hkv = 8, D = 128, ratio 0.5, the spec's default policy: heavy hitters,
sigma = paper, budget mode), storage type and thread count, in one run on one machine:

  * compiled: the default CPU pipeline (fused per-head region), timed by kvmerge-run;
  * unfused: the same with fuse-merge=false (the reference lowering of the unfused ops);
  * stream: the roofline yardstick (bench/benchlib.py): a compiled kernel that moves exactly the
    bytes the fused merge must move -- K twice (the similarity sweep, then the merge), V once,
    the scores, and the compressed cache written -- with the same per-head parallel loop, pipeline
    and thread pool;
  * copy: a compiled copy of K and V (read + write), the machine's copy bandwidth for context;
  * NumPy: the reference (kvmerge.reference.compress), once per (L, dtype).

GB/s of compiled and stream count the same bytes: 2 K + V + scores + all outputs. "% of stream"
is stream time / compiled time. Times: median of --reps calls, best of --rounds processes, the
kernels of a row timed round after round (interleaved), so that background load hits them alike.

    .venv/bin/python bench/bench_cpu.py [--lengths 4096 16384 65536] [--dtypes float32 float16]
        [--threads 1 2] [--reps 7] [--rounds 3] [--numpy-reps 1] [--no-unfused] [--baseline BUILD_DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import compiled  # noqa: E402
from kvmerge import reference  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384, 65536])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float16"])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--numpy-reps", type=int, default=1)
    ap.add_argument("--no-unfused", action="store_true", help="skip the fuse-merge=false column")
    ap.add_argument("--baseline", metavar="BUILD_DIR",
                    help="also time the compress with BUILD_DIR/bin/kvmerge-run (e.g. a build of main), "
                         "interleaved with the others: columns 'baseline (ms)' and 'vs baseline'")
    opts = ap.parse_args()

    H, D, ratio = 8, 128, 0.5
    load_before = benchlib.load_text()
    rows = []
    for dtype in opts.dtypes:
        for L in opts.lengths:
            k, v, a = benchlib.layer_inputs(H, L, D, dtype, seed=L)
            args = reference.resolve_compress_args(k, v, a, policy="kvmerger", ratio=ratio)
            module = compiled.compress_module_for(args, k.shape, v.shape, k.dtype)
            outs = compiled.run(module, "compress", [k, v, a], 6)
            stream = benchlib.stream_module(H, L, D, dtype)
            benchlib.check_stream(k, v, a, compiled.run(stream, "stream", [k, v, a], 6))
            copy = benchlib.copy_module(H, L, D, dtype)
            nbytes = 2 * k.nbytes + v.nbytes + a.nbytes + sum(o.nbytes for o in outs)
            t_np = []
            for _ in range(opts.numpy_reps):
                t0 = time.perf_counter()
                ref = reference.compress(k, v, a, policy="kvmerger", ratio=ratio)
                t_np.append((time.perf_counter() - t0) * 1e3)
            t_np = statistics.median(t_np) if t_np else float("nan")
            same = float("nan")
            if opts.numpy_reps:
                same = np.mean(np.all(outs[2] == ref["positions"], axis=1) & np.all(outs[3] == ref["counts"], axis=1))
            for th in opts.threads:
                kernels = {"c": (module, "compress", [k, v, a], 6, ""),
                           "s": (stream, "stream", [k, v, a], 6, ""),
                           "cp": (copy, "copy", [k, v], 2, "")}
                if not opts.no_unfused:
                    kernels["u"] = (module, "compress", [k, v, a], 6, "fuse-merge=false")
                if opts.baseline:
                    kernels["b"] = (module, "compress", [k, v, a], 6, "", opts.baseline)
                t = benchlib.time_interleaved(kernels, threads=th, reps=opts.reps, rounds=opts.rounds)
                t_c, t_s, t_cp, t_u = t["c"], t["s"], t["cp"], t.get("u", float("nan"))
                t_b = t.get("b", float("nan"))
                rows.append(dict(L=L, dt=np.dtype(dtype).name, th=th, np=t_np, c=t_c, u=t_u, s=t_s, b=t_b,
                                 gbs=nbytes / t_c / 1e6, sgbs=nbytes / t_s / 1e6,
                                 cpgbs=2 * (k.nbytes + v.nbytes) / t_cp / 1e6, same=same, mb=nbytes / 1e6))
                print(f"  L={L} {np.dtype(dtype).name} threads={th}: compiled {t_c:.2f} ms, stream {t_s:.2f} ms",
                      file=sys.stderr, flush=True)

    print(f"\nKVMerger compress, Hkv={H}, D={D}, ratio={ratio}, budget mode, heavy hitters, sigma=paper "
          f"(median of {opts.reps} calls, best of {opts.rounds} processes; NumPy: {opts.numpy_reps} run(s))")
    print(f"machine: {benchlib.machine()}; load average before: {load_before}, after: {benchlib.load_text()}\n")
    base_h = " baseline (ms) | vs baseline |" if opts.baseline else ""
    print("| L | dtype | threads | NumPy ref (ms) | compiled (ms) | unfused (ms) |" + base_h +
          " speed-up vs NumPy | bytes (MB) | compiled GB/s | stream (ms) | stream GB/s | % of stream | copy GB/s "
          "| heads with identical sets |")
    print("|---:|---|---:|---:|---:|---:|" + ("---:|---:|" if opts.baseline else "") + "---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        base_c = f" {r['b']:.2f} | {r['b'] / r['c']:.2f}x |" if opts.baseline else ""
        print(f"| {r['L']} | {r['dt']} | {r['th']} | {r['np']:.1f} | {r['c']:.2f} | {r['u']:.2f} |{base_c}"
              f" {r['np'] / r['c']:.0f}x | {r['mb']:.0f} | {r['gbs']:.2f} | {r['s']:.2f} | {r['sgbs']:.2f} "
              f"| {100 * r['s'] / r['c']:.0f}% | {r['cpgbs']:.2f} | {100 * r['same']:.0f}% |")
    by = {(r["L"], r["dt"], r["th"]): r for r in rows}
    if len(opts.threads) > 1:
        t0, t1 = opts.threads[0], opts.threads[-1]
        print(f"\nThreads {t0} -> {t1} (speed-up of the same kernel):\n")
        print("| L | dtype | compiled | stream |")
        print("|---:|---|---:|---:|")
        for dtype in opts.dtypes:
            for L in opts.lengths:
                a_, b_ = by[(L, np.dtype(dtype).name, t0)], by[(L, np.dtype(dtype).name, t1)]
                print(f"| {L} | {np.dtype(dtype).name} | {a_['c'] / b_['c']:.2f}x | {a_['s'] / b_['s']:.2f}x |")
    print("\nbytes = 2 K + V + scores + compressed outputs (the fused merge reads K twice); "
          "stream = a compiled kernel moving exactly those bytes;\ncopy = compiled copy of K and V "
          "(2 (K + V) bytes); identical sets = positions and counts equal to the reference's.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
