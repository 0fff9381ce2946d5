#!/usr/bin/env python3
"""Perplexity through the kvmerge-compiled whole model vs ``python -m kvmerge.eval`` (issue 12).

    .venv/bin/python scripts/wholemodel_ppl.py [--model smollm2] [--docs pride_ch1 gpl3]
        [--policies full kvmerger@0.5 h2o@0.35] [--prefill 2048] [--n-cont 256]

Per policy, the same documents and protocol (prefill ``--prefill`` tokens, compress every layer's
cache once, score ``--n-cont`` teacher-forced continuation tokens): the NumPy evaluation
(``kvmerge.eval.run.run_eval``, the reference's ``compress`` on the NumPy forward's caches) and the
compiled model (torch-mlir export, ``--kvmerge-raise-attention`` + ``--kvmerge-insert-compression``
in all layers, kvmerge's CPU pipeline; ``kvmerge.wholemodel.perplexity``). Prints a table with the
relative difference (the claim: < 1e-3).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from kvmerge import wholemodel  # noqa: E402
from kvmerge.eval import run as ev  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2", choices=("smollm2", "stories260k"))
    ap.add_argument("--docs", nargs="+", default=["pride_ch1"])
    ap.add_argument("--policies", nargs="+", default=["full", "kvmerger@0.5", "h2o@0.35"])
    ap.add_argument("--prefill", type=int, default=2048)
    ap.add_argument("--n-cont", type=int, default=256)
    a = ap.parse_args()
    spec = wholemodel.ModelSpec.load(a.model)
    ratios = sorted({float(p.split("@")[1]) for p in a.policies if "@" in p}) or [0.5]
    cfg = ev.EvalConfig(model=a.model, docs=a.docs, prefill=a.prefill, n_cont=a.n_cont,
                        ratios=tuple(ratios), variants=False, validate=False)
    t0 = time.perf_counter()
    want = ev.summarize(ev.run_eval(cfg, progress=False, log=lambda *x: None, model=spec.model))
    t_eval = time.perf_counter() - t0
    print(f"# {a.model}, docs {', '.join(a.docs)}: prefill {a.prefill}, {a.n_cont} scored tokens "
          f"each; NumPy eval {t_eval:.0f} s", flush=True)
    print("| policy | python -m kvmerge.eval ppl | compiled model ppl | relative difference | compiled s |")
    print("|---|---:|---:|---:|---:|")
    for p in a.policies:
        policy, ratio = (p.split("@") + ["1.0"])[:2]
        t0 = time.perf_counter()
        got = wholemodel.perplexity(spec, a.docs, prefill=a.prefill, n_cont=a.n_cont,
                                    policy=policy, ratio=float(ratio))
        w = want["ppl"][p]
        print(f"| {p} | {w:.4f} | {got['ppl']:.4f} | {abs(got['ppl'] / w - 1):.1e} | "
              f"{time.perf_counter() - t0:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
