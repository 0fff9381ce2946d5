#!/usr/bin/env python3
"""Writes the seed corpora of the kvmerge fuzz targets into OUT/<target>/.

  kvmerge-fuzz-ir        every test/**/*.mlir split at `// -----`
  kvmerge-fuzz-npy       small .npy files (numpy, every supported dtype, v1/v2/v3
                         headers, fortran order, bf16 as '<V2') and the inline
                         --input=... literals of the lit tests; byte 0 selects the
                         parser (even: npy, odd: literal), byte 1 the expected type
  kvmerge-fuzz-compress  pseudo-random configurations + values (fixed seed)

usage: make_seeds.py OUT_DIR
"""
import io
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ir_seeds(out: Path) -> int:
    n = 0
    for f in sorted((ROOT / "test").rglob("*.mlir")):
        for i, chunk in enumerate(re.split(r"^// -----\s*$", f.read_text(), flags=re.M)):
            if chunk.strip():
                (out / f"{f.stem}-{i}.mlir").write_text(chunk)
                n += 1
    for f in sorted((ROOT / "examples").glob("*.mlir")):
        (out / f.name).write_text(f.read_text())
        n += 1
    return n


def npy_seeds(out: Path) -> int:
    n = 0
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if np is not None:
        arrays = [
            np.arange(6, dtype=np.float32).reshape(2, 3),
            np.array([1.5, -2.0, np.nan, np.inf], np.float16),
            np.array([[1, 2], [3, 4]], np.float64),
            np.array([-128, 0, 127], np.int8),
            np.array([1, -1, 2**31 - 1], np.int32),
            np.array([2**40], np.int64),
            np.float32(3.0).reshape(()),
            np.zeros((0, 3), np.float32),
            np.arange(4, dtype=np.float32).reshape(2, 2).T.copy(order="F"),
            np.arange(3, dtype=">f4"),
            np.frombuffer(b"\x80\x3f\x00\x40", dtype="V2"),
        ]
        for i, a in enumerate(arrays):
            for version in [(1, 0), (2, 0), (3, 0)]:
                buf = io.BytesIO()
                try:
                    np.lib.format.write_array(buf, a, version=version)
                except ValueError:
                    continue
                (out / f"npy-{i}-v{version[0]}").write_bytes(b"\x00" + bytes([i % 7]) + buf.getvalue())
                n += 1
    literals = set()
    for f in (ROOT / "test").rglob("*.mlir"):
        literals.update(re.findall(r"--input=([^@\s'\"][^\s'\"]*)", f.read_text()))
    literals.update(["2x2xf32=[1 2][3 4]", "f32=0.5", "4xbf16=1,nan,-inf,0x1p-3", "3xi8=-128,0,127"])
    for i, lit in enumerate(sorted(literals)):
        (out / f"lit-{i}").write_bytes(b"\x01\x00" + lit.encode())
        n += 1
    return n


def compress_seeds(out: Path) -> int:
    rng = random.Random(8)
    for i in range(48):
        size = rng.choice([16, 64, 256, 1024, 4096])
        (out / f"rand-{i}").write_bytes(bytes(rng.randrange(256) for _ in range(size)))
    return 48


def main() -> None:
    out = Path(sys.argv[1])
    for target, fn in [("kvmerge-fuzz-ir", ir_seeds), ("kvmerge-fuzz-npy", npy_seeds),
                       ("kvmerge-fuzz-compress", compress_seeds)]:
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        for old in d.iterdir():
            old.unlink()
        print(f"{target}: {fn(d)} seeds in {d}")


if __name__ == "__main__":
    main()
