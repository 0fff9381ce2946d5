"""kvcache.attention's mask operand and kvcache.append, compiled vs kvmerge.reference.

Masks: additive float (finite biases, -inf), boolean, one row shared by all heads or one per
query head or per KV-head group, fully masked rows (zeros). Append: every clamp of the lengths.
Random data with fixed seeds; tolerances: f32 2e-5 relative to the output scale.
"""
from __future__ import annotations

import numpy as np
import pytest

from kvmerge import compiled, reference


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), 1e-30)


@pytest.mark.parametrize("hm", [1, 2, 8])
@pytest.mark.parametrize("kind", ["additive", "boolean", "ninf"])
def test_masked_attention(hm, kind):
    rng = np.random.default_rng(hm * 7 + len(kind))
    Hq, Hkv, S, D = 8, 2, 37, 16
    q = rng.standard_normal((Hq, D)).astype(np.float32)
    k = rng.standard_normal((Hkv, S, D)).astype(np.float32)
    v = rng.standard_normal((Hkv, S, D)).astype(np.float32)
    lengths = np.array([S, S - 5], np.int32)
    if kind == "additive":
        mask = rng.standard_normal((hm, S)).astype(np.float32) * 3
    elif kind == "boolean":
        mask = rng.random((hm, S)) < 0.6
        mask[0] = False  # a fully masked row: zeros
    else:
        mask = np.where(rng.random((hm, S)) < 0.5, np.float32(0), np.float32(-np.inf))
    want = reference.attention(q, k, v, lengths, mask=mask)
    got = compiled.attention(q, k, v, lengths, mask=mask)
    assert rel(got, want) <= 2e-5
    if kind == "boolean":
        rows = Hq // hm
        assert not np.any(got[:rows]), "a fully masked row attends to nothing"


def test_mask_errors():
    q = np.zeros((4, 8), np.float32)
    k = np.zeros((2, 5, 8), np.float32)
    with pytest.raises(ValueError, match="mask"):
        reference.attention(q, k, k, np.array([5, 5]), mask=np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="mask"):
        compiled.attention(q, k, k, np.array([5, 5]), mask=np.zeros((2, 4), np.float32))


def append_module(h, p, t, d, dtype):
    ty = {np.float32: "f32", np.int32: "i32"}[dtype]
    tc, ta, tr = f"tensor<{h}x{p}x{d}x{ty}>", f"tensor<{h}x{t}x{d}x{ty}>", f"tensor<{h}x{p + t}x{d}x{ty}>"
    return (f"func.func @append(%c: {tc}, %a: {ta}, %l: tensor<{h}xi32>) -> ({tr}, tensor<{h}xi32>) {{\n"
            f"  %r, %n = kvcache.append %c, %a lengths(%l) : {tc}, {ta}, tensor<{h}xi32> -> {tr}, tensor<{h}xi32>\n"
            f"  return %r, %n : {tr}, tensor<{h}xi32>\n}}\n")


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_append(dtype):
    rng = np.random.default_rng(3)
    h, p, t, d = 4, 9, 3, 5
    cache = (rng.standard_normal((h, p, d)) * 10).astype(dtype)
    added = (rng.standard_normal((h, t, d)) * 10).astype(dtype)
    lengths = np.array([0, 4, 9, 12], np.int32)  # empty, partial, full, clamped
    want = reference.append(cache, added, lengths)
    got = compiled.run(append_module(h, p, t, d, dtype), "append", [cache, added, lengths], 2)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(want[1], [3, 7, 12, 12])


@pytest.mark.parametrize("kind", ["additive", "boolean"])
def test_masked_attention_through_the_export(kind):
    """The same module through --kvmerge-export-upstream (the IREE path), run on the CPU."""
    import subprocess
    rng = np.random.default_rng(11)
    Hq, Hkv, S, D = 4, 2, 19, 8
    q = rng.standard_normal((Hq, 2, D)).astype(np.float32)
    k = rng.standard_normal((Hkv, S, D)).astype(np.float32)
    v = rng.standard_normal((Hkv, S, D)).astype(np.float32)
    if kind == "boolean":
        m = rng.random((2, 2, S)) < 0.5
        mt, feed = "i1", None
    else:
        m = (rng.standard_normal((2, 2, S)) * 2).astype(np.float32)
        mt, feed = "f32", m
    text = (f"func.func @f(%q: tensor<{Hq}x2x{D}xf32>, %k: tensor<{Hkv}x{S}x{D}xf32>, %v: tensor<{Hkv}x{S}x{D}xf32>"
            + (f", %m: tensor<2x2x{S}xf32>" if feed is not None else "") + f") -> tensor<{Hq}x2x{D}xf32> {{\n")
    if feed is None:
        vals = ", ".join("[" + ", ".join("[" + ", ".join("true" if x else "false" for x in row) + "]"
                                         for row in blk) + "]" for blk in m)
        text += f"  %m = arith.constant dense<[{vals}]> : tensor<2x2x{S}xi1>\n"
    text += (f"  %o = tensor.empty() : tensor<{Hq}x2x{D}xf32>\n"
             f"  %r = kvcache.attention ins(%q, %k, %v : tensor<{Hq}x2x{D}xf32>, tensor<{Hkv}x{S}x{D}xf32>, "
             f"tensor<{Hkv}x{S}x{D}xf32>) mask(%m : tensor<2x2x{S}x{mt}>) outs(%o : tensor<{Hq}x2x{D}xf32>)\n"
             f"  return %r : tensor<{Hq}x2x{D}xf32>\n}}\n")
    exported = subprocess.run([compiled.tool("kvmerge-opt"), "--kvmerge-export-upstream"], input=text,
                              capture_output=True, text=True, check=True).stdout
    assert "kvcache.attention" not in exported
    args = [q, k, v] + ([feed] if feed is not None else [])
    (got,) = compiled.run(exported, "f", args, 1)
    (direct,) = compiled.run(text, "f", args, 1)
    for i in range(2):  # each query row against the reference
        want = reference.attention(q[:, i], k, v, np.full(Hkv, S), mask=m[:, i])
        assert rel(got[:, i], want) <= 2e-5 and rel(direct[:, i], want) <= 2e-5
