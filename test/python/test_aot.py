"""Ahead-of-time artifacts (kvmerge-aot, kvmerge.aot) against the NumPy reference.

CPU artifacts take the same path as CUDA ones (record the ABI, lower, export, compile the host
code, link with libKVMergeAOTRuntime.a, call through the C ABI with ctypes), so they are checked
numerically here: every policy on random caches in f32/f16/bf16 and on real SmolLM2 KV states, and
decode attention with GQA, lengths and count bias; same tolerances as the compiled path
(test_compiled.py). A CUDA artifact is built and loaded too; without a driver it must fail with
the runtime's clear error. An artifact loads and runs in a process without LLVM or MLIR.
"""
from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from kvmerge import aot, reference
from kvmerge.compiled import attention_module, compress_module_for, tool

from test_compiled import BF16, DTYPES, POLICIES, assert_same, smooth_cache

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "test" / "data"

try:
    tool("kvmerge-aot")
except FileNotFoundError:  # pragma: no cover
    pytest.skip("kvmerge-aot is not built", allow_module_level=True)


def renamed(source: str, old: str, new: str) -> str:
    return source.replace(f"func.func @{old}(", f"func.func @{new}(", 1)


def compress_source(name, k, v, a, policy, **kw):
    args = reference.resolve_compress_args(k, v, a, policy=policy, **kw)
    src = compress_module_for(args, k.shape, v.shape, k.dtype)
    return renamed(src, "compress", name), np.asarray(args.ac, np.float32)


RANDOM_POLICIES = [p for p in POLICIES if p[0] != "full"]
FIXTURE_POLICIES = [("kvmerger", dict(ratio=0.5)), ("kvmerger", dict(ratio=0.35, mode="threshold", eps=0.75)),
                    ("h2o", dict(ratio=0.35)), ("streaming", dict(ratio=0.5))]


@pytest.fixture(scope="module")
def cpu(tmp_path_factory):
    """One CPU artifact with every case of this file (one build)."""
    rng = np.random.default_rng(2024)
    cases, sources = {}, []
    for dtype in DTYPES:
        k, v, a = smooth_cache(rng, 3, 130, 64, dtype)
        for i, (policy, kw) in enumerate(RANDOM_POLICIES):
            name = f"c_{dtype.name}_{i}"
            src, ac = compress_source(name, k, v, a, policy, **kw)
            sources.append(src)
            cases[name] = (k, v, a, ac, policy, kw, dtype)
        for group in (1, 4):
            for bias in (False, True):
                name = f"att_{dtype.name}_{group}_{int(bias)}"
                sources.append(renamed(attention_module((3 * group, 1, 64), (3, 41, 64), (3, 41, 64), dtype,
                                                        count_bias=bias, scale=None), "attention", name))
    z = np.load(DATA / "smollm2_kv.npz")
    for i, (policy, kw) in enumerate(FIXTURE_POLICIES):
        name = f"real_{i}"
        src, _ = compress_source(name, z["keys"][0], z["values"][0], z["scores"][0], policy, **kw)
        sources.append(src)
    path = tmp_path_factory.mktemp("aot") / "libcases.so"
    art = aot.build("\n".join(sources), path, target="cpu")
    return art, cases


NAMES = ("keys", "values", "positions", "counts", "scores", "lengths")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("index", range(len(RANDOM_POLICIES)), ids=lambda i: str(RANDOM_POLICIES[i]))
def test_compress_random(cpu, dtype, index):
    art, cases = cpu
    k, v, a, ac, policy, kw, _ = cases[f"c_{dtype.name}_{index}"]
    got = dict(zip(NAMES, art.call(f"c_{dtype.name}_{index}", k, v, ac)))
    assert_same(got, reference.compress(k, v, a, policy=policy, **kw), dtype, f"{policy} {kw}",
                inputs=(k, v, kw))


@pytest.mark.parametrize("index", range(len(FIXTURE_POLICIES)), ids=lambda i: str(FIXTURE_POLICIES[i]))
def test_compress_real_fixture(cpu, index):
    art, _ = cpu
    policy, kw = FIXTURE_POLICIES[index]
    z = np.load(DATA / "smollm2_kv.npz")
    for layer in range(z["keys"].shape[0]):
        k, v, a = z["keys"][layer], z["values"][layer], z["scores"][layer]
        got = dict(zip(NAMES, art.call(f"real_{index}", k, v, a)))
        assert_same(got, reference.compress(k, v, a, policy=policy, **kw), np.dtype(np.float16),
                    f"layer {layer} {policy} {kw}", inputs=(k, v, kw))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("group", [1, 4])
