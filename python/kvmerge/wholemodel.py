"""A whole Llama model through kvmerge: PyTorch -> torch-mlir -> raise + compress -> CPU code.

The model is Hugging Face ``transformers``' ``LlamaForCausalLM`` holding the weights of one of our
real models (SmolLM2-135M-Instruct from its GGUF, stories260K from llama2.c; see
:func:`hf_model`). Two functions are exported with torch-mlir's fx importer to
linalg-on-tensors, **with the weights as function arguments** (the IR stays a few hundred kB and
compiles in seconds; one set of NumPy weights serves both functions and every prompt length;
resources would put 0.5 GB of hex text in the IR):

* ``prefill(tokens [1, L], *weights) -> (logits of the last position [1, V], k_0, v_0, ...,
  k_{n-1}, v_{n-1})`` with ``[1, Hkv, L, D]`` caches — ``LlamaModel.forward`` with a
  ``DynamicCache``, its own causal mask and RoPE;
* ``decode(tokens [1, T], positions [1, T], k_0, v_0, ..., *weights) -> (logits [1, T, V],
  grown caches [1, Hkv, C + T, D])`` — the decoder layers driven with a ``DynamicCache`` holding
  the ``C``-slot caches, RoPE at the given positions and a causal mask of the T new tokens over
  ``C + T`` keys built from the static shapes.

``kvmerge-opt --kvmerge-raise-attention --kvmerge-insert-compression{policy budget ...}`` then
makes every layer's prefill return its compressed cache (plus positions / counts / scores /
lengths) and every decode step append its new tokens right after the valid slots and attend to
them (``kvcache.append``, one ``lengths`` argument and result per layer). :class:`Generator`
keeps the caches at a fixed capacity (the decode's ``C``) so one compiled decode serves a whole
generation.
"""
from __future__ import annotations

import dataclasses
import re
import sys
import time
from typing import List, Optional

import numpy as np

from . import compiled

__all__ = ["hf_model", "ModelSpec", "export_prefill", "export_decode", "compress_module",
           "export_upstream", "Program", "Generator", "weights_of", "perplexity", "POLICIES",
           "BACKENDS"]

POLICIES = ("full", "streaming", "h2o", "kvmerger")


