#!/usr/bin/env python3
"""GPU checks for kvmerge (run by scripts/gpu-check.sh on a machine with an
NVIDIA GPU; UNVERIFIED: written without access to a GPU).

1. correctness: every GPU kernel (through kvmerge-run --device=cuda) vs the
   NumPy reference kvmerge.reference, on random data and on the real SmolLM2
   fixture (test/data/smollm2_kv.npz): compress with kvmerger (budget and
   threshold/paper), h2o and streaming in f16/bf16/f32, and decode attention
   (with count bias) over the compressed caches;
2. timing (kernel times from CUDA events, KVMERGE_CUDA_KERNEL_TIMES=1):
   merge kernel GB/s vs device-to-device copy GB/s (cuMemcpy through a
   copy-only module is not available, so the copy baseline is torch's
   `clone` when torch is installed, otherwise it is reported as n/a), merge
   vs a PyTorch eager implementation of the same merge (if torch is
   installed), and decode attention over 50% / 35% compressed caches vs the
   full cache for L in {4K, 32K, 128K}, Hq=32, Hkv=8, D=128, f16.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "python"))
from kvmerge import reference  # noqa: E402
from kvmerge.compiled import attention_module, compress_module, tool, _bf16_view  # noqa: E402

try:
    import ml_dtypes
    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover
    BF16 = None


DEVICE = "cuda"


def run(module, function, inputs, n_outputs, *, device=None, times=False, repetitions=0):
    """kvmerge-run on .npy files; returns (outputs, {kernel: mean_us}, stdout)."""
    with tempfile.TemporaryDirectory(prefix="kvmerge-gpu-") as tmp:
        tmp = Path(tmp)
        (tmp / "m.mlir").write_text(module)
        cmd = [tool("kvmerge-run"), str(tmp / "m.mlir"), f"--function={function}",
               f"--device={device or DEVICE}"]
        for i, x in enumerate(inputs):
            np.save(tmp / f"in{i}.npy", np.ascontiguousarray(x))
            cmd.append(f"--input=@{tmp / f'in{i}.npy'}")
        for i in range(n_outputs):
            cmd.append(f"--output=@{tmp / f'out{i}.npy'}")
        if repetitions:
            cmd.append(f"--benchmark-repetitions={repetitions}")
        env = dict(os.environ)
        if times:
            env["KVMERGE_CUDA_KERNEL_TIMES"] = "1"
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            raise RuntimeError(f"kvmerge-run failed:\n{p.stderr}")
        outs = [_bf16_view(np.load(tmp / f"out{i}.npy")) for i in range(n_outputs)]
    kernel_us = {}
    for m in re.finditer(r"kvmerge-cuda-kernel-time (\w+) calls=(\d+) total_ms=([\d.]+) mean_us=([\d.]+)",
                         p.stderr):
        kernel_us[m.group(1)] = float(m.group(4))
    return outs, kernel_us, p.stdout


def compress_gpu(k, v, a, **policy):
    args = reference.resolve_compress_args(k, v, a, **policy)
    mod = compress_module(k.shape, v.shape, k.dtype, policy=args.policy, B=args.B, sink=args.sink,
                          recent=args.recent, mode=args.mode, eps=args.eps, sigma=args.sigma)
    outs, _, _ = run(mod, "compress", [k, v, np.asarray(args.ac, np.float32)], 6)
    return dict(zip(("keys", "values", "positions", "counts", "scores", "lengths"), outs))


def check_compress(name, k, v, a, failures, **policy):
    exp = reference.compress(k, v, a, **policy)
    got = compress_gpu(k, v, a, **policy)
    tol = 2e-2 if k.dtype != np.float32 else 1e-4
    ok = True
    for key in ("lengths", "positions", "counts"):
        if not np.array_equal(got[key], exp[key]):
            ok = False
            print(f"  {name}: {key} differ in {np.sum(got[key] != exp[key])} entries")
    for key in ("keys", "values", "scores"):
        g, e = np.asarray(got[key], np.float32), np.asarray(exp[key], np.float32)
        if not np.allclose(g, e, rtol=tol, atol=tol):
            ok = False
            print(f"  {name}: {key} max |diff| {np.max(np.abs(g - e)):.3g}")
    print(f"{'PASS' if ok else 'FAIL'} compress {name}")
    if not ok:
        failures.append(name)
    return got


def check_attention(name, q, k, v, lengths, counts, failures, count_bias=True):
    exp = reference.attention(q, k, v, lengths, counts=counts, count_bias=count_bias)
    mod = attention_module((q.shape[0], 1, q.shape[1]), k.shape, v.shape, q.dtype, count_bias=count_bias,
                           scale=None)
    (out,), _, _ = run(mod, "attention", [q[:, None, :], k, v, np.asarray(lengths, np.int32),
                                          np.asarray(counts, np.int32)], 1)
    tol = 2e-2 if q.dtype != np.float32 else 1e-4
    ok = np.allclose(out[:, 0, :], exp, rtol=tol, atol=tol)
    print(f"{'PASS' if ok else 'FAIL'} attention {name}"
          + ("" if ok else f" (max |diff| {np.max(np.abs(out[:, 0, :] - exp)):.3g})"))
    if not ok:
        failures.append("attention " + name)


def correctness():
    failures = []
    rng = np.random.default_rng(0)
    dtypes = [np.dtype(np.float16), np.dtype(np.float32)] + ([BF16] if BF16 is not None else [])
    policies = [dict(policy="kvmerger", ratio=0.5), dict(policy="kvmerger", ratio=0.35),
                dict(policy="kvmerger", ratio=0.5, mode="threshold", eps=0.8, sigma="paper"),
                dict(policy="h2o", ratio=0.5), dict(policy="streaming", ratio=0.5)]
    for dt in dtypes:
        H, L, D = 3, 700, 64
        # Runs of similar keys (random lengths 1-8) so that merging does
        # something, with well-separated similarities (no f32 near-ties).
        run_id = np.cumsum(rng.random((H, L)) < 0.25, axis=1)
        bases = rng.standard_normal((H, L + 1, D))
        k = (np.take_along_axis(bases, run_id[..., None], axis=1)
             + 0.2 * rng.standard_normal((H, L, D))).astype(dt)
        v = rng.standard_normal((H, L, D)).astype(dt)
        a = rng.random((H, L)).astype(np.float32)
        for pol in policies:
            name = f"random {dt.name} {pol}"
            c = check_compress(name, k, v, a, failures, **pol)
            q = rng.standard_normal((3 * H, D)).astype(dt)
            check_attention(name, q, c["keys"], c["values"], c["lengths"], c["counts"], failures)
    fixture = REPO / "test" / "data" / "smollm2_kv.npz"
    if fixture.exists():
        z = np.load(fixture)
        for layer in range(z["keys"].shape[0]):
            k, v, a = z["keys"][layer], z["values"][layer], z["scores"][layer]
            for pol in policies[:4]:
                name = f"smollm2 layer {int(z['layers'][layer])} {pol}"
                c = check_compress(name, k, v, a, failures, **pol)
                q = z["q_next"][layer][:, 0, :]
                check_attention(name, q, c["keys"], c["values"], c["lengths"], c["counts"], failures)
    print(f"correctness: {len(failures)} failure(s)")
    return failures


def merge_module(H, L, B, D, dt):
    """Only the merge kernels: slot map given (kvcache.merge)."""
    t = {np.dtype(np.float16): "f16", np.dtype(np.float32): "f32"}[np.dtype(dt)]
    return f"""
