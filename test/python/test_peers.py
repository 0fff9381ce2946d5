"""The torch / kvpress harness of ``python -m kvmerge.eval --peers kvpress`` and the retrieval task,
on the real stories260K model (shared/data; seconds). SmolLM2 is not needed."""
from __future__ import annotations

import json

import numpy as np
import pytest

from kvmerge import texts
from kvmerge.eval import retrieval as R
from kvmerge.eval.run import EvalConfig, NumpyBackend, paired, run_eval, summarize
from kvmerge.eval.torch_backend import PRESS_NAMES, press_ratio


# ---------------------------------------------------------------------------- no model needed
def test_press_ratio_keeps_exactly_the_budget():
    for L in (7, 100, 320, 2048, 4096, 8000, 8191):
        for B in sorted({1, 2, L // 3, L // 2, (7 * L) // 20, int(np.ceil(0.35 * L)), L - 1, L}):
            if B < 1:
                continue
            cr = press_ratio(B, L)
            assert 0 <= cr < 1
            assert max(1, int(L * (1 - cr))) == B, (L, B)   # kvpress's compute_n_kept
    with pytest.raises(ValueError, match="budget"):
        press_ratio(0, 10)


def _doc(name, nll):
    return {"name": name, "nll": {k: list(v) for k, v in nll.items()}, "rel_err": {}, "kept": {},
            "mergeable_keys": [[0.5]], "mergeable_values": [[0.1]]}


def test_paired_standard_errors():
    rng = np.random.default_rng(0)
    docs = []
    for i in range(5):
        base = rng.normal(3, 1, 50)
        docs.append(_doc(f"d{i}", {"full": base, "a@0.5": base + 0.1 + rng.normal(0, 0.01, 50),
                                   "b@0.5": base}))
    p = paired(docs, "a@0.5", "b@0.5")
    d = np.concatenate([np.asarray(x["nll"]["a@0.5"]) - np.asarray(x["nll"]["b@0.5"])
                        for x in docs])
    assert p["tokens"] == 250 and p["docs"] == 5 and p["wins"] == 0
    assert p["mean"] == pytest.approx(d.mean())
    assert p["se_tok"] == pytest.approx(d.std(ddof=1) / np.sqrt(250))
    means = [np.mean(np.asarray(x["nll"]["a@0.5"]) - np.asarray(x["nll"]["b@0.5"])) for x in docs]
    assert p["se_doc"] == pytest.approx(np.std(means, ddof=1) / np.sqrt(5))
    # a key missing in some documents: pooled over the documents that have both
    docs.append(_doc("extra", {"full": [1.0, 2.0]}))
    assert paired(docs, "a@0.5", "b@0.5")["docs"] == 5
    s = summarize({"docs": docs})
    assert s["n_docs"]["a@0.5"] == 5 and s["n_docs"]["full"] == 6
    assert s["ppl_doc"]["a@0.5"][-1] is None
    assert paired(docs, "a@0.5", "nope@0.5") is None


def test_wilson_interval():
    lo, hi = R.wilson(0, 10)
    assert lo == 0.0 and 0.25 < hi < 0.35
    lo, hi = R.wilson(10, 10)
    assert hi == 1.0 and 0.65 < lo < 0.75
    lo, hi = R.wilson(5, 10)
    assert lo == pytest.approx(1 - hi) and 0.2 < lo < 0.25


def test_power_windows_do_not_overlap():
    names = texts.EVAL_DOCS + texts.POWER_DOCS + [texts.CALIB_DOC]
    names = [n for n in names if texts.DOCUMENTS[n].resolve().is_file()]
    if len(names) < 10:
        pytest.skip("texts not available")
    assert len(set(names)) == len(names)
    spans = {n: texts.char_span(n) for n in names}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            fa, sa, ea = spans[a]
            fb, sb, eb = spans[b]
            assert not (fa == fb and sa < eb and sb < ea), (a, b)
    for n in names:
        assert len(texts.load_text(n)) > 12000, n


def test_make_trials_deterministic():
    cfg = R.RetrievalConfig(lengths=(2048, 4096), depths=(0.1, 0.9), trials=(2, 1))
    a, b = R.make_trials(cfg), R.make_trials(cfg)
    assert a == b and len(a) == 2 * 2 + 1 * 2
    assert {t["length"] for t in a} == {2048, 4096}
    assert all(len(t["key"]) == 5 and t["key"].isdigit() for t in a)
    assert R.make_trials(R.RetrievalConfig(seed=1, lengths=(2048,), trials=(1,)))[0]["key"] != \
        R.make_trials(R.RetrievalConfig(seed=0, lengths=(2048,), trials=(1,)))[0]["key"]
    with pytest.raises(ValueError, match="trials"):
        R.make_trials(R.RetrievalConfig(lengths=(1, 2, 3), trials=(1, 2)))


# ---------------------------------------------------------------------------- stories260K
@pytest.fixture(scope="module")
def model():
    from kvmerge.models.llama2c import default_dir
    if not (default_dir() / "stories260K.bin").is_file():
        pytest.skip("shared/data/stories260K not found")
    from kvmerge.eval.run import load_model
    return load_model("stories260k")


def test_build_trial_places_the_needle(model):
    tk = model.tokenizer
    hay = texts.load_tokens("pride_ch10", tk, 600)
    prev = -1
    for depth in (0.0, 0.25, 0.5, 0.75, 1.0):
        t = R.build_trial(tk, hay, 400, depth, "48213")
        assert len(t["context"]) == 400
        text = R.NEEDLE.format(key="48213")
        needle = tk.encode(text, bos=False) if R._takes_bos(tk) else tk.encode(text)
        n = len(needle)
        assert t["context"][t["needle_at"]:t["needle_at"] + n] == needle
        assert t["needle_at"] >= prev
        prev = t["needle_at"]
        assert 0.0 <= t["depth"] <= 1.0
        assert "48213" in tk.decode(t["context"])
        assert tk.decode(t["answer"]).strip() == "48213"
    with pytest.raises(ValueError, match="depth"):
        R.build_trial(tk, hay, 400, 1.5, "1")
    with pytest.raises(ValueError, match="haystack"):
        R.build_trial(tk, hay[:100], 400, 0.5, "1")


torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
kvpress = pytest.importorskip("kvpress")


@pytest.fixture(scope="module")
def backend(model):
    from kvmerge.eval.torch_backend import TorchBackend
    return TorchBackend(model)


@pytest.fixture(scope="module")
def toks(model):
    return np.asarray(texts.load_tokens("tinystories", model.tokenizer, 400))


def test_torch_backend_reproduces_numpy_forward(model, backend, toks):
    ag = backend.numpy_agreement(toks[:300], 200)
    assert ag["max_abs_nll_diff"] < 1e-4
    pre = backend.prefill(toks[:256])
    npre = NumpyBackend(model).prefill(toks[:256])
    for li in range(model.cfg.n_layers):
        # H2O scores: every causal query spreads probability 1 over each of the G heads
        np.testing.assert_allclose(pre["scores"][li], npre["scores"][li], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(pre["scores"][li].sum(-1), model.cfg.group * 256, rtol=1e-4)


def test_masked_and_count_bias_scoring_matches_numpy(model, backend, toks):
    """Per-head lengths below the capacity (masked slots) and log(count) biases: the torch scoring
    equals KVCache.from_prefix in the NumPy forward."""
    from kvmerge import reference
    L = 256
    pre = NumpyBackend(model).prefill(toks[:L])
    caches = [[reference.compress(k, v, a, policy="kvmerger", ratio=0.5, mode="threshold")
               for k, v, a in zip(pre["k"], pre["v"], pre["scores"])],
              [reference.compress(k, v, a, policy="kvmerger", ratio=0.35)
               for k, v, a in zip(pre["k"], pre["v"], pre["scores"])]]
    assert any((c["lengths"] < c["keys"].shape[1]).any() for c in caches[0])
    # the HF model's q/k use the half-split RoPE layout: same caches, key dims permuted
    half = [[dict(c, keys=np.concatenate([c["keys"][..., 0::2], c["keys"][..., 1::2]], -1))
             for c in cache] for cache in caches]
    inp, tgt = toks[L:L + 32], toks[L + 1:L + 33]
    for cb in (False, True):
        got = backend.score(inp, tgt, L, half, count_bias=[cb, cb])
        want = NumpyBackend(model).score(inp, tgt, L, caches, count_bias=[cb, cb])
        for g, w in zip(got, want):
            np.testing.assert_allclose(g["nll"], w["nll"], atol=2e-4)
            assert (g["hit"] == w["hit"]).mean() > 0.95


@pytest.mark.parametrize("name", PRESS_NAMES)
def test_one_prefill_serves_every_press_as_kvpress_does(model, backend, toks, name):
    """Our multi-press hook gives each press's cache exactly as kvpress's own `with press(model)`
    (eager attention), and our scoring equals transformers' over that cache (token by token for
    PyramidKV, whose layers differ in length)."""
    from transformers import DynamicCache
    from kvmerge import wholemodel
    from kvmerge.eval.torch_backend import make_press
    from kvmerge.models.llama import log_softmax_nll
    L, B, T = 256, 128, 24
    pre = backend.prefill(toks[:L], {name: make_press(name, press_ratio(B, L))})
    ours = pre["press"][name]
    hf = wholemodel.hf_model(model, attn_implementation="eager")
    press = make_press(name, press_ratio(B, L))
    cache = DynamicCache(config=hf.config)
    with torch.inference_mode(), press(hf):
        hf.model(input_ids=torch.tensor(toks[:L])[None], past_key_values=cache, use_cache=True)
    lens = [cache.layers[i].keys.shape[2] for i in range(model.cfg.n_layers)]
    for li in range(model.cfg.n_layers):
        np.testing.assert_allclose(cache.layers[li].keys[0].numpy(), ours[li]["keys"], atol=1e-5)
        np.testing.assert_allclose(cache.layers[li].values[0].numpy(), ours[li]["values"],
                                   atol=1e-5)
    if name != "PyramidKV":
        assert set(lens) == {B}
    else:
        assert len(set(lens)) > 1 and abs(np.mean(lens) - B) <= 1
    with torch.inference_mode():
        if len(set(lens)) == 1:
            lg = hf(input_ids=torch.tensor(toks[L:L + T])[None], past_key_values=cache,
                    position_ids=torch.arange(L, L + T)[None]).logits[0].numpy()
        else:   # eager builds its mask from layer 0's length even for one query: use sdpa
            hf.set_attn_implementation("sdpa")
            lg = np.concatenate([hf(input_ids=torch.tensor(toks[L + i:L + i + 1])[None],
                                    past_key_values=cache,
                                    position_ids=torch.tensor([[L + i]])).logits[0].numpy()
                                 for i in range(T)])
    want = log_softmax_nll(lg, toks[L + 1:L + T + 1])
    got = backend.score(toks[L:L + T], toks[L + 1:L + T + 1], L, [ours])[0]["nll"]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_observed_attention_proxy_equals_eager_scores(model, backend, toks):
    """The column-sum proxy gives ObservedAttentionPress the scores it computes from eager's full
    attention matrix."""
    from kvmerge import wholemodel
    from kvmerge.eval.torch_backend import _STATE
    L = 200
    hf = wholemodel.hf_model(model, attn_implementation="eager")
    with torch.inference_mode():
        out = hf.model(input_ids=torch.tensor(toks[:L])[None], output_attentions=True)
    press = kvpress.ObservedAttentionPress(compression_ratio=0.5)
    _STATE.reset()
    _STATE.want_scores = True
    try:
        with torch.inference_mode():
            backend.hf.model(input_ids=torch.tensor(toks[:L])[None])
        for li, att in enumerate(out.attentions):
            proxy = _STATE.colsum[li][:, :, None, :]
            k = torch.zeros(1, model.cfg.n_kv_heads, L, model.cfg.head_dim)
            a = press.score(None, None, k, k, att, {})
            b = press.score(None, None, k, k, proxy, {})
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    finally:
        _STATE.reset()


def test_peers_eval_and_report(model, tmp_path):
    """A small --peers kvpress run: our rows equal the NumPy backend's, every press is a row at
    exactly the budget, and the report has the peers, paired, power and retrieval sections."""
    from kvmerge.eval.report import write_report
    kw = dict(model="stories260k", docs=["tinystories"], prefill=160, n_cont=48, n_query=16,
              validate=False, only=["h2o", "kvmerger", "kvmerger-norm+layers"])
    res_t = run_eval(EvalConfig(backend="torch", presses=["ObservedAttention", "SnapKV",
                                                          "PyramidKV"], **kw),
                     progress=False, model=model, log=lambda *_: None)
    res_n = run_eval(EvalConfig(backend="numpy", **kw), progress=False, model=model,
                     log=lambda *_: None)
    dt, dn = res_t["docs"][0], res_n["docs"][0]
    for k in dn["nll"]:
        assert np.abs(np.asarray(dt["nll"][k]) - np.asarray(dn["nll"][k])).max() < 0.05, k
    for r in (0.5, 0.35):
        for p in ("ObservedAttention", "SnapKV"):
            assert dt["kept"][f"kvpress:{p}@{r}"] == pytest.approx(np.ceil(r * 160) / 160)
        assert abs(dt["kept"][f"kvpress:PyramidKV@{r}"] - np.ceil(r * 160) / 160) < 0.01
    ret = R.run_retrieval(R.RetrievalConfig(model="stories260k", lengths=(200,), depths=(0.5,),
                                            trials=(1,), policies=["full", "h2o"],
                                            presses=["ObservedAttention"]),
                          model=model, log=lambda *_: None)
    assert set(ret["trials"][0]["results"]) == {"full", "h2o@0.5", "h2o@0.35",
                                                "kvpress:ObservedAttention@0.5",
                                                "kvpress:ObservedAttention@0.35"}
    ret["command"] = "retrieval"
    res_t["command"] = "peers"
    json.dumps(res_t)
    json.dumps(ret)
    md = write_report(res_t, tmp_path / "results.md", command="peers", figures=False,
                      power=res_t, retrieval=ret)
    for s in ("### Peers: NVIDIA kvpress", "### Paired comparisons", "### More scored tokens",
              "## Retrieval: passkey", "| kvpress:ObservedAttention |", "s.e. doc"):
        assert s in md, s
