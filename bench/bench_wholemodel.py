"""Whole-model benchmark: a real Llama compiled by kvmerge (every layer's cache compressed) vs
torch eager and vs IREE, in one run on one machine (issue 12).

For a prefix of a real text (kvmerge.texts), per policy and backend: export + compile time,
prefill tokens/s of the prefix, decode tokens/s of ``--decode`` greedy steps after it, and the
KV-cache bytes held after the prefill (valid slots, f32 keys + values, all layers). torch eager
runs the same HF model (``torch.set_num_threads(--threads)``) with a full ``DynamicCache``.

    .venv/bin/python bench/bench_wholemodel.py [--model smollm2] [--prefix 2048] [--decode 16]
        [--policies full kvmerger@0.5 kvmerger@0.35] [--iree full kvmerger@0.5] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from kvmerge import texts, wholemodel  # noqa: E402


def parse_policy(s: str):
    if "@" in s:
        p, r = s.split("@", 1)
        return p, r
    return s, "1.0"


def run_compiled(spec, toks, policy, budget, n_decode, backend):
    t0 = time.perf_counter()
    prog = spec.build(len(toks), policy=policy, budget=budget, room=n_decode, backend=backend)
    build_s = time.perf_counter() - t0
    g = wholemodel.Generator(prog, spec)
    out, st = g.generate(toks, n_decode, progress=False)
    kv_after_prefill = prog.n_layers * prog.slots * spec.model.cfg.n_kv_heads * spec.model.cfg.head_dim * 8
    return dict(build_s=build_s, export_s=prog.export_s, compile_s=prog.compile_s,
                prefill=st["prefill_tok_s"], decode=st["decode_tok_s"], kv=kv_after_prefill,
                tokens=out)


def run_torch(spec, toks, n_decode, threads):
    import torch
    from transformers.cache_utils import DynamicCache
    torch.set_num_threads(threads)
    hf = spec.hf
    with torch.no_grad():
        ids = torch.tensor([list(toks)])
        hf(ids[:, :8])                      # warm-up (first-call allocations, kernel choice)
        cache = DynamicCache(config=hf.config)
        t0 = time.perf_counter()
        out = hf(ids, past_key_values=cache, use_cache=True)
        t_pre = time.perf_counter() - t0
        nxt = int(out.logits[0, -1].argmax())
        gen = [nxt]
        t0 = time.perf_counter()
        for _ in range(n_decode - 1):
            out = hf(torch.tensor([[nxt]]), past_key_values=cache, use_cache=True)
            nxt = int(out.logits[0, -1].argmax())
            gen.append(nxt)
        t_dec = time.perf_counter() - t0
    c = spec.model.cfg
    return dict(build_s=0.0, export_s=0.0, compile_s=0.0, prefill=len(toks) / t_pre,
                decode=max(n_decode - 1, 1) / t_dec,
                kv=c.n_layers * len(toks) * c.n_kv_heads * c.head_dim * 8, tokens=gen)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2", choices=("smollm2", "stories260k"))
    ap.add_argument("--doc", default="pride_ch1")
    ap.add_argument("--prefix", type=int, default=2048)
    ap.add_argument("--decode", type=int, default=16)
    ap.add_argument("--policies", nargs="*", default=["full", "kvmerger@0.5", "kvmerger@0.35"])
    ap.add_argument("--iree", nargs="*", default=["full", "kvmerger@0.5"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--base-prefix", type=int, default=32,
                    help="prefix of the baseline decode (attention cost ~0): decode time minus the "
                         "baseline's is the attention's share; 0 skips it")
    a = ap.parse_args()
    os.environ.setdefault("KVMERGE_THREADS", str(a.threads))
    spec = wholemodel.ModelSpec.load(a.model)
    toks = texts.load_tokens(a.doc, spec.model.tokenizer, a.prefix)
    rows = []
    print(f"# {a.model}, prefix {a.prefix} tokens of {a.doc}, {a.decode} decode steps, "
          f"{a.threads} threads; load average {os.getloadavg()[0]:.2f} at start", flush=True)
    print("| backend | policy | export s | compile s | prefill tok/s | decode tok/s | decode vs torch "
          "| KV cache after prefill (MiB) | same greedy tokens as torch |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|", flush=True)

    def row(be, pol, r):
        # Printed as soon as it is measured (a later backend that dies does not lose it).
        rows.append((be, pol, r))
        base = rows[0][2]
        same = "yes" if r["tokens"] == base["tokens"] else \
            f"{sum(x == y for x, y in zip(r['tokens'], base['tokens']))}/{len(base['tokens'])}"
        print(f"| {be} | {pol} | {r['export_s']:.1f} | {r['compile_s']:.1f} | {r['prefill']:.1f} | "
              f"{r['decode']:.2f} | {r['decode'] / base['decode']:.2f}x | {r['kv'] / 2**20:.1f} | {same} |",
              flush=True)

    row("torch eager", "full", run_torch(spec, toks, a.decode, a.threads))
    for s in a.policies:
        p, b = parse_policy(s)
        row("kvmerge", s, run_compiled(spec, toks, p, b, a.decode, "kvmerge"))
    base_dec = None
    if a.base_prefix:
        short = texts.load_tokens(a.doc, spec.model.tokenizer, a.base_prefix)
        base_dec = run_compiled(spec, short, "full", "1.0", a.decode, "kvmerge")["decode"]

    if base_dec:
        # Decode time per token minus the same program's at a tiny prefix: the part that grows
        # with the cache (attention over it, plus the cache's copies), per policy.
        print(f"\nAttention share of a decode step (kvmerge, ms/token minus {1e3 / base_dec:.1f} ms "
              f"at a {a.base_prefix}-token prefix):\n")
        print("| policy | cache after prefill / full | decode ms/token | cache-dependent ms/token "
              "| cache-dependent vs full |")
        print("|---|---:|---:|---:|---:|")
        full_ms = None
        for be, pol, r in rows:
            if be != "kvmerge":
                continue
            ms = 1e3 / r["decode"]
            dep = ms - 1e3 / base_dec
            full_ms = dep if pol == "full" else full_ms
            share = r["kv"] / rows[0][2]["kv"]
            vs = f"{dep / full_ms:.2f}" if full_ms else ""
            print(f"| {pol} | {share:.2f} | {ms:.1f} | {dep:.1f} | {vs} |")
    # IREE last (slowest to build), its rows after the table above.
    if a.iree:
        print("\nIREE (the same modules through --kvmerge-export-upstream -> iree-compile):\n", flush=True)
    for s in a.iree:
        p, b = parse_policy(s)
        try:
            row("IREE", s, run_compiled(spec, toks, p, b, a.decode, "iree"))
        except Exception as e:  # noqa: BLE001 - reported in the table
            print(f"| IREE | {s} | failed: {str(e)[:300]} |", flush=True)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
