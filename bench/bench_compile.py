"""Compile-time benchmark of the kvmerge passes on a 32-layer Llama-2-7B-shaped module (issue 5).

Generates 32 attention blocks (prefill over 1024 keys + decode over a 512-slot cache, 32 heads,
D = 128, upstream dialects only) with scripts/gen_attention_block.py, then times in the same run:

  upstream    kvmerge-opt --kvmerge-lower-to-llvm           (attention lowered as linalg)
  kvmerge     kvmerge-opt --kvmerge-raise-attention --kvmerge-insert-compression
                          --kvmerge-lower-to-llvm           (raised, compressed, kvcache lowering)

and prints a table of medians and the relative overhead; also the time of the two kvmerge passes
alone (--mlir-timing).

    .venv/bin/python bench/bench_compile.py [--layers 32] [--reps 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
from kvmerge import compiled  # noqa: E402


def timed(cmd) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    opt = compiled.tool("kvmerge-opt")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "llama7b-32.mlir"
        with open(src, "w") as f:
            subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_attention_block.py"), "--hq", "32",
                            "--hkv", "32", "--queries", "64", "--keys", "1024", "--dim", "128",
                            "--capacity", "512", "--layers", str(a.layers)], check=True, stdout=f)
        upstream = [opt, str(src), "--kvmerge-lower-to-llvm"]
        kvmerge = [opt, str(src), "--kvmerge-raise-attention",
                   "--kvmerge-insert-compression=policy=kvmerger budget=0.5", "--kvmerge-lower-to-llvm"]
        t_up = statistics.median(timed(upstream) for _ in range(a.reps))
        t_kv = statistics.median(timed(kvmerge) for _ in range(a.reps))
        timing = subprocess.run(kvmerge + ["--mlir-timing"], capture_output=True, text=True, check=True).stderr
        passes = {m.group(2): float(m.group(1)) for m in re.finditer(
            r"^\s*([0-9.]+)\s+\(\s*[0-9.]+%\)\s+[0-9.]+\s+\(\s*[0-9.]+%\)\s+(KVCache\w+|ConvertKVCacheToLoops)\s*$",
            timing, re.M)}
        size = src.stat().st_size
    print(f"\nCompile time, {a.layers} Llama-2-7B attention blocks (prefill + decode each; "
          f"{size / 1e6:.1f} MB of MLIR), median of {a.reps}\n")
    print("| pipeline | seconds | vs upstream |")
    print("|---|---:|---:|")
    print(f"| upstream lowering alone (`--kvmerge-lower-to-llvm`) | {t_up:.2f} | 1.00x |")
    print(f"| raise + insert-compression + lowering | {t_kv:.2f} | {t_kv / t_up:.2f}x |")
    print("\nkvmerge's own passes in the second pipeline (--mlir-timing, wall seconds):")
    for name, sec in passes.items():
        print(f"  {name:28s} {sec:.4f} s  ({100 * sec / t_up:.1f}% of the upstream pipeline)")
    print("\nThe kvmerge pipeline outlines each distinct kvcache op once (kvmerge-outline), so the 32\n"
          "identical layers share one attention and one compression kernel; the upstream pipeline\n"
          "lowers the linalg attention of every layer separately.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