@pytest.mark.parametrize("bias", [False, True])
def test_attention(cpu, dtype, group, bias):
    art, _ = cpu
    rng = np.random.default_rng(group + 3 * bias)
    q = rng.standard_normal((3 * group, 64)).astype(dtype)
    k = rng.standard_normal((3, 41, 64)).astype(dtype)
    v = rng.standard_normal((3, 41, 64)).astype(dtype)
    lengths = np.array([41, 7, 0], np.int32)
    counts = rng.integers(1, 9, (3, 41)).astype(np.int32)
    (out,) = art.call(f"att_{dtype.name}_{group}_{int(bias)}", q[:, None, :], k, v, lengths, counts)
    exp = reference.attention(q, k, v, lengths, counts=counts, count_bias=bias).astype(np.float64)
    assert out.dtype == np.float32
    assert (np.abs(out[:, 0].astype(np.float64) - exp) <= 2e-5 * (1 + np.abs(exp))).all()


def test_metadata_and_errors(cpu):
    art, cases = cpu
    assert art.kind == "cpu" and art.target.startswith("cpu ") and art.device == "cpu"
    f = art.functions["c_float16_0"]
    assert [i.type for i in f.inputs] == ["tensor<3x130x64xf16>", "tensor<3x130x64xf16>", "tensor<3x130xf32>"]
    assert f.results[5] == aot.Value("tensor<3xi32>", "i32", True, (3,))
    k, v, a, ac, *_ = cases["c_float16_0"]
    with pytest.raises(ValueError, match=r"inputs\[0\] \(argument 0 of 'c_float16_0', tensor<3x130x64xf16>\): "
                                         r"dtype float32 does not match f16"):
        art.call("c_float16_0", k.astype(np.float32), v, ac)
    with pytest.raises(ValueError, match=r"inputs\[2\].*shape \(3, 129\) does not match"):
        art.call("c_float16_0", k, v, ac[:, :129])
    with pytest.raises(ValueError, match="inputs: 'c_float16_0' takes 3 inputs"):
        art.call("c_float16_0", k, v)
    with pytest.raises(ValueError, match="function: 'nope' is not in"):
        art.call("nope")
    with pytest.raises(ValueError, match=r"outputs\[0\]"):
        art.call("c_float16_0", k, v, ac, outputs=[np.empty(3)] * 6)
    # Caller-allocated outputs are filled in place; inputs are never written.
    outs = [np.full(r.shape, 7, aot._numpy_dtype(r.dtype)) for r in f.results]
    k0 = k.copy()
    assert art.call("c_float16_0", k, v, ac, outputs=outs) == outs
    assert np.array_equal(k, k0)
    assert_same(dict(zip(NAMES, outs)), reference.compress(k, v, a, policy="kvmerger", ratio=0.5),
                np.dtype(np.float16), inputs=(k, v, {}))
    with pytest.raises(FileNotFoundError, match="path: no artifact"):
        aot.load(REPO / "no-such.so")
    with pytest.raises(aot.ArtifactError, match="not a kvmerge-aot artifact"):
        aot.Artifact(ctypes.util.find_library("m") and Path("/lib/x86_64-linux-gnu/libm.so.6"))


def test_threads(cpu):
    """A CPU artifact may be called from several threads at once."""
    art, cases = cpu
    k, v, a, ac, policy, kw, dtype = cases["c_float32_0"]
    exp = art.call("c_float32_0", k, v, ac)
    results, errors = [], []

    def work():
        try:
            for _ in range(5):
                results.append(art.call("c_float32_0", k, v, ac))
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 20
    for r in results:
        for g, e in zip(r, exp):
            assert np.array_equal(g, e)