func.func @merge(%k: tensor<{H}x{L}x{D}x{t}>, %v: tensor<{H}x{L}x{D}x{t}>, %a: tensor<{H}x{L}xf32>,
                 %slot: tensor<{H}x{L}xi32>, %len: tensor<{H}xi32>)
    -> (tensor<{H}x{B}x{D}x{t}>, tensor<{H}x{B}x{D}x{t}>, tensor<{H}x{B}xi32>, tensor<{H}x{B}xi32>, tensor<{H}x{B}xf32>) {{
  %k0 = tensor.empty() : tensor<{H}x{B}x{D}x{t}>
  %p0 = tensor.empty() : tensor<{H}x{B}xi32>
  %s0 = tensor.empty() : tensor<{H}x{B}xf32>
  %r:5 = kvcache.merge ins(%k, %v, %a : tensor<{H}x{L}x{D}x{t}>, tensor<{H}x{L}x{D}x{t}>, tensor<{H}x{L}xf32>)
      slots(%slot, %len : tensor<{H}x{L}xi32>, tensor<{H}xi32>)
      outs(%k0, %k0, %p0, %p0, %s0 : tensor<{H}x{B}x{D}x{t}>, tensor<{H}x{B}x{D}x{t}>, tensor<{H}x{B}xi32>, tensor<{H}x{B}xi32>, tensor<{H}x{B}xf32>)
  return %r#0, %r#1, %r#2, %r#3, %r#4 : tensor<{H}x{B}x{D}x{t}>, tensor<{H}x{B}x{D}x{t}>, tensor<{H}x{B}xi32>, tensor<{H}x{B}xi32>, tensor<{H}x{B}xf32>
}}
"""


def timing(lengths_k):
    try:
        import torch
        has_torch = torch.cuda.is_available()
    except ImportError:
        torch, has_torch = None, False
    rng = np.random.default_rng(1)
    Hq, Hkv, D = 32, 8, 128
    print("\n## merge (f16, Hkv=8, D=128, ratio 0.5), kernel time from CUDA events")
    print("| L | merge kernels us | merge GB/s | d2d copy GB/s | merge/copy | torch eager merge us | torch/kvmerge |")
    print("|---|---|---|---|---|---|---|")
    for L in lengths_k:
        B = L // 2
        k = rng.standard_normal((Hkv, L, D)).astype(np.float16)
        v = rng.standard_normal((Hkv, L, D)).astype(np.float16)
        a = rng.random((Hkv, L)).astype(np.float32)
        sim = reference.adjacent_similarity(k)
        slot, lens = reference.merge_sets(sim, sink=4, recent=B // 4, slots_middle=B - 4 - B // 4)
        _, us, _ = run(merge_module(Hkv, L, B, D, np.float16), "merge",
                       [k, v, a, np.asarray(slot, np.int32), np.asarray(lens, np.int32)], 5, times=True,
                       repetitions=10)
        merge_us = sum(t for n, t in us.items() if n.startswith("kvmerge_merge"))
        moved = 2 * k.nbytes + a.nbytes + slot.size * 4 + 2 * Hkv * B * D * 2 + 3 * Hkv * B * 4
        gbs = moved / (merge_us * 1e3)
        copy_gbs, torch_us = float("nan"), float("nan")
        if has_torch:
            tk = torch.from_numpy(k).cuda()
            ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            tk.clone(); torch.cuda.synchronize()
            ev0.record()
            for _ in range(20):
                tk.clone()
            ev1.record(); torch.cuda.synchronize()
            copy_gbs = 2 * k.nbytes / (ev0.elapsed_time(ev1) / 20 * 1e6)
            torch_us = torch_merge_us(torch, k, v, a, slot, lens, B)
        print(f"| {L} | {merge_us:.1f} | {gbs:.1f} | {copy_gbs:.1f} | {gbs / copy_gbs:.2f} | "
              f"{torch_us:.1f} | {torch_us / merge_us:.2f} |")
    print("\n## decode attention (f16, Hq=32, Hkv=8, D=128, one query), kernel time from CUDA events")
    print("| L | full us | 50% us | 50%/full | 35% us | 35%/full |")
    print("|---|---|---|---|---|---|")
    for L in lengths_k:
        row = {}
        for frac in (1.0, 0.5, 0.35):
            S = int(L * frac)
            q = rng.standard_normal((Hq, 1, D)).astype(np.float16)
            k = rng.standard_normal((Hkv, S, D)).astype(np.float16)
            mod = attention_module((Hq, 1, D), k.shape, k.shape, np.float16, count_bias=frac < 1, scale=None)
            _, us, _ = run(mod, "attention", [q, k, k, np.full((Hkv,), S, np.int32),
                                              np.ones((Hkv, S), np.int32)], 1, times=True, repetitions=10)
            row[frac] = sum(t for n, t in us.items() if n.startswith("kvmerge_attention"))
        print(f"| {L} | {row[1.0]:.1f} | {row[0.5]:.1f} | {row[0.5] / row[1.0]:.2f} | "
              f"{row[0.35]:.1f} | {row[0.35] / row[1.0]:.2f} |")


def torch_merge_us(torch, k, v, a, slot, lens, B):
    """The same merge (pivot, auto sigma, Gaussian weights) in PyTorch eager ops."""
    dev = "cuda"
    K = torch.from_numpy(k).to(dev)
    V = torch.from_numpy(v).to(dev)
    A = torch.from_numpy(a).to(dev)
    S = torch.from_numpy(np.asarray(slot, np.int64)).to(dev)
    H, L, D = K.shape

    def merge():
        idx = S.clamp(min=0)
        valid = (S >= 0).float()
        # pivot: max score per slot (ties ignored here), as an index
        sc = torch.where(S >= 0, A, torch.full_like(A, -1e30))
        best = torch.full((H, B), -1e30, device=dev).scatter_reduce(1, idx, sc, "amax")
        is_piv = (sc == best.gather(1, idx)) & (S >= 0)
        tok = torch.arange(L, device=dev).expand(H, L)
        piv = torch.zeros((H, B), dtype=torch.long, device=dev).scatter_reduce(
            1, idx, torch.where(is_piv, tok, torch.zeros_like(tok)), "amax")
        Kf = K.float()
        kp = Kf.gather(1, piv.gather(1, idx)[..., None].expand(H, L, D))
        dist = ((kp - Kf) ** 2).sum(-1) * valid
        n = torch.zeros((H, B), device=dev).scatter_add(1, idx, valid)
        tot = torch.zeros((H, B), device=dev).scatter_add(1, idx, dist)
        s2 = (tot / (n - 1).clamp(min=1)).gather(1, idx)
        g = torch.where(s2 > 0, torch.exp(-dist / (2 * s2.clamp(min=1e-30))), torch.ones_like(dist)) * valid
        gs = torch.zeros((H, B), device=dev).scatter_add(1, idx, g)
        w = (g / gs.gather(1, idx))[..., None]
        ok = torch.zeros((H, B, D), device=dev).scatter_add(1, idx[..., None].expand(H, L, D), w * Kf)
        ov = torch.zeros((H, B, D), device=dev).scatter_add(1, idx[..., None].expand(H, L, D), w * V.float())
        return ok.half(), ov.half()

    merge(); torch.cuda.synchronize()
    ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ev0.record()
    for _ in range(10):
        merge()
    ev1.record(); torch.cuda.synchronize()
    return ev0.elapsed_time(ev1) / 10 * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip-timing", action="store_true")
    p.add_argument("--lengths", default="4096,32768,131072")
    p.add_argument("--device", default="cuda",
                   help="cpu runs the same checks on the CPU path (to test this harness)")
    args = p.parse_args()
    global DEVICE
    DEVICE = args.device
    failures = correctness()
    if not args.skip_timing:
        timing([int(x) for x in args.lengths.split(",")])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
