"""Real-model evaluation of KV-cache compression policies (see ``docs/results.md``).

Pipeline, per document (all float32 NumPy, :mod:`kvmerge.models.llama`):

1. **Prefill** the first ``L`` tokens with full causal attention.  Per layer we keep the
   post-RoPE keys ``K [Hkv, L, D]``, values ``V`` and the H2O accumulated attention
   ``a [Hkv, L]`` (sum over all ``L`` causal queries and over the ``G`` query heads of
   each KV head) -- the same quantity as ``reference.accumulated_scores``.
2. **Observations 1/2** from ``K``/``V``: adjacent-token cosine similarity
   (``reference.adjacent_similarity``) of keys and of values; fraction of links with
   key similarity ``>= eps``.
3. **Reference continuation**: the next ``n_cont`` tokens ``x[L .. L+n_cont-1]`` are run
   (teacher forced, one chunk) over the *full* prefix cache; this gives the reference
   next-token NLL of ``x[L+1 .. L+n_cont]`` and, per layer, the true queries, keys,
   values and attention outputs of the continuation tokens.
4. For each policy and ratio ``r``, each layer's prefix cache is compressed
   independently with ``reference.compress(K, V, a, policy, ratio=r)``:

   a. *attention error*: for each of the first ``n_query`` continuation tokens ``i`` and
      each layer, its true query (from step 3) attends to
      ``[compressed prefix slots (masked past lengths) | true K/V of continuation tokens 0..i]``;
      ``err_i = ||o_c - o||_F / ||o||_F`` over all query heads, where ``o`` is the same
      attention over the full prefix.  Reported: mean over the ``n_query`` tokens, per
      layer, then averaged over documents (and layers).
   b. *end-to-end perplexity*: the continuation is decoded (teacher forced) by the model
      with every layer attending to its compressed prefix (slots ``>= lengths`` masked,
      merged slots keep their pivot's RoPE phase) plus the uncompressed new tokens, which
      get RoPE at their true positions ``L + i``.  Errors compound through the layers.
      Chunked teacher forcing is exactly equal to token-by-token decoding
      (``test_models.py`` checks it).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .. import reference, texts
from ..models.llama import KVCache, log_softmax_nll, masked_attention

__all__ = ["EvalConfig", "PolicySpec", "quick_config", "full_config", "run_eval",
           "load_model", "SIM_BINS", "summarize", "paired", "NumpyBackend", "compress_policy",
           "press_policies"]

SIM_BINS = np.linspace(-1.0, 1.0, 81)


@dataclass(frozen=True)
class PolicySpec:
    label: str
    policy: str
    mode: str = "budget"
    sigma: object = "paper"
    count_bias: bool = False
    note: str = ""
    heavy: object = None        # kvmerger only; None: floor((Mb - 1) / 2) (spec v2)
    normalize: bool = False     # scores / number of queries that see each token
    layer_budgets: bool = False  # per-layer budgets from kvmerge.calibrate (same total memory)
    press: Optional[str] = None  # a kvpress press (policy "kvpress"; torch backend only)


MAIN_POLICIES = [
    PolicySpec("full", "full", note="no compression"),
    PolicySpec("streaming", "streaming", note="sink + newest"),
    PolicySpec("h2o", "h2o", note="sink + recent + top accumulated attention"),
    PolicySpec("kvmerger", "kvmerger", note="spec v2 defaults: heavy hitters, budget mode, sigma=paper"),
    PolicySpec("kvmerger-v1", "kvmerger", heavy=0, sigma="auto",
               note="spec v1: no heavy hitters, sigma=auto"),
]
VARIANT_POLICIES = [
    PolicySpec("h2o-norm", "h2o", normalize=True,
               note="scores divided by the number of queries that see each token"),
    PolicySpec("kvmerger-norm", "kvmerger", normalize=True, note="v2 with normalized scores"),
    PolicySpec("kvmerger-norm+layers", "kvmerger", normalize=True, layer_budgets=True,
               note="v2, normalized scores, per-layer budgets (kvmerge.calibrate, equal total)"),
    PolicySpec("kvmerger-threshold", "kvmerger", mode="threshold",
               note="threshold mode, eps (may use fewer slots than B)"),
    PolicySpec("kvmerger-sigma-auto", "kvmerger", sigma="auto", note="v2 heavy hitters, sigma='auto'"),
    PolicySpec("kvmerger+count_bias", "kvmerger", count_bias=True,
               note="log(count) logit bias (not in the paper)"),
]


def press_policies(names=None) -> list:
    """kvpress presses as rows (labels ``kvpress:<name>``), see ``torch_backend.PRESS_NAMES``."""
    from .torch_backend import PRESS_NAMES
    names = PRESS_NAMES if names is None else names
    for n in names:
        if n not in PRESS_NAMES:
            raise ValueError(f"presses: unknown kvpress press {n!r}; known: {', '.join(PRESS_NAMES)}")
    return [PolicySpec(f"kvpress:{n}", "kvpress", press=n, note=f"kvpress {n} (default parameters)")
            for n in names]


@dataclass
class EvalConfig:
    model: str = "smollm2"            # "smollm2" | "stories260k"
    docs: list = field(default_factory=lambda: list(texts.EVAL_DOCS))
    prefill: int = 2048
    n_query: int = 64
    n_cont: int = 256
    ratios: tuple = (0.5, 0.35)
    eps: float = 0.75
    sink: int = 4
    variants: bool = True
    validate: bool = True
    out: Optional[str] = None
    md_name: str = "results.md"
    quick: bool = False
    calib_doc: Optional[str] = None   # calibration text of per-layer budgets (default texts.CALIB_DOC;
    #                                   if it is evaluated: the first document that is not)
    backend: str = "numpy"            # "numpy" (kvmerge.models) | "torch" (HF transformers, kvpress)
    presses: Optional[list] = None    # kvpress press names as extra rows (torch backend)
    only: Optional[list] = None       # keep only these of our policies (None: all; "full" always
    #                                   kept; kvpress rows come from `presses`)
    threads: Optional[int] = None     # torch threads
    checkpoint: Optional[str] = None  # JSON path rewritten after every document (partial results)
    resume: Optional[str] = None      # a checkpoint/--json of the same protocol: reuse its documents

    def policies(self):
        pol = MAIN_POLICIES + (VARIANT_POLICIES if self.variants else [])
        if self.only is not None:
            labels = {p.label for p in pol}
            for lab in self.only:
                if lab not in labels:
                    raise ValueError(f"only: unknown policy {lab!r}; known: {', '.join(sorted(labels))}")
            pol = [p for p in pol if p.label == "full" or p.label in self.only]
        if self.presses:              # the presses asked for are always rows
            pol = pol + press_policies(self.presses)
        return pol


def quick_config(**kw) -> EvalConfig:
    base = dict(model="stories260k", docs=list(texts.QUICK_DOCS), prefill=320, n_query=64,
                n_cont=128, variants=True, quick=True)
    base.update(kw)
    return EvalConfig(**base)


def full_config(**kw) -> EvalConfig:
    return EvalConfig(**kw)


def load_model(name: str):
    if name == "stories260k":
        from ..models.llama2c import load_stories260k
        return load_stories260k()
    if name == "smollm2":
        from ..models.gguf_llama import load_smollm2
        return load_smollm2()
    raise ValueError(f"model: unknown model {name!r} (smollm2 | stories260k)")


def _rel_err(oc: np.ndarray, o: np.ndarray) -> np.ndarray:
    """Per query token: ||oc - o||_F / ||o||_F over heads x dims.  Inputs [Hq, T, Dv]."""
    num = np.sqrt(((oc - o) ** 2).sum(axis=(0, 2)))
    den = np.sqrt((o ** 2).sum(axis=(0, 2)))
    return num / np.maximum(den, 1e-30)


class _Progress:
    def __init__(self, total, enabled=True, desc="eval"):
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)
            except ImportError:
                pass

    def step(self, msg=None, n=1):
        if self.bar is not None:
            if msg:
                self.bar.set_postfix_str(msg, refresh=False)
            self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def validate_model(model, cfg: EvalConfig) -> dict:
    """Model sanity numbers: perplexity on real text (both RoPE layouts) and a greedy
    continuation of prompts."""
    tk = model.tokenizer
    out = {}
    t0 = time.perf_counter()
    if cfg.model == "stories260k":
        doc, n = "tinystories", 512
        prompts = [("plain", "Once upon a time")]
    else:
        doc, n = "pride_ch1", 1024
        chat = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
        prompts = [
            ("plain", "Once upon a time, in a small village by the sea,"),
            ("chat", chat.format("What is the capital of France? Answer in one sentence.")),
            ("chat", chat.format("Explain in two sentences why the sky is blue.")),
        ]
    ids = texts.load_tokens(doc, tk, n)
    out["ppl_doc"] = doc
    out["ppl_tokens"] = n
    out["ppl"] = model.perplexity(ids)
    inter = model.cfg.rope_interleaved
    model.cfg.rope_interleaved = not inter
    try:
        out["ppl_other_rope"] = model.perplexity(ids)
    finally:
        model.cfg.rope_interleaved = inter
    out["rope_interleaved"] = inter
    gens = []
    stop = {tk.eos_id} if getattr(tk, "eos_id", None) is not None else None
    for kind, p in prompts:
        g = model.generate(tk.encode(p), 48, stop=stop)
        gens.append({"kind": kind, "prompt": p, "completion": tk.decode(g)})
    out["greedy"] = gens
    out["seconds"] = time.perf_counter() - t0
    return out


class NumpyBackend:
    """The evaluation's default forward: :mod:`kvmerge.models.llama` (NumPy float32)."""

    name = "numpy"

    def __init__(self, model):
        self.model = model
        self.cfg = model.cfg
        self.tokenizer = model.tokenizer

    def prefill(self, tokens, presses=None) -> dict:
        if presses:
            raise ValueError("presses: kvpress presses need the torch backend (--peers kvpress)")
        col: dict = {}
        self.model.forward(np.asarray(tokens), KVCache.empty(self.cfg), collect=col, logits=False)
        return {"k": col["k"], "v": col["v"], "scores": col["scores"], "press": {}}

    def score(self, inputs, targets, pos, caches, *, count_bias=None, collect: int = 0) -> list:
        out = []
        targets = np.asarray(targets)
        for j, c in enumerate(caches):
            cb = bool(count_bias[j]) if count_bias is not None else False
            col = {} if (collect and j == 0) else None
            lg = self.model.forward(np.asarray(inputs), KVCache.from_prefix(c, pos, count_bias=cb),
                                    collect=col)
            r = {"nll": log_softmax_nll(lg, targets), "hit": lg.argmax(-1) == targets}
            if col is not None:
                r["collected"] = {li: dict(q=col["q"][li][:, :collect], k=col["k"][li][:, :collect],
                                           v=col["v"][li][:, :collect],
                                           o=col["attn_out"][li][:, :collect])
                                  for li in range(self.cfg.n_layers)}
            out.append(r)
            del lg
        return out


