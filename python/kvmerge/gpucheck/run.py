"""The run step (on the GPU machine): NumPy, PyTorch, a CUDA driver and the prepared directory.

No LLVM, MLIR, kvmerge build or network: the artifacts are loaded with ctypes (:mod:`kvmerge.aot`),
the large inputs are generated on the GPU from the manifest's seeds and their expectations computed
there by :mod:`kvmerge.torch_ref`. Everything lands in ``OUT`` (default ``$OUT``):

  log.txt        the console output
  results.json   every case (status, problems, notes, seconds), the runner check, the timings
  report.md      the same as tables (docs/gpu.md explains them)

Exit status: 0 all passed; 1 a case failed or the run broke; 2 it could not start (no manifest, no
torch, no driver or GPU: the artifact runtime's message); 3 the deadline cut cases or timings.
A prepared directory for ``--target=cpu`` runs the same way on the CPU (torch on the CPU; its
timings are the CPU's, labeled so) to test this harness without a GPU.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from .. import aot
from .cases import (COMPRESS_RESULTS, Arrays, ManifestError, budget_share, load_manifest, nbytes)


class Log:
    def __init__(self, path: Path):
        self.file = open(path, "a", buffering=1)

    def __call__(self, msg: str = "") -> None:
        print(msg, flush=True)
        self.file.write(msg + "\n")

    def close(self):
        self.file.close()


class Run:
    """One run: the manifest, the loaded artifacts, the device, the deadline, the results."""

    def __init__(self, prepared: Path, out: Path, deadline_s: float, log: Log):
        self.prepared, self.out, self.log = prepared, out, log
        self.t0 = time.monotonic()
        self.deadline = self.t0 + deadline_s
        self.results: dict = dict(schema=1, started=datetime.datetime.now(datetime.timezone.utc)
                                  .isoformat(timespec="seconds"), prepared=str(prepared), status="incomplete",
                                  host=_host(), cases=[], runner=None,
                                  timing=dict(compress=[], attention=[], skipped=[]))
        self.manifest: Optional[dict] = None
        self.arts: Dict[str, aot.Artifact] = {}
        self.torch = None
        self.device = "cpu"

    # -- helpers ------------------------------------------------------------------------------
    def late(self) -> bool:
        return time.monotonic() > self.deadline

    def to_torch(self, a: np.ndarray):
        from .. import torch_ref

        return torch_ref.from_numpy(np.ascontiguousarray(a), self.device)

    def to_numpy(self, t) -> np.ndarray:
        from .. import torch_ref

        return np.ascontiguousarray(torch_ref.to_numpy(t))

    def sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def time_ms(self, fn, reps: int) -> float:
        """Mean milliseconds of ``fn()`` over ``reps`` calls after one warm-up (CUDA events on a
        GPU: device time of everything ``fn`` enqueues; wall time on the CPU)."""
        fn()
        self.sync()
        if self.device == "cuda":
            torch = self.torch
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(reps):
                fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / reps
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t) * 1e3 / reps

    def kernel_ms(self, art: aot.Artifact, fn: str, inputs, reps: int):
        """(mean ms per call summed over the call's kernels, {kernel: ms per call}); CUDA events
        around every launch. On a CPU artifact: the wall time of the call, {}."""
        art.call(fn, *inputs)
        if self.device != "cuda":
            t = time.perf_counter()
            for _ in range(reps):
                art.call(fn, *inputs)
            return (time.perf_counter() - t) * 1e3 / reps, {}
        art.set_kernel_timing(True)
        try:
            art.reset_kernel_times()
            for _ in range(reps):
                art.call(fn, *inputs)
            times = art.kernel_times()
        finally:
            art.set_kernel_timing(False)
            art.reset_kernel_times()
        per = {k: ms / reps for k, (_, ms) in times.items()}
        return sum(per.values()), per

    def call_ms(self, art: aot.Artifact, fn: str, inputs, reps: int) -> float:
        """Median wall milliseconds of a whole call (host<->device staging included)."""
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            art.call(fn, *inputs)
            ts.append((time.perf_counter() - t) * 1e3)
        return statistics.median(ts)


def _host() -> dict:
    h = dict(python=sys.version.split()[0], platform=platform.platform(), libc=" ".join(platform.libc_ver()),
             numpy=np.__version__, cpus=os.cpu_count())
    try:
        h["loadavg"] = list(os.getloadavg())
    except OSError:  # pragma: no cover
        pass
    return h


def _nvidia_smi() -> Optional[str]:
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,"
                            "clocks.max.mem", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        return r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# -- correctness ----------------------------------------------------------------------------------

def _data(run: Run, arrays: Arrays, key: str):
    """{'np': (k, v, a) NumPy, 't': (k, v, a) torch on the device} of a data source."""
    from . import checks

    d = run.manifest["data"][key]
    if d["source"] == "npz":
        k, v, a = arrays.data(d)
        return dict(np=(k, v, a), t=tuple(run.to_torch(x) for x in (k, v, a)))
    H, L, D = d["shape"]
    t = checks.synthetic(H, L, D, d["dtype"], d["seed"], run.device)
    return dict(np=tuple(run.to_numpy(x) for x in t), t=t)


def _compress(run: Run, arrays: Arrays, case: dict, data: dict):
    from . import checks
    from .. import torch_ref

    art = run.arts[case["artifact"]]
    outs = art.call(case["function"], *data["np"])
    got = {n: run.to_torch(o) for n, o in zip(COMPRESS_RESULTS, outs)}
    if case["expected"]["source"] == "npz":
        exp = {n: run.to_torch(x) for n, x in arrays.expected(case, COMPRESS_RESULTS).items()}
    else:
        x = case["args"]
        exp = torch_ref.compress(*data["t"], policy=x["policy"], B=x["B"], sink=x["sink"], recent=x["recent"],
                                 mode=x["mode"], eps=x["eps"], sigma=x["sigma"],
                                 heavy=x.get("heavy", 0))
    verdict = checks.check_compress(case["args"], *data["t"], got, exp, case["dtype"])
    verdict["slots"] = [int(n) for n in got["lengths"].tolist()]
    return verdict, got


def _attention(run: Run, arrays: Arrays, case: dict, over: dict, data: dict, got_over: Optional[dict]):
    from . import checks
    from .. import torch_ref

    torch = run.torch
    k, v, _ = data["t"]
    H, L, D = over["shape"]
    if case["cache"]["which"] == "compressed":
        if case["expected"]["source"] == "npz":  # the reference's compressed cache
            c = {n: run.to_torch(x) for n, x in arrays.expected(over, COMPRESS_RESULTS).items()}
        else:  # the kernel's
            if got_over is None:
                raise RuntimeError(f"the compress case '{over['id']}' gave no result to attend over")
            c = got_over
        ck, cv, lengths, counts = c["keys"], c["values"], c["lengths"], c["counts"]
    else:
        ck, cv = k, v
        lengths = torch.full((H,), L, dtype=torch.int32, device=run.device)
        counts = torch.ones((H, L), dtype=torch.int32, device=run.device)
    if case["query"]["source"] == "npz":
        q = run.to_torch(arrays.query(case["query"], case["dtype"]))
    else:
        q = checks.synthetic_query(case["q_heads"], D, case["dtype"], case["query"]["seed"], run.device)
    inputs = [run.to_numpy(q)[:, None, :], run.to_numpy(ck), run.to_numpy(cv), run.to_numpy(lengths),
              run.to_numpy(counts)]
    (out,) = run.arts[case["artifact"]].call(case["function"], *inputs)
    if case["expected"]["source"] == "npz":
        from .cases import case_key

        exp = run.to_torch(arrays.file(case["expected"]["file"])[case_key(case["id"], "out")])
    else:
        exp = torch_ref.attention(q, ck, cv, lengths, counts=counts, count_bias=case["count_bias"],
                                  dtype=torch.float64)
    return checks.check_attention(run.to_torch(out), exp)


def correctness(run: Run, only: Optional[str] = None) -> None:
    arrays = Arrays(run.prepared)
    cases = run.manifest["cases"]
    by_id = {c["id"]: c for c in cases}
    current, data, gots = None, None, {}
    for case in cases:
        if only and not re.search(only, case["id"]):
            continue
        rec = dict(id=case["id"], kind=case["kind"], dtype=case["dtype"], shape=case["shape"])
        if run.late():
            rec.update(status="SKIP", problems=[], note="deadline")
            run.results["cases"].append(rec)
            continue
        over = by_id[case["cache"]["case"]] if case["kind"] == "attention" else case
        key = over["data"]
        t = time.monotonic()
        try:
            if key != current:
                if current is not None:
                    write_outputs(run)  # what is done survives a run killed later
                current, data, gots = key, None, {}
                if run.device == "cuda":
                    run.torch.cuda.empty_cache()
                data = _data(run, arrays, key)
            if case["kind"] == "compress":
                verdict, got = _compress(run, arrays, case, data)
                gots[case["id"]] = got
            else:
                verdict = _attention(run, arrays, case, over, data, gots.get(over["id"]))
        except Exception as e:  # one broken case does not stop the others
            verdict = dict(status="FAIL", problems=[f"{type(e).__name__}: {e}"], note="",
                           traceback=traceback.format_exc(limit=6))
        run.sync()
        rec.update(verdict)
        rec["seconds"] = round(time.monotonic() - t, 3)
        run.results["cases"].append(rec)
        line = f"{rec['status']} {case['id']} ({rec['seconds']:.2f} s)"
        if rec.get("note"):
            line += f": {rec['note']}"
        run.log(line)
        for p in rec.get("problems", []):
            run.log(f"    {p}")


# -- the .npy runner --------------------------------------------------------------------------------

def runner_check(run: Run) -> None:
    """kvmerge-aot-run (carried in the prepared directory) on the first ref compress case: its
    outputs must equal those of the ctypes call."""
    runner = run.prepared / run.manifest.get("runner", "bin/kvmerge-aot-run")
    case = next((c for c in run.manifest["cases"] if c["kind"] == "compress" and c["family"] == "ref"), None)
    if case is None or run.late():
        return
    rec = dict(case=case["id"], status="FAIL", problems=[])
    arrays = Arrays(run.prepared)
    try:
        k, v, a = arrays.data(run.manifest["data"][case["data"]])
        art_path = run.prepared / run.manifest["artifacts"][case["artifact"]]["file"]
        exp = run.arts[case["artifact"]].call(case["function"], k, v, a)
        with tempfile.TemporaryDirectory(prefix="kvmerge-gpucheck-") as tmp:
            tmp = Path(tmp)
            cmd = [str(runner), str(art_path), f"--function={case['function']}"]
            for i, x in enumerate((k, v, a)):
                np.save(tmp / f"in{i}.npy", x)
                cmd.append(f"--input=@{tmp / f'in{i}.npy'}")
            for i in range(len(COMPRESS_RESULTS)):
                cmd.append(f"--output=@{tmp / f'out{i}.npy'}")
            if run.device == "cuda":
                cmd.append("--kernel-times")
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            rec["stdout"] = p.stdout[-2000:]
            rec["stderr"] = p.stderr[-2000:]
            if p.returncode != 0:
                rec["problems"].append(f"{runner.name} exited with {p.returncode}: {p.stderr.strip()[-500:]}")
            else:
                for i, (name, e) in enumerate(zip(COMPRESS_RESULTS, exp)):
                    g = np.load(tmp / f"out{i}.npy")
                    if g.tobytes() != np.ascontiguousarray(e).tobytes():
                        rec["problems"].append(f"{name}: the runner's output differs from the ctypes call's")
                if run.device == "cuda" and "kvmerge-cuda-kernel-time" not in p.stdout + p.stderr:
                    rec["problems"].append("--kernel-times printed no kernel times")
    except Exception as e:
        rec["problems"].append(f"{type(e).__name__}: {e}")
    rec["status"] = "FAIL" if rec["problems"] else "PASS"
    run.results["runner"] = rec
    run.log(f"{rec['status']} runner kvmerge-aot-run on {case['id']}")
    for p in rec["problems"]:
        run.log(f"    {p}")


# -- timing ------------------------------------------------------------------------------------

def timing(run: Run, reps: Optional[int] = None) -> None:
    """Per timed length: the fused compress of every timed policy (kernel time) against a
    device-to-device copy of K and V and against torch_ref.compress (PyTorch eager, same
    algorithm); decode attention over the compressed and the full cache, kernels against
    torch_ref.attention and PyTorch's scaled_dot_product_attention."""
    from . import checks
    from .. import torch_ref

    torch = run.torch
    try:
        run.results["timing"]["loadavg"] = list(os.getloadavg())
    except OSError:  # pragma: no cover
        pass
    cases = [c for c in run.manifest["cases"] if c.get("timing")]
    by_id = {c["id"]: c for c in run.manifest["cases"]}
    keys = []
    for c in cases:
        key = (by_id[c["cache"]["case"]] if c["kind"] == "attention" else c)["data"]
        if key not in keys:
            keys.append(key)
    for key in keys:
        d = run.manifest["data"][key]
        H, L, D = d["shape"]
        if run.late():
            run.results["timing"]["skipped"].append(key)
            run.log(f"SKIP timing {key}: deadline")
            continue
        n = reps or (10 if L <= 32768 else 5)
        n_torch = max(2, n // 2)
        try:
            if run.device == "cuda":
                torch.cuda.empty_cache()
            k, v, a = checks.synthetic(H, L, D, d["dtype"], d["seed"], run.device)
            k_np, v_np, a_np = (run.to_numpy(x) for x in (k, v, a))
            dk, dv = torch.empty_like(k), torch.empty_like(v)

            def copy():
                dk.copy_(k)
                dv.copy_(v)

            copy_ms = run.time_ms(copy, n)
            kv_bytes = k.numel() * k.element_size() + v.numel() * v.element_size()
            compressed = {}
            for c in [c for c in cases if c["kind"] == "compress" and c["data"] == key]:
                art, fn, x = run.arts[c["artifact"]], c["function"], c["args"]
                inputs = (k_np, v_np, a_np)
                kern_ms, per = run.kernel_ms(art, fn, inputs, n)
                call_ms = run.call_ms(art, fn, inputs, max(3, n // 2))
                torch_ms = run.time_ms(lambda: torch_ref.compress(k, v, a, policy=x["policy"], B=x["B"], sink=x["sink"],
                                                                  recent=x["recent"], mode=x["mode"], eps=x["eps"],
                                                                  sigma=x["sigma"], heavy=x.get("heavy", 0)), n_torch)
                B = x["B"]
                moved = kv_bytes + a.numel() * 4 + 2 * nbytes((H, B, D), d["dtype"]) + H * B * 12 + H * 4
                row = dict(L=L, policy=c["id"].split("/")[-1], dtype=d["dtype"], B=B, kernels_ms=kern_ms,
                           kernels=per, compress_bytes=moved, compress_gbs=moved / kern_ms / 1e6,
                           copy_ms=copy_ms, copy_bytes=2 * kv_bytes, copy_gbs=2 * kv_bytes / copy_ms / 1e6,
                           torch_ms=torch_ms, call_ms=call_ms)
                row["bandwidth_vs_copy"] = row["compress_gbs"] / row["copy_gbs"]
                row["copy_over_compress_time"] = copy_ms / kern_ms
                row["torch_over_kvmerge"] = torch_ms / kern_ms
                run.results["timing"]["compress"].append(row)
                run.log(f"TIME compress {c['id']}: kernels {kern_ms:.3f} ms ({row['compress_gbs']:.0f} GB/s), "
                        f"copy K,V {copy_ms:.3f} ms ({row['copy_gbs']:.0f} GB/s), torch eager {torch_ms:.3f} ms, "
                        f"call with staging {call_ms:.1f} ms")
                if x["policy"] == "kvmerger" and x["mode"] == "budget":
                    compressed = dict(zip(COMPRESS_RESULTS, art.call(fn, *inputs)), B=B)
            del dk, dv
            for c in [c for c in cases if c["kind"] == "attention" and by_id[c["cache"]["case"]]["data"] == key]:
                over = by_id[c["cache"]["case"]]
                q = checks.synthetic_query(c["q_heads"], D, d["dtype"], c["query"]["seed"], run.device)
                if c["cache"]["which"] == "compressed":
                    if not compressed:
                        raise RuntimeError("no compressed cache to attend over (its compress case is not timed)")
                    ck_np, cv_np = compressed["keys"], compressed["values"]
                    len_np, cnt_np = compressed["lengths"], compressed["counts"]
                else:
                    ck_np, cv_np = k_np, v_np
                    len_np, cnt_np = np.full((H,), L, np.int32), np.ones((H, L), np.int32)
                inputs = (run.to_numpy(q)[:, None, :], ck_np, cv_np, len_np, cnt_np)
                kern_ms, per = run.kernel_ms(run.arts[c["artifact"]], c["function"], inputs, n)
                ck, cv, lens, cnts = (run.to_torch(x) for x in inputs[1:])
                torch_ms = run.time_ms(lambda: torch_ref.attention(q, ck, cv, lens, counts=cnts,
                                                                   count_bias=c["count_bias"]), n)
                sdpa_ms = _sdpa_ms(run, q, ck, cv, lens, cnts, c["count_bias"], n)
                S = c["shape"][1]
                row = dict(L=L, which=c["cache"]["which"], S=S, dtype=d["dtype"], q_heads=c["q_heads"],
                           kv_heads=H, head_dim=D, kernels_ms=kern_ms, kernels=per, torch_ms=torch_ms,
                           sdpa_ms=sdpa_ms, share=budget_share(over) if c["cache"]["which"] == "compressed" else 1.0)
                row["torch_over_kvmerge"] = torch_ms / kern_ms
                row["sdpa_over_kvmerge"] = sdpa_ms / kern_ms if sdpa_ms else None
                run.results["timing"]["attention"].append(row)
                run.log(f"TIME attention {c['id']}: kernels {kern_ms:.4f} ms, torch eager {torch_ms:.4f} ms, "
                        f"sdpa {sdpa_ms if sdpa_ms is None else round(sdpa_ms, 4)} ms")
            write_outputs(run)
        except Exception as e:
            run.results["timing"].setdefault("errors", []).append(f"{key}: {type(e).__name__}: {e}")
            run.log(f"FAIL timing {key}: {type(e).__name__}: {e}")
            run.log(traceback.format_exc(limit=6))


def _sdpa_ms(run: Run, q, ck, cv, lengths, counts, count_bias: bool, reps: int) -> Optional[float]:
    """torch.nn.functional.scaled_dot_product_attention (GQA) with the lengths (and log-count
    bias) as an additive mask: PyTorch's fused attention on the same problem."""
    torch = run.torch
    try:
        F = torch.nn.functional
        Hq, D = q.shape
        H, S, _ = ck.shape
        valid = torch.arange(S, device=ck.device)[None, :] < lengths.to(torch.int64)[:, None]
        bias = torch.log(counts.clamp(min=1).to(torch.float32)) if count_bias else torch.zeros((H, S), device=ck.device)
        mask = torch.where(valid, bias, torch.full_like(bias, float("-inf"))).to(q.dtype)
        mask = mask.repeat_interleave(Hq // H, dim=0)[None, :, None, :]  # [1, Hq, 1, S]
        q4, k4, v4 = q[None, :, None, :], ck[None], cv[None]
        fn = lambda: F.scaled_dot_product_attention(q4, k4, v4, attn_mask=mask, enable_gqa=True)  # noqa: E731
        return run.time_ms(fn, reps)
    except Exception as e:  # an older torch, or a backend that declines the mask
        run.log(f"    (scaled_dot_product_attention: {type(e).__name__}: {e})")
        return None


# -- the report ----------------------------------------------------------------------------------

def write_outputs(run: Run) -> None:
    r = run.results
    r["elapsed_s"] = round(time.monotonic() - run.t0, 1)
    (run.out / "results.json").write_text(json.dumps(r, indent=1, default=str) + "\n")
    (run.out / "report.md").write_text(report_markdown(r))


def _f(x, digits=3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def report_markdown(r: dict) -> str:
    m = r.get("manifest", {})
    gpu = r.get("device", "?")
    cpu_note = "" if str(m.get("target", "")).startswith("cuda") else \
        "\n**CPU self-test of the harness (prepared with --target=cpu): these are not GPU numbers.**\n"
    lines = [f"# kvmerge GPU check: {r.get('status')}", cpu_note,
             f"* device: {gpu}; torch: {r['host'].get('torch', '?')} ({r.get('device_torch', '-')}); "
             f"nvidia-smi: {r.get('nvidia_smi') or '-'}",
             f"* artifacts: {m.get('target', '?')}, kvmerge {m.get('kvmerge', '?')}, prepared {m.get('created', '?')}",
             f"* host: {r['host'].get('platform')}, Python {r['host'].get('python')}, "
             f"load average {r['host'].get('loadavg')}",
             f"* started {r.get('started')}, {r.get('elapsed_s')} s", ""]
    if r.get("error"):
        lines += [f"**Stopped:** {r['error']}", ""]
    cases = r.get("cases", [])
    counts = {s: sum(1 for c in cases if c.get("status") == s) for s in ("PASS", "FAIL", "SKIP")}
    lines += [f"## Correctness: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped", "",
              "Against kvmerge.reference (ref, fixture: shipped) or kvmerge.torch_ref on the device (large), "
              "with the CPU path's tolerances (docs/gpu.md).", "",
              "| case | status | s | note |", "|---|---|---:|---|"]
    for c in cases:
        note = "; ".join(c.get("problems", []) + ([c["note"]] if c.get("note") else []))
        lines.append(f"| {c['id']} | {c['status']} | {c.get('seconds', '')} | {note.replace('|', '/')} |")
    if r.get("runner"):
        rr = r["runner"]
        lines += ["", f"Runner (kvmerge-aot-run on {rr['case']}): {rr['status']} "
                      f"{'; '.join(rr['problems'])}"]
    t = r.get("timing", {})
    if t.get("compress"):
        lines += ["", "## Fused compress vs a device-to-device copy of K and V, and vs PyTorch eager", "",
                  f"Host load average when timing started: {t.get('loadavg')}.", "",
                  "Kernel time from CUDA events around every launch (the call's host<->device staging excluded; "
                  "`call` is the whole call with staging). compress bytes = K, V, scores read once + outputs "
                  "written; copy bytes = K and V read and written.", "",
                  "| L | policy | B | kernels ms | compress GB/s | copy K,V ms | copy GB/s | GB/s vs copy | "
                  "copy time / compress time | torch eager ms | torch / kvmerge | call ms |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for x in t["compress"]:
            lines.append(f"| {x['L']} | {x['policy']} | {x['B']} | {_f(x['kernels_ms'], 4)} | {_f(x['compress_gbs'], 0)} | "
                         f"{_f(x['copy_ms'], 4)} | {_f(x['copy_gbs'], 0)} | {_f(x['bandwidth_vs_copy'], 2)} | "
                         f"{_f(x['copy_over_compress_time'], 2)} | {_f(x['torch_ms'], 3)} | "
                         f"{_f(x['torch_over_kvmerge'], 1)} | {_f(x['call_ms'], 1)} |")
        lines += ["", "Per kernel (ms per call):", ""]
        for x in t["compress"]:
            per = ", ".join(f"{k} {v:.4f}" for k, v in sorted(x["kernels"].items()))
            lines.append(f"* L={x['L']} {x['policy']}: {per or 'n/a (CPU)'}")
    if t.get("attention"):
        lines += ["", "## Decode attention over the compressed vs the full cache (one query, GQA)", "",
                  "| L | cache | S | kernels ms | vs full | budget share | torch eager ms | torch / kvmerge | "
                  "sdpa ms | sdpa / kvmerge |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        full = {x["L"]: x["kernels_ms"] for x in t["attention"] if x["which"] == "full"}
        for x in t["attention"]:
            vs = x["kernels_ms"] / full[x["L"]] if x["L"] in full else None
            lines.append(f"| {x['L']} | {x['which']} | {x['S']} | {_f(x['kernels_ms'], 4)} | {_f(vs, 2)} | "
                         f"{_f(x['share'], 2)} | {_f(x['torch_ms'], 4)} | {_f(x['torch_over_kvmerge'], 1)} | "
                         f"{_f(x['sdpa_ms'], 4)} | {_f(x['sdpa_over_kvmerge'], 2)} |")
    for what in ("skipped", "errors"):
        if t.get(what):
            lines += ["", f"Timing {what}: " + "; ".join(t[what])]
    return "\n".join(lines) + "\n"


# -- entry point -------------------------------------------------------------------------------------

def run(prepared, out, *, deadline_s: float = 420, do_timing: bool = True, only: Optional[str] = None,
        reps: Optional[int] = None) -> int:
    prepared, out = Path(prepared), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "log.txt")
    r = Run(prepared, out, deadline_s, log)
    try:
        return _run(r, do_timing, only, reps)
    except Exception as e:  # pragma: no cover - written down, not lost
        r.results["status"] = "error"
        r.results["error"] = f"{type(e).__name__}: {e}"
        log(f"gpu-check run: error: {type(e).__name__}: {e}\n{traceback.format_exc()}")
        return 1
    finally:
        write_outputs(r)
        log(f"gpu-check run: {r.results['status']}; results in {out}/ (report.md, results.json, log.txt)")
        log.close()


def _stop(r: Run, status: str, message: str) -> int:
    r.results["status"] = status
    r.results["error"] = message
    r.log(f"gpu-check run: {message}")
    return 2


def _run(r: Run, do_timing: bool, only: Optional[str], reps: Optional[int]) -> int:
    try:
        r.manifest = load_manifest(r.prepared)
    except ManifestError as e:
        return _stop(r, "no-manifest", str(e))
    m = r.manifest
    r.results["manifest"] = dict(target=m["target"], kvmerge=m.get("kvmerge"), created=m.get("created"),
                                 config=m["config"], cases=len(m["cases"]))
    r.log(f"gpu-check run: {len(m['cases'])} cases, artifacts {m['target']} (kvmerge {m.get('kvmerge')}), "
          f"host load {r.results['host'].get('loadavg')}")
    try:
        import torch
    except ImportError as e:
        return _stop(r, "no-torch", f"needs PyTorch for the expectations and baselines (import torch: {e})")
    r.torch = torch
    r.results["host"]["torch"] = torch.__version__
    cuda = str(m["target"]).startswith("cuda")
    r.device = "cuda" if cuda else "cpu"
    # The artifacts first: without a driver or GPU, their runtime says so.
    for name, a in m["artifacts"].items():
        try:
            art = aot.load(r.prepared / a["file"])
            r.results["device"] = art.initialize()
        except aot.DeviceError as e:
            return _stop(r, "no-device", f"artifact {a['file']}: {e}")
        except aot.ArtifactError as e:
            return _stop(r, "bad-artifact", str(e))
        r.arts[name] = art
    if cuda:
        if not torch.cuda.is_available():
            return _stop(r, "no-torch-cuda", f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA "
                                             f"device; the expectations and baselines need torch on the GPU")
        r.results["device_torch"] = torch.cuda.get_device_name(0)
        r.results["nvidia_smi"] = _nvidia_smi()
    r.log(f"gpu-check run: device {r.results['device']} (torch: {r.results.get('device_torch', 'cpu')})")
    correctness(r, only)
    runner_check(r)
    if do_timing:
        timing(r, reps)
    cases = r.results["cases"]
    failed = sum(1 for c in cases if c["status"] == "FAIL")
    failed += int((r.results["runner"] or {}).get("status") == "FAIL")
    failed += len(r.results["timing"].get("errors", []))
    skipped = sum(1 for c in cases if c["status"] == "SKIP") + len(r.results["timing"]["skipped"])
    r.results["status"] = "fail" if failed else ("incomplete" if skipped else "pass")
    r.log(f"gpu-check run: {sum(1 for c in cases if c['status'] == 'PASS')} passed, {failed} failed, "
          f"{skipped} skipped, {time.monotonic() - r.t0:.0f} s")
    return 1 if failed else (3 if skipped else 0)
