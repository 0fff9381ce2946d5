"""``python -m kvmerge.gpucheck prepare DIR`` | ``run DIR --out OUT`` (see scripts/gpu-check.sh)."""
from __future__ import annotations

import argparse
import os
import sys


def _ints(text: str):
    return tuple(int(x) for x in text.split(",") if x)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m kvmerge.gpucheck",
                                description="The GPU check in two steps: prepare here, run on the GPU machine "
                                            "(docs/gpu.md).")
    sub = p.add_subparsers(dest="step", required=True)
    pp = sub.add_parser("prepare", help="artifacts, inputs, expected outputs, manifest (needs the kvmerge build)")
    pp.add_argument("dir", nargs="?", default="gpu-prepared")
    pp.add_argument("--target", default="cuda", choices=["cuda", "cpu"],
                    help="cpu: CPU artifacts, to test the run step without a GPU")
    pp.add_argument("--chip", default="sm_90a")
    pp.add_argument("--gpu-format", default="fatbin", choices=["fatbin", "bin", "isa"])
    pp.add_argument("--lengths", type=_ints, default=None, help="large cache lengths (default 4096,32768,131072)")
    pp.add_argument("--dtypes", default=None, help="comma-separated subset of float32,float16,bfloat16")
    pp.add_argument("--kv-heads", type=int, default=None)
    pp.add_argument("--q-heads", type=int, default=None)
    pp.add_argument("--head-dim", type=int, default=None)
    pp.add_argument("--ref-length", type=int, default=None)
    pp.add_argument("--no-fixture", action="store_true", help="leave out the SmolLM2 fixture cases")
    pp.add_argument("--max-mib", type=float, default=None)
    pr = sub.add_parser("run", help="check and time on the GPU (needs numpy, torch, a CUDA driver)")
    pr.add_argument("dir", nargs="?", default="gpu-prepared")
    pr.add_argument("--out", default=os.environ.get("OUT") or "gpu-check-out",
                    help="where results go (default: $OUT, else gpu-check-out)")
    pr.add_argument("--deadline", type=float, default=420, help="seconds after which cases are skipped (default 420)")
    pr.add_argument("--skip-timing", action="store_true")
    pr.add_argument("--only", default=None, help="regular expression: only the cases whose id matches")
    pr.add_argument("--reps", type=int, default=None, help="timed repetitions (default 10, 5 for L > 32K)")
    a = p.parse_args(argv)
    if a.step == "prepare":
        from .cases import Config
        from .prepare import MAX_MIB, prepare

        kw = {}
        for name in ("lengths", "kv_heads", "q_heads", "head_dim", "ref_length"):
            if getattr(a, name) is not None:
                kw[name] = getattr(a, name)
        if a.dtypes:
            kw["dtypes"] = tuple(a.dtypes.split(","))
        if a.no_fixture:
            kw["fixture"] = False
        try:
            config = Config(**kw)
            prepare(a.dir, config, target=a.target, chip=a.chip, gpu_format=a.gpu_format,
                    max_mib=a.max_mib or MAX_MIB)
        except (ValueError, RuntimeError) as e:
            print(f"gpu-check prepare: {e}", file=sys.stderr)
            return 1
        return 0
    from .run import run

    return run(a.dir, a.out, deadline_s=a.deadline, do_timing=not a.skip_timing, only=a.only, reps=a.reps)


if __name__ == "__main__":
    raise SystemExit(main())