def _interleaved_to_half(w: np.ndarray, n_heads: int, head_dim: int) -> np.ndarray:
    """q/k projection rows from the interleaved-pairs RoPE layout (Meta, llama.cpp, llama2.c)
    to Hugging Face's rotate_half layout: within each head, row 2i -> i, row 2i+1 -> i + D/2."""
    w = np.asarray(w, np.float32).reshape(n_heads, head_dim // 2, 2, -1)
    return np.ascontiguousarray(w.transpose(0, 2, 1, 3).reshape(n_heads * head_dim, -1))


def hf_model(model, attn_implementation: str = "sdpa"):
    """``transformers.LlamaForCausalLM`` (float32, eval) with the weights of ``model`` (a
    :class:`kvmerge.models.llama.LlamaModel`). RoPE: our loaders keep the interleaved-pairs layout
    of GGUF/llama2c; the q/k rows are permuted to HF's half-split layout, which computes the
    same attention (q.k is invariant under a permutation applied to both), so the HF model's
    logits equal the NumPy forward's."""
    import torch
    import transformers

    c = model.cfg
    cfg = transformers.LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.dim, intermediate_size=c.hidden_dim,
        num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads, num_key_value_heads=c.n_kv_heads,
        head_dim=c.head_dim, max_position_embeddings=c.max_seq_len, rms_norm_eps=c.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta},
        tie_word_embeddings=model.output is model.tok_emb, bos_token_id=None, eos_token_id=None)
    cfg._attn_implementation = attn_implementation
    with torch.device("meta"):
        hf = transformers.LlamaForCausalLM(cfg)
    hq, hkv, d, dim, hid = c.n_heads, c.n_kv_heads, c.head_dim, c.dim, c.hidden_dim
    sd = {"model.embed_tokens.weight": model.tok_emb, "model.norm.weight": model.final_norm}
    if not cfg.tie_word_embeddings:
        sd["lm_head.weight"] = model.output
    for i, lw in enumerate(model.layers):
        p = f"model.layers.{i}."
        wq, wk, wv = (lw.wqkv[:, : hq * d].T, lw.wqkv[:, hq * d:(hq + hkv) * d].T,
                      lw.wqkv[:, (hq + hkv) * d:].T)
        if c.rope_interleaved:
            wq, wk = _interleaved_to_half(wq, hq, d), _interleaved_to_half(wk, hkv, d)
        sd.update({p + "input_layernorm.weight": lw.attn_norm,
                   p + "self_attn.q_proj.weight": wq, p + "self_attn.k_proj.weight": wk,
                   p + "self_attn.v_proj.weight": wv, p + "self_attn.o_proj.weight": lw.wo.T,
                   p + "post_attention_layernorm.weight": lw.ffn_norm,
                   p + "mlp.gate_proj.weight": lw.w13[:, :hid].T,
                   p + "mlp.up_proj.weight": lw.w13[:, hid:].T,
                   p + "mlp.down_proj.weight": lw.w2.T})
    sd = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in sd.items()}   # writable copies
    hf.load_state_dict(sd, strict=False, assign=True)
    if cfg.tie_word_embeddings:
        hf.tie_weights()
    hf.model.rotary_emb = type(hf.model.rotary_emb)(cfg)   # real (non-meta) inv_freq
    # torch-mlir's export needs persistent buffers (the rotary inv_freq is not).
    for n, b in list(hf.model.rotary_emb.named_buffers()):
        hf.model.rotary_emb.register_buffer(n, b.clone(), persistent=True)
    return hf.eval()


def weights_of(hf) -> List[np.ndarray]:
    """The exported functions' weight arguments, in order (``named_parameters``, tied ones once),
    C-contiguous: a model loaded from GGUF has transposed views among its parameters, which every
    call of a compiled function would otherwise copy (540 MB per SmolLM2 decode step)."""
    return [np.ascontiguousarray(p.detach().numpy()) for _, p in hf.named_parameters()]


class _Prefill:
    def __init__(self, hf):
        import torch
        self.hf = hf
        names = [n for n, _ in hf.named_parameters()]

        class M(torch.nn.Module):
            def forward(s, tokens, *weights):
                from transformers.cache_utils import DynamicCache
                params = dict(zip(names, weights))
                cache = DynamicCache(config=hf.config)
                out = torch.func.functional_call(
                    hf.model, {k[len("model."):]: v for k, v in params.items() if k.startswith("model.")},
                    (), {"input_ids": tokens, "past_key_values": cache, "use_cache": True})
                h = out.last_hidden_state[:, -1:]
                w = params.get("lm_head.weight", params["model.embed_tokens.weight"])
                logits = torch.nn.functional.linear(h, w)[:, 0]
                res = [logits]
                for layer in cache.layers:
                    res += [layer.keys, layer.values]
                return tuple(res)
        self.module = M()


