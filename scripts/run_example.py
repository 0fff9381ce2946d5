"""Runs examples/compress-smollm2.mlir on real SmolLM2 K/V states and checks it against the reference.

Called by scripts/run-example.sh after the build: prints the IR after kvmerge's decomposition, then
runs @compress_layer and @decode_step through kvmerge-run (the kvmerge CPU pipeline, JIT) on layer 9
of test/data/smollm2_kv.npz (Pride and Prejudice, 1024 tokens), and prints how far the compiled
results are from kvmerge.reference and how far compressed-cache attention is from full-cache
attention for the next real token's queries.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
from kvmerge import compiled, reference  # noqa: E402

EXAMPLE = ROOT / "examples" / "compress-smollm2.mlir"


def run(function: str, inputs, n_out: int, tmp: Path):
    cmd = [compiled.tool("kvmerge-run"), str(EXAMPLE), f"--function={function}"]
    for i, x in enumerate(inputs):
        np.save(tmp / f"{function}_in{i}.npy", x)
        cmd.append(f"--input=@{tmp / f'{function}_in{i}.npy'}")
    cmd += [f"--output=@{tmp / f'{function}_out{i}.npy'}" for i in range(n_out)]
    subprocess.run(cmd, check=True)
    return [np.load(tmp / f"{function}_out{i}.npy") for i in range(n_out)]


def main() -> int:
    print("== kvmerge-opt examples/compress-smollm2.mlir --kvmerge-decompose-compress ==")
    subprocess.run([compiled.tool("kvmerge-opt"), str(EXAMPLE), "--kvmerge-decompose-compress"], check=True)

    z = np.load(ROOT / "test" / "data" / "smollm2_kv.npz")
    i = list(z["layers"]).index(9)
    k, v, a = z["keys"][i], z["values"][i], z["scores"][i]
    q = z["q_next"][i][:, :1]  # the next real token's 9 query heads, [9, 1, 64]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        names = ("keys", "values", "positions", "counts", "scores", "lengths")
        got = dict(zip(names, run("compress_layer", [k, v, a], 6, tmp)))
        (o,) = run("decode_step", [q, got["keys"], got["values"], got["lengths"]], 1, tmp)

    ref = reference.compress(k, v, a, policy="kvmerger", ratio=0.5)
    print("\n== compiled @compress_layer vs kvmerge.reference (SmolLM2 layer 9, real text) ==")
    print("| output | shape | max abs diff |")
    print("|---|---|---:|")
    for n in names:
        d = np.max(np.abs(got[n].astype(np.float64) - ref[n].astype(np.float64)))
        print(f"| {n} | {tuple(got[n].shape)} | {d:.3g} |")
    print(f"\nslots used per head: {got['lengths'].tolist()} of {k.shape[1]} tokens; "
          f"largest merged set: {int(got['counts'].max())} tokens")

    full = reference.attention(q[:, 0], k, v, np.full(k.shape[0], k.shape[1], np.int32))
    comp_ref = reference.attention(q[:, 0], ref["keys"], ref["values"], ref["lengths"])
    print("\n== @decode_step: next-token attention over the compressed cache ==")
    print(f"compiled vs reference (same compressed cache): max abs diff "
          f"{np.max(np.abs(o[:, 0] - comp_ref)):.3g}")
    rel = np.linalg.norm(o[:, 0] - full) / np.linalg.norm(full)
    print(f"compressed (50%) vs full-cache attention: relative error {rel:.4f}")
    for policy in ("streaming", "h2o"):
        c = reference.compress(k, v, a, policy=policy, ratio=0.5)
        r = reference.attention(q[:, 0], c["keys"], c["values"], c["lengths"])
        print(f"  {policy:9s} at 50% (reference): relative error "
              f"{np.linalg.norm(r - full) / np.linalg.norm(full):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
