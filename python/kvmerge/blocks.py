"""End-to-end runs of the bundled attention blocks (examples/*-block.mlir) on real K/V states.

A block is a prefill + decode written in upstream MLIR only. It is compiled with

    kvmerge-opt --kvmerge-raise-attention --kvmerge-insert-compression{policy, budget}
                --kvmerge-lower-to-llvm            (through kvmerge.compiled.run)

and run on the CPU: the prefill attends with the last `M` real queries of a document to its `N`
real keys and returns its cache compressed; the decode attends with the next real token's queries
to the compressed cache. Every output is compared with kvmerge.reference.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import compiled, reference

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "smollm2": ROOT / "examples" / "smollm2-block.mlir",
    "llama7b": ROOT / "examples" / "llama7b-block.mlir",
}


@dataclass
class BlockData:
    """Real prefill queries, cache and next-token queries, f16."""

    q: np.ndarray        # [Hq, M, D]  queries of the last M prefill positions
    keys: np.ndarray     # [Hkv, N, D]
    values: np.ndarray   # [Hkv, N, D]
    q_next: np.ndarray   # [Hq, 1, D]  the next token's queries
    source: str


def load_data(name: str) -> BlockData:
    """Real data shaped for a block.

    smollm2: layer 9 of test/data/smollm2_kv.npz as is (9 query / 3 KV heads, D = 64).
    llama7b: Llama-2-7B shapes (32 heads, MHA, D = 128) assembled from the same real SmolLM2
    states: head h concatenates, along D, KV head pairs from the four stored layers, with the
    queries that attended to exactly those heads (so every half of every head is a real
    query/key/value triple). No 7B weights are involved.
    """
    z = np.load(ROOT / "test" / "data" / "smollm2_kv.npz")
    meta = json.loads(str(z["meta"]))
    if name == "smollm2":
        i = list(z["layers"]).index(9)
        return BlockData(z["q_obs"][i], z["keys"][i], z["values"][i], z["q_next"][i][:, :1],
                         f"SmolLM2-135M layer 9, {meta.get('document', 'real text')}")
    if name != "llama7b":
        raise ValueError(f"name: unknown block {name!r}; expected one of {sorted(EXAMPLES)}")
    layers, hkv, g = z["keys"].shape[0], z["keys"].shape[1], z["q_obs"].shape[1] // z["keys"].shape[1]
    pairs = [(layer, h) for layer in range(layers) for h in range(hkv)]  # 12 real (layer, head)

    def head(i):
        (l1, h1), (l2, h2) = pairs[i % len(pairs)], pairs[(i + 5) % len(pairs)]
        cat = lambda a, b: np.concatenate([a, b], axis=-1)
        return (cat(z["q_obs"][l1, h1 * g], z["q_obs"][l2, h2 * g]),
                cat(z["keys"][l1, h1], z["keys"][l2, h2]),
                cat(z["values"][l1, h1], z["values"][l2, h2]),
                cat(z["q_next"][l1, h1 * g, :1], z["q_next"][l2, h2 * g, :1]))

    q, k, v, qn = (np.stack(x) for x in zip(*(head(i) for i in range(32))))
    # Concatenated halves would double the logits' scale; keep softmax temperatures real.
    q = (q.astype(np.float32) / np.sqrt(2.0)).astype(np.float16)
    qn = (qn.astype(np.float32) / np.sqrt(2.0)).astype(np.float16)
    return BlockData(q, k, v, qn, "SmolLM2-135M layers 0/9/19/29 rearranged to 32 x 128")


def compile_block(name: str, *, policy: str = "kvmerger", budget: str = "0.5",
                  export: bool = False) -> str:
    """The block's MLIR after raising attention and inserting compression.

    ``export=True`` also applies ``--kvmerge-export-upstream``: upstream dialects only, on tensors
    (what iree-compile takes).
    """
    cmd = [compiled.tool("kvmerge-opt"), str(EXAMPLES[name]), "--kvmerge-raise-attention",
           f"--kvmerge-insert-compression=policy={policy} budget={budget}", "--canonicalize", "--cse"]
    if export:
        cmd.append("--kvmerge-export-upstream")
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def iree_runner(module: str):
    """Compiles MLIR text with the real iree-compile (llvm-cpu) and returns a runner
    ``(function, inputs, n_out) -> outputs`` over IREE's runtime (local-task)."""
    import iree.compiler as ireec
    import iree.runtime as ireert

    vmfb = ireec.compile_str(module, target_backends=["llvm-cpu"],
                             extra_args=["--iree-llvmcpu-target-cpu=host"])
    bound = ireert.load_vm_flatbuffer(vmfb, driver="local-task")

    def run(function, inputs, n_out):
        outs = getattr(bound, function)(*inputs)
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        assert len(outs) == n_out, (function, len(outs), n_out)
        return [np.asarray(o) for o in outs]

    return run