class _Decode:
    def __init__(self, hf, capacity: int, tokens: int):
        import torch
        names = [n for n, _ in hf.named_parameters()]
        n_layers = hf.config.num_hidden_layers
        C, T = capacity, tokens

        class M(torch.nn.Module):
            def forward(s, tok, positions, *rest):
                from transformers.cache_utils import DynamicCache
                caches, weights = rest[: 2 * n_layers], rest[2 * n_layers:]
                params = dict(zip(names, weights))
                cache = DynamicCache(config=hf.config)
                for i in range(n_layers):
                    cache.update(caches[2 * i], caches[2 * i + 1], i)
                # New token i sees the C cached slots and new tokens 0..i (static shapes: the
                # compiler proves it causal).
                q = torch.arange(T).unsqueeze(1)
                kv = torch.arange(C + T).unsqueeze(0)
                mask = torch.where(kv <= q + C, 0.0, float("-inf"))[None, None]
                inner = {k[len("model."):]: v for k, v in params.items() if k.startswith("model.")}
                out = torch.func.functional_call(
                    hf.model, inner, (), {"input_ids": tok, "position_ids": positions,
                                          "attention_mask": mask if T > 1 else None,
                                          "past_key_values": cache, "use_cache": True,
                                          "cache_position": torch.arange(C, C + T)})
                w = params.get("lm_head.weight", params["model.embed_tokens.weight"])
                res = [torch.nn.functional.linear(out.last_hidden_state, w)]
                for layer in cache.layers:
                    res += [layer.keys, layer.values]
                return tuple(res)
        self.module = M()


def _export(module, args, name: str) -> str:
    import torch
    from torch_mlir import fx
    with torch.no_grad():
        return str(fx.export_and_import(module, *args, output_type="linalg-on-tensors",
                                        func_name=name))


def export_prefill(hf, length: int) -> str:
    """torch-mlir linalg-on-tensors of ``prefill`` for ``length`` tokens."""
    import torch
    ws = [p.detach() for _, p in hf.named_parameters()]
    return _export(_Prefill(hf).module, [torch.zeros(1, length, dtype=torch.int64), *ws], "prefill")


def export_decode(hf, capacity: int, tokens: int = 1) -> str:
    """torch-mlir linalg-on-tensors of ``decode`` for ``tokens`` new tokens over ``capacity``
    cached slots per layer."""
    import torch
    c = hf.config
    ws = [p.detach() for _, p in hf.named_parameters()]
    kv = [torch.zeros(1, c.num_key_value_heads, capacity, c.head_dim)
          for _ in range(2 * c.num_hidden_layers)]
    return _export(_Decode(hf, capacity, tokens).module,
                   [torch.zeros(1, tokens, dtype=torch.int64),
                    torch.arange(capacity, capacity + tokens).unsqueeze(0), *kv, *ws], "decode")


def compress_module(text: str, *, policy: str = "kvmerger", budget="0.5", extra: str = "",
                    remarks: bool = False) -> str:
    """``text`` after raising every attention and inserting compression (``policy``/``budget``;
    ``extra``: more insert-compression options, e.g. ``"sigma=auto"``)."""
    opts = f"policy={policy} budget={budget} {extra}".strip()
    out = _kvmerge_opt(text, f"--kvmerge-raise-attention=remarks={str(remarks).lower()}",
                       f"--kvmerge-insert-compression={opts}", "--canonicalize", "--cse")
    if count_attentions(out) == 0:
        raise compiled.CompileError("no attention was raised")
    return out


def export_upstream(text: str) -> str:
    """``--kvmerge-export-upstream``: upstream dialects only, what ``iree-compile`` takes."""
    return _kvmerge_opt(text, "--kvmerge-export-upstream")


def _kvmerge_opt(text: str, *flags: str) -> str:
    return compiled.opt(text, *flags)


def count_attentions(text: str) -> int:
    """Raised attentions (``kvcache.attention`` ops) in a module."""
    return text.count("kvcache.attention ins")


BACKENDS = ("kvmerge", "iree")


class _KVMergeRunner:
    """A module compiled by kvmerge's CPU pipeline (JIT)."""

    def __init__(self, text: str):
        from . import jit
        self.exe = jit.load(text).compile()

    def run(self, function: str, *inputs) -> List[np.ndarray]:
        return self.exe.run(function, *inputs)


