"""Real-frontend modules: Hugging Face attention blocks exported by torch-mlir.

Builds the modules a compiler engineer gets from a real model — Hugging Face ``transformers``
Llama-family attention (``LlamaAttention``) and whole decoder layers, driven the way
``LlamaModel.forward`` drives them (rotary embedding, ``create_causal_mask``, ``DynamicCache``)
— for prefill (L tokens, returns the layer output and the ``[B, Hkv, L, D]`` caches) and for a
decode step (new tokens attending to ``tensor.concat(cache, new)``, returns the grown cache),
with ``attn_implementation`` eager or sdpa, f32/f16/bf16, batch 1 or more, and optionally a
run-time ``attention_mask`` argument (padding). Each is exported with torch-mlir's fx importer to
linalg-on-tensors (:func:`export`) and run in torch eager on the same inputs (:func:`reference`).

Families (:data:`FAMILIES`): ``llama`` (SmolLM2 / Llama), ``qwen2`` (q/k/v projections with
bias), ``mistral``, ``qwen3`` and ``olmo2`` (q/k norms), ``gemma``, ``gemma2`` (soft-capped logits
in eager: not attention kvmerge can raise, and it says so), ``granite`` (its own attention scale)
and ``phi3`` (fused qkv projection).
Needs ``torch``, ``transformers`` and ``torch-mlir`` (python/requirements-torch.txt).

``scripts/export_frontends.py`` writes these modules as lit inputs (weights elided);
``test/python/test_frontends.py`` compiles them with kvmerge and compares with torch.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Optional

import numpy as np

__all__ = ["Spec", "build", "export", "reference", "capture", "strip_resources", "SHAPES", "FAMILIES",
           "kvmerge_opt", "raise_and_run", "rel_error", "check"]

#: Model shapes: ``tiny`` for committed lit inputs (small weights), ``smollm2`` = SmolLM2-135M's
#: attention (hidden 576, 9 query / 3 KV heads, head_dim 64); ``mha`` (no GQA: ``repeat_kv`` is
#: the identity), ``mqa`` (one KV head) and ``odd`` (G = 3, head_dim 24: not a multiple of the
#: vector width, scale 1/sqrt(24)).
SHAPES = {
    "tiny": dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                 intermediate_size=96),
    "smollm2": dict(hidden_size=576, num_attention_heads=9, num_key_value_heads=3, head_dim=64,
                    intermediate_size=1536),
    "mha": dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=4, head_dim=16,
                intermediate_size=96),
    "mqa": dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                intermediate_size=96),
    "odd": dict(hidden_size=96, num_attention_heads=6, num_key_value_heads=2, head_dim=24,
                intermediate_size=96),
}


@dataclasses.dataclass(frozen=True)
class Spec:
    """One exported module."""
    family: str = "llama"        # a key of FAMILIES
    kind: str = "layer_prefill"  # {attn,layer}_{prefill,decode}
    impl: str = "eager"          # eager | sdpa
    dtype: str = "f32"           # f32 | f16 | bf16
    shape: str = "tiny"          # key of SHAPES
    batch: int = 1
    tokens: int = 16             # prefill: L; decode: new tokens
    cache: int = 16              # decode: tokens already in the cache
    padding: bool = False        # a run-time attention_mask [B, cache + tokens] argument
    position: Optional[int] = None  # decode: position of the first new token (default: cache)
    dynamic: bool = False        # export with a symbolic token count (prefill L / decode cache)

    @property
    def name(self) -> str:
        n = f"{self.family}_{self.kind}_{self.impl}_{self.dtype}_{self.shape}_b{self.batch}"
        if self.kind.endswith("prefill"):
            n += f"_l{self.tokens}"
        else:
            n += f"_c{self.cache}_t{self.tokens}"
        if self.position is not None:
            n += f"_p{self.position}"
        return n + ("_padded" if self.padding else "") + ("_dyn" if self.dynamic else "")

    @property
    def decode(self) -> bool:
        return self.kind.endswith("decode")


def _torch_dtype(name):
    import torch
    return {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[name]


#: Model families: transformers module, class prefix, and what their attention does differently.
FAMILIES = {
    "llama": ("llama", "Llama"),        # SmolLM2 / Llama: GQA, RoPE, causal
    "qwen2": ("qwen2", "Qwen2"),        # q/k/v projections with bias
    "mistral": ("mistral", "Mistral"),
    "qwen3": ("qwen3", "Qwen3"),        # RMSNorm on each head of q and k before RoPE
    "gemma": ("gemma", "Gemma"),        # GeLU MLP, (1 + w) norms, scaled embeddings
    "gemma2": ("gemma2", "Gemma2"),     # query_pre_attn_scalar; eager soft-caps the logits (tanh)
    "granite": ("granite", "Granite"),  # attention_multiplier instead of 1/sqrt(D)
    "phi3": ("phi3", "Phi3"),           # one fused qkv projection, sliced
    "olmo2": ("olmo2", "Olmo2"),        # RMSNorm on the whole q and k projections
}


def _config(spec: Spec):
    import transformers
    module, prefix = FAMILIES[spec.family]
    cls = getattr(transformers, prefix + "Config")
    kw = dict(SHAPES[spec.shape], num_hidden_layers=1, vocab_size=128,
              max_position_embeddings=4096, rms_norm_eps=1e-5)
    if spec.family in ("mistral", "qwen3", "gemma2"):
        kw["sliding_window"] = None
    if spec.family == "gemma2":
        kw.update(query_pre_attn_scalar=kw["head_dim"], attn_logit_softcapping=50.0,
                  final_logit_softcapping=None, layer_types=["full_attention"])
    if spec.family == "granite":
        kw["attention_multiplier"] = 0.2   # not 1/sqrt(head_dim): the scale must come from the IR
    if spec.family == "phi3":
        del kw["head_dim"]                 # Phi-3 derives it from hidden / heads
    cfg = cls(**kw)
    cfg._attn_implementation = spec.impl
    return cfg


def _head_dim(cfg) -> int:
    return getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads


def _classes(family):
    import importlib
    module, prefix = FAMILIES[family]
    m = importlib.import_module(f"transformers.models.{module}.modeling_{module}")
    return getattr(m, prefix + "Attention"), getattr(m, prefix + "DecoderLayer"), getattr(m, prefix + "RotaryEmbedding")


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
                if isinstance(out, tuple):  # some layers (Granite) still return (hidden,)
                    out = out[0]
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
        kv = (B, cfg.num_key_value_heads, spec.cache, _head_dim(cfg))
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
    kw = {}
    if spec.dynamic:  # torch.export's symbolic sizes: the prompt length, or the cache length
        if spec.padding:
            raise ValueError("Spec: dynamic=True is not combined with padding")
        n = torch.export.Dim("n", min=2, max=4096)
        kw["dynamic_shapes"] = (None, {2: n}, {2: n}) if spec.decode else ({1: n},)
    with torch.no_grad():
        mod = fx.export_and_import(model, *inputs, output_type="linalg-on-tensors",
                                   func_name="main", **kw)
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
    seen, scaling = [], []
    import importlib
    mod = importlib.import_module(f"transformers.models.{FAMILIES[spec.family][0]}."
                                  f"modeling_{FAMILIES[spec.family][0]}")

    def recording(original):
        def attention(module, q, k, v, *args, **kwargs):
            seen.append((q.detach().clone(), k.detach().clone(), v.detach().clone()))
            scaling.append(kwargs.get("scaling", getattr(module, "scaling", None)))
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
    capture.scaling = scaling[0]  # the logit scale the module used (read by check())
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


# ------------------------------------------------------------------------------------------------
# Running exported modules through kvmerge (shared by test/python/test_frontends.py and
# scripts/frontend_matrix.py)
# ------------------------------------------------------------------------------------------------
def kvmerge_opt(text: str, *passes: str, stderr: bool = False):
    """:func:`kvmerge.compiled.opt`."""
    from . import compiled
    return compiled.opt(text, *passes, stderr=stderr)


def raise_and_run(text: str, inputs, n_out: int, *passes: str):
    """Raises ``text``'s attention (exactly one), runs ``passes`` after it, compiles with kvmerge's
    CPU pipeline and runs ``@main`` on ``inputs``: ``(raised IR, outputs)``."""
    from . import compiled
    raised = kvmerge_opt(text, "--kvmerge-raise-attention", *passes, "--canonicalize", "--cse")
    n = raised.count("kvcache.attention ins")
    if n != 1:
        raise AssertionError(f"expected one raised attention, found {n}")
    return raised, compiled.run(raised, "main", inputs, n_out)


def rel_error(got, want) -> float:
    """max |got - want| / max |want| (in f64); shapes must agree."""
    g, w = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if g.shape != w.shape:
        raise AssertionError(f"shape {g.shape} != {w.shape}")
    return float(np.max(np.abs(g - w))) / max(float(np.max(np.abs(w))), 1e-30)


def check(spec: Spec, policy: str = "kvmerger", budget: float = 0.5, seed: int = 0) -> dict:
    """What kvmerge does with ``spec``'s torch-mlir export, measured against torch.

    Returns a dict: ``raised`` (the raise remark, or the rejection remark), ``full_err`` (max
    relative error of every output of the raised module vs torch eager), ``compress`` (what
    ``--kvmerge-insert-compression`` did, or its error), and for a prefill ``cache`` (whether the
    compressed cache equals ``kvmerge.reference.compress`` of the module's own post-RoPE K/V scored
    by its own queries at its own scale; checked without a padding mask) and ``out_err`` (layer
    output with compression inserted vs torch); for a decode step ``out_err`` of the decode with
    compression inserted over a full cache (``lengths = cache``) vs torch.
    """
    import re as _re
    from . import reference as ref
    from .errors import CompileError
    row = {"spec": spec, "raised": "", "full_err": None, "compress": "", "cache": None,
           "out_err": None}
    text = export(spec, seed)
    _, diag = kvmerge_opt(text, "--kvmerge-raise-attention=remarks=true", "-o", "/dev/null",
                          stderr=True)
    remarks = [m.group(1) for m in _re.finditer(r"remark: (.*)", diag)]
    raised = [r for r in remarks if r.startswith("raised attention")]
    row["raised"] = raised[0] if raised else (remarks[0] if remarks else "no remark")
    if not raised:
        return row
    inputs, want, (q, k, v) = capture(spec, seed)
    scaling = capture.scaling
    _, got = raise_and_run(text, inputs, len(want))
    row["full_err"] = max(rel_error(g, w) for g, w in zip(got, want))
    options = f"--kvmerge-insert-compression=policy={policy} budget={budget}"
    try:
        out, diag = kvmerge_opt(text, "--kvmerge-raise-attention", options, stderr=True)
    except CompileError as e:
        row["compress"] = "error: " + str(e).split("error: ", 1)[-1].splitlines()[0]
        return row
    remarks = [m.group(1) for m in _re.finditer(r"(?:remark|warning): (.*)", diag)]
    row["compress"] = remarks[0] if remarks else "marked caches"
    if ("kvcache.append" if spec.decode else "kvcache.compress") not in out:
        return row  # nothing inserted: the remark says why
    B, hkv = spec.batch, k.shape[1]
    if not spec.decode:
        _, got = raise_and_run(text, inputs, 7, options)
        out, ck, cv, pos, cnt, sc, lengths = got
        row["out_err"] = rel_error(out, want[0])
        if not spec.padding:
            kk = k.reshape(B * hkv, *k.shape[2:])
            vv = v.reshape(B * hkv, *v.shape[2:])
            scores = ref.accumulated_scores(q.reshape(-1, *q.shape[2:]), kk, scale=scaling)
            r = ref.compress(kk, vv, scores, policy=policy, ratio=budget)
            ok = (np.array_equal(pos, r["positions"]) and np.array_equal(cnt, r["counts"])
                  and np.array_equal(lengths, r["lengths"]))
            err = max(rel_error(ck.reshape(r["keys"].shape), r["keys"]),
                      rel_error(cv.reshape(r["values"].shape), r["values"]))
            row["cache"] = (ok, err)
    else:
        lengths = np.full((B * hkv,), spec.cache, np.int32)
        _, got = raise_and_run(text, inputs + [lengths], 4, options)
        row["out_err"] = max(rel_error(g, w) for g, w in zip(got[:3], want))
    return row
