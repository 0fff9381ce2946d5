"""The main job on the bundled examples (called by scripts/run-example.sh after the build).

1. examples/compress-smollm2.mlir (the kvcache dialect): prints the IR after decomposition, runs
   @compress_layer and @decode_step on layer 9 of real SmolLM2 K/V states and compares them with
   kvmerge.reference.
2. examples/smollm2-block.mlir and examples/llama7b-block.mlir (upstream dialects only): raises
   the attention, inserts compression (every policy, 50% budget), lowers to LLVM, runs prefill and
   decode on real K/V states, and prints each output's error against the reference next to the
   decode's error against full-cache attention.
3. The same blocks through --kvmerge-export-upstream, compiled by the real iree-compile and run by
   IREE's runtime (when the IREE wheels are installed).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
from kvmerge import blocks, compiled, reference  # noqa: E402

EXAMPLE = ROOT / "examples" / "compress-smollm2.mlir"


def run(function: str, inputs, n_out: int, tmp: Path):
    """One function of the example through kvmerge-run, .npy in and out."""
    cmd = [compiled.tool("kvmerge-run"), str(EXAMPLE), f"--function={function}"]
    for i, x in enumerate(inputs):
        np.save(tmp / f"{function}_in{i}.npy", x)
        cmd.append(f"--input=@{tmp / f'{function}_in{i}.npy'}")
    cmd += [f"--output=@{tmp / f'{function}_out{i}.npy'}" for i in range(n_out)]
    subprocess.run(cmd, check=True)
    return [np.load(tmp / f"{function}_out{i}.npy") for i in range(n_out)]


def dialect_example() -> None:
    print("== kvmerge-opt examples/compress-smollm2.mlir --kvmerge-decompose-compress ==")
    subprocess.run([compiled.tool("kvmerge-opt"), str(EXAMPLE), "--kvmerge-decompose-compress"], check=True)
    d = blocks.load_data("smollm2")
    k, v = d.keys, d.values
    z = np.load(ROOT / "test" / "data" / "smollm2_kv.npz")
    a = z["scores"][list(z["layers"]).index(9)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        names = ("keys", "values", "positions", "counts", "scores", "lengths")
        got = dict(zip(names, run("compress_layer", [k, v, a], 6, tmp)))
        (o,) = run("decode_step", [d.q_next, got["keys"], got["values"], got["lengths"]], 1, tmp)
    ref = reference.compress(k, v, a, policy="kvmerger", ratio=0.5)
    print(f"\n== kvmerge-run @compress_layer vs kvmerge.reference ({d.source}) ==")
    print("| output | shape | max abs diff |\n|---|---|---:|")
    for n in names:
        diff = np.max(np.abs(got[n].astype(np.float64) - ref[n].astype(np.float64)))
        print(f"| {n} | {tuple(got[n].shape)} | {diff:.3g} |")
    comp_ref = reference.attention(d.q_next[:, 0], ref["keys"], ref["values"], ref["lengths"])
    print(f"@decode_step vs reference: max abs diff {np.max(np.abs(o[:, 0] - comp_ref)):.3g}")


def block_examples() -> None:
    print("\n== attention blocks in upstream MLIR: raise -> insert compression (50%) -> CPU ==")
    print("| block | policy | prefill out err | same slots | cache err (f16) | decode err "
          "| decode vs full cache |")
    print("|---|---|---:|---|---:|---:|---:|")
    for name in ("smollm2", "llama7b"):
        data = blocks.load_data(name)
        for policy in ("kvmerger", "h2o", "streaming"):
            r = blocks.run_block(name, policy, data)
            print(f"| {name} | {policy} | {r['prefill_err']:.2g} | {'yes' if r['same_slots'] else 'NO'} "
                  f"| {max(r['keys_err'], r['values_err']):.2g} | {r['decode_err']:.2g} | {r['vs_full']:.4f} |")
    print("errors: max abs difference from kvmerge.reference (cache err of 0.00195 = 1 f16 ulp at 2..4);")
    print("decode vs full cache: relative error of the next token's attention with the compressed cache.")


def iree_example() -> None:
    try:
        import iree.compiler  # noqa: F401
        import iree.runtime  # noqa: F401
    except ImportError:
        print("\n(IREE wheels not installed: skipping the IREE run; pip install -r python/requirements-iree.txt)")
        return
    print("\n== the same blocks exported to upstream dialects, compiled by iree-compile, run by IREE ==")
    print("| block | policy | prefill out err | same slots | cache err (f16) | decode err |")
    print("|---|---|---:|---|---:|---:|")
    for name in ("smollm2", "llama7b"):
        r = blocks.run_block(name, "kvmerger", blocks.load_data(name), backend="iree")
        print(f"| {name} | kvmerger | {r['prefill_err']:.2g} | {'yes' if r['same_slots'] else 'NO'} "
              f"| {max(r['keys_err'], r['values_err']):.2g} | {r['decode_err']:.2g} |")


def main() -> int:
    dialect_example()
    block_examples()
    iree_example()
    return 0


if __name__ == "__main__":
    sys.exit(main())