class _IREERunner:
    """The upstream export of a module, compiled by the real ``iree-compile`` (llvm-cpu) and run
    by IREE's runtime."""

    def __init__(self, text: str):
        import iree.compiler as ireec
        import iree.runtime as ireert
        vmfb = ireec.compile_str(text, target_backends=["llvm-cpu"],
                                 extra_args=["--iree-llvmcpu-target-cpu=host"])
        self.module = ireert.load_vm_flatbuffer(vmfb, driver="local-task")

    def run(self, function: str, *inputs) -> List[np.ndarray]:
        outs = getattr(self.module, function)(*inputs)
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        # Copies: an IREE result maps device memory that is released with it; the
        # Generator keeps caches across calls.
        return [np.array(o, copy=True) for o in outs]


@dataclasses.dataclass
class Program:
    """The compiled prefill and decode of one model, policy and shape."""
    prefill: object           # has .run(function, *inputs) -> [np.ndarray]
    decode: object
    n_layers: int
    prompt_len: int
    capacity: int
    new_tokens: int
    slots: int                # prefill cache slots per layer (the budget; = prompt_len for full)
    compile_s: float          # kvmerge-opt (raise + compress) + backend compile, both functions
    export_s: float           # torch-mlir export, both functions
    policy: str = "full"
    backend: str = "kvmerge"
    attentions: int = 0       # raised attentions in prefill + decode


@dataclasses.dataclass
class ModelSpec:
    model: object             # kvmerge.models.llama.LlamaModel
    hf: object
    weights: List[np.ndarray]

    @classmethod
    def load(cls, name_or_model, attn_implementation: str = "sdpa") -> "ModelSpec":
        m = name_or_model
        if isinstance(m, str):
            from .eval.run import load_model
            m = load_model(m)
        hf = hf_model(m, attn_implementation)
        return cls(m, hf, weights_of(hf))

    def build(self, prompt_len: int, *, policy="kvmerger", budget="0.5", extra="",
              new_tokens: int = 1, capacity: Optional[int] = None, room: int = 256,
              backend: str = "kvmerge", log=None) -> Program:
        """Exports, compresses and compiles prefill (``prompt_len`` tokens) and decode
        (``new_tokens`` at a time over ``capacity`` slots; default: the prefill's slots +
        ``room`` for generated tokens). ``backend``: ``"kvmerge"`` (kvmerge's CPU pipeline, JIT) or
        ``"iree"`` (``--kvmerge-export-upstream`` -> ``iree-compile`` -> IREE's runtime)."""
        if backend not in BACKENDS:
            raise ValueError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")
        if policy not in POLICIES:
            raise ValueError(f"policy: {policy!r} is not one of {', '.join(POLICIES)}")
        if int(prompt_len) < 1:
            raise ValueError(f"prompt_len: must be >= 1, got {prompt_len}")
        if int(new_tokens) < 1:
            raise ValueError(f"new_tokens: must be >= 1, got {new_tokens}")
        log = log or (lambda *_: None)
        runner = _KVMergeRunner if backend == "kvmerge" else _IREERunner
        t0 = time.perf_counter()
        pre_src = export_prefill(self.hf, prompt_len)
        t_export = time.perf_counter() - t0
        t0 = time.perf_counter()
        pre = compress_module(pre_src, policy=policy, budget=budget, extra=extra)
        t_compile = time.perf_counter() - t0
        slots = _slots(pre)
        if capacity is None:
            capacity = slots + int(room)
        if int(capacity) < slots:
            raise ValueError(f"capacity: {capacity} is less than the prefill's {slots} cache slots")
        t0 = time.perf_counter()
        dec_src = export_decode(self.hf, capacity, new_tokens)
        t_export += time.perf_counter() - t0
        t0 = time.perf_counter()
        dec = compress_module(dec_src, policy=policy, budget=budget, extra=extra)
        n_att = count_attentions(pre) + count_attentions(dec)
        if backend == "iree":
            pre, dec = export_upstream(pre), export_upstream(dec)
        log(f"exported in {t_export:.1f}s; {n_att} attentions raised; compiling ({backend})")
        p = runner(pre)
        d = runner(dec)
        t_compile += time.perf_counter() - t0
        return Program(p, d, self.model.cfg.n_layers, prompt_len, capacity, new_tokens, slots,
                       compile_s=t_compile, export_s=t_export, policy=policy, backend=backend,
                       attentions=n_att)


