"""The native extension kvmerge._native (nanobind): kvmerge.parse / passes / compile / jit.

Skipped as a whole when the extension is not built (KVMERGE_ENABLE_PYTHON=OFF, or
KVMERGE_NO_NATIVE=1); test_compiled.py then covers the kvmerge-run subprocess path.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import kvmerge
from kvmerge import compiled, jit, reference

pytestmark = pytest.mark.skipif(not kvmerge.native_available(),
                                reason="kvmerge._native is not built")

BF16 = np.dtype(ml_dtypes.bfloat16)

COMPRESS = """
func.func @compress(%k: tensor<2x16x4xf32>, %v: tensor<2x16x4xf32>, %a: tensor<2x16xf32>)
    -> (tensor<2x10x4xf32>, tensor<2xi32>) {
  %r:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 10>}
      : tensor<2x16x4xf32>, tensor<2x16x4xf32>, tensor<2x16xf32>
      -> tensor<2x10x4xf32>, tensor<2x10x4xf32>, tensor<2x10xi32>, tensor<2x10xi32>,
         tensor<2x10xf32>, tensor<2xi32>
  return %r#0, %r#5 : tensor<2x10x4xf32>, tensor<2xi32>
}
"""


# --- parse / print --------------------------------------------------------------------------


def test_parse_print_round_trip():
    text = kvmerge.parse(COMPRESS)
    assert "kvcache.compress" in text and "#kvcache.policy<kvmerger, slots = 10>" in text
    assert kvmerge.parse(text) == text  # the printed form is a fixed point
    generic = kvmerge.parse(COMPRESS, generic=True)
    assert '"kvcache.compress"' in generic
    assert kvmerge.parse(generic) == text


def test_parse_error_carries_diagnostics():
    bad = COMPRESS.replace("slots = 10", "slots = 10, ratio = 0.5")
    with pytest.raises(kvmerge.CompileError) as info:
        kvmerge.parse(bad, name="bad.mlir")
    message = str(info.value)
    assert "bad.mlir:4:" in message and "error:" in message
    assert isinstance(info.value, RuntimeError)


def test_verifier_error_carries_diagnostics():
    bad = ("func.func @f(%k: tensor<2x16x4xf32>) -> tensor<2x14xf32> {\n"
           "  %s = kvcache.similarity %k : tensor<2x16x4xf32> -> tensor<2x14xf32>\n"
           "  return %s : tensor<2x14xf32>\n}\n")
    with pytest.raises(kvmerge.CompileError, match=r"<source>:2:8: error: 'kvcache.similarity' op result"):
        kvmerge.parse(bad)


def test_parse_rejects_non_text():
    with pytest.raises(ValueError, match="source"):
        kvmerge.parse(b"module {}")


# --- pass pipelines ------------------------------------------------------------------------


@pytest.mark.parametrize("pipeline", ["builtin.module(kvmerge-decompose-compress)",
                                      "kvmerge-decompose-compress"])
def test_pass_pipeline(pipeline):
    out = kvmerge.passes.run(COMPRESS, pipeline)
    assert "kvcache.compress" not in out
    for op in ("kvcache.similarity", "kvcache.merge_sets", "kvcache.merge"):
        assert op in out
    assert kvmerge.parse(out)  # the result verifies


def test_pass_pipeline_upstream_and_lowering():
    out = kvmerge.passes.run(COMPRESS, "builtin.module(kvmerge-decompose-compress,"
                                       "convert-kvcache-to-loops,canonicalize,cse)")
    assert "kvcache." not in out and "scf.parallel" in out
    llvm = kvmerge.passes.lower_to_llvm(COMPRESS)
    assert "llvm.func @compress" in llvm and "llvm.func @_mlir_ciface_compress" in llvm


def test_bad_pipeline_is_value_error():
    with pytest.raises(ValueError, match="pipeline.*kvmerge-no-such-pass"):
        kvmerge.passes.run(COMPRESS, "builtin.module(kvmerge-no-such-pass)")


def test_failing_pass_is_compile_error():
    # convert-kvcache-to-loops refuses an undecomposed compress, with a diagnostic.
    with pytest.raises(kvmerge.CompileError,
                       match=r"(?s)failed on 'c.mlir'.*c.mlir:4:10: error: 'kvcache.compress' op must be decomposed"):
        kvmerge.passes.run(COMPRESS, "builtin.module(convert-kvcache-to-loops)", name="c.mlir")


# --- compile to LLVM IR ----------------------------------------------------------------------


def test_compile_cpu_to_llvm_ir():
    ir = kvmerge.compile(COMPRESS, target="cpu")
    assert "define void @compress(" in ir
    assert "define void @_mlir_ciface_compress(" in ir
    ir = kvmerge.compile(COMPRESS, emit_c_interface=False)
    assert "define" in ir and "_mlir_ciface_" not in ir


def test_compile_nvvm_returns_ptx():
    ptx = kvmerge.compile(COMPRESS, target="nvvm", chip="sm_80")
    assert ptx and all(k.startswith("kvmerge_") for k in ptx)
    assert any(k.startswith("kvmerge_merge") for k in ptx)
    for text in ptx.values():
        assert ".target sm_80" in text and ".entry" in text
    with pytest.raises(ValueError, match="chip"):
        kvmerge.compile(COMPRESS, target="nvvm", chip="gfx90a")


def test_compile_unknown_target():
    with pytest.raises(ValueError, match="target"):
        kvmerge.compile(COMPRESS, target="tpu")


# --- in-process JIT --------------------------------------------------------------------------


def smooth_cache(rng, H, L, D, dtype):
    walk = np.cumsum(rng.standard_normal((H, L, D)), axis=1) * 0.15
    k = rng.standard_normal((H, 1, D)) + walk + 0.3 * rng.standard_normal((H, L, D))
    v = rng.standard_normal((H, L, D))
    a = rng.gamma(0.5, 2.0, (H, L))
    return k.astype(dtype), v.astype(dtype), a.astype(np.float32)


def test_jit_signature_and_run():
    exe = jit.Executable(COMPRESS)
    assert exe.functions == ["compress"]
    sig = exe.signature("compress")
    assert [s.shape for s in sig.inputs] == [(2, 16, 4), (2, 16, 4), (2, 16)]
    assert [s.element_type for s in sig.results] == ["f32", "i32"]
    k, v, a = smooth_cache(np.random.default_rng(0), 2, 16, 4, np.float32)
    keys, lengths = exe.run("compress", k, v, a)
    exp = reference.compress(k, v, a, policy="kvmerger", budget=10)
    np.testing.assert_array_equal(lengths, exp["lengths"])
    np.testing.assert_allclose(keys, exp["keys"], rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float16), BF16], ids=lambda d: d.name)
@pytest.mark.parametrize("policy,kw", [("kvmerger", dict(ratio=0.5)), ("kvmerger", dict(ratio=0.35, sigma="paper")),
                                       ("h2o", dict(ratio=0.5))], ids=str)
def test_in_process_compress_matches_reference(policy, kw, dtype):
    """kvmerge.compress on the native path equals the reference (exact discrete outputs)."""
    assert compiled.uses_native()
    rng = np.random.default_rng(hash((policy, str(kw), dtype.name)) % 1000)
    k, v, a = smooth_cache(rng, 2, 75, 64, dtype)
    got = kvmerge.compress(k, v, a, policy=policy, **kw)
    exp = reference.compress(k, v, a, policy=policy, **kw)
    for name in ("positions", "counts", "lengths"):
        np.testing.assert_array_equal(got[name], exp[name], err_msg=name)
    assert got["keys"].dtype == exp["keys"].dtype == dtype
    for name in ("keys", "values", "scores"):
        g, e = got[name].astype(np.float64), exp[name].astype(np.float64)
        # f32 or 1 ulp of the storage type (test_compiled.py has the exact ulp bound)
        rel = {np.dtype(np.float32): 2e-5, np.dtype(np.float16): 2 ** -10, BF16: 2 ** -7}[
            np.dtype(np.float32) if name == "scores" else dtype]
        assert (np.abs(g - e) <= rel * (1 + np.abs(e))).all(), name


def test_in_process_attention_matches_reference():
    rng = np.random.default_rng(5)
    q = rng.standard_normal((6, 64)).astype(np.float16)
    k = rng.standard_normal((2, 30, 64)).astype(np.float16)
    v = rng.standard_normal((2, 30, 64)).astype(np.float16)
    lengths = np.array([30, 9], np.int32)
    got = kvmerge.attention(q, k, v, lengths)
    exp = reference.attention(q, k, v, lengths)
    np.testing.assert_allclose(got, exp, rtol=2e-5, atol=2e-5)


def test_compiled_modules_are_cached():
    jit.clear_cache()
    k, v, a = smooth_cache(np.random.default_rng(1), 2, 40, 64, np.float32)
    first = kvmerge.compress(k, v, a, policy="kvmerger", ratio=0.5)
    assert jit.cache_info()["size"] == 1
    second = kvmerge.compress(k * 2, v, a, policy="kvmerger", ratio=0.5)  # same shapes and policy
    assert jit.cache_info()["size"] == 1
    kvmerge.compress(k, v, a, policy="h2o", ratio=0.5)
    assert jit.cache_info()["size"] == 2
    assert first["keys"].shape == second["keys"].shape


def test_inputs_are_not_written_and_noncontiguous_inputs_work():
    k, v, a = smooth_cache(np.random.default_rng(2), 2, 16, 4, np.float32)
    kt = np.ascontiguousarray(k.transpose(1, 0, 2)).transpose(1, 0, 2)  # non-C-contiguous view
    before = k.copy()
    exe = jit.load(COMPRESS)
    (keys1, _), (keys2, _) = exe.run("compress", k, v, a), exe.run("compress", kt, v, a)
    np.testing.assert_array_equal(k, before)
    np.testing.assert_array_equal(keys1, keys2)


@pytest.mark.parametrize("index,bad,match", [
    (1, lambda v: v.astype(np.float64), r"inputs\[1\]: expected dtype float32"),
    (0, lambda k: k[:, :15], r"inputs\[0\]: expected shape \[2x16x4\]"),
    (2, lambda a: a[None], r"inputs\[2\]: expected shape \[2x16\]"),
])
def test_bad_inputs_raise_value_error_naming_the_argument(index, bad, match):
    args = list(smooth_cache(np.random.default_rng(3), 2, 16, 4, np.float32))
    args[index] = bad(args[index])
    with pytest.raises(ValueError, match=match):
        jit.load(COMPRESS).run("compress", *args)


def test_bad_arity_and_function():
    exe = jit.load(COMPRESS)
    k, v, a = smooth_cache(np.random.default_rng(3), 2, 16, 4, np.float32)
    with pytest.raises(ValueError, match="inputs: 'compress' takes 3 inputs, got 2"):
        exe.run("compress", k, v)
    with pytest.raises(ValueError, match="function: function 'nope' not found.*available: compress"):
        exe.run("nope", k, v, a)
    with pytest.raises(ValueError, match="opt_level"):
        jit.Executable(COMPRESS, opt_level=7)


def test_native_invoke_checks_buffers():
    """The raw native entry point validates what the Python layer normally guarantees."""
    native = kvmerge._loader.native()
    exe = native.Executable(COMPRESS)
    k, v, a = smooth_cache(np.random.default_rng(3), 2, 16, 4, np.float32)
    outs = [("f32", np.zeros((2, 10, 4), np.float32)), ("i32", np.zeros(2, np.int32))]
    with pytest.raises(ValueError, match=r"inputs\[0\]: unknown element type 'f8'"):
        exe.invoke("compress", [("f8", k), ("f32", v), ("f32", a)], outs)
    with pytest.raises(ValueError, match=r"inputs\[1\]: f16 needs 2-byte elements"):
        exe.invoke("compress", [("f32", k), ("f16", v), ("f32", a)], outs)
    with pytest.raises(ValueError, match=r"inputs: input 1 of 'compress' \(%arg1\) must be tensor<2x16x4xf32>"):
        exe.invoke("compress", [("f32", k), ("f32", np.zeros((2, 8, 4), np.float32)), ("f32", a)], outs)
    with pytest.raises(ValueError, match=r"outputs\[0\]: expected a C-contiguous, writable buffer"):
        exe.invoke("compress", [("f32", k), ("f32", v), ("f32", a)], [("f32", b"x"), outs[1]])
    with pytest.raises(ValueError, match=r"outputs: output 1 of 'compress' must be 2xi32"):
        exe.invoke("compress", [("f32", k), ("f32", v), ("f32", a)], [outs[0], ("i32", np.zeros(3, np.int32))])
    exe.invoke("compress", [("f32", k), ("f32", v), ("f32", a)], outs)
    np.testing.assert_array_equal(outs[1][1], [10, 10])


def test_dynamic_results_are_value_error():
    # Dynamic result shapes cannot be caller-allocated: a clear error, not a crash.
    src = "func.func @f(%x: tensor<?xf32>) -> tensor<?xf32> { return %x : tensor<?xf32> }"
    with pytest.raises(ValueError, match="static shapes"):
        jit.load(src).run("f", np.zeros(3, np.float32))


def test_lowering_error_is_compile_error():
    src = ("func.func @f(%x: tensor<4xf32>) -> tensor<4xi32> {\n"
           "  %y = builtin.unrealized_conversion_cast %x : tensor<4xf32> to tensor<4xi32>\n"
           "  return %y : tensor<4xi32>\n}\n")
    exe = jit.load(src, name="cast.mlir")
    with pytest.raises(kvmerge.CompileError, match="failed to lower 'cast.mlir' to LLVM"):
        exe.run("f", np.zeros(4, np.float32))
    with pytest.raises(kvmerge.CompileError):  # remembered, not retried
        exe.compile()


def test_help_is_useful():
    doc = kvmerge.__doc__
    for name in ("passes.run", "compile", "jit.load", "CompileError", "reference"):
        assert name in doc
    for f in (kvmerge.parse, kvmerge.compile, kvmerge.passes.run, jit.Executable.run, jit.load):
        assert f.__doc__ and f.__annotations__
