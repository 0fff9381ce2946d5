"""A whole real Llama (stories260K: 5 layers, GQA 8:4, llama2.c weights from shared/data) through
kvmerge: HF transformers -> torch-mlir (prefill + decode) -> raise + compress every layer ->
kvmerge's CPU pipeline (and IREE). Checked against torch eager, the NumPy forward,
kvmerge.reference and ``python -m kvmerge.eval``'s perplexities."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("torch_mlir")
pytest.importorskip("transformers")

from kvmerge import reference, texts, wholemodel  # noqa: E402
from kvmerge.models.llama import KVCache  # noqa: E402

PROMPT = "Once upon a time, there was a little girl"


@pytest.fixture(scope="module")
def spec():
    return wholemodel.ModelSpec.load("stories260k")


@pytest.fixture(scope="module")
def prompt(spec):
    return list(spec.model.tokenizer.encode(PROMPT))


@pytest.fixture(scope="module")
def full(spec, prompt):
    return spec.build(len(prompt), policy="full", budget="1.0", room=24)


@pytest.fixture(scope="module")
def kvmerger(spec, prompt):
    return spec.build(len(prompt), policy="kvmerger", budget="0.5", room=24)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / np.abs(b).max()


def test_full_cache_logits_equal_torch_and_numpy(spec, prompt, full):
    import torch
    g = wholemodel.Generator(full, spec)
    got = g.prefill(prompt)
    with torch.no_grad():
        lt = spec.hf(torch.tensor([prompt])).logits[0].numpy()
    ln = spec.model.forward(prompt, KVCache.empty(spec.model.cfg))
    assert rel(got, lt[-1]) < 1e-5 and rel(got, ln[-1]) < 1e-5
    # The decode step over the cache the prefill returned: the next position's logits.
    nxt = int(np.argmax(got))
    step = g.step([nxt])[-1]
    with torch.no_grad():
        lt2 = spec.hf(torch.tensor([prompt + [nxt]])).logits[0, -1].numpy()
    assert rel(step, lt2) < 1e-5


def test_full_cache_greedy_text_equals_numpy(spec, prompt, full):
    out, stats = wholemodel.Generator(full, spec).generate(prompt, 20, progress=False)
    assert out == spec.model.generate(prompt, 20)
    assert stats["decode_tok_s"] > 0 and stats["cache_bytes"] > 0


def test_every_layer_compresses_like_the_reference(spec, prompt, kvmerger):
    """All 5 prefill and 5 decode attentions are raised; each layer's compressed cache is
    reference.compress of that layer's keys, values and accumulated attention."""
    n = spec.model.cfg.n_layers
    assert kvmerger.attentions == 2 * n
    assert kvmerger.slots < len(prompt)
    g = wholemodel.Generator(kvmerger, spec)
    g.prefill(prompt)
    col = {}
    spec.model.forward(prompt, KVCache.empty(spec.model.cfg), collect=col, logits=False)
    for li in range(n):
        ref = reference.compress(col["k"][li], col["v"][li], col["scores"][li],
                                 policy="kvmerger", ratio=0.5)
        got = g.meta[li]
        np.testing.assert_array_equal(got["positions"].reshape(ref["positions"].shape),
                                      ref["positions"], err_msg=f"layer {li}")
        np.testing.assert_array_equal(g.lengths[li].reshape(-1), ref["lengths"], err_msg=f"layer {li}")
        B = ref["keys"].shape[1]
        # HF keeps RoPE pairs as halves (d, d + D/2); our loader keeps them interleaved.
        D = ref["keys"].shape[2]
        half = np.r_[0:D:2, 1:D:2] if spec.model.cfg.rope_interleaved else np.arange(D)
        np.testing.assert_allclose(g.caches[2 * li][0, :, :B], ref["keys"][..., half], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(g.caches[2 * li + 1][0, :, :B], ref["values"], rtol=1e-5, atol=1e-5)


def test_generation_over_compressed_cache(spec, prompt, kvmerger):
    g = wholemodel.Generator(kvmerger, spec)
    out, stats = g.generate(prompt, 12, progress=False)
    assert len(out) == 12
    # Each decode step adds one slot per layer and head after the compressed prefix.
    assert all((l == kvmerger.slots + 11).all() for l in g.lengths)
    full_bytes = spec.model.cfg.n_layers * spec.model.cfg.n_kv_heads * (len(prompt) + 11) \
        * spec.model.cfg.head_dim * 8
    assert stats["cache_bytes"] < full_bytes


@pytest.mark.parametrize("policy,ratio", [("full", None), ("h2o", 0.5), ("kvmerger", 0.35)])
def test_perplexity_equals_eval(spec, policy, ratio):
    """The compiled model's perplexity of a real text equals python -m kvmerge.eval's."""
    from kvmerge.eval import run as ev
    cfg = ev.quick_config(docs=list(texts.QUICK_DOCS)[:1], variants=False, validate=False)
    want = ev.summarize(ev.run_eval(cfg, progress=False, log=lambda *a: None, model=spec.model))
    key = policy if ratio is None else f"{policy}@{ratio}"
    got = wholemodel.perplexity(spec, cfg.docs, prefill=cfg.prefill, n_cont=cfg.n_cont,
                                policy=policy, ratio=ratio or 1.0)
    assert abs(got["ppl"] / want["ppl"][key] - 1) < 1e-3, (got["ppl"], want["ppl"][key])


@pytest.mark.parametrize("policy,budget", [("full", "1.0"), ("kvmerger", "0.5")])
def test_iree_generates_the_same_tokens(spec, prompt, request, policy, budget):
    """--kvmerge-export-upstream -> iree-compile -> IREE runtime: the same greedy tokens."""
    pytest.importorskip("iree.compiler")
    pytest.importorskip("iree.runtime")
    ours = request.getfixturevalue(policy)
    prog = spec.build(len(prompt), policy=policy, budget=budget, room=24, backend="iree")
    a, _ = wholemodel.Generator(prog, spec).generate(prompt, 12, progress=False)
    b, _ = wholemodel.Generator(ours, spec).generate(prompt, 12, progress=False)
    assert a == b


def test_bad_arguments(spec, prompt, kvmerger):
    with pytest.raises(ValueError, match="policy"):
        spec.build(4, policy="bogus")
    with pytest.raises(ValueError, match="backend"):
        spec.build(4, backend="tpu")
    with pytest.raises(ValueError, match="prompt_len"):
        spec.build(0)
    g = wholemodel.Generator(kvmerger, spec)
    with pytest.raises(RuntimeError, match="prefill"):
        g.step([1])
    with pytest.raises(ValueError, match="tokens"):
        g.prefill(prompt[:-1])
    g.prefill(prompt)
    with pytest.raises(ValueError, match="tokens"):
        g.step([1, 2])
    for _ in range(kvmerger.capacity - kvmerger.slots):
        g.step([1])
    with pytest.raises(RuntimeError, match="cache is full"):
        g.step([1])


def test_generate_cli(capsys):
    from kvmerge import generate
    assert generate.main(["--model", "stories260k", "--tokens", "8", "--check", "--no-progress",
                          "--policy", "h2o", "--budget", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "logits check" in out and "argmax equal: True" in out
    assert out.count(PROMPT) == 1 and "tok/s" in out
    with pytest.raises(SystemExit):
        generate.main(["--model", "stories260k", "--tokens", "0"])
