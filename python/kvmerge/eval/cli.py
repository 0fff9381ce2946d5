"""Command line of ``python -m kvmerge.eval``."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .. import texts
from .report import quality_table, write_report
from .run import full_config, quick_config, run_eval, save_json, summarize

REPO = Path(__file__).resolve().parents[3]


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m kvmerge.eval",
        description="KVMerger evaluation on a real model: observations 1/2 and quality at fixed "
                    "budgets (full / streaming / h2o / kvmerger).")
    p.add_argument("--quick", action="store_true",
                   help="stories260K, 2 short documents: seconds (CI smoke test)")
    p.add_argument("--model", choices=["smollm2", "stories260k"], default=None)
    p.add_argument("--out", default=None,
                   help="output directory for results.md and PNGs (default: docs/ for the full "
                        "run, build/eval-quick/ for --quick)")
    p.add_argument("--docs", default=None,
                   help="comma-separated document names; available: "
                        + ", ".join(texts.list_documents(False)))
    p.add_argument("--prefill", type=int, default=None, help="prefill length L (tokens)")
    p.add_argument("--n-cont", type=int, default=None, help="continuation tokens for perplexity")
    p.add_argument("--n-query", type=int, default=None,
                   help="continuation queries for the attention error")
    p.add_argument("--ratios", default=None, help="comma-separated budget ratios (default 0.5,0.35)")
    p.add_argument("--eps", type=float, default=None, help="similarity threshold (default 0.75)")
    p.add_argument("--no-variants", action="store_true", help="skip the extra kvmerger variants")
    p.add_argument("--no-validate", action="store_true", help="skip the model sanity check")
    p.add_argument("--json", default=None, help="also dump all raw numbers to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--backend", choices=["numpy", "torch"], default=None,
                   help="forward pass: numpy (kvmerge.models, default) or torch (HF transformers "
                        "built from the same weights; needs torch + transformers)")
    p.add_argument("--peers", choices=["kvpress"], default=None,
                   help="add NVIDIA kvpress's presses as rows (implies --backend torch; needs "
                        "kvpress)")
    p.add_argument("--presses", default=None,
                   help="comma-separated kvpress presses for --peers (default: all of "
                        "ObservedAttention, ExpectedAttention, Merging(ObservedAttention), TOVA, "
                        "SnapKV, StreamingLLM, PyramidKV, KeyDiff, Knorm)")
    p.add_argument("--policies", default=None,
                   help="comma-separated labels of our policies to keep (full is always kept; "
                        "kvpress rows are chosen by --presses), e.g. h2o,kvmerger,kvmerger-norm")
    p.add_argument("--threads", type=int, default=None, help="torch threads (torch backend)")
    p.add_argument("--checkpoint", default=None, metavar="JSON",
                   help="rewrite this JSON after every document (partial results)")
    p.add_argument("--resume", default=None, metavar="JSON",
                   help="reuse the documents of a --checkpoint/--json of the same protocol that "
                        "scored every policy of this run (extra policies are dropped)")
    p.add_argument("--from-json", default=None, metavar="JSON",
                   help="do not compute: rewrite the report and PNGs from a --json dump")
    p.add_argument("--power-json", default=None, metavar="JSON",
                   help="with --from-json: --json dump(s) (comma-separated) of the same protocol "
                        "on more documents (top policies), pooled into a 'more scored tokens' "
                        "section")
    p.add_argument("--retrieval-json", default=None, metavar="JSON",
                   help="with --from-json: python -m kvmerge.eval.retrieval --json dump(s) "
                        "(comma-separated; trials pooled) for the passkey retrieval section")
    return p


def merge_runs(parts: list) -> dict:
    """Runs of the same protocol and policies over different documents, as one result."""
    base = dict(parts[0])
    for p in parts[1:]:
        for k in ("prefill", "n_cont", "ratios", "model", "backend"):
            if p["config"].get(k) != base["config"].get(k):
                raise SystemExit(f"--power-json: runs differ in {k}")
        if [x["label"] for x in p["policies"]] != [x["label"] for x in base["policies"]]:
            raise SystemExit("--power-json: runs differ in their policies")
    names = [d["name"] for p in parts for d in p["docs"]]
    if len(set(names)) != len(names):
        raise SystemExit("--power-json: a document appears in two runs")
    base["docs"] = [d for p in parts for d in p["docs"]]
    if len(parts) > 1:
        base["command"] = " ; ".join(p.get("command", "?") for p in parts)
        tot = {}
        for p in parts:
            for k, v in p.get("timings", {}).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    tot[k] = tot.get(k, 0.0) + v
        if not all("total" in p.get("timings", {}) for p in parts):
            tot.pop("total", None)
        base["timings"] = tot
    return base


def merge_retrieval(parts: list) -> dict:
    """Retrieval runs with the same policies and ratios (e.g. different lengths), as one."""
    base = dict(parts[0])
    for p in parts[1:]:
        if [x["label"] for x in p["policies"]] != [x["label"] for x in base["policies"]] or \
                p["config"]["ratios"] != base["config"]["ratios"]:
            raise SystemExit("--retrieval-json: runs differ in their policies or ratios")
    if len(parts) > 1:
        base["trials"] = [t for p in parts for t in p["trials"]]
        base["command"] = " ; ".join(p.get("command", "?") for p in parts)
        tot = {}
        for p in parts:
            for k, v in p.get("timings", {}).items():
                tot[k] = tot.get(k, 0.0) + v
        if not all("total" in p.get("timings", {}) for p in parts):
            tot.pop("total", None)
        base["timings"] = tot
    return base


def _split_names(text: str) -> list:
    """Comma-separated names; commas inside parentheses do not split (Merging(A,B))."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        depth += (ch == "(") - (ch == ")")
        cur += ch
    out.append(cur.strip())
    return [x for x in out if x]


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    kw = {}
    if args.model:
        kw["model"] = args.model
    if args.docs:
        kw["docs"] = [d.strip() for d in args.docs.split(",") if d.strip()]
    for a, k in (("prefill", "prefill"), ("n_cont", "n_cont"), ("n_query", "n_query"),
                 ("eps", "eps")):
        if getattr(args, a) is not None:
            kw[k] = getattr(args, a)
    if args.ratios:
        kw["ratios"] = tuple(float(x) for x in args.ratios.split(","))
    if args.no_variants:
        kw["variants"] = False
    if args.no_validate:
        kw["validate"] = False
    if args.backend:
        kw["backend"] = args.backend
    if args.peers == "kvpress":
        kw["backend"] = "torch"
        if args.backend == "numpy":
            raise SystemExit("--peers kvpress needs --backend torch")
        from .torch_backend import PRESS_NAMES
        kw["presses"] = ([x.strip() for x in _split_names(args.presses)] if args.presses
                         else list(PRESS_NAMES))
    elif args.presses:
        raise SystemExit("--presses needs --peers kvpress")
    if args.policies:
        kw["only"] = _split_names(args.policies)
    if args.threads:
        kw["threads"] = args.threads
    if args.checkpoint:
        kw["checkpoint"] = args.checkpoint
    if args.resume:
        kw["resume"] = args.resume
    cfg = quick_config(**kw) if args.quick else full_config(**kw)
    out = Path(args.out) if args.out else (REPO / ("build/eval-quick" if args.quick else "docs"))
    cfg.out = str(out)
    t0 = time.perf_counter()
    if args.from_json:
        res = json.loads(Path(args.from_json).read_text())
        out = Path(args.out) if args.out else REPO / (
            "build/eval-quick" if res["config"].get("quick") else "docs")
        power = None
        if args.power_json:     # several dumps (runs over different documents): pooled
            parts = [json.loads(Path(x).read_text()) for x in args.power_json.split(",") if x]
            power = merge_runs(parts)
        ret = None
        if args.retrieval_json:  # several dumps (e.g. one per context length): trials pooled
            parts = [json.loads(Path(x).read_text()) for x in args.retrieval_json.split(",") if x]
            ret = merge_retrieval(parts)
        write_report(res, out / res["config"].get("md_name", "results.md"),
                     command=res.get("command", "python -m kvmerge.eval"), power=power,
                     retrieval=ret)
        print(quality_table(res))
        print(f"\nrewrote {out} from {args.from_json}")
        return 0
    cmd = "python -m kvmerge.eval" + (" " + " ".join(argv if argv is not None else sys.argv[1:])
                                      if (argv if argv is not None else sys.argv[1:]) else "")
    res = run_eval(cfg, progress=not args.no_progress,
                   log=lambda s: print(s, file=sys.stderr, flush=True), command=cmd.strip())
    res["command"] = cmd.strip()
    write_report(res, out / cfg.md_name, command=res["command"])
    if args.json:
        save_json(res, args.json)
    summ = summarize(res)
    print(quality_table(res, summ))
    print(f"\nwrote {out / cfg.md_name} (+ PNGs) in {time.perf_counter() - t0:.1f} s")
    return 0
