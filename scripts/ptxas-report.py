#!/usr/bin/env python3
"""Assemble every .ptx file of a directory with ptxas -v and print one line
per kernel:

  kernel=NAME arch=sm_XX registers=R stack=S spill_stores=A spill_loads=B smem=M

Used by the lit tests (test/Conversion/KVCacheToGPU/ptxas-*.mlir) and
docs/gpu.md. Exits 1 if ptxas fails on any file.

  scripts/ptxas-report.py --ptxas /usr/local/cuda/bin/ptxas --arch sm_90a DIR
"""
import argparse
import pathlib
import re
import subprocess
import sys


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ptxas", default="ptxas")
    p.add_argument("--arch", required=True)
    p.add_argument("dir")
    args = p.parse_args()
    files = sorted(pathlib.Path(args.dir).glob("*.ptx"))
    if not files:
        print(f"no .ptx files in {args.dir}", file=sys.stderr)
        return 1
    status = 0
    for f in files:
        r = subprocess.run([args.ptxas, f"-arch={args.arch}", "-v", str(f),
                            "-o", "/dev/null"], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"ptxas failed on {f}:\n{r.stderr}", file=sys.stderr)
            status = 1
            continue
        kernel = None
        info = {}
        for line in r.stderr.splitlines():
            m = re.search(r"Compiling entry function '(\w+)' for '(\w+)'", line)
            if m:
                kernel, info = m.group(1), {"arch": m.group(2)}
                continue
            m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, "
                          r"(\d+) bytes spill loads", line)
            if m and kernel:
                info.update(stack=m.group(1), spill_stores=m.group(2),
                            spill_loads=m.group(3))
                continue
            m = re.search(r"Used (\d+) registers", line)
            if m and kernel:
                smem = re.search(r"(\d+) bytes smem", line)
                print(f"kernel={kernel} arch={info['arch']} "
                      f"registers={m.group(1)} stack={info.get('stack', '?')} "
                      f"spill_stores={info.get('spill_stores', '?')} "
                      f"spill_loads={info.get('spill_loads', '?')} "
                      f"smem={smem.group(1) if smem else 0}")
                kernel = None
    return status


if __name__ == "__main__":
    sys.exit(main())
