"""Raising attention preserves what the program computes.

Every positive case of test/Dialect/KVCache/Transforms/raise-attention.mlir is run twice on the
same random inputs through the CPU pipeline: as written (upstream linalg lowering) and after
--kvmerge-raise-attention (kvcache.attention lowering). Outputs must agree to f32 rounding
(f16 outputs: to one f16 ulp), and the raised module must contain kvcache.attention.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from kvmerge import compiled

CASES = Path(__file__).resolve().parents[1] / "Dialect/KVCache/Transforms/raise-attention.mlir"
NP_TYPES = {"f32": np.float32, "f16": np.float16, "bf16": ml_dtypes.bfloat16}


def positive_cases():
    for chunk in CASES.read_text().split("// -----"):
        if "expected-remark @+1 {{raised attention" not in chunk:
            continue
        name = re.search(r"func\.func @(\w+)", chunk).group(1)
        yield pytest.param(chunk, id=name)


def arg_types(chunk):
    sig = re.search(r"func\.func @\w+\((.*?)\) ->", chunk).group(1)
    return [(tuple(int(x) for x in m.group(1).split("x")), m.group(2))
            for m in re.finditer(r"tensor<([0-9x]+)x(f32|f16|bf16)>", sig)]


@pytest.mark.parametrize("chunk", list(positive_cases()))
def test_raised_attention_computes_the_same(chunk):
    raised = subprocess.run([compiled.tool("kvmerge-opt"), "--kvmerge-raise-attention", "--canonicalize"], input=chunk,
                            capture_output=True, text=True, check=True).stdout
    assert "kvcache.attention" in raised and "linalg.batch_matmul" not in raised
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(shape).astype(NP_TYPES[t]) for shape, t in arg_types(chunk)]
    name = re.search(r"func\.func @(\w+)", chunk).group(1)
    (want,) = compiled.run(chunk, name, inputs, 1)
    (got,) = compiled.run(raised, name, inputs, 1)
    assert got.dtype == want.dtype and got.shape == want.shape
    g, w = got.astype(np.float64), want.astype(np.float64)
    tol = 1e-5 * (1 + np.abs(w)) if want.dtype == np.float32 else 2 ** -10 * (1 + np.abs(w))
    assert (np.abs(g - w) <= tol).all(), np.max(np.abs(g - w))
