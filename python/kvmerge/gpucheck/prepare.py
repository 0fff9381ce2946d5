"""The prepare step (here, with the kvmerge build): artifacts, inputs, expected outputs, manifest.

Writes into one directory (default ``gpu-prepared/``, ignored by git; carried to the GPU machine):

  manifest.json            cases, data sources, artifacts and their functions (kvmerge.gpucheck.cases)
  <family>-<dtype>.so      kvmerge-aot artifacts (default: cuda sm_90a fatbin), one per family/dtype
  ref-<dtype>.npz          synthetic inputs of the ref cases (k, v, a, q)
  expected.npz             kvmerge.reference's outputs for the ref and fixture cases
  sources/*.mlir           the modules the artifacts were compiled from
  bin/kvmerge-aot-run      the .npy runner (no LLVM), smoke-tested by the run step
"""
from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .. import aot, reference
from ..compiled import attention_module, compress_module, tool
from .cases import (COMPRESS_RESULTS, REPO, SCHEMA, Arrays, Config, Grid, case_key, numpy_dtype,
                    synthetic_numpy)

MAX_MIB = 48  # of the 64 MiB a working tree may carry, the tree itself takes about 6


def _git_describe() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _rename(src: str, old: str, new: str) -> str:
    return src.replace(f"func.func @{old}(", f"func.func @{new}(", 1)


def _source(name: str, sig: dict) -> str:
    dt = numpy_dtype(sig["dtype"])
    if sig["kind"] == "compress":
        H, L, D = sig["shape"]
        a = sig["args"]
        return _rename(compress_module((H, L, D), (H, L, D), dt, policy=a["policy"], B=a["B"], sink=a["sink"],
                                       recent=a["recent"], mode=a["mode"], eps=a["eps"], sigma=a["sigma"],
                                       heavy=a.get("heavy") if a["policy"] == "kvmerger" else None),
                       "compress", name)
    H, S, D = sig["shape"]
    return _rename(attention_module((sig["q_heads"], 1, D), (H, S, D), (H, S, D), dt, count_bias=sig["count_bias"],
                                    scale=None), "attention", name)


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def prepare(out, config: Config = Config(), *, target: str = "cuda", chip: str = "sm_90a",
            gpu_format: str = "fatbin", max_mib: float = MAX_MIB, log: Callable[[str], None] = print) -> dict:
    """Writes the prepared directory ``out`` (replacing an earlier one) and returns its manifest."""
    if target not in ("cuda", "cpu"):
        raise ValueError(f"target: expected 'cuda' or 'cpu', got {target!r}")
    out = Path(out)
    if out.exists():
        if any(out.iterdir()) and not (out / "manifest.json").is_file():
            raise ValueError(f"out: '{out}' exists and is not a prepared directory (no manifest.json); "
                             f"refusing to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.monotonic()
    grid = Grid(config).build()

    # Inputs of the ref cases (NumPy), written first: the expectations read them back as the run will.
    for key, d in grid.data.items():
        if d["source"] == "npz" and not d["file"].startswith("repo:"):
            H, L, D = d["shape"]
            k, v, a = synthetic_numpy(H, L, D, d["dtype"], d["seed"])
            q = np.random.default_rng(d["seed"] + 1).standard_normal((config.ref_q_heads, D)).astype(k.dtype)
            np.savez_compressed(out / d["file"], k=k, v=v, a=a, q=q)
    arrays = Arrays(out)

    # Expected outputs of kvmerge.reference.
    expected = {}
    by_id = {c["id"]: c for c in grid.cases}
    for case in grid.cases:
        if case["expected"]["source"] != "npz":
            continue
        if case["kind"] == "compress":
            k, v, a = arrays.data(grid.data[case["data"]])
            x = case["args"]
            hv = {"heavy": x["heavy"]} if x["policy"] == "kvmerger" and "heavy" in x else {}
            res = reference.compress(k, v, a, policy=x["policy"], budget=x["B"], sink=x["sink"], recent=x["recent"],
                                     mode=x["mode"], eps=x["eps"], sigma=x["sigma"], **hv)
            for name in COMPRESS_RESULTS:
                expected[case_key(case["id"], name)] = res[name]
            if x["policy"] == "kvmerger":
                case["reference_slots"] = [int(n) for n in res["lengths"]]
        else:
            over = by_id[case["cache"]["case"]]
            k, v, a = arrays.data(grid.data[over["data"]])
            if case["cache"]["which"] == "compressed":
                ck, cv = expected[case_key(over["id"], "keys")], expected[case_key(over["id"], "values")]
                lengths, counts = expected[case_key(over["id"], "lengths")], expected[case_key(over["id"], "counts")]
            else:
                ck, cv = k, v
                lengths = np.full((k.shape[0],), k.shape[1], np.int32)
                counts = np.ones(k.shape[:2], np.int32)
            q = arrays.query(case["query"], case["dtype"])
            expected[case_key(case["id"], "out")] = reference.attention(q, ck, cv, lengths, counts=counts,
                                                                         count_bias=case["count_bias"])
    np.savez_compressed(out / "expected.npz", **expected)
    log(f"prepare: {len(grid.cases)} cases, {len(expected)} expected arrays ({time.monotonic() - t0:.1f} s)")

    # Artifacts.
    (out / "sources").mkdir()
    artifacts = {}
    for name, fns in grid.functions.items():
        src = "\n".join(_source(fn, sig) for fn, sig in fns.items())
        (out / "sources" / f"{name}.mlir").write_text(src)
        t = time.monotonic()
        art = aot.build(src, out / f"{name}.so", target=target, chip=chip, gpu_format=gpu_format)
        if set(art.functions) != set(fns):
            raise RuntimeError(f"artifact {name}: functions {sorted(art.functions)}, expected {sorted(fns)}")
        artifacts[name] = dict(file=f"{name}.so", target=art.target, functions=sorted(fns),
                               bytes=(out / f"{name}.so").stat().st_size)
        log(f"prepare: {name}.so: {len(fns)} functions, {artifacts[name]['bytes'] / 2**20:.1f} MiB, "
            f"{art.target} ({time.monotonic() - t:.1f} s)")

    runner = Path(tool("kvmerge-aot-run"))
    (out / "bin").mkdir()
    shutil.copy2(runner, out / "bin" / "kvmerge-aot-run")

    targets = sorted({a["target"] for a in artifacts.values()})
    manifest = dict(schema=SCHEMA, created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    kvmerge=_git_describe(), target=targets[0] if len(targets) == 1 else ", ".join(targets),
                    config=config.to_json(), artifacts=artifacts, data=grid.data, cases=grid.cases,
                    runner="bin/kvmerge-aot-run")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = _dir_bytes(out)
    manifest["bytes"] = total
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log(f"prepare: {out}: {total / 2**20:.1f} MiB in {len(list(out.rglob('*')))} files, "
        f"{time.monotonic() - t0:.0f} s")
    if total > max_mib * 2**20:
        raise RuntimeError(f"prepare: '{out}' holds {total / 2**20:.1f} MiB, more than the {max_mib} MiB allowed "
                           f"(a working tree carries at most 64 MiB to the GPU machine)")
    log(f"prepare: next, on the GPU machine (carry '{out}' with the tree): "
        f"scripts/gpu-check.sh run {out} --out $OUT")
    return manifest
