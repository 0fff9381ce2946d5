"""Per-layer KV budgets from a calibration text (KVMerger's Observation 2), ``python -m kvmerge.calibrate``.

Observation 2 of the paper: the fraction of *mergeable* adjacent keys (cosine similarity >= eps) of a
layer is stable across documents, so it can be measured once, offline, on a calibration text, and the
total budget distributed over the layers accordingly.

Allocation rule (project choice): a layer whose adjacent keys are *less* similar loses more when its
tokens are merged or evicted, so it gets more slots.  With ``m_l`` the mergeable fraction of layer
``l`` (mean over its KV heads) and ``d_l = 1 - m_l``, the layer's weight is

    w_l = (1 - alpha) + alpha * d_l / mean(d),      alpha = 0.5 by default,

clipped to ``[w_min, w_max]`` (default 0.5 and ``min(2, 1 / ratio)``, so ``B_l <= L``) and renormalized
to mean 1.  Half the budget stays uniform because one calibration text only estimates ``m_l``.  For a
cache of ``L`` tokens the uniform budget is ``B = ceil(ratio * L)`` slots per layer, the total is
``n_layers * B``, and :func:`layer_slots` distributes exactly that total by the largest-remainder rule
(ties: the lower layer), so per-layer budgets use **the same total memory** as the uniform one.

Output JSON: ``{"ratio", "eps", "alpha", "mergeable": [...], "weights": [...], "layer_budgets":
[ratio_l...], "calibration": {...}}``.  ``layer_budgets`` (``ratio * w_l``) feeds
``--kvmerge-insert-compression="budgets-file=..."`` directly (ratios: total memory equal up to
rounding); :func:`layer_slots` gives the exact slots for a known ``L`` (``layer-budgets=<slots,...>``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

from . import reference

__all__ = ["allocate_weights", "layer_slots", "calibrate_from_keys", "calibrate", "main"]


def allocate_weights(mergeable, *, ratio: float, alpha: float = 0.5, w_min: float = 0.5,
                     w_max: float | None = None) -> np.ndarray:
    """Per-layer weights (mean 1) from per-layer mergeable fractions (see the module doc)."""
    m = np.asarray(mergeable, np.float64)
    if m.ndim != 1 or m.size < 1:
        raise ValueError(f"mergeable: expected a non-empty 1-D list, got shape {m.shape}")
    if np.any((m < 0) | (m > 1)) or not np.all(np.isfinite(m)):
        raise ValueError("mergeable: fractions must lie in [0, 1]")
    if not (0.0 < ratio <= 1.0):
        raise ValueError(f"ratio: must lie in (0, 1], got {ratio!r}")
    if not (0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha: must lie in [0, 1], got {alpha!r}")
    if w_max is None:
        w_max = min(2.0, 1.0 / ratio)
    d = 1.0 - m
    w = np.ones_like(d) if d.mean() == 0 else (1 - alpha) + alpha * d / d.mean()
    for _ in range(50):  # clip and renormalize until stable
        w = np.clip(w, w_min, w_max)
        w = w / w.mean()
        if np.all((w >= w_min - 1e-12) & (w <= w_max + 1e-12)):
            break
    return w


def layer_slots(weights, *, ratio: float, length: int) -> list[int]:
    """Slots per layer for a cache of ``length`` tokens: exactly ``n * ceil(ratio * length)`` in total,
    distributed by weight (largest remainder; ties: the lower layer), each at most ``length``."""
    w = np.asarray(weights, np.float64)
    n = w.size
    total = n * reference.budget_from_ratio(ratio, length)
    share = total * w / w.sum()
    base = np.minimum(np.floor(share).astype(np.int64), length)
    rest = int(total - base.sum())
    order = sorted(range(n), key=lambda i: (-(share[i] - base[i]), i))
    while rest > 0:
        moved = False
        for i in order:
            if rest == 0:
                break
            if base[i] < length:
                base[i] += 1
                rest -= 1
                moved = True
        if not moved:
            break
    return [int(b) for b in base]


def calibrate_from_keys(keys_per_layer, *, ratio: float, eps: float = 0.75, alpha: float = 0.5) -> dict:
    """The budgets JSON (as a dict) from real keys ``[layer] -> [Hkv, L, D]``."""
    mergeable = []
    for k in keys_per_layer:
        s = reference.adjacent_similarity(k)
        mergeable.append(float((s >= eps).mean()))
    w = allocate_weights(mergeable, ratio=ratio, alpha=alpha)
    return {"ratio": ratio, "eps": eps, "alpha": alpha, "mergeable": mergeable,
            "weights": w.tolist(), "layer_budgets": [float(ratio * x) for x in w]}


def calibrate(text_name: str, *, model_name: str = "smollm2", tokens: int = 2048, ratio: float = 0.5,
              eps: float = 0.75, alpha: float = 0.5, model=None) -> dict:
    """Prefills ``tokens`` tokens of a real text (a :mod:`kvmerge.texts` document name or a file path)
    and returns the budgets dict."""
    from pathlib import Path

    from . import texts
    from .eval.run import load_model
    from .models.llama import KVCache

    model = model or load_model(model_name)
    if text_name in texts.DOCUMENTS:
        toks = texts.load_tokens(text_name, model.tokenizer, tokens)
    else:
        p = Path(text_name)
        if not p.is_file():
            raise ValueError(f"text: {text_name!r} is neither a kvmerge.texts document nor a file")
        toks = model.tokenizer.encode(p.read_text(encoding="utf-8"))[:tokens]
    col: dict = {}
    model.forward(np.asarray(toks), KVCache.empty(model.cfg), collect=col, logits=False)
    out = calibrate_from_keys(col["k"], ratio=ratio, eps=eps, alpha=alpha)
    out["calibration"] = {"text": text_name, "tokens": len(toks), "model": model_name}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kvmerge.calibrate", description=__doc__.split("\n")[0])
    ap.add_argument("--text", default="pride_ch1", help="kvmerge.texts document name or a text file")
    ap.add_argument("--model", default="smollm2", choices=("smollm2", "stories260k"))
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--eps", type=float, default=0.75)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("-o", "--out", default="-", help="output JSON (default stdout)")
    a = ap.parse_args(argv)
    res = calibrate(a.text, model_name=a.model, tokens=a.tokens, ratio=a.ratio, eps=a.eps, alpha=a.alpha)
    text = json.dumps(res, indent=1)
    if a.out == "-":
        print(text)
    else:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
