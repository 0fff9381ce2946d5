"""Karpathy's stories260K (llama2.c checkpoint format) on the shared NumPy Llama forward.

File layout: see ``shared/data/README.md``.  RoPE on adjacent pairs, theta 10000.
The tokenizer (``tok512.bin``) is reproduced exactly as llama2.c's ``encode``:
dummy-prefix space, one token per UTF-8 code point (byte fallback ``<0xXX>`` = byte+3),
then repeatedly merge the adjacent pair whose concatenation has the highest score
(ties: the leftmost pair).
"""
from __future__ import annotations

import heapq
import os
import struct
from pathlib import Path

import numpy as np

from .llama import LlamaConfig, LlamaModel, make_layer

__all__ = ["Llama2cTokenizer", "load_stories260k", "default_dir", "load_llama2c"]

BOS, EOS = 1, 2


def default_dir() -> Path:
    """Directory with ``stories260K.bin`` and ``tok512.bin`` (``$KVMERGE_STORIES_DIR``
    overrides; default ``<repo>/shared/data/stories260K`` or ``/work/shared/...``)."""
    env = os.environ.get("KVMERGE_STORIES_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for base in [*here.parents]:
        cand = base / "shared" / "data" / "stories260K"
        if cand.is_dir():
            return cand
    return Path("/work/shared/data/stories260K")


class Llama2cTokenizer:
    def __init__(self, path):
        data = Path(path).read_bytes()
        (self.max_token_length,) = struct.unpack_from("<i", data, 0)
        off = 4
        self.pieces: list[bytes] = []
        self.scores: list[float] = []
        while off < len(data):
            sc, n = struct.unpack_from("<fi", data, off)
            off += 8
            self.pieces.append(data[off: off + n])
            self.scores.append(sc)
            off += n
        self.vocab_size = len(self.pieces)
        self.lookup = {p: i for i, p in enumerate(self.pieces)}
        self.bos_id, self.eos_id = BOS, EOS

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]:
        toks: list[int] = []
        if bos:
            toks.append(BOS)
        ids: list[int] = []
        if text:
            ids.append(self.lookup[b" "])
        for ch in text:
            b = ch.encode("utf-8")
            i = self.lookup.get(b)
            if i is not None:
                ids.append(i)
            else:
                ids.extend(x + 3 for x in b)
        ids = self._merge(ids)
        toks.extend(ids)
        if eos:
            toks.append(EOS)
        return toks

    def _merge(self, ids: list[int]) -> list[int]:
        n = len(ids)
        if n < 2:
            return ids
        tok = list(ids)
        nxt = list(range(1, n)) + [-1]
        prv = [-1] + list(range(n - 1))
        alive = [True] * n
        heap = []
        pieces, lookup, scores = self.pieces, self.lookup, self.scores

        def push(i):
            j = nxt[i]
            if j < 0:
                return
            m = lookup.get(pieces[tok[i]] + pieces[tok[j]])
            if m is not None:
                heap.append((-scores[m], i, tok[i], tok[j], m))

        for i in range(n - 1):
            push(i)
        heapq.heapify(heap)
        while heap:
            _, i, ti, tj, m = heapq.heappop(heap)
            j = nxt[i]
            if not alive[i] or j < 0 or tok[i] != ti or tok[j] != tj:
                continue  # stale
            tok[i] = m
            alive[j] = False
            nxt[i] = nxt[j]
            if nxt[j] >= 0:
                prv[nxt[j]] = i
            for a in (prv[i], i):
                if a >= 0:
                    jj = nxt[a]
                    if jj >= 0:
                        mm = lookup.get(pieces[tok[a]] + pieces[tok[jj]])
                        if mm is not None:
                            heapq.heappush(heap, (-scores[mm], a, tok[a], tok[jj], mm))
        out = []
        i = 0
        while i >= 0:
            out.append(tok[i])
            i = nxt[i]
        return out

    def decode(self, ids) -> str:
        out = bytearray()
        prev = None
        for t in ids:
            t = int(t)
            if t in (BOS, EOS):
                prev = t
                continue
            p = self.pieces[t]
            if prev == BOS and p.startswith(b" "):
                p = p[1:]
            if len(p) == 6 and p.startswith(b"<0x") and p.endswith(b">"):
                p = bytes([int(p[3:5], 16)])
            out += p
            prev = t
        return out.decode("utf-8", errors="replace")


def load_llama2c(model_path, tokenizer_path=None) -> LlamaModel:
    raw = Path(model_path).read_bytes()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack_from("<7i", raw, 0)
    shared = vocab > 0
    vocab = abs(vocab)
    w = np.frombuffer(raw, dtype="<f4", offset=28)
    hd = dim // n_heads
    kv_dim = n_kv * hd
    off = 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        a = w[off: off + n].reshape(shape)
        off += n
        return a

    emb = take(vocab, dim)
    rms_att = take(n_layers, dim)
    wq = take(n_layers, dim, dim)
    wk = take(n_layers, kv_dim, dim)
    wv = take(n_layers, kv_dim, dim)
    wo = take(n_layers, dim, dim)
    rms_ffn = take(n_layers, dim)
    w1 = take(n_layers, hidden, dim)
    w2 = take(n_layers, dim, hidden)
    w3 = take(n_layers, hidden, dim)
    rms_final = take(dim)
    take(seq_len * hd // 2)  # freq_cis_real (unused)
    take(seq_len * hd // 2)  # freq_cis_imag (unused)
    wcls = None if shared else take(vocab, dim)
    cfg = LlamaConfig(dim=dim, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv,
                      head_dim=hd, hidden_dim=hidden, vocab_size=vocab, max_seq_len=seq_len,
                      norm_eps=1e-5, rope_theta=10000.0, rope_interleaved=True,
                      name=Path(model_path).stem)
    layers = [make_layer(rms_att[i], wq[i], wk[i], wv[i], wo[i], rms_ffn[i], w1[i], w2[i], w3[i])
              for i in range(n_layers)]
    tok = Llama2cTokenizer(tokenizer_path) if tokenizer_path else None
    return LlamaModel(cfg, emb, layers, rms_final, wcls, tokenizer=tok)


def load_stories260k(directory=None) -> LlamaModel:
    d = Path(directory) if directory else default_dir()
    return load_llama2c(d / "stories260K.bin", d / "tok512.bin")
