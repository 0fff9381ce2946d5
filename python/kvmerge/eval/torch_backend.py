"""PyTorch / kvpress backend of ``python -m kvmerge.eval`` (``--peers kvpress``).

The same model (SmolLM2-135M-Instruct from its GGUF, or stories260K) as a Hugging Face
``LlamaForCausalLM`` built by :func:`kvmerge.wholemodel.hf_model` (the q/k rows permuted to HF's
half-split RoPE layout: every dot product, distance and cosine between keys is unchanged, so the
compression policies and the attention errors see the same numbers as with the NumPy forward).
It runs the evaluation's protocol -- prefill ``L`` tokens, compress every layer's prefix once,
score the continuation over the compressed prefix plus the uncompressed new tokens -- for our
policies (``kvmerge.reference.compress``) **and for NVIDIA kvpress's presses**, from one prefill
per document:

* **Prefill** runs ``hf.model`` once with a forward hook on every attention layer that calls each
  press's own ``compress(module, hidden_states, keys, values, attentions, kwargs)`` -- what kvpress's
  ``with press(model):`` hook does, for several presses at a time (a press only rewrites the cache
  of the layer it has just run, so the prefill's hidden states do not depend on it: one prefill
  serves every press; ``test_peers.py`` checks the result equals kvpress's own context manager).
  The attention is our registered implementation ``kvmerge_eval``: causal softmax in query chunks
  that also sums each key's attention probabilities over the queries (the H2O scores of the spec).
  Its ``attn_weights`` are those column sums shaped ``[B, Hq, 1, L]``, so a press that reads the
  full attention matrix only through ``attentions.sum(2)`` (kvpress's ``ObservedAttentionPress``,
  also inside ``MergingPress``) gets exactly what it would get from ``attn_implementation="eager"``
  without an ``L x L`` matrix per head; every other press gets ``attentions=None`` and computes its
  own window attention from the hidden states (kvpress's path for sdpa models).
* **Scoring** builds one ``DynamicCache`` per group of compressed caches (batched, padded to the
  longest layer, padded and invalid slots masked), feeds the continuation with its true positions
  ``L + i`` and a causal mask built per layer from that layer's own cache length. transformers
  builds one mask for all layers from layer 0's length, which is wrong when layers keep different
  numbers of slots (PyramidKV, per-layer budgets): later layers would see future tokens.

Agreement with the NumPy forward is measured by every run (``validation``: max per-token NLL
difference on a real text) and reported.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..models.llama import log_softmax_nll

__all__ = ["ATTN_NAME", "TorchBackend", "make_press", "PRESS_NAMES", "press_ratio",
           "torch_available", "kvpress_available"]

ATTN_NAME = "kvmerge_eval"

#: kvpress presses of the comparison (label -> constructor name); defaults of kvpress 0.5.5
PRESS_NAMES = ["ObservedAttention", "ExpectedAttention", "Merging(ObservedAttention)", "TOVA",
               "SnapKV", "StreamingLLM", "PyramidKV", "KeyDiff", "Knorm"]


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def kvpress_available() -> bool:
    try:
        import kvpress  # noqa: F401
    except ImportError:
        return False
    return True


def press_ratio(budget: int, length: int) -> float:
    """kvpress ``compression_ratio`` (fraction removed) that keeps exactly ``budget`` of ``length``
    tokens (kvpress keeps ``int(length * (1 - compression_ratio))``)."""
    if not (1 <= budget <= length):
        raise ValueError(f"budget: {budget} not in [1, {length}]")
    if budget == length:
        return 0.0                       # kvpress: compression_ratio 0 keeps the cache as is
    return 1.0 - (budget + 0.5) / length


def make_press(name: str, compression_ratio: float):
    """A kvpress press by label (see :data:`PRESS_NAMES`), kvpress's default parameters."""
    import kvpress as kp
    simple = {"ObservedAttention": kp.ObservedAttentionPress,
              "ExpectedAttention": kp.ExpectedAttentionPress, "TOVA": kp.TOVAPress,
              "SnapKV": kp.SnapKVPress, "StreamingLLM": kp.StreamingLLMPress,
              "PyramidKV": kp.PyramidKVPress, "KeyDiff": kp.KeyDiffPress, "Knorm": kp.KnormPress}
    if name in simple:
        return simple[name](compression_ratio=compression_ratio)
    if name == "Merging(ObservedAttention)":
        return kp.MergingPress(press=kp.ObservedAttentionPress(compression_ratio=compression_ratio))
    raise ValueError(f"press: unknown kvpress press {name!r}; known: {', '.join(PRESS_NAMES)}")


