"""The bundled attention blocks end to end, on real K/V states, for every policy.

examples/smollm2-block.mlir (GQA 9:3, D=64) and examples/llama7b-block.mlir (MHA 32, D=128) are
written in upstream dialects only; kvmerge raises their attention, inserts compression in the
prefill and valid-slot masking in the decode, lowers to LLVM and runs them. Prefill outputs, the
compressed caches and decode outputs must match kvmerge.reference (f32: 2e-5 relative; f16 cache
entries: one f16 ulp; slots exactly).
"""

from __future__ import annotations

import numpy as np
import pytest

from kvmerge import blocks

ULP16 = lambda x: np.exp2(np.floor(np.log2(np.maximum(np.abs(x), 2.0 ** -14)))) * 2.0 ** -10


@pytest.fixture(scope="module", params=["smollm2", "llama7b"])
def block(request):
    return request.param, blocks.load_data(request.param)


# `full` keeps all N slots, which the examples' decode (a 50% cache) does not take; the full
# cache is the yardstick `vs_full` instead.
@pytest.mark.parametrize("policy", ["kvmerger", "h2o", "streaming"])
def test_block_matches_reference(block, policy):
    name, data = block
    r = blocks.run_block(name, policy, data)
    assert r["same_slots"], f"{name} {policy}: slot maps differ from the reference"
    for field in ("keys", "values"):
        got = r["outputs"][field].astype(np.float64)
        exp = r["reference"][field].astype(np.float64)
        assert (np.abs(got - exp) <= ULP16(exp) * 1.0001).all(), f"{name} {policy} {field}"
    assert r["prefill_err"] <= 2e-5 * max(1.0, float(np.abs(data.values).max()))
    assert r["decode_err"] <= 2e-5 * max(1.0, float(np.abs(data.values).max()))
    assert 0 < r["vs_full"] < 1.0
