#!/usr/bin/env python3
"""The real-frontend support table: Hugging Face modules exported by torch-mlir, through kvmerge.

    .venv/bin/python scripts/frontend_matrix.py [--quick] [--only SUBSTRING ...]

For each module (kvmerge.frontends.Spec: family x kind x attention implementation x dtype x batch /
padding / dynamic shapes), in one run: export with torch-mlir's fx importer (random weights),
``--kvmerge-raise-attention`` (the remark), the raised module compiled by kvmerge's CPU pipeline vs
torch eager (max relative error over every output), ``--kvmerge-insert-compression`` (kvmerger,
budget 0.5: what it did), and with compression inserted: a prefill's compressed cache vs
``kvmerge.reference`` on the module's own K/V and scores, its layer output vs torch; a decode
step's outputs (full cache, ``lengths = cache``) vs torch. Prints a Markdown table
(docs/frontends.md quotes it). About 5 minutes on 2 cores (``--quick``: one row per family).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from kvmerge import frontends as fe  # noqa: E402

S = fe.Spec
ROWS = [S(kind=k, impl=i, tokens=1 if "decode" in k else 16)
        for k in ("attn_prefill", "layer_prefill", "attn_decode", "layer_decode")
        for i in ("eager", "sdpa")] + [
    S(kind="layer_prefill", impl="eager", dtype="f16"),
    S(kind="layer_prefill", impl="sdpa", dtype="bf16"),
    S(kind="layer_decode", impl="eager", dtype="bf16", tokens=1),
    S(kind="layer_decode", impl="sdpa", dtype="f16", tokens=1),
    S(kind="layer_decode", impl="sdpa", tokens=3),
    S(kind="layer_prefill", impl="eager", batch=2),
    S(kind="layer_decode", impl="sdpa", batch=2, tokens=1),
    S(kind="layer_prefill", impl="eager", batch=2, padding=True),
    S(kind="layer_prefill", impl="sdpa", batch=2, padding=True),
    S(kind="layer_decode", impl="sdpa", batch=2, tokens=1, padding=True),
    S(kind="layer_prefill", impl="sdpa", shape="smollm2", tokens=128),
    S(kind="layer_decode", impl="eager", shape="smollm2", cache=128, tokens=1),
    S(kind="layer_prefill", impl="eager", dynamic=True),
] + [S(kind=k, impl=i, shape=sh, tokens=1 if "decode" in k else 16)
     for sh in ("mha", "mqa", "odd")
     for k, i in (("layer_prefill", "eager"), ("layer_decode", "sdpa"))] + [S(family=f, kind=k, impl=i, tokens=1 if "decode" in k else 16)
     for f in ("qwen2", "mistral", "qwen3", "gemma", "gemma2", "granite", "phi3", "olmo2")
     for k, i in (("layer_prefill", "eager"), ("layer_decode", "sdpa"))]

QUICK = [S(family=f, kind="layer_prefill", impl="sdpa") for f in fe.FAMILIES]


def describe(spec: fe.Spec) -> str:
    parts = [spec.family, spec.kind.replace("_", " "), spec.impl, spec.dtype, f"B={spec.batch}"]
    if spec.decode:
        parts.append(f"{spec.tokens} new after {spec.cache}")
    else:
        parts.append(f"L={spec.tokens}")
    if spec.shape != "tiny":
        parts.append(f"{spec.shape} shapes")
    if spec.padding:
        parts.append("padding mask")
    if spec.dynamic:
        parts.append("dynamic L")
    return ", ".join(parts)


def fmt_err(e):
    return "" if e is None else f"{e:.1e}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one prefill per family")
    ap.add_argument("--only", nargs="*", default=[], help="rows whose name contains one of these")
    a = ap.parse_args()
    rows = QUICK if a.quick else ROWS
    if a.only:
        rows = [s for s in rows if any(o in s.name for o in a.only)]
    t0 = time.perf_counter()
    print("| module (torch-mlir fx importer, linalg-on-tensors) | raised | full cache vs torch "
          "| insert-compression (kvmerger, 0.5) | compressed cache = reference | with compression vs torch |")
    print("|---|---|---:|---|---|---:|")
    for s in rows:
        try:
            r = fe.check(s)
        except Exception as e:  # noqa: BLE001 - a row of the table
            print(f"| {describe(s)} | failed: {type(e).__name__}: {str(e)[:160]} | | | | |", flush=True)
            continue
        raised = r["raised"]
        if raised.startswith("raised attention "):
            raised = "yes " + raised[len("raised attention "):].split(":")[0]
        comp = r["compress"]
        for long, short in (("results #1 and #2 are this attention's keys and values: compressing "
                             "them as a prefill cache (mark them with kvcache.role to make it explicit)",
                             "prefill cache compressed (auto-detected)"),
                            ("attends to arguments #1 and #2 with new tokens concatenated: compressing "
                             "as a decode step over a compressed cache (mark them with kvcache.role "
                             "to make it explicit)", "decode: append after valid slots (auto-detected)")):
            comp = comp.replace(long, short)
        cache = ""
        if r["cache"] is not None:
            ok, err = r["cache"]
            cache = f"{'slot maps equal' if ok else 'SLOT MAPS DIFFER'}, values {err:.1e}"
        elif comp and not comp.startswith("error") and not s.decode:
            cache = "not checked (padding mask)"
        print(f"| {describe(s)} | {raised} | {fmt_err(r['full_err'])} | {comp} | {cache} | "
              f"{fmt_err(r['out_err'])} |", flush=True)
    print(f"\n{len(rows)} modules in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