def _reads_attention_sum(press) -> bool:
    """Presses whose score reads the prefill's attention matrix only as ``attentions.sum(2)``."""
    import kvpress as kp
    p = getattr(press, "press", press) if isinstance(press, kp.MergingPress) else press
    return isinstance(p, kp.ObservedAttentionPress)


# ----------------------------------------------------------------------------------- attention
class _State:
    def __init__(self):
        self.reset()

    def reset(self):
        self.want_scores = False
        self.colsum = {}        # layer -> [B, Hq, S] attention summed over the prefill's queries
        self.bias = {}          # layer -> [B, Hkv, n_prefix] additive prefix bias (0 / -inf / log count)
        self.collect = 0        # >0: keep q/k/v/out of the first `collect` new queries (batch 0)
        self.collected = {}
        self.chunk = 256


_STATE = _State()


def _causal_with_colsum(q, k, v, scale, chunk):
    """Causal attention of a fresh prefill in query chunks; also the per-query-head column sums of
    the probabilities. q [B, Hq, T, D], k/v [B, Hkv, T, D]."""
    import torch
    b, hq, t, d = q.shape
    hkv = k.shape[1]
    g = hq // hkv
    qg = q.reshape(b, hkv, g, t, d)
    out = torch.empty(b, hkv, g, t, v.shape[-1], dtype=q.dtype)
    col = torch.zeros(b, hkv, g, t, dtype=torch.float32)
    kt = k.transpose(-1, -2)[:, :, None]
    vv = v[:, :, None]
    for i0 in range(0, t, chunk):
        i1 = min(t, i0 + chunk)
        lg = torch.matmul(qg[:, :, :, i0:i1], kt[..., :i1]) * scale       # [B, Hkv, G, c, i1]
        fut = torch.arange(i1)[None, :] > torch.arange(i0, i1)[:, None]
        lg.masked_fill_(fut, float("-inf"))
        p = torch.softmax(lg, dim=-1, dtype=torch.float32)
        out[:, :, :, i0:i1] = torch.matmul(p.to(v.dtype), vv[:, :, :, :i1])
        col[..., :i1] += p.sum(dim=-2)
    return out.reshape(b, hq, t, -1), col.reshape(b, hq, t)


def _attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """``kvmerge_eval`` attention (see the module doc), with the argument order of transformers'
    ``sdpa_attention_forward`` (what kvpress's attention patch calls). Returns
    ``([B, T, Hq, D], weights)``."""
    import torch
    import torch.nn.functional as F
    st = _STATE
    b, hq, t, d = query.shape
    hkv, s = key.shape[1], key.shape[2]
    g = hq // hkv
    scale = float(scaling) if scaling is not None else 1.0 / math.sqrt(d)
    li = module.layer_idx
    if t == s:                                     # fresh prefill: plain causal attention
        if st.want_scores:
            out, col = _causal_with_colsum(query, key, value, scale, st.chunk)
            st.colsum[li] = col
            return out.transpose(1, 2).contiguous(), col[:, :, None, :]
        out = F.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scale,
                                             enable_gqa=True)
        return out.transpose(1, 2).contiguous(), None
    n_prefix = s - t
    mask = torch.zeros(b, hkv, t, s, dtype=query.dtype)
    pb = st.bias.get(li)
    if pb is not None:
        mask[..., :n_prefix] += pb[:, :, None, :]
    fut = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    mask[..., n_prefix:].masked_fill_(fut, float("-inf"))
    mask = mask[:, :, None].expand(b, hkv, g, t, s).reshape(b, hq, t, s)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scale,
                                         enable_gqa=True)
    if st.collect:
        n = st.collect
        st.collected[li] = dict(q=query[0, :, :n].numpy().copy(),
                                k=key[0, :, n_prefix:n_prefix + n].numpy().copy(),
                                v=value[0, :, n_prefix:n_prefix + n].numpy().copy(),
                                o=out[0, :, :n].numpy().copy())
    return out.transpose(1, 2).contiguous(), None


