"""Passkey retrieval with a compressed cache (``python -m kvmerge.eval.retrieval``).

Perplexity averages over every token and hides a lost fact. This task asks for one: a five-digit
passkey hidden in real text (our documents, :mod:`kvmerge.texts`), at a chosen depth of a context
of ``N`` tokens (2K to 8K; SmolLM2's context is 8192).

One trial, in SmolLM2's chat format (the model is the Instruct variant)::

    <|im_start|>user\\nThere is a secret passkey hidden in the text below. Remember it.\\n\\n
    <haystack tokens ... \\nThe secret passkey is 48213. Remember it: 48213.\\n ... haystack>
    ---------------------------------------------------- N tokens: prefilled, then compressed
    \\n\\nWhat is the secret passkey in the text above?<|im_end|>\\n<|im_start|>assistant\\n
    The secret passkey is 48213
    ---------------------------------------------------- continuation: uncompressed

The context (header + haystack with the needle, exactly ``N`` tokens) is prefilled and every
layer's cache compressed once -- the evaluation's protocol and kvpress's (the question is not
seen by the compression). The question and the answer are then fed teacher-forced at their true
positions. **Correct** = the model's argmax is the true digit at each of the five answer positions,
which is exactly "greedy decoding writes the passkey" (greedy decoding feeds back its own
argmax, equal to the true digit as long as it is correct). Also recorded: the answer's NLL.

The needle goes after the last sentence or line end at or before ``depth * len(haystack)`` (searching
back at most 48 tokens), so it does not split a word. Trials cycle over haystack documents, depths
and lengths; passkeys come from a seeded generator: the same configuration gives the same trials.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .. import reference, texts

__all__ = ["RetrievalConfig", "build_trial", "make_trials", "run_retrieval", "summarize_retrieval",
           "wilson", "main", "HAYSTACKS"]

HEADER = "<|im_start|>user\nThere is a secret passkey hidden in the text below. Remember it.\n\n"
NEEDLE = "\nThe secret passkey is {key}. Remember it: {key}.\n"
QUESTION = ("\n\nWhat is the secret passkey in the text above?<|im_end|>\n<|im_start|>assistant\n"
            "The secret passkey is ")

#: haystack texts (long enough for 8K tokens from their start marker)
HAYSTACKS = ["pride_ch10", "coreutils_ls", "devils_debt", "gettext_po", "pride_ch42",
             "sed_intro", "devils_hand", "wget_overview", "pride_ch20", "diffutils_intro"]

#: policies of the retrieval table (labels of kvmerge.eval.run; presses: kvpress labels)
DEFAULT_POLICIES = ["full", "streaming", "h2o", "h2o-norm", "kvmerger", "kvmerger-norm",
                    "kvmerger-norm+layers"]
DEFAULT_PRESSES = ["ObservedAttention", "SnapKV", "TOVA", "StreamingLLM", "KeyDiff", "Knorm"]


@dataclass
class RetrievalConfig:
    model: str = "smollm2"
    lengths: tuple = (2048, 4096, 8000)
    depths: tuple = (0.1, 0.3, 0.5, 0.7, 0.9)
    trials: tuple = (2, 1, 1)        # trials per (length, depth), one entry per length
    ratios: tuple = (0.5, 0.35)
    seed: int = 0
    sink: int = 4
    eps: float = 0.75
    haystacks: list = field(default_factory=lambda: list(HAYSTACKS))
    policies: list = field(default_factory=lambda: list(DEFAULT_POLICIES))
    presses: list = field(default_factory=lambda: list(DEFAULT_PRESSES))
    backend: str = "torch"
    threads: Optional[int] = None
    calib_doc: str = texts.CALIB_DOC
    calib_tokens: int = 2048
    checkpoint: Optional[str] = None


def build_trial(tokenizer, haystack: list, n_tokens: int, depth: float, key: str) -> dict:
    """One passkey prompt: ``context`` (exactly ``n_tokens`` ids: header, haystack, needle),
    ``question`` and ``answer`` ids; ``needle_at`` (token index of the needle in the context) and
    the realized ``depth`` (needle_at / n_tokens)."""
    if not (0.0 <= depth <= 1.0):
        raise ValueError(f"depth: must lie in [0, 1], got {depth}")
    enc = lambda s: list(tokenizer.encode(s, bos=False)) if _takes_bos(tokenizer) \
        else list(tokenizer.encode(s))  # noqa: E731
    head = enc(HEADER)
    needle = enc(NEEDLE.format(key=key))
    n_body = n_tokens - len(head) - len(needle)
    if n_body < 1:
        raise ValueError(f"n_tokens: {n_tokens} is too short for the header and the needle")
    if len(haystack) < n_body:
        raise ValueError(f"haystack: {len(haystack)} tokens, need {n_body}")
    body = list(haystack[:n_body])
    pos = int(round(depth * n_body))
    for back in range(0, 49):            # the needle after a sentence or line end
        j = pos - back
        if j <= 0:
            pos = 0
            break
        if tokenizer.decode([body[j - 1]]).rstrip(" ").endswith((".", "!", "?", "\n")):
            pos = j
            break
    ctx = head + body[:pos] + needle + body[pos:]
    assert len(ctx) == n_tokens
    return {"context": ctx, "question": enc(QUESTION), "answer": enc(key),
            "needle_at": len(head) + pos, "depth": (len(head) + pos) / n_tokens, "key": key}


def _takes_bos(tokenizer) -> bool:
    import inspect
    try:
        return "bos" in inspect.signature(tokenizer.encode).parameters
    except (TypeError, ValueError):
        return False


def make_trials(cfg: RetrievalConfig) -> list:
    """The trial plan: dicts ``{length, depth, haystack, key}`` (deterministic)."""
    rng = np.random.default_rng(cfg.seed)
    plan = []
    trials = list(cfg.trials)
    if len(trials) == 1:
        trials = trials * len(cfg.lengths)
    if len(trials) != len(cfg.lengths):
        raise ValueError(f"trials: {len(trials)} entries for {len(cfg.lengths)} lengths")
    h = 0
    for n, reps in zip(cfg.lengths, trials):
        for rep in range(int(reps)):
            for d in cfg.depths:
                plan.append({"length": int(n), "depth": float(d),
                             "haystack": cfg.haystacks[h % len(cfg.haystacks)],
                             "key": str(int(rng.integers(10000, 100000)))})
                h += 1
    return plan


def wilson(k: int, n: int, z: float = 1.96) -> tuple:
    """95% Wilson score interval of a binomial proportion k/n."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (float(max(0.0, c - h)), float(min(1.0, c + h)))