def _slots(text: str) -> int:
    """Cache slots of the first keys result marked by insert-compression."""
    m = re.search(r'tensor<1x\d+x(\d+)x\d+xf32> \{kvcache.role = "keys"\}', text)
    if not m:
        raise compiled.CompileError("the prefill returns no compressed keys")
    return int(m.group(1))


class Generator:
    """Runs a :class:`Program`: prefill a prompt, then decode with the caches kept at the decode's
    fixed capacity (each step returns ``capacity + T`` slots; the valid ones stay a prefix, so the
    first ``capacity`` are kept while ``lengths + T <= capacity``)."""

    def __init__(self, program: Program, spec: ModelSpec):
        self.p = program
        self.spec = spec
        self.weights = spec.weights
        c = spec.model.cfg
        self.hkv, self.d = c.n_kv_heads, c.head_dim
        self.caches = None
        self.lengths = None
        self.position = 0
        self.meta = None

    def prefill(self, tokens) -> np.ndarray:
        """Logits of the last prompt token; fills the caches (compressed by the program's policy)."""
        tokens = np.asarray(tokens, np.int64).reshape(1, -1)
        if tokens.shape[1] != self.p.prompt_len:
            raise ValueError(f"tokens: the program was compiled for {self.p.prompt_len} prompt "
                             f"tokens, got {tokens.shape[1]}")
        n = self.p.n_layers
        outs = self.p.prefill.run("prefill", tokens, *self.weights)
        logits, kv, meta = outs[0], outs[1:1 + 2 * n], outs[1 + 2 * n:]
        C = self.p.capacity
        self.caches = []
        for x in kv:
            full = np.zeros((1, self.hkv, C, self.d), np.float32)
            full[:, :, : x.shape[2]] = x
            self.caches.append(full)
        self.meta = [dict(zip(("positions", "counts", "scores", "lengths"), meta[4 * i:4 * i + 4]))
                     for i in range(n)]
        self.lengths = [m["lengths"].astype(np.int32) for m in self.meta]
        self.position = tokens.shape[1]
        return logits[0]

    def _decode(self, tokens):
        tokens = np.asarray(tokens, np.int64).reshape(1, -1)
        T = tokens.shape[1]
        if T != self.p.new_tokens:
            raise ValueError(f"tokens: the decode was compiled for {self.p.new_tokens} tokens, got {T}")
        if self.caches is None:
            raise RuntimeError("prefill a prompt first")
        pos = np.arange(self.position, self.position + T, dtype=np.int64)[None]
        n = self.p.n_layers
        outs = self.p.decode.run("decode", tokens, pos, *self.caches, *self.weights, *self.lengths)
        return outs[0][0], outs[1:1 + 2 * n], outs[1 + 2 * n:], T

    def step(self, tokens) -> np.ndarray:
        """Logits ``[T, V]`` of ``T`` new tokens (the program's ``new_tokens``) at the next
        positions; their keys and values join the caches."""
        if self.lengths is not None and max(int(l.max()) for l in self.lengths) + self.p.new_tokens > self.p.capacity:
            raise RuntimeError(f"the cache is full ({self.p.capacity} slots): build the program with "
                               "a larger capacity")
        logits, kv, lengths, T = self._decode(tokens)
        C = self.p.capacity
        self.caches = [np.ascontiguousarray(x[:, :, :C]) for x in kv]
        self.lengths = [l.astype(np.int32) for l in lengths]
        self.position += T
        return logits

    def score(self, tokens) -> np.ndarray:
        """Teacher-forced next-token NLL of a document: prefill ``tokens[:L]`` (compressed by the
        policy), then one decode call over ``tokens[L:L+T]`` (``L``/``T``: the program's prompt
        length and new tokens) scores ``tokens[L+1:L+T+1]`` -- the protocol of
        ``python -m kvmerge.eval``. The caches are left as the prefill made them."""
        tokens = np.asarray(tokens, np.int64).reshape(-1)
        L, T = self.p.prompt_len, self.p.new_tokens
        if tokens.shape[0] < L + T + 1:
            raise ValueError(f"tokens: need {L + T + 1} tokens (prompt {L} + {T} scored + 1), "
                             f"got {tokens.shape[0]}")
        from .models.llama import log_softmax_nll
        self.prefill(tokens[:L])
        logits, *_ = self._decode(tokens[L:L + T])
        return log_softmax_nll(logits, tokens[L + 1:L + T + 1])

    def cache_bytes(self) -> int:
        """Bytes of the valid cache slots (keys + values, f32) over all layers."""
        return int(sum(int(l.sum()) for l in self.lengths) * self.d * 4 * 2)

    def generate(self, prompt_tokens, n: int, *, temperature: float = 0.0, seed: int = 0,
                 stop=(), progress: bool = True):
        """``n`` tokens after the prompt: greedy (``temperature=0``) or sampled. Returns
        ``(tokens, stats)`` with prefill and decode tokens/s."""
        rng = np.random.default_rng(seed)

        def pick(lg):
            if temperature <= 0:
                return int(np.argmax(lg))
            z = (lg - lg.max()) / temperature
            p = np.exp(z)
            return int(rng.choice(len(p), p=p / p.sum()))

        t0 = time.perf_counter()
        lg = self.prefill(prompt_tokens)
        t_prefill = time.perf_counter() - t0
        out = []
        bar = None
        if progress:
            try:
                from tqdm import tqdm
                bar = tqdm(total=n, unit="tok", desc="generate", file=sys.stderr)
            except ImportError:  # pragma: no cover
                bar = None
        t1 = time.perf_counter()
        for _ in range(n):
            tok = pick(lg)
            if tok in stop:
                break
            out.append(tok)
            if bar:
                bar.update(1)
            if len(out) == n:
                break
            lg = self.step([tok])[-1]
        t_decode = time.perf_counter() - t1
        if bar:
            bar.close()
        stats = {"prefill_s": t_prefill, "prefill_tok_s": self.p.prompt_len / t_prefill,
                 "decode_s": t_decode, "decode_tok_s": max(len(out) - 1, 1) / max(t_decode, 1e-9),
                 "cache_bytes": self.cache_bytes()}
        return out, stats