def causal_reference(q, keys, values):
    """Attention of the last M queries over N keys, causal, via reference.attention."""
    hq, m, _ = q.shape
    n = keys.shape[1]
    out = np.empty((hq, m, values.shape[2]), np.float32)
    for i in range(m):
        lengths = np.full(keys.shape[0], n - m + i + 1, np.int32)
        out[:, i] = reference.attention(q[:, i], keys, values, lengths)
    return out


def run_block(name: str, policy: str = "kvmerger", data: BlockData | None = None, *,
              backend: str = "kvmerge") -> dict:
    """Compiles and runs one block with one policy; returns outputs, references and errors.

    backend: ``"kvmerge"`` (kvmerge's CPU pipeline), ``"export"`` (the upstream-only export run
    by kvmerge's CPU pipeline) or ``"iree"`` (the export compiled by iree-compile and run by
    IREE's runtime).
    """
    data = data or load_data(name)
    if backend not in ("kvmerge", "export", "iree"):
        raise ValueError(f"backend: unknown backend {backend!r}")
    module = compile_block(name, policy=policy, export=backend != "kvmerge")
    if backend == "iree":
        run = iree_runner(module)
    else:
        def run(function, inputs, n_out):
            return compiled.run(module, function, inputs, n_out)
    o, ck, cv, pos, cnt, csc, lens = run("prefill", [data.q, data.keys, data.values], 7)
    (od,) = run("decode", [data.q_next, ck, cv, lens], 1)

    # References: prefill attention, H2O scores of the observed queries, compression, decode.
    o_ref = causal_reference(data.q, data.keys, data.values)
    n, m = data.keys.shape[1], data.q.shape[1]
    q_all = np.zeros((data.q.shape[0], n, data.q.shape[2]), np.float16)
    q_all[:, n - m:] = data.q
    a_ref = reference.accumulated_scores(q_all, data.keys, obs_window=m)
    c_ref = reference.compress(data.keys, data.values, a_ref, policy=policy, ratio=0.5)
    od_ref = reference.attention(data.q_next[:, 0], c_ref["keys"], c_ref["values"], c_ref["lengths"])
    full = reference.attention(data.q_next[:, 0], data.keys, data.values,
                               np.full(data.keys.shape[0], n, np.int32))

    def rel(a, b):
        return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b))

    got = dict(keys=ck, values=cv, positions=pos, counts=cnt, scores=csc, lengths=lens)
    return {
        "policy": policy,
        "prefill_err": float(np.max(np.abs(o - o_ref))),
        "same_slots": all(np.array_equal(got[k], c_ref[k]) for k in ("positions", "counts", "lengths")),
        "keys_err": float(np.max(np.abs(ck.astype(np.float64) - c_ref["keys"].astype(np.float64)))),
        "values_err": float(np.max(np.abs(cv.astype(np.float64) - c_ref["values"].astype(np.float64)))),
        "decode_err": float(np.max(np.abs(od[:, 0] - od_ref))),
        "vs_full": rel(od[:, 0], full),
        "outputs": got,
        "reference": c_ref,
    }