def run_retrieval(cfg: RetrievalConfig, *, model=None, log=print, backend=None,
                  command: Optional[str] = None) -> dict:
    from .run import PolicySpec, MAIN_POLICIES, VARIANT_POLICIES, compress_policy, load_model, \
        press_policies, _machine
    from .. import calibrate as _cal
    t_start = time.perf_counter()
    if model is None:
        model = load_model(cfg.model)
    if backend is None:
        if cfg.backend == "torch":
            from .torch_backend import TorchBackend
            backend = TorchBackend(model, threads=cfg.threads)
        else:
            from .run import NumpyBackend
            backend = NumpyBackend(model)
    known = {p.label: p for p in MAIN_POLICIES + VARIANT_POLICIES}
    specs = []
    for lab in cfg.policies:
        if lab not in known:
            raise ValueError(f"policies: unknown policy {lab!r}")
        specs.append(known[lab])
    specs += press_policies(cfg.presses) if cfg.presses else []
    max_len = model.cfg.max_seq_len
    weights = None
    res = {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
           "policies": [asdict(p) for p in specs], "trials": [],
           "machine": _machine(cfg.backend), "model": model.cfg.name}
    if command:
        res["command"] = command
    if any(p.layer_budgets for p in specs):
        ctoks = np.asarray(texts.load_tokens(cfg.calib_doc, model.tokenizer, cfg.calib_tokens))
        pre = backend.prefill(ctoks)
        cal = _cal.calibrate_from_keys(pre["k"], ratio=0.5, eps=cfg.eps)
        del pre
        weights = cal["weights"]
        res["calibration"] = dict(cal, text=cfg.calib_doc, tokens=cfg.calib_tokens)
    t_prefill = t_score = 0.0
    hay_cache = {}
    plan = make_trials(cfg)
    for i, tr in enumerate(plan):
        N = tr["length"]
        if tr["haystack"] not in hay_cache:
            hay_cache[tr["haystack"]] = texts.load_tokens(tr["haystack"], model.tokenizer,
                                                          max(cfg.lengths))
        t = build_trial(model.tokenizer, hay_cache[tr["haystack"]], N, tr["depth"], tr["key"])
        cont = t["question"] + t["answer"]
        if N + len(cont) > max_len:
            raise ValueError(f"lengths: {N} + {len(cont)} exceeds the model context {max_len}")
        presses = {}
        press_specs = [p for p in specs if p.policy == "kvpress"]
        if press_specs:
            from .torch_backend import make_press, press_ratio
            for r in cfg.ratios:
                cr = press_ratio(reference.budget_from_ratio(r, N), N)
                for sp in press_specs:
                    presses[f"{sp.press}@{r}"] = make_press(sp.press, cr)
        t0 = time.perf_counter()
        pre = backend.prefill(np.asarray(t["context"]), presses)
        t_prefill += time.perf_counter() - t0
        K, V, A = pre["k"], pre["v"], pre["scores"]
        A_norm = [a / (N - np.arange(N))[None, :].astype(a.dtype) for a in A]
        keys, comps, cbs = [], [], []
        for sp in specs:
            if sp.policy == "full":
                keys.append("full")
                comps.append([dict(keys=k, values=v, lengths=np.full(k.shape[0], N, np.int32))
                              for k, v in zip(K, V)])
                cbs.append(False)
                continue
            for r in cfg.ratios:
                per_layer = _cal.layer_slots(weights, ratio=r, length=N) if sp.layer_budgets \
                    else None
                comps.append(compress_policy(sp, K, V, A, A_norm, ratio=r, sink=cfg.sink,
                                             eps=cfg.eps, per_layer=per_layer,
                                             press_caches=pre["press"]))
                keys.append(f"{sp.label}@{r}")
                cbs.append(sp.count_bias)
        del pre
        inputs = np.asarray(cont[:-1])
        targets = np.asarray(cont[1:])
        na = len(t["answer"])
        t0 = time.perf_counter()
        scored = backend.score(inputs, targets, N, comps, count_bias=cbs)
        t_score += time.perf_counter() - t0
        rec = {k: v for k, v in tr.items()}
        rec.update(needle_at=t["needle_at"], depth_real=t["depth"], n_answer=na, results={})
        for k, s in zip(keys, scored):
            rec["results"][k] = {"correct": bool(s["hit"][-na:].all()),
                                 "digits": int(s["hit"][-na:].sum()),
                                 "nll": float(s["nll"][-na:].sum())}
        del comps, scored, K, V, A, A_norm
        res["trials"].append(rec)
        ok = {k: v["correct"] for k, v in rec["results"].items()}
        log(f"[retrieval] {i + 1}/{len(plan)} N={N} depth={tr['depth']} {tr['haystack']}: "
            f"full {'ok' if ok.get('full') else 'FAIL'}; "
            + " ".join(f"{k}={'1' if v else '0'}" for k, v in ok.items() if k != "full"))
        if cfg.checkpoint:
            Path(cfg.checkpoint).write_text(json.dumps(dict(
                res, partial=True, timings={"prefill": t_prefill, "score": t_score,
                                            "elapsed": time.perf_counter() - t_start})))
    res["timings"] = {"prefill": t_prefill, "score": t_score,
                      "total": time.perf_counter() - t_start}
    return res