def test_runs_without_llvm(cpu, tmp_path):
    """A fresh Python that imports only numpy and kvmerge.aot loads and runs the artifact, with no
    libLLVM or libMLIR mapped into the process; a CUDA artifact loads there too and, without a
    driver, its call raises DeviceError with the runtime's message (no crash)."""
    art, cases = cpu
    k, v, a, ac, policy, kw, dtype = cases["c_float16_0"]
    no_driver = not _has_driver()
    if no_driver:
        src, _ = compress_source("g", k, v, a, policy, **kw)
        aot.build(src, tmp_path / "libg.so", target="cuda", chip="sm_90a", gpu_format="isa")
    np.save(tmp_path / "k.npy", k)
    np.save(tmp_path / "v.npy", v)
    np.save(tmp_path / "a.npy", ac)
    exp = reference.compress(k, v, a, policy=policy, **kw)
    np.save(tmp_path / "pos.npy", exp["positions"])
    code = f"""
import sys, numpy as np
sys.path.insert(0, {str(REPO / 'python' / 'kvmerge')!r})
import aot  # the module alone: no kvmerge package, no native extension
art = aot.load({str(art.path)!r})
d = {str(tmp_path)!r}
out = art.call("c_float16_0", np.load(d + "/k.npy"), np.load(d + "/v.npy"), np.load(d + "/a.npy"))
assert np.array_equal(out[2], np.load(d + "/pos.npy"))
if {no_driver!r}:
    g = aot.load(d + "/libg.so")
    try:
        g.call("g", np.load(d + "/k.npy"), np.load(d + "/v.npy"), np.load(d + "/a.npy"))
        raise SystemExit("the CUDA artifact ran without a driver")
    except aot.DeviceError as e:
        assert "cannot load the CUDA driver" in str(e), e
maps = open("/proc/self/maps").read()
assert art.path.name in maps
bad = sorted({{line.split()[-1] for line in maps.splitlines() if "libLLVM" in line or "libMLIR" in line}})
print("OK" if not bad else "LOADED " + " ".join(bad))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTHONPATH")}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "OK", p.stdout


def _has_driver() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def test_cuda_artifact_without_driver(tmp_path):
    """A CUDA artifact (PTX embedded: no ptxas needed to build it) loads anywhere; without a driver
    its calls fail with the runtime's message, arguments are still checked first."""
    if _has_driver():
        pytest.skip("a CUDA driver is present (the GPU check covers this machine)")
    z = np.load(DATA / "smollm2_kv.npz")
    k, v, a = z["keys"][0], z["values"][0], z["scores"][0]
    src, ac = compress_source("compress", k, v, a, "kvmerger", ratio=0.5)
    art = aot.build(src, tmp_path / "libgpu.so", target="cuda", chip="sm_90a", gpu_format="isa")
    assert (art.kind, art.chip, art.target) == ("cuda", "sm_90a", "cuda sm_90a isa")
    assert list(art.functions) == ["compress"]
    with pytest.raises(ValueError, match="dtype float32 does not match f16"):
        art.call("compress", k.astype(np.float32), v, ac)
    for attempt in range(2):  # the same error every time
        with pytest.raises(aot.DeviceError, match=r"cannot load the CUDA driver \(libcuda.so.1\).*this artifact "
                                                  r"\(target cuda sm_90a isa\) needs an NVIDIA GPU with its driver"):
            art.call("compress", k, v, ac)
    with pytest.raises(aot.DeviceError, match="cannot load the CUDA driver"):
        art.initialize()
    assert art.kernel_times() == {}


def test_build_errors(tmp_path):
    from kvmerge import CompileError

    with pytest.raises(CompileError, match="results must have static shapes"):
        aot.build("func.func @f(%x: tensor<?xf32>) -> tensor<?xf32> { return %x : tensor<?xf32> }",
                  tmp_path / "x.so")
    with pytest.raises(ValueError, match="target: expected 'cpu' or 'cuda'"):
        aot.build("", tmp_path / "x.so", target="tpu")


def test_parse_kernel_times():
    text = ("kvmerge-cuda-kernel-time kvmerge_similarity calls=3 total_ms=0.1500 mean_us=50.000\n"
            "kvmerge-cuda-kernel-time kvmerge_merge_slots calls=3 total_ms=1.2000 mean_us=400.000\n")
    assert aot.parse_kernel_times(text) == {"kvmerge_similarity": (3, 0.15), "kvmerge_merge_slots": (3, 1.2)}