def make_backend(cfg: EvalConfig, model):
    if cfg.backend == "numpy":
        return NumpyBackend(model)
    if cfg.backend == "torch":
        from .torch_backend import TorchBackend
        return TorchBackend(model, threads=cfg.threads)
    raise ValueError(f"backend: unknown backend {cfg.backend!r} (numpy | torch)")


def compress_policy(spec: PolicySpec, K, V, A, A_norm, *, ratio, sink, eps, per_layer=None,
                    press_caches=None) -> list:
    """One compressed cache (a list of per-layer dicts) for policy ``spec`` at ``ratio``."""
    if spec.policy == "kvpress":
        return press_caches[f"{spec.press}@{ratio}"]
    comp = []
    for li in range(len(K)):
        kw = dict(policy=spec.policy, sink=sink, mode=spec.mode, eps=eps, sigma=spec.sigma)
        if spec.policy == "kvmerger" and spec.heavy is not None:
            kw["heavy"] = spec.heavy
        if per_layer is not None:
            kw["budget"] = per_layer[li]
        elif ratio is not None:
            kw["ratio"] = ratio
        scores = A_norm[li] if spec.normalize else A[li]
        comp.append(reference.compress(K[li], V[li], scores, **kw))
    return comp


def calibrated_weights(cfg: EvalConfig, backend, L: int, log=print):
    """Per-layer budget weights from ``kvmerge.calibrate`` on a text that is not evaluated."""
    from .. import calibrate as _cal
    calib = cfg.calib_doc or texts.CALIB_DOC
    if calib in cfg.docs:
        calib = next(d for d in texts.list_documents() if d not in cfg.docs)
    ctoks = np.asarray(texts.load_tokens(calib, backend.tokenizer, L))
    pre = backend.prefill(ctoks)
    cal = _cal.calibrate_from_keys(pre["k"], ratio=0.5, eps=cfg.eps)
    del pre
    log(f"[eval] per-layer budgets calibrated on {calib}: weights "
        f"{min(cal['weights']):.2f}..{max(cal['weights']):.2f}")
    return cal["weights"], dict(cal, text=calib, tokens=int(L))