def summarize_retrieval(res: dict) -> dict:
    """Per policy key: correct / n, Wilson interval, per length and per depth accuracy, mean
    answer NLL; and paired answer-NLL differences against ``h2o`` and ``kvpress:ObservedAttention``
    at the same ratio."""
    trials = res["trials"]
    keys = list(trials[0]["results"].keys()) if trials else []
    out = {"keys": keys, "acc": {}, "ci": {}, "n": {}, "by_length": {}, "by_depth": {},
           "nll": {}, "paired": {}}
    lengths = sorted({t["length"] for t in trials})
    depths = sorted({t["depth"] for t in trials})
    for k in keys:
        c = np.array([t["results"][k]["correct"] for t in trials])
        out["n"][k] = int(c.size)
        out["acc"][k] = float(c.mean())
        out["ci"][k] = wilson(int(c.sum()), int(c.size))
        out["by_length"][k] = {str(n): [int(sum(t["results"][k]["correct"] for t in trials
                                                if t["length"] == n)),
                                        int(sum(1 for t in trials if t["length"] == n))]
                               for n in lengths}
        out["by_depth"][k] = {str(d): [int(sum(t["results"][k]["correct"] for t in trials
                                               if t["depth"] == d)),
                                       int(sum(1 for t in trials if t["depth"] == d))]
                              for d in depths}
        out["nll"][k] = float(np.mean([t["results"][k]["nll"] for t in trials]))
    for k in keys:
        if "@" not in k:
            continue
        r = k.split("@")[1]
        for base in ("h2o", "kvpress:ObservedAttention"):
            b = f"{base}@{r}"
            if b not in keys or b == k:
                continue
            ck = np.array([t["results"][k]["correct"] for t in trials])
            cb = np.array([t["results"][b]["correct"] for t in trials])
            d = np.array([t["results"][k]["nll"] - t["results"][b]["nll"] for t in trials])
            out["paired"][f"{k}|{base}"] = {
                "only_this": int((ck & ~cb).sum()), "only_base": int((~ck & cb).sum()),
                "nll_diff": float(d.mean()),
                "nll_se": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")}
    out["lengths"] = lengths
    out["depths"] = depths
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kvmerge.eval.retrieval",
                                 description="Passkey retrieval with compressed caches "
                                             "(our policies and kvpress presses).")
    ap.add_argument("--model", default="smollm2", choices=("smollm2", "stories260k"))
    ap.add_argument("--lengths", default="2048,4096,8000")
    ap.add_argument("--depths", default="0.1,0.3,0.5,0.7,0.9")
    ap.add_argument("--trials", default="2,1,1", help="trials per (length, depth), per length")
    ap.add_argument("--ratios", default="0.5,0.35")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--policies", default=",".join(DEFAULT_POLICIES))
    ap.add_argument("--presses", default=",".join(DEFAULT_PRESSES),
                    help="kvpress presses ('' for none)")
    ap.add_argument("--backend", default="torch", choices=("torch", "numpy"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", required=True)
    ap.add_argument("--checkpoint", default=None)
    a = ap.parse_args(argv)
    from .cli import _split_names
    cfg = RetrievalConfig(
        model=a.model, lengths=tuple(int(x) for x in a.lengths.split(",")),
        depths=tuple(float(x) for x in a.depths.split(",")),
        trials=tuple(int(x) for x in a.trials.split(",")),
        ratios=tuple(float(x) for x in a.ratios.split(",")), seed=a.seed,
        policies=_split_names(a.policies), presses=_split_names(a.presses) if a.presses else [],
        backend=a.backend, threads=a.threads, checkpoint=a.checkpoint)
    if cfg.presses and cfg.backend != "torch":
        raise SystemExit("--presses needs --backend torch")
    cmd = "python -m kvmerge.eval.retrieval " + " ".join(
        argv if argv is not None else sys.argv[1:])
    res = run_retrieval(cfg, log=lambda s: print(s, file=sys.stderr, flush=True), command=cmd)
    Path(a.json).write_text(json.dumps(res))
    s = summarize_retrieval(res)
    for k in s["keys"]:
        lo, hi = s["ci"][k]
        print(f"{k:40s} {s['acc'][k]:.2f} [{lo:.2f}, {hi:.2f}] n={s['n'][k]} "
              f"answer NLL {s['nll'][k]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
