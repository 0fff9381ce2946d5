"""Real-frontend modules: Hugging Face attention blocks exported by torch-mlir.

Builds the modules a compiler engineer gets from a real model — Hugging Face ``transformers``
Llama-family attention (``LlamaAttention``) and whole decoder layers, driven the way
``LlamaModel.forward`` drives them (rotary embedding, ``create_causal_mask``, ``DynamicCache``)
— for prefill (L tokens, returns the layer output and the ``[B, Hkv, L, D]`` caches) and for a
decode step (new tokens attending to ``tensor.concat(cache, new)``, returns the grown cache),
with ``attn_implementation`` eager or sdpa, f32/f16/bf16, batch 1 or more, and optionally a
run-time ``attention_mask`` argument (padding). Each is exported with torch-mlir's fx importer to
linalg-on-tensors (:func:`export`) and run in torch eager on the same inputs (:func:`reference`).

Families: ``llama`` (SmolLM2 / Llama), ``qwen2`` (q/k/v projections with bias) and ``mistral``.
Needs ``torch``, ``transformers`` and ``torch-mlir`` (python/requirements-torch.txt).

``scripts/export_frontends.py`` writes these modules as lit inputs (weights elided);
``test/python/test_frontends.py`` compiles them with kvmerge and compares with torch.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Optional

import numpy as np

__all__ = ["Spec", "build", "export", "reference", "capture", "strip_resources", "SHAPES"]

#: Model shapes: ``tiny`` for committed lit inputs (small weights), ``smollm2`` = SmolLM2-135M's
#: attention (hidden 576, 9 query / 3 KV heads, head_dim 64).
SHAPES = {
    "tiny": dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                 intermediate_size=96),
    "smollm2": dict(hidden_size=576, num_attention_heads=9, num_key_value_heads=3, head_dim=64,
                    intermediate_size=1536),
}


@dataclasses.dataclass(frozen=True)
class Spec:
    """One exported module."""
    family: str = "llama"        # llama | qwen2 | mistral
    kind: str = "layer_prefill"  # {attn,layer}_{prefill,decode}
    impl: str = "eager"          # eager | sdpa
    dtype: str = "f32"           # f32 | f16 | bf16
    shape: str = "tiny"          # key of SHAPES
    batch: int = 1
    tokens: int = 16             # prefill: L; decode: new tokens
    cache: int = 16              # decode: tokens already in the cache
    padding: bool = False        # a run-time attention_mask [B, cache + tokens] argument
    position: Optional[int] = None  # decode: position of the first new token (default: cache)

    @property
    def name(self) -> str:
        n = f"{self.family}_{self.kind}_{self.impl}_{self.dtype}_{self.shape}_b{self.batch}"
        if self.kind.endswith("prefill"):
            n += f"_l{self.tokens}"
        else:
            n += f"_c{self.cache}_t{self.tokens}"
        if self.position is not None:
            n += f"_p{self.position}"
        return n + ("_padded" if self.padding else "")

    @property
    def decode(self) -> bool:
        return self.kind.endswith("decode")


def _torch_dtype(name):
    import torch
    return {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[name]


def _config(spec: Spec):
    import transformers
    cls = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config,
           "mistral": transformers.MistralConfig}[spec.family]
    kw = dict(SHAPES[spec.shape], num_hidden_layers=1, vocab_size=128,
              max_position_embeddings=4096, rms_norm_eps=1e-5)
    if spec.family == "mistral":
        kw["sliding_window"] = None
    cfg = cls(**kw)
    cfg._attn_implementation = spec.impl
    return cfg


def _classes(family):
    from transformers.models.llama import modeling_llama as ll
    from transformers.models.mistral import modeling_mistral as mm
    from transformers.models.qwen2 import modeling_qwen2 as qm
    mod = {"llama": (ll, "Llama"), "qwen2": (qm, "Qwen2"), "mistral": (mm, "Mistral")}[family]
    m, p = mod
    return getattr(m, p + "Attention"), getattr(m, p + "DecoderLayer"), getattr(m, p + "RotaryEmbedding")


def build(spec: Spec, seed: int = 0):
    """The torch module of ``spec`` (random weights from ``seed``) and its example inputs."""
    import torch
    from transformers.cache_utils import DynamicCache
    from transformers.masking_utils import create_causal_mask

    cfg = _config(spec)
    Attention, Layer, Rotary = _classes(spec.family)
    dtype = _torch_dtype(spec.dtype)
    torch.manual_seed(seed)
    is_layer = spec.kind.startswith("layer")

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Layer(cfg, 0) if is_layer else Attention(cfg, 0)
            self.rotary = Rotary(cfg)
            # torch-mlir's export needs persistent buffers (the rotary inv_freq is not).
            for n, b in list(self.rotary.named_buffers()):
                self.rotary.register_buffer(n, b.clone(), persistent=True)

        def forward(self, hidden, *rest):
            rest = list(rest)
            past = (rest.pop(0), rest.pop(0)) if spec.decode else None
            attention_mask = rest.pop(0) if spec.padding else None
            cache = DynamicCache(config=cfg)
            start = 0
            if spec.decode:
                cache.update(past[0], past[1], 0)
                start = spec.cache if spec.position is None else spec.position
            cache_position = torch.arange(start, start + hidden.shape[1])
            position_ids = cache_position.unsqueeze(0).expand(hidden.shape[0], -1)
            mask = create_causal_mask(config=cfg, inputs_embeds=hidden,
                                      attention_mask=attention_mask,
                                      cache_position=cache_position, past_key_values=cache,
                                      position_ids=position_ids)
            pe = self.rotary(hidden, position_ids)
            if is_layer:
                out = self.block(hidden, attention_mask=mask, position_ids=position_ids,
                                 past_key_values=cache, use_cache=True,
                                 cache_position=cache_position, position_embeddings=pe)
            else:
                out, _ = self.block(hidden, position_embeddings=pe, attention_mask=mask,
                                    past_key_values=cache, cache_position=cache_position)
            layer = cache.layers[0]
            return out, layer.keys, layer.values

    model = Block().eval().to(dtype)
    # Non-trivial norm weights and biases (HF initializes them to 1 / 0).
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias") or "norm" in n:
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "norm" in n else 0.0))
    g = torch.Generator().manual_seed(seed + 1)
    B, T, H = spec.batch, spec.tokens, cfg.hidden_size
    inputs = [torch.randn(B, T, H, generator=g).to(dtype)]
    if spec.decode:
        kv = (B, cfg.num_key_value_heads, spec.cache, cfg.head_dim)
        inputs += [torch.randn(kv, generator=g).to(dtype), torch.randn(kv, generator=g).to(dtype)]
    if spec.padding:
        total = spec.cache + T if spec.decode else T
        am = torch.ones(B, total, dtype=torch.int64)
        for b in range(1, B):  # left padding: sequence b starts 2*b tokens late
            am[b, : min(2 * b, total - 1)] = 0
        inputs.append(am)
    return model, inputs


def export(spec: Spec, seed: int = 0) -> str:
    """torch-mlir linalg-on-tensors text of ``spec`` (function ``@main``)."""
    import torch
    from torch_mlir import fx
    model, inputs = build(spec, seed)
    with torch.no_grad():
        mod = fx.export_and_import(model, *inputs, output_type="linalg-on-tensors",
                                   func_name="main")
    return str(mod)


def _to_numpy(t):
    import ml_dtypes
    import torch
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def reference(spec: Spec, seed: int = 0):
    """(inputs, outputs) of ``spec`` in torch eager, as NumPy arrays."""
    import torch
    model, inputs = build(spec, seed)
    with torch.no_grad():
        outs = model(*inputs)
    return [_to_numpy(t) for t in inputs], [_to_numpy(t.contiguous()) for t in outs]


def capture(spec: Spec, seed: int = 0, past=None):
    """torch eager on ``spec`` recording what attention reads.

    Returns ``(inputs, outputs, qkv)``: NumPy inputs and outputs as :func:`reference` gives them and
    ``qkv = (q, k, v)``, the post-RoPE ``[B, H, T, D]`` query, key and value states that the
    attention of the module consumed (keys/values including the cache of a decode step).
    ``past``, for a decode spec, replaces the random cache inputs (``(keys, values)`` arrays).
    """
    import torch
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    model, inputs = build(spec, seed)
    if past is not None:
        inputs[1] = _from_numpy(past[0], inputs[1].dtype)
        inputs[2] = _from_numpy(past[1], inputs[2].dtype)
    seen = []
    import importlib
    mod = importlib.import_module(f"transformers.models.{spec.family}.modeling_{spec.family}")

    def recording(original):
        def attention(module, q, k, v, *args, **kwargs):
            seen.append((q.detach().clone(), k.detach().clone(), v.detach().clone()))
            return original(module, q, k, v, *args, **kwargs)
        return attention

    # The module reads eager_attention_forward from its module, other
    # implementations from the registry, at call time.
    if spec.impl == "eager":
        original = mod.eager_attention_forward
        mod.eager_attention_forward = recording(original)
    else:
        original = ALL_ATTENTION_FUNCTIONS[spec.impl]
        ALL_ATTENTION_FUNCTIONS[spec.impl] = recording(original)
    try:
        with torch.no_grad():
            outs = model(*inputs)
    finally:
        if spec.impl == "eager":
            mod.eager_attention_forward = original
        else:
            ALL_ATTENTION_FUNCTIONS[spec.impl] = original
    (q, k, v), = seen
    return ([_to_numpy(t) for t in inputs], [_to_numpy(t.contiguous()) for t in outs],
            tuple(_to_numpy(t.contiguous()) for t in (q, k, v)))


def _from_numpy(a, dtype):
    import ml_dtypes
    import torch
    a = np.asarray(a)
    if a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)


def strip_resources(text: str, keep_bytes: int = 256) -> str:
    """Drops the weight blobs (``dialect_resources`` entries larger than ``keep_bytes``) so the
    module stays small; the IR still parses and every pass runs on it, it just cannot execute.
    Small resources (the rotary ``inv_freq``, masks) are kept."""
    start = text.find("{-#")
    if start < 0:
        return text
    body, tail = text[:start], text[start:]
    kept = [m.group(0) for m in re.finditer(r'^\s*[\w.]+: "0x[0-9A-Fa-f]*",?\s*$', tail, re.M)
            if len(m.group(0).split('"')[1]) - 2 <= 2 * keep_bytes]
    if not kept:
        return body.rstrip() + "\n"
    kept = [k.rstrip().rstrip(",") for k in kept]
    return (body.rstrip() + "\n\n{-#\n  dialect_resources: {\n    builtin: {\n"
            + ",\n".join(kept) + "\n    }\n  }\n#-}\n")