def run_eval(cfg: EvalConfig, *, progress: bool = True, model=None, log=print,
             command: Optional[str] = None) -> dict:
    """Run the evaluation; returns a JSON-able dict of results (see :mod:`.report`)."""
    t_start = time.perf_counter()
    timings = {}
    t0 = time.perf_counter()
    if model is None:
        model = load_model(cfg.model)
    backend = make_backend(cfg, model)
    timings["load_model"] = time.perf_counter() - t0
    mc = model.cfg
    L, nq, nc = cfg.prefill, cfg.n_query, cfg.n_cont
    if L + nc > mc.max_seq_len:
        raise ValueError(f"prefill: prefill + n_cont = {L + nc} exceeds the model context "
                         f"{mc.max_seq_len}")
    if nq > nc:
        raise ValueError(f"n_query: {nq} > n_cont {nc}")
    policies = cfg.policies()
    press_specs = [p for p in policies if p.policy == "kvpress"]
    if press_specs and cfg.backend != "torch":
        raise ValueError("presses: kvpress rows need backend='torch' (--peers kvpress)")
    nl = mc.n_layers
    res = {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
           "model": {"name": mc.name, "n_layers": nl, "n_heads": mc.n_heads,
                     "n_kv_heads": mc.n_kv_heads, "head_dim": mc.head_dim, "dim": mc.dim,
                     "vocab": mc.vocab_size, "rope_theta": mc.rope_theta,
                     "rope_interleaved": mc.rope_interleaved, "context": mc.max_seq_len},
           "policies": [asdict(p) for p in policies], "docs": [],
           "machine": _machine(cfg.backend)}
    if command:
        res["command"] = command

    done = {}
    if cfg.resume and Path(cfg.resume).is_file():
        old = json.loads(Path(cfg.resume).read_text())
        oc = old.get("config", {})
        for k in ("model", "prefill", "n_cont", "n_query", "ratios", "eps", "sink", "backend"):
            if oc.get(k) != res["config"].get(k):
                raise ValueError(f"resume: {cfg.resume} has {k} = {oc.get(k)!r}, this run "
                                 f"{res['config'].get(k)!r}")
        want = {"full"} | {f"{p.label}@{r}" for p in policies if p.policy != "full"
                           for r in cfg.ratios}
        for d in old.get("docs", []):
            if d["name"] in cfg.docs and want <= set(d["nll"]):
                for part in ("nll", "rel_err", "kept"):
                    d[part] = {k: v for k, v in d[part].items() if k in want}
                done[d["name"]] = d
        if "validation" in old and cfg.validate:
            res["validation"] = old["validation"]
        if "calibration" in old:
            res["calibration"] = old["calibration"]
        if len(done) != len(old.get("docs", [])):
            raise ValueError(f"resume: {cfg.resume} has documents or policies this run does not "
                             "reuse (its similarity histograms cover all of its documents)")
        old_hist = (np.asarray(old["hist_keys"], np.int64), np.asarray(old["hist_values"], np.int64))
        res["resumed"] = {"from": str(cfg.resume), "docs": sorted(done),
                          "timings": old.get("timings", {})}
        log(f"[eval] resumed {len(done)} documents from {cfg.resume}")
    if cfg.validate and "validation" not in res:
        t0 = time.perf_counter()
        res["validation"] = validate_model(model, cfg)
        if cfg.backend != "numpy":
            n = 512 if cfg.model == "stories260k" else 1024
            toks = texts.load_tokens(res["validation"]["ppl_doc"], model.tokenizer, n + 1)
            res["validation"]["agreement"] = backend.numpy_agreement(toks, n * 3 // 4)
            a = res["validation"]["agreement"]
            log(f"[eval] torch vs NumPy forward: max |dNLL| {a['max_abs_nll_diff']:.2e} "
                f"(ppl {a['ppl_torch']:.4f} vs {a['ppl_numpy']:.4f})")
        timings["validation"] = time.perf_counter() - t0
    if cfg.validate:
        v = res["validation"]
        log(f"[eval] model check: ppl {v['ppl']:.2f} on {v['ppl_tokens']} tokens of "
            f"{v['ppl_doc']} (other RoPE layout: {v['ppl_other_rope']:.1f})")

    n_runs = 1 + len(cfg.ratios)
    bar = _Progress(len(cfg.docs) * (1 + n_runs), enabled=progress,
                    desc=f"eval {cfg.model}")
    nbins = len(SIM_BINS) - 1
    hist_k = np.zeros((nl, nbins), np.int64)
    hist_v = np.zeros((nl, nbins), np.int64)
    if done:
        hist_k += old_hist[0]
        hist_v += old_hist[1]
    t_prefill = t_cont = t_comp = 0.0
    weights = None
    if any(p.layer_budgets for p in policies):
        weights, res["calibration"] = calibrated_weights(cfg, backend, L, log)
        from .. import calibrate as _cal
        res["calibration"]["layer_slots"] = {str(r): _cal.layer_slots(weights, ratio=r, length=L)
                                             for r in cfg.ratios}
    try:
        for doc in cfg.docs:
            if doc in done:
                drec = done[doc]
                res["docs"].append(drec)
                bar.step(f"{doc}: resumed", n=1 + n_runs)
                continue
            drec = {"name": doc, "title": texts.DOCUMENTS[doc].title,
                    "kind": texts.DOCUMENTS[doc].kind}
            toks = np.asarray(texts.load_tokens(doc, model.tokenizer, L + nc + 1))
            drec["text_head"] = model.tokenizer.decode(toks[:24].tolist())
            # ---- 1. prefill (and the kvpress presses, from the same prefill)
            presses = {}
            if press_specs:
                from .torch_backend import make_press, press_ratio
                for r in cfg.ratios:
                    cr = press_ratio(reference.budget_from_ratio(r, L), L)
                    for spec in press_specs:
                        presses[f"{spec.press}@{r}"] = make_press(spec.press, cr)
            t0 = time.perf_counter()
            pre = backend.prefill(toks[:L], presses)
            t_prefill += time.perf_counter() - t0
            K, V, A = pre["k"], pre["v"], pre["scores"]
            press_caches = pre["press"]
            del pre
            # normalized scores: divide by the number of (causal, all-L) queries that see each token
            A_norm = [a / (L - np.arange(L))[None, :].astype(a.dtype) for a in A]
            # ---- 2. observations
            mk, mv, sk_mean, sv_mean = [], [], [], []
            for li in range(nl):
                sk = reference.adjacent_similarity(K[li])
                sv = reference.adjacent_similarity(V[li])
                hist_k[li] += np.histogram(sk, SIM_BINS)[0]
                hist_v[li] += np.histogram(sv, SIM_BINS)[0]
                mk.append((sk >= cfg.eps).mean(axis=1).tolist())    # per KV head
                mv.append((sv >= cfg.eps).mean(axis=1).tolist())
                sk_mean.append(float(sk.mean()))
                sv_mean.append(float(sv.mean()))
            drec["mergeable_keys"] = mk          # [layer][head]
            drec["mergeable_values"] = mv
            drec["mean_sim_keys"] = sk_mean
            drec["mean_sim_values"] = sv_mean
            bar.step(f"{doc}: prefill")
            # ---- 3. reference continuation over the full cache
            full_pref = [dict(keys=K[li], values=V[li],
                              lengths=np.full(mc.n_kv_heads, L, np.int32)) for li in range(nl)]
            t0 = time.perf_counter()
            ref = backend.score(toks[L:L + nc], toks[L + 1:L + nc + 1], L, [full_pref],
                                collect=nq)[0]
            t_cont += time.perf_counter() - t0
            nll_ref = ref["nll"]
            got = ref.pop("collected")
            qn = [got[li]["q"] for li in range(nl)]
            kn = [got[li]["k"] for li in range(nl)]
            vn = [got[li]["v"] for li in range(nl)]
            o_ref = [got[li]["o"] for li in range(nl)]
            del got, ref
            drec["nll"] = {"full": nll_ref.tolist()}
            drec["rel_err"] = {}
            drec["kept"] = {}
            bar.step(f"{doc}: full")

            def attn_errors(comp, count_bias):
                errs = []
                for li in range(nl):
                    c = comp[li]
                    B = c["keys"].shape[1]
                    kk = np.concatenate([np.asarray(c["keys"], np.float32), kn[li]], axis=1)
                    vv = np.concatenate([np.asarray(c["values"], np.float32), vn[li]], axis=1)
                    oc, _ = masked_attention(qn[li], kk, vv, n_prefix=B,
                                             prefix_lengths=c["lengths"],
                                             prefix_counts=c.get("counts"),
                                             count_bias=count_bias)
                    errs.append(float(_rel_err(oc, o_ref[li]).mean()))
                return errs

            # ---- 4. policies: full, then per ratio all policies scored together
            for spec in policies:
                if spec.policy == "full":
                    errs = attn_errors(full_pref, False)
                    if max(errs) > 1e-5:
                        raise AssertionError(f"full policy differs from the full cache: {errs}")
                    drec["rel_err"]["full"] = errs
                    drec["kept"]["full"] = 1.0
            for r in cfg.ratios:
                keys, comps, cbs = [], [], []
                for spec in policies:
                    if spec.policy == "full":
                        continue
                    key = f"{spec.label}@{r}"
                    per_layer = None
                    if spec.layer_budgets:
                        from .. import calibrate as _cal
                        per_layer = _cal.layer_slots(weights, ratio=r, length=L)
                    t0 = time.perf_counter()
                    comp = compress_policy(spec, K, V, A, A_norm, ratio=r, sink=cfg.sink,
                                           eps=cfg.eps, per_layer=per_layer,
                                           press_caches=press_caches)
                    t_comp += time.perf_counter() - t0
                    drec["rel_err"][key] = attn_errors(comp, spec.count_bias)
                    drec["kept"][key] = float(np.mean([np.mean(c["lengths"]) for c in comp]) / L)
                    keys.append(key)
                    comps.append(comp)
                    cbs.append(spec.count_bias)
                t0 = time.perf_counter()
                scored = backend.score(toks[L:L + nc], toks[L + 1:L + nc + 1], L, comps,
                                       count_bias=cbs)
                t_cont += time.perf_counter() - t0
                for key, sres in zip(keys, scored):
                    drec["nll"][key] = sres["nll"].tolist()
                del comps, scored
                bar.step(f"{doc}: r={r}")
            del K, V, A, A_norm, press_caches
            res["docs"].append(drec)
            if cfg.checkpoint:
                save_json(dict(res, timings=dict(timings, prefill=t_prefill, continuation=t_cont,
                                                 compress=t_comp, partial=True),
                               sim_bins=SIM_BINS.tolist(), hist_keys=hist_k.tolist(),
                               hist_values=hist_v.tolist()), cfg.checkpoint)
    finally:
        bar.close()
    timings.update(prefill=t_prefill, continuation=t_cont, compress=t_comp)
    timings["total"] = time.perf_counter() - t_start
    res["timings"] = timings
    res["sim_bins"] = SIM_BINS.tolist()
    res["hist_keys"] = hist_k.tolist()
    res["hist_values"] = hist_v.tolist()
    return res


def _machine(backend: str) -> dict:
    m = {"cpu_count": os.cpu_count(), "numpy": np.__version__, "backend": backend,
         "blas_threads_env": {k: os.environ[k] for k in
                              ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
                              if k in os.environ}}
    if backend == "torch":
        import torch
        import transformers
        m.update(torch=torch.__version__, transformers=transformers.__version__,
                 torch_threads=torch.get_num_threads())
        try:
            import kvpress  # noqa: F401
            from importlib.metadata import version
            m["kvpress"] = version("kvpress")
        except Exception:
            pass
    return m


def save_json(res: dict, path) -> None:
    Path(path).write_text(json.dumps(res, indent=None, separators=(",", ":")))


def summarize(res: dict) -> dict:
    """Aggregate over documents: ppl per policy key (exp of the mean NLL over all
    continuation tokens of the documents that have the key), mean relative error per layer and
    overall."""
    docs = res["docs"]
    keys = []
    for d in docs:
        keys += [k for k in d["nll"] if k not in keys]
    out = {"ppl": {}, "ppl_doc": {}, "rel_err_layer": {}, "rel_err": {}, "kept": {},
           "n_docs": {}}
    for k in keys:
        dk = [d for d in docs if k in d["nll"]]
        allnll = np.concatenate([np.asarray(d["nll"][k]) for d in dk])
        out["ppl"][k] = float(np.exp(allnll.mean()))
        out["n_docs"][k] = len(dk)
        out["ppl_doc"][k] = [float(np.exp(np.mean(d["nll"][k]))) if k in d["nll"] else None
                             for d in docs]
        if all(k in d["rel_err"] for d in dk):
            e = np.asarray([d["rel_err"][k] for d in dk])     # [docs, layers]
            out["rel_err_layer"][k] = e.mean(axis=0).tolist()
            out["rel_err"][k] = float(e.mean())
            out["kept"][k] = float(np.mean([d["kept"][k] for d in dk]))
    mk = np.asarray([[np.mean(h) for h in d["mergeable_keys"]] for d in docs])   # [docs, layers]
    mv = np.asarray([[np.mean(h) for h in d["mergeable_values"]] for d in docs])
    out["mergeable_keys"] = mk.tolist()
    out["mergeable_values"] = mv.tolist()
    if len(docs) > 1:
        c = np.corrcoef(mk)
        iu = np.triu_indices(len(docs), 1)
        out["persistence_corr_mean"] = float(np.nanmean(c[iu]))
        out["persistence_corr_min"] = float(np.nanmin(c[iu]))
    return out


def paired(docs: list, a: str, b: str) -> Optional[dict]:
    """Paired per-token NLL difference ``a - b`` (negative: ``a`` better) over the documents that
    scored both: mean; standard error over tokens (treats tokens as independent); standard
    error over documents (the per-document mean differences; honest when tokens of one
    document are correlated); number of documents where ``a`` has the lower perplexity."""
    dk = [d for d in docs if a in d["nll"] and b in d["nll"]]
    if not dk:
        return None
    per = [np.asarray(d["nll"][a]) - np.asarray(d["nll"][b]) for d in dk]
    allv = np.concatenate(per)
    means = np.asarray([x.mean() for x in per])
    n, nd = allv.size, len(per)
    return {"mean": float(allv.mean()),
            "se_tok": float(allv.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
            "se_doc": float(means.std(ddof=1) / np.sqrt(nd)) if nd > 1 else float("nan"),
            "tokens": int(n), "docs": int(nd), "wins": int((means < 0).sum())}