_REGISTERED = False


def _register():
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AttentionInterface
    AttentionInterface.register(ATTN_NAME, _attention)
    _REGISTERED = True


# ----------------------------------------------------------------------------------- backend
class TorchBackend:
    """Prefill / score through the HF model (float32, CPU). ``model``: a
    :class:`kvmerge.models.llama.LlamaModel` (its weights, config and tokenizer are used)."""

    name = "torch"

    def __init__(self, model, *, threads: Optional[int] = None, group: int = 8):
        import torch
        from .. import wholemodel
        _register()
        if threads:
            torch.set_num_threads(int(threads))
        self.model = model
        self.cfg = model.cfg
        self.tokenizer = model.tokenizer
        self.hf = wholemodel.hf_model(model, attn_implementation="eager")
        try:
            self.hf.set_attn_implementation(ATTN_NAME)
        except Exception:  # older transformers: the config attribute is read at call time
            self.hf.config._attn_implementation = ATTN_NAME
        assert self.hf.config._attn_implementation == ATTN_NAME
        self.group = int(group)
        lm = self.hf.model
        for layer in lm.layers:           # what kvpress's press(model) sets up
            layer.self_attn.rotary_emb = lm.rotary_emb

    # ------------------------------------------------------------------ prefill
    def prefill(self, tokens, presses: Optional[dict] = None, *, chunk: int = 256) -> dict:
        """Prefill ``tokens``; returns ``k``/``v`` per layer ``[Hkv, L, D]`` (post-RoPE, HF
        layout), ``scores`` per layer ``[Hkv, L]`` (H2O: summed over all causal queries and the G
        query heads of each KV head) and, per press label, the press's compressed cache as a list of
        per-layer dicts (``keys``, ``values``, ``lengths``)."""
        import torch
        from transformers import DynamicCache
        st = _STATE
        st.reset()
        st.want_scores = True
        st.chunk = int(chunk)
        presses = presses or {}
        out_press = {name: [None] * self.cfg.n_layers for name in presses}
        for p in presses.values():
            p.post_init_from_model(self.hf)
        sums = {name: _reads_attention_sum(p) for name, p in presses.items()}

        def hook(module, args, kwargs, output):
            li = module.layer_idx
            cache = kwargs["past_key_values"]
            keys, values = cache.layers[li].keys, cache.layers[li].values
            hs = kwargs["hidden_states"]
            for name, p in presses.items():
                att = output[1] if sums[name] else None
                k, v = p.compress(module, hs, keys, values, att, kwargs)
                k = k[0].numpy().copy()
                out_press[name][li] = dict(keys=k, values=v[0].numpy().copy(),
                                           lengths=np.full(k.shape[0], k.shape[1], np.int32))
            return output

        hooks = []
        if presses:
            hooks = [lay.self_attn.register_forward_hook(hook, with_kwargs=True)
                     for lay in self.hf.model.layers]
        try:
            cache = DynamicCache(config=self.hf.config)
            with torch.inference_mode():
                self.hf.model(input_ids=torch.as_tensor(np.asarray(tokens, np.int64))[None],
                              past_key_values=cache, use_cache=True)
        finally:
            for h in hooks:
                h.remove()
            st.want_scores = False
        hkv = self.cfg.n_kv_heads
        res = {"k": [], "v": [], "scores": [], "press": out_press}
        for li in range(self.cfg.n_layers):
            res["k"].append(cache.layers[li].keys[0].numpy().copy())
            res["v"].append(cache.layers[li].values[0].numpy().copy())
            col = st.colsum[li][0]
            res["scores"].append(col.reshape(hkv, -1, col.shape[-1]).sum(1).numpy())
        st.colsum = {}
        return res

    # ------------------------------------------------------------------ scoring
    def score(self, inputs, targets, pos: int, caches: list, *, count_bias=None,
              collect: int = 0) -> list:
        """Teacher-forced scoring of ``inputs`` (positions ``pos, pos+1, ...``) over each compressed
        prefix in ``caches`` (a list of per-layer dict lists as ``reference.compress`` returns:
        ``keys``, ``values``, ``lengths``, optionally ``counts``). Returns per cache a dict with
        ``nll`` (of ``targets``) and ``hit`` (argmax == target). ``collect``: for the first cache
        only (run alone), also ``q``/``k``/``v``/``o`` per layer of the first ``collect`` queries."""
        import torch
        from transformers import DynamicCache
        inputs = np.asarray(inputs, np.int64)
        targets = np.asarray(targets, np.int64)
        t = inputs.shape[0]
        count_bias = list(count_bias) if count_bias is not None else [False] * len(caches)
        st = _STATE
        results = []
        group = 1 if collect else self.group
        for c0 in range(0, len(caches), group):
            sub = caches[c0:c0 + group]
            cb = count_bias[c0:c0 + group]
            n = len(sub)
            cache = DynamicCache(config=self.hf.config)
            st.reset()
            st.collect = int(collect)
            for li in range(self.cfg.n_layers):
                bmax = max(np.asarray(c[li]["keys"]).shape[1] for c in sub)
                hkv, _, d = np.asarray(sub[0][li]["keys"]).shape
                dv = np.asarray(sub[0][li]["values"]).shape[-1]
                K = torch.zeros(n, hkv, bmax, d)
                V = torch.zeros(n, hkv, bmax, dv)
                bias = torch.full((n, hkv, bmax), float("-inf"))
                for j, c in enumerate(sub):
                    kk = np.asarray(c[li]["keys"], np.float32)
                    B = kk.shape[1]
                    K[j, :, :B] = torch.from_numpy(kk)
                    V[j, :, :B] = torch.from_numpy(np.asarray(c[li]["values"], np.float32))
                    lens = np.asarray(c[li].get("lengths", np.full(hkv, B)), np.int64)
                    valid = torch.arange(bmax)[None, :] < torch.from_numpy(lens)[:, None]
                    b = torch.zeros(hkv, bmax)
                    if cb[j] and c[li].get("counts") is not None:
                        cnt = np.asarray(c[li]["counts"], np.float32)
                        lc = np.where(cnt > 0, np.log(np.maximum(cnt, 1.0)), 0.0).astype(np.float32)
                        b[:, :B] = torch.from_numpy(lc)
                    bias[j] = torch.where(valid, b, torch.full_like(b, float("-inf")))
                cache.update(K, V, li)
                st.bias[li] = bias
            ids = torch.from_numpy(inputs)[None].expand(n, t)
            posn = torch.arange(pos, pos + t)[None].expand(n, t)
            with torch.inference_mode():
                h = self.hf.model(input_ids=ids, past_key_values=cache, position_ids=posn,
                                  use_cache=True).last_hidden_state
                for j in range(n):
                    lg = self.hf.lm_head(h[j]).numpy()
                    results.append({"nll": log_softmax_nll(lg, targets),
                                    "hit": lg.argmax(-1) == targets})
                    del lg
            if collect:
                results[-1]["collected"] = st.collected
            st.reset()
            del cache, h
        return results

    # ------------------------------------------------------------------ agreement
    def numpy_agreement(self, tokens, split: int) -> dict:
        """Per-token NLL of ``tokens[split+1:]`` after a ``split``-token prefill, by this backend
        (full cache) and by the NumPy forward; the maximum absolute difference."""
        from ..models.llama import KVCache
        toks = np.asarray(tokens, np.int64)
        pre = self.prefill(toks[:split])
        full = [dict(keys=k, values=v, lengths=np.full(k.shape[0], k.shape[1], np.int32))
                for k, v in zip(pre["k"], pre["v"])]
        r = self.score(toks[split:-1], toks[split + 1:], split, [full])[0]
        c = KVCache.empty(self.cfg)
        self.model.forward(toks[:split], c, logits=False)
        lg = self.model.forward(toks[split:-1], c)
        nn = log_softmax_nll(lg, toks[split + 1:])
        return {"tokens": int(len(toks)), "split": int(split),
                "max_abs_nll_diff": float(np.abs(nn - r["nll"]).max()),
                "ppl_torch": float(np.exp(r["nll"].mean())), "ppl_numpy": float(np.exp(nn.mean()))}
