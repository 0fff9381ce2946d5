"""Parallel loops on the runtime thread pool (issue 14): results are bitwise the same for every
thread count and match the reference; bad thread counts are refused."""

import numpy as np
import pytest

from kvmerge import compiled, reference

pytestmark = pytest.mark.skipif(not compiled.uses_native(), reason="kvmerge._native not built")


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_compress_threads_bitwise(dtype):
    rng = np.random.default_rng(3)
    k = rng.standard_normal((8, 2048, 64)).astype(dtype)
    v = rng.standard_normal((8, 2048, 64)).astype(dtype)
    a = rng.random((8, 2048), dtype=np.float32)
    one = compiled.compress(k, v, a, ratio=0.5, threads=1)
    two = compiled.compress(k, v, a, ratio=0.5, threads=2)
    three = compiled.compress(k, v, a, ratio=0.5, threads=3)
    ref = reference.compress(k, v, a, ratio=0.5)
    for name in one:
        assert one[name].tobytes() == two[name].tobytes() == three[name].tobytes(), name
    np.testing.assert_array_equal(one["positions"], ref["positions"])
    np.testing.assert_array_equal(one["counts"], ref["counts"])
    tol = 1e-5 if dtype == np.float32 else 2e-3
    np.testing.assert_allclose(one["keys"].astype(np.float32), ref["keys"].astype(np.float32), atol=tol)


def test_attention_threads_bitwise():
    rng = np.random.default_rng(4)
    q = rng.standard_normal((32, 64)).astype(np.float16)
    k = rng.standard_normal((4, 1024, 64)).astype(np.float16)
    v = rng.standard_normal((4, 1024, 64)).astype(np.float16)
    lengths = np.array([1024, 700, 3, 512], np.int32)
    one = compiled.attention(q, k, v, lengths, threads=1)
    two = compiled.attention(q, k, v, lengths, threads=2)
    assert one.tobytes() == two.tobytes()
    np.testing.assert_allclose(one, reference.attention(q, k, v, lengths), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("bad", [0, -1, 1025, 1.5, True, "2"])
def test_bad_threads(bad):
    rng = np.random.default_rng(5)
    k = rng.standard_normal((2, 64, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="threads"):
        compiled.compress(k, k, rng.random((2, 64), dtype=np.float32), ratio=0.5, threads=bad)


def test_bad_env(monkeypatch):
    monkeypatch.setenv("KVMERGE_THREADS", "many")
    rng = np.random.default_rng(6)
    k = rng.standard_normal((2, 64, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="KVMERGE_THREADS"):
        compiled.compress(k, k, rng.random((2, 64), dtype=np.float32), ratio=0.5)
