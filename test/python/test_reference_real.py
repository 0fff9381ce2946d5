"""The reference on REAL key/value states: Karpathy's stories260K (llama2.c format, see
shared/data/README.md) run on real TinyStories text by a tiny inline NumPy forward pass.

The forward pass here is deliberately minimal (the project's model code lives elsewhere); it is
checked only by the model's next-token loss on in-distribution text being far below uniform.
"""
import math
import os
import struct

import numpy as np
import pytest

from kvmerge import reference as R

DATA = os.environ.get("KVMERGE_DATA", "/work/shared/data")
MODEL = os.path.join(DATA, "stories260K", "stories260K.bin")
TOKENIZER = os.path.join(DATA, "stories260K", "tok512.bin")
TEXT = os.path.join(DATA, "texts", "tinystories_sample.txt")
N_TOKENS = 192

pytestmark = pytest.mark.skipif(
    not all(os.path.exists(p) for p in (MODEL, TOKENIZER, TEXT)), reason="stories260K data not available"
)


def load_model(path):
    with open(path, "rb") as f:
        raw = f.read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", raw[:28])
    w = np.frombuffer(raw, dtype="<f4", offset=28)
    hd = dim // n_heads
    kvd = n_kv * hd
    shapes = [("emb", (abs(vocab), dim)), ("rms_att", (n_layers, dim)), ("wq", (n_layers, dim, dim)),
              ("wk", (n_layers, kvd, dim)), ("wv", (n_layers, kvd, dim)), ("wo", (n_layers, dim, dim)),
              ("rms_ffn", (n_layers, dim)), ("w1", (n_layers, hidden, dim)), ("w2", (n_layers, dim, hidden)),
              ("w3", (n_layers, hidden, dim)), ("rms_final", (dim,))]
    m, off = {}, 0
    for name, shp in shapes:
        n = int(np.prod(shp))
        m[name] = w[off:off + n].reshape(shp).astype(np.float64)
        off += n
    m.update(dim=dim, n_layers=n_layers, n_heads=n_heads, n_kv=n_kv, hd=hd, vocab=abs(vocab))
    return m


def load_tokenizer(path, vocab_size=512):
    with open(path, "rb") as f:
        raw = f.read()
    off = 4
    vocab, scores = [], []
    for _ in range(vocab_size):
        score, n = struct.unpack("<fi", raw[off:off + 8])
        off += 8
        vocab.append(raw[off:off + n])
        scores.append(score)
        off += n
    return vocab, scores


def encode(text, vocab, scores):
    """llama2.c's BPE encode: BOS, dummy-prefix space, code points (byte fallback), greedy merges."""
    lookup = {t: i for i, t in enumerate(vocab)}
    toks = [1, lookup[b" "]]
    for ch in text:
        b = ch.encode("utf-8")
        if b in lookup:
            toks.append(lookup[b])
        else:
            toks.extend(x + 3 for x in b)
    while True:
        best, best_i, best_id = -1e10, -1, -1
        for i in range(len(toks) - 1):
            j = lookup.get(vocab[toks[i]] + vocab[toks[i + 1]], -1)
            if j != -1 and scores[j] > best:
                best, best_i, best_id = scores[j], i, j
        if best_i == -1:
            return toks
        toks[best_i:best_i + 2] = [best_id]


def rope(x, hd):
    """x [H, T, hd]; llama2.c RoPE on adjacent pairs, theta 10000."""
    T = x.shape[1]
    i = np.arange(0, hd, 2)
    freq = 1.0 / 10000.0 ** (i / hd)
    ang = np.arange(T)[:, None] * freq[None, :]
    c, s = np.cos(ang), np.sin(ang)
    out = x.copy()
    out[..., 0::2] = x[..., 0::2] * c - x[..., 1::2] * s
    out[..., 1::2] = x[..., 0::2] * s + x[..., 1::2] * c
    return out


def rmsnorm(x, w):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-5) * w