def perplexity(spec: ModelSpec, docs, *, prefill: int, n_cont: int, policy: str = "full",
               ratio: float = 0.5, sink: int = 4, backend: str = "kvmerge", log=None) -> dict:
    """Perplexity of ``docs`` (names in :mod:`kvmerge.texts`) computed by the compiled model with
    ``python -m kvmerge.eval``'s protocol: per document, prefill ``prefill`` tokens, compress every
    layer's cache with ``policy`` at ``ratio`` (``sink`` kept; the other parameters are the
    eval's and the pass's defaults), then score ``n_cont`` continuation tokens in one
    teacher-forced decode. Returns ``{"ppl", "nll": {doc: [...]}, "program": Program}``."""
    from . import texts
    budget = "1.0" if policy == "full" else repr(float(ratio))
    # One decode of n_cont tokens right after the prefill's slots: no room beyond them.
    prog = spec.build(prefill, policy=policy, budget=budget, extra=f"sink={int(sink)}",
                      new_tokens=n_cont, room=0, backend=backend, log=log)
    gen = Generator(prog, spec)
    nll = {}
    for d in docs:
        toks = texts.load_tokens(d, spec.model.tokenizer, prefill + n_cont + 1)
        nll[d] = gen.score(toks).tolist()
    allnll = np.concatenate([np.asarray(v) for v in nll.values()])
    return {"ppl": float(np.exp(allnll.mean())), "nll": nll, "program": prog}
