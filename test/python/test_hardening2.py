"""Issue 16 (hardening, round 2): the Python-side findings, each a regression test.

* floats reach MLIR as valid, exact literals (``1e-05`` is not MLIR syntax);
* int64 ``counts`` are range-checked instead of wrapped to int32;
* a zero-capacity cache gives zeros on both paths;
* mixed dtypes name the argument;
* absurdly nested text is refused by ``kvmerge.ir.parse`` instead of overflowing the stack.
"""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest

import kvmerge
from kvmerge import compiled, reference
from test_compiled import assert_same, smooth_cache

F32 = np.dtype(np.float32)


def _parsed_f64(literal: str) -> float:
    """The double MLIR reads from ``literal`` (printed back by the parser, decimal or hex)."""
    src = f"func.func @f() -> f64 {{\n  %c = arith.constant {literal} : f64\n  return %c : f64\n}}\n"
    text = kvmerge.ir.parse(src)
    value = re.search(r"arith.constant (\S+) : f64", text).group(1)
    if value.startswith("0x"):
        return struct.unpack(">d", bytes.fromhex(value[2:].rjust(16, "0")))[0]
    return float(value)


EDGE_FLOATS = [1e-5, 1e16, 1e300, 1e30, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
               0.1, 1.0, 0.0, -0.0, -2.5, 123456789012345678.0, 0.3333333333333333, 3e-7]


@pytest.mark.parametrize("x", EDGE_FLOATS + list(np.random.default_rng(16).standard_normal(20)
                                                 * 10.0 ** np.random.default_rng(17).integers(-300, 300, 20)))
def test_float_literal_is_valid_mlir_and_exact(x):
    literal = compiled._float_attr(x)
    got = _parsed_f64(literal)
    assert got == x and np.signbit(got) == np.signbit(x), (x, literal, got)


@pytest.mark.parametrize("x", [float("inf"), float("-inf"), float("nan")])
def test_float_literal_refuses_non_finite(x):
    with pytest.raises(ValueError, match="sigma"):
        compiled._float_attr(x, "sigma")


@pytest.mark.parametrize("kw", [
    dict(sigma=1e-5), dict(sigma=1e16), dict(sigma=1e300),
    dict(mode="threshold", eps=1e-5), dict(mode="threshold", eps=-3e-7),
])
def test_compress_float_parameters(kw):
    k, v, a = smooth_cache(np.random.default_rng(5), 2, 40, 16, np.float32)
    exp = reference.compress(k, v, a, policy="kvmerger", ratio=0.5, **kw)
    got = kvmerge.compress(k, v, a, policy="kvmerger", ratio=0.5, **kw)
    assert_same(got, exp, F32, str(kw), inputs=(k, v, kw))


@pytest.mark.parametrize("scale", [1e30, 1e-30, 3e-7])
def test_attention_scale_literals(scale):
    rng = np.random.default_rng(6)
    q = rng.standard_normal((4, 8)).astype(np.float32)
    k = rng.standard_normal((2, 10, 8)).astype(np.float32)
    v = rng.standard_normal((2, 10, 8)).astype(np.float32)
    n = np.array([10, 7])
    exp = reference.attention(q, k, v, n, scale=scale)
    got = kvmerge.attention(q, k, v, n, scale=scale)
    np.testing.assert_allclose(got, exp, rtol=2e-5, atol=2e-5)


def _decode_inputs(rng, Hq=4, Hkv=2, S=6, D=8):
    q = rng.standard_normal((Hq, D)).astype(np.float32)
    k = rng.standard_normal((Hkv, S, D)).astype(np.float32)
    v = rng.standard_normal((Hkv, S, D)).astype(np.float32)
    return q, k, v, np.array([S] * Hkv)


@pytest.mark.parametrize("big", [2**32 + 1, 2**33, 2**31, -2**31 - 1])
def test_attention_int64_counts_refused(big):
    q, k, v, n = _decode_inputs(np.random.default_rng(8))
    counts = np.ones((2, 6), np.int64)
    counts[1, 2] = big
    with pytest.raises(ValueError, match="counts: the compiled path takes int32 counts"):
        kvmerge.attention(q, k, v, n, counts=counts, count_bias=big > 0)


def test_attention_int64_counts_in_range_match():
    q, k, v, n = _decode_inputs(np.random.default_rng(9))
    counts = np.arange(1, 13, dtype=np.int64).reshape(2, 6)
    counts[0, 0] = 2**31 - 1
    exp = reference.attention(q, k, v, n, counts=counts, count_bias=True)
    got = kvmerge.attention(q, k, v, n, counts=counts, count_bias=True)
    np.testing.assert_allclose(got, exp, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_attention_zero_capacity_is_zeros_on_both_paths(dtype):
    q = np.ones((4, 8), dtype)
    k = np.zeros((2, 0, 8), dtype)
    v = np.zeros((2, 0, 5), dtype)
    n = np.zeros(2, np.int64)
    exp = reference.attention(q, k, v, n)
    got = kvmerge.attention(q, k, v, n)
    assert exp.shape == got.shape == (4, 5)
    assert exp.dtype == got.dtype == np.float32
    np.testing.assert_array_equal(exp, 0)
    np.testing.assert_array_equal(got, 0)


def test_attention_mixed_dtypes_name_the_argument():
    q, k, v, n = _decode_inputs(np.random.default_rng(10))
    with pytest.raises(ValueError, match=r"^keys: the compiled path needs q, keys and values of one dtype"):
        kvmerge.attention(q, k.astype(np.float16), v, n)
    with pytest.raises(ValueError, match=r"^values: "):
        kvmerge.attention(q, k, v.astype(np.float16), n)


NVVM_SRC = """func.func @f(%k: tensor<1x16x8xf32>) -> tensor<1x15xf32> {
  %s = kvcache.similarity %k : tensor<1x16x8xf32> -> tensor<1x15xf32>
  return %s : tensor<1x15xf32>
}
"""


@pytest.mark.parametrize("chip,features,match", [
    ("sm_999", "+ptx80", "unknown chip 'sm_999'"),
    ("sm_xx", "+ptx80", "unknown chip 'sm_xx'"),
    ("sm_90a", "+ptx999", "unknown feature 'ptx999'"),
    ("sm_100", "+ptx80", r"chip 'sm_100' needs PTX 8.6 or newer"),
])
def test_nvvm_unknown_chip_is_a_compile_error(chip, features, match):
    """Used to abort the interpreter (LLVM ERROR: Cannot select / fatal PTX version error)."""
    with pytest.raises(kvmerge.CompileError, match=match):
        kvmerge.ir.compile(NVVM_SRC, target="nvvm", chip=chip, features=features)
    assert "kvmerge_similarity" in " ".join(kvmerge.ir.compile(NVVM_SRC, target="nvvm", chip="sm_80",
                                                                features="+ptx70"))


@pytest.mark.parametrize("expr", ["- " * 20000 + "d0", "d0" + " + d0" * 100000])
def test_parse_deep_affine_expression(expr):
    """Segfaulted the interpreter (parser recursion per operator on the default stack)."""
    text = kvmerge.ir.parse(f"#m = affine_map<(d0) -> ({expr})>\nfunc.func @f() attributes {{m = #m}} {{ return }}\n")
    assert "affine_map<(d0) -> (d0" in text