def forward(m, toks):
    """Causal prefill; returns logits [T, vocab] and per layer (q [Hq,T,hd], k, v [Hkv,T,hd])."""
    T = len(toks)
    H, Hkv, hd = m["n_heads"], m["n_kv"], m["hd"]
    G = H // Hkv
    x = m["emb"][toks]
    qkv = []
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(m["n_layers"]):
        xb = rmsnorm(x, m["rms_att"][l])
        q = rope((xb @ m["wq"][l].T).reshape(T, H, hd).transpose(1, 0, 2), hd)
        k = rope((xb @ m["wk"][l].T).reshape(T, Hkv, hd).transpose(1, 0, 2), hd)
        v = (xb @ m["wv"][l].T).reshape(T, Hkv, hd).transpose(1, 0, 2)
        qkv.append((q, k, v))
        kk, vv = np.repeat(k, G, axis=0), np.repeat(v, G, axis=0)
        att = q @ kk.transpose(0, 2, 1) / math.sqrt(hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = (att @ vv).transpose(1, 0, 2).reshape(T, H * hd)
        x = x + o @ m["wo"][l].T
        xb = rmsnorm(x, m["rms_ffn"][l])
        h1, h3 = xb @ m["w1"][l].T, xb @ m["w3"][l].T
        x = x + (h1 / (1 + np.exp(-h1)) * h3) @ m["w2"][l].T
    logits = rmsnorm(x, m["rms_final"]) @ m["emb"].T
    return logits, qkv


@pytest.fixture(scope="module")
def real():
    m = load_model(MODEL)
    vocab, scores = load_tokenizer(TOKENIZER, m["vocab"])
    with open(TEXT, encoding="utf-8") as f:
        text = f.read()
    toks = encode(text[:1200], vocab, scores)[:N_TOKENS + 1]
    assert len(toks) == N_TOKENS + 1
    logits, qkv = forward(m, toks[:-1])
    lg = logits - logits.max(-1, keepdims=True)
    logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
    nll = -np.mean(logp[np.arange(N_TOKENS), toks[1:]])
    return dict(nll=nll, qkv=qkv, vocab=m["vocab"])


def test_forward_pass_is_real(real):
    # uniform guessing is log(512) = 6.24 nats; the trained model on TinyStories text is far below
    assert real["nll"] < 2.5, real["nll"]


@pytest.mark.parametrize("layer", [0, 2, 4])
def test_real_kv_compression(layer, real):
    q, k, v = real["qkv"][layer]
    T = N_TOKENS
    # observe all but the last 16 queries; hold those 16 out as "next queries"
    P = T - 16
    qo, ko, vo = q[:, :P], k[:, :P], v[:, :P]
    a = R.accumulated_scores(qo, ko)
    np.testing.assert_allclose(a.sum(axis=1), 2 * P, rtol=1e-10)  # G = 2 query heads per KV head
    kf, vf, af = ko.astype(np.float32), vo.astype(np.float32), a.astype(np.float32)
    sim = R.adjacent_similarity(kf)
    assert np.all(np.isfinite(sim)) and np.all(np.abs(sim) <= 1)
    errs = {}
    for ratio in (0.5, 0.35):
        B = math.ceil(ratio * P)
        for policy in ("kvmerger", "h2o", "streaming"):
            out = R.compress(kf, vf, af, policy=policy, ratio=ratio)
            assert out["lengths"].tolist() == [B] * 4
            assert out["counts"].sum(axis=1).tolist() == ([P] * 4 if policy == "kvmerger" else [B] * 4)
            rel = []
            for i in range(P, T):  # next queries: full attention over the prefix vs compressed cache
                full = R.attention(q[:, i].astype(np.float32), kf, vf, [P] * 4)
                comp = R.attention(q[:, i].astype(np.float32), out["keys"], out["values"], out["lengths"])
                rel.append(np.linalg.norm(comp - full) / np.linalg.norm(full))
            errs[(policy, ratio)] = float(np.mean(rel))
            assert np.isfinite(errs[(policy, ratio)])
        thr = R.compress(kf, vf, af, ratio=ratio, mode="threshold", eps=0.75)
        assert np.all(thr["lengths"] <= B) and np.all(thr["counts"].sum(axis=1) == P)
    # sanity, not a quality claim: every policy stays well away from garbage (relative error < 1)
    assert all(e < 1.0 for e in errs.values()), errs
    print(f"layer {layer}: " + ", ".join(f"{p}@{r}: {e:.3f}" for (p, r), e in sorted(errs.items())))
