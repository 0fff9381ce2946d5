"""A small, vectorised NumPy float32 forward pass of the Llama architecture.

Shared by the two real models of the evaluation:

* SmolLM2-135M-Instruct read from its GGUF file (:mod:`kvmerge.models.gguf_llama`),
* Karpathy's stories260K in llama2.c format (:mod:`kvmerge.models.llama2c`).

Architecture: pre-norm RMSNorm blocks, rotary position embedding (RoPE) on q/k,
grouped-query attention (query head ``i`` reads KV head ``i // G``), SwiGLU MLP
(``w2(silu(w1 x) * w3 x)``), final RMSNorm and an output projection.

KV cache (:class:`KVCache`): per layer a *prefix* (the slots produced by
``kvmerge.reference.compress`` -- possibly compressed, with a per-KV-head number of
valid slots ``lengths[h]``; slots ``>= lengths[h]`` are masked) followed by the
tokens appended since (uncompressed, all valid).  Cached keys are post-RoPE, so a
merged slot keeps the RoPE phase it was built with; new tokens get RoPE at their
true absolute position ``cache.pos`` (the number of tokens the model has seen, not
the number of slots).

Everything runs in float32.  Attention is computed in query chunks so a long
prefill does not materialise a full ``[Hq, T, T]`` matrix at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

__all__ = ["LlamaConfig", "LlamaLayer", "LlamaModel", "KVCache", "LayerCache",
           "rope", "masked_attention", "log_softmax_nll"]


@dataclass
class LlamaConfig:
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden_dim: int
    vocab_size: int
    max_seq_len: int
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    #: True: RoPE rotates adjacent pairs (2i, 2i+1) (Meta / llama2.c / llama.cpp
    #: "NORM" layout, which is what GGUF llama q/k weights are permuted to).
    #: False: NeoX / HF "rotate_half" layout, pairs (i, i + D/2).
    rope_interleaved: bool = True
    name: str = "llama"

    @property
    def group(self) -> int:
        return self.n_heads // self.n_kv_heads


@dataclass
class LlamaLayer:
    attn_norm: np.ndarray        # [dim]
    wqkv: np.ndarray             # [dim, (Hq + 2 Hkv) * D]   (x @ wqkv)
    wo: np.ndarray               # [Hq * D, dim]
    ffn_norm: np.ndarray         # [dim]
    w13: np.ndarray              # [dim, 2 * hidden]  (gate | up)
    w2: np.ndarray               # [hidden, dim]


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def make_layer(attn_norm, wq, wk, wv, wo, ffn_norm, w1, w2, w3) -> LlamaLayer:
    """Build a layer from weights in the usual ``[out, in]`` (nn.Linear) layout."""
    wqkv = np.concatenate([np.asarray(wq, np.float32), np.asarray(wk, np.float32),
                           np.asarray(wv, np.float32)], axis=0).T
    w13 = np.concatenate([np.asarray(w1, np.float32), np.asarray(w3, np.float32)], axis=0).T
    return LlamaLayer(attn_norm=_f32(attn_norm), wqkv=_f32(wqkv), wo=_f32(np.asarray(wo).T),
                      ffn_norm=_f32(ffn_norm), w13=_f32(w13), w2=_f32(np.asarray(w2).T))


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    ms = np.mean(x * x, axis=-1, keepdims=True, dtype=np.float32)
    return (x * (1.0 / np.sqrt(ms + np.float32(eps)))) * w


def rope_tables(positions: np.ndarray, head_dim: int, theta: float):
    """cos/sin tables ``[T, D/2]`` for absolute ``positions`` (float64 angles, f32 out)."""
    inv = 1.0 / (float(theta) ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    ang = np.asarray(positions, dtype=np.float64)[:, None] * inv[None, :]
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, interleaved: bool) -> np.ndarray:
    """Rotate ``x [H, T, D]`` with tables ``[T, D/2]``."""
    if interleaved:
        x0 = x[..., 0::2]
        x1 = x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out
    half = x.shape[-1] // 2
    x0 = x[..., :half]
    x1 = x[..., half:]
    return np.concatenate([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1)


def _softmax_inplace(s: np.ndarray) -> np.ndarray:
    s -= s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return s


def masked_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, *, n_prefix: int = 0,
                     prefix_lengths: Optional[np.ndarray] = None,
                     prefix_counts: Optional[np.ndarray] = None, count_bias: bool = False,
                     q_offset: Optional[int] = None, scale: Optional[float] = None,
                     want_probs_sum: bool = False, chunk: int = 512):
    """Grouped-query attention of new queries over ``[prefix slots | earlier new | current]``.

    q: ``[Hq, T, D]``; k, v: ``[Hkv, S, D]`` where the first ``n_prefix`` columns are
    prefix slots (column ``j`` valid iff ``j < prefix_lengths[h]``) and the remaining
    ``S - n_prefix`` columns are uncompressed tokens, of which the last ``T`` are the
    current queries' own tokens (causal).  ``q_offset`` = index (among the
    uncompressed columns) of the first query's own token; default ``S - n_prefix - T``.

    Returns ``out [Hq, T, Dv]`` and, if ``want_probs_sum``, ``[Hkv, S]``: attention
    probabilities summed over the T queries and the G query heads of each KV head.
    """
    hq, t, d = q.shape
    hkv, s, _ = k.shape
    g = hq // hkv
    n_new = s - n_prefix
    if q_offset is None:
        q_offset = n_new - t
    scale = np.float32(1.0 / np.sqrt(d) if scale is None else scale)
    # static (query-independent) bias over the prefix: length mask, optional log(count)
    pbias = None
    if n_prefix:
        pbias = np.zeros((hkv, n_prefix), np.float32)
        if prefix_lengths is not None:
            valid = np.arange(n_prefix)[None, :] < np.asarray(prefix_lengths)[:, None]
            pbias[~valid] = -np.inf
        if count_bias and prefix_counts is not None:
            c = np.asarray(prefix_counts, np.float32)
            with np.errstate(divide="ignore"):
                pbias += np.where(c > 0, np.log(np.maximum(c, 1.0)), 0.0).astype(np.float32)
    qg = q.reshape(hkv, g, t, d)
    kt = np.swapaxes(k, 1, 2)[:, None]                  # [Hkv, 1, D, S]
    vv = v[:, None]                                     # [Hkv, 1, S, Dv]
    out = np.empty((hkv, g, t, v.shape[-1]), np.float32)
    psum = np.zeros((hkv, s), np.float32) if want_probs_sum else None
    col_new = np.arange(n_new)
    for c0 in range(0, t, chunk):
        c1 = min(t, c0 + chunk)
        sc = np.matmul(qg[:, :, c0:c1] * scale, kt)     # [Hkv, G, c, S]
        if pbias is not None:
            sc[..., :n_prefix] += pbias[:, None, None, :]
        # causal over the uncompressed columns: query i (own column q_offset+i) sees cols <= it
        own = q_offset + np.arange(c0, c1)
        future = col_new[None, :] > own[:, None]        # [c, n_new]
        if future.any():
            sc[..., n_prefix:][:, :, future] = -np.inf
        _softmax_inplace(sc)
        out[:, :, c0:c1] = np.matmul(sc, vv)
        if psum is not None:
            psum += sc.sum(axis=(1, 2))
    return out.reshape(hq, t, -1), psum


@dataclass
class LayerCache:
    prefix_k: np.ndarray      # [Hkv, B, D]
    prefix_v: np.ndarray      # [Hkv, B, Dv]
    prefix_lengths: np.ndarray  # [Hkv] i32
    prefix_counts: Optional[np.ndarray]  # [Hkv, B] or None
    new_k: np.ndarray         # [Hkv, N, D]
    new_v: np.ndarray         # [Hkv, N, Dv]


@dataclass
class KVCache:
    """Per-layer cache + absolute position of the next token."""
    layers: list = field(default_factory=list)
    pos: int = 0
    count_bias: bool = False

    @classmethod
    def empty(cls, cfg: LlamaConfig) -> "KVCache":
        z = lambda n: np.zeros((cfg.n_kv_heads, n, cfg.head_dim), np.float32)  # noqa: E731
        return cls([LayerCache(z(0), z(0), np.zeros(cfg.n_kv_heads, np.int32), None, z(0), z(0))
                    for _ in range(cfg.n_layers)], 0)

    @classmethod
    def from_prefix(cls, prefixes, pos: int, count_bias: bool = False) -> "KVCache":
        """``prefixes``: one dict per layer as returned by ``reference.compress``
        (keys, values, lengths, optionally counts).  ``pos``: number of tokens the
        prefix summarises (= absolute position of the next token)."""
        layers = []
        for p in prefixes:
            k = np.asarray(p["keys"], np.float32)
            v = np.asarray(p["values"], np.float32)
            hkv, _, d = k.shape
            layers.append(LayerCache(
                k, v, np.asarray(p["lengths"], np.int32),
                None if p.get("counts") is None else np.asarray(p["counts"]),
                np.zeros((hkv, 0, d), np.float32), np.zeros((hkv, 0, v.shape[-1]), np.float32)))
        return cls(layers, int(pos), count_bias)

    def n_slots(self) -> int:
        lc = self.layers[0]
        return lc.prefix_k.shape[1] + lc.new_k.shape[1]


class LlamaModel:
    def __init__(self, cfg: LlamaConfig, tok_emb: np.ndarray, layers, final_norm: np.ndarray,
                 output: Optional[np.ndarray] = None, tokenizer=None):
        self.cfg = cfg
        self.tok_emb = _f32(tok_emb)                         # [V, dim]
        self.layers = list(layers)
        self.final_norm = _f32(final_norm)
        self.output = self.tok_emb if output is None else _f32(output)   # [V, dim]
        self.tokenizer = tokenizer

    # ------------------------------------------------------------------ forward
    def forward(self, tokens, cache: Optional[KVCache] = None, *, collect: Optional[dict] = None,
                collect_layers=None, logits: bool | str = True, chunk: int = 512):
        """Run ``tokens`` (1-D ints) through the model, appending to ``cache``.

        ``collect``: if a dict is given, per layer lists are filled with what the
        evaluation needs: ``"k"``/``"v"`` post-RoPE keys/values of these tokens
        ``[Hkv, T, D]``, ``"q"`` post-RoPE queries ``[Hq, T, D]``, ``"scores"``
        accumulated attention ``[Hkv, S]`` over all columns attended (for a fresh
        prefill: the H2O scores, summed over all T causal queries and the G heads),
        ``"attn_out"`` per-head attention output ``[Hq, T, Dv]``.  Restrict to some
        layers with ``collect_layers``.  ``logits``: True (all positions), "last", or
        False (returns the final hidden state instead).
        """
        cfg = self.cfg
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        t = tokens.shape[0]
        if cache is None:
            cache = KVCache.empty(cfg)
        positions = cache.pos + np.arange(t)
        cos, sin = rope_tables(positions, cfg.head_dim, cfg.rope_theta)
        hq, hkv, d = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        want = set(collect_layers) if collect_layers is not None else None
        if collect is not None:
            for key in ("k", "v", "q", "scores", "attn_out"):
                collect.setdefault(key, [None] * cfg.n_layers)
        x = self.tok_emb[tokens]                             # [T, dim]
        for li, (lw, lc) in enumerate(zip(self.layers, cache.layers)):
            h = rms_norm(x, lw.attn_norm, cfg.norm_eps)
            qkv = h @ lw.wqkv                                # [T, (Hq+2Hkv)D]
            q = qkv[:, : hq * d].reshape(t, hq, d).transpose(1, 0, 2)
            k = qkv[:, hq * d: (hq + hkv) * d].reshape(t, hkv, d).transpose(1, 0, 2)
            v = np.ascontiguousarray(qkv[:, (hq + hkv) * d:].reshape(t, hkv, d).transpose(1, 0, 2))
            q = rope(q, cos, sin, cfg.rope_interleaved)
            k = rope(k, cos, sin, cfg.rope_interleaved)
            lc.new_k = np.concatenate([lc.new_k, k], axis=1) if lc.new_k.shape[1] else k
            lc.new_v = np.concatenate([lc.new_v, v], axis=1) if lc.new_v.shape[1] else v
            n_prefix = lc.prefix_k.shape[1]
            if n_prefix:
                kall = np.concatenate([lc.prefix_k, lc.new_k], axis=1)
                vall = np.concatenate([lc.prefix_v, lc.new_v], axis=1)
            else:
                kall, vall = lc.new_k, lc.new_v
            grab = collect is not None and (want is None or li in want)
            o, psum = masked_attention(q, kall, vall, n_prefix=n_prefix,
                                       prefix_lengths=lc.prefix_lengths,
                                       prefix_counts=lc.prefix_counts,
                                       count_bias=cache.count_bias, want_probs_sum=grab,
                                       chunk=chunk)
            if grab:
                collect["k"][li] = k
                collect["v"][li] = v
                collect["q"][li] = q
                collect["scores"][li] = psum
                collect["attn_out"][li] = o
            x = x + o.transpose(1, 0, 2).reshape(t, hq * d) @ lw.wo
            h = rms_norm(x, lw.ffn_norm, cfg.norm_eps)
            gu = h @ lw.w13
            hid = cfg.hidden_dim
            gate = gu[:, :hid]
            act = gate / (1.0 + np.exp(-gate)) * gu[:, hid:]
            x = x + act @ lw.w2
        cache.pos += t
        self.last_cache = cache
        if logits is False:
            return x
        hfin = rms_norm(x if logits is True else x[-1:], self.final_norm, cfg.norm_eps)
        return hfin @ self.output.T

    # ------------------------------------------------------------------ helpers
    def nll(self, tokens, cache: Optional[KVCache] = None, *, chunk: int = 512):
        """Per-token negative log-likelihood of ``tokens[1:]`` given ``tokens[:-1]``
        (and the cache, if given).  Returns ``(nll [T-1], cache)``."""
        tokens = np.asarray(tokens, dtype=np.int64)
        lg = self.forward(tokens[:-1], cache, chunk=chunk)
        return log_softmax_nll(lg, tokens[1:]), self.last_cache

    def perplexity(self, tokens, cache: Optional[KVCache] = None) -> float:
        nll, _ = self.nll(tokens, cache)
        return float(np.exp(nll.mean()))

    def generate(self, prompt_tokens, n: int, stop=None):
        """Greedy decoding with the KV cache (one token at a time)."""
        cache = KVCache.empty(self.cfg)
        lg = self.forward(prompt_tokens, cache, logits="last")
        out = []
        for _ in range(n):
            nxt = int(np.argmax(lg[-1]))
            if stop is not None and nxt in stop:
                break
            out.append(nxt)
            lg = self.forward([nxt], cache, logits="last")
        return out


def log_softmax_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``-log softmax(logits)[i, targets[i]]`` in float64 for accuracy."""
    lg = np.asarray(logits, np.float64)
    m = lg.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(lg - m).sum(axis=-1)) + m[:, 0]
    return lse - lg[np.arange(lg.shape[0]), np.asarray(targets)]
