"""The GPU check (kvmerge.gpucheck, scripts/gpu-check.sh) without a GPU.

* the case grid and the manifest (NumPy only);
* the comparisons and the tie-aware validation of kvmerger slot maps (torch on the CPU): they pass
  what the CPU path's tolerances pass and fail what they fail;
* the whole run step end to end on CPU artifacts (``prepare --target=cpu``): every case passes, a
  corrupted expectation fails, the runner check and the timing tables are produced;
* a CUDA artifact without a driver: the run step stops at once with the runtime's message.
Tests that need torch skip cleanly without it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kvmerge import aot, reference
from kvmerge.compiled import compress_module
from kvmerge.gpucheck import cases
from kvmerge.gpucheck.cases import Config, Grid, ManifestError, load_manifest

REPO = Path(__file__).resolve().parents[2]
SMALL = Config(kv_heads=2, q_heads=8, head_dim=64, lengths=(320,), ref_length=192, dtypes=("float32", "bfloat16"))


def _has_driver() -> bool:
    import ctypes

    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


# -- the grid and the manifest (no torch) ---------------------------------------------------------

def test_default_grid():
    g = Grid(Config()).build()
    ids = [c["id"] for c in g.cases]
    assert len(ids) == len(set(ids))
    comp = [c for c in g.cases if c["kind"] == "compress"]
    att = [c for c in g.cases if c["kind"] == "attention"]
    # every policy x dtype x length of the large family, checked against torch_ref on the device
    large = {(c["dtype"], c["shape"][1], c["args"]["policy"], c["args"]["mode"]) for c in comp if c["family"] == "large"}
    for dt in cases.DTYPES:
        for L in (4096, 32768, 131072):
            for policy, mode in (("kvmerger", "budget"), ("kvmerger", "threshold"), ("h2o", "budget"),
                                 ("streaming", "budget")):
                assert (dt, L, policy, mode) in large
            for which in ("compressed", "full"):
                c = next(c for c in att if c["id"] == f"large/{cases.SHORT[dt]}/L{L}/kvmerger-r0.5/attention-{which}")
                assert c["q_heads"] == 32 and c["shape"][0] == 8 and c["expected"]["source"] == "torch_ref"
                assert c["shape"][1] == (L // 2 if which == "compressed" else L)
    assert all(c["expected"]["source"] == "npz" for c in g.cases if c["family"] in ("ref", "fixture"))
    # every sigma of the spec somewhere
    assert {str(c["args"]["sigma"]) for c in comp} >= {"auto", "paper", "0.7"}
    # the f16 large cases are the timed ones
    assert {c["dtype"] for c in g.cases if c["timing"]} == {"float16"}
    # the same seeds every time (not Python's randomized hash)
    assert Grid(Config()).build().data == g.data
    assert len({d["seed"] for d in g.data.values() if "seed" in d}) == sum(1 for d in g.data.values() if "seed" in d)


def test_resolve_matches_reference():
    k = np.zeros((2, 1000, 8), np.float32)
    for _, kw in cases.LARGE_POLICIES + cases.REF_POLICIES:
        got = cases.resolve(1000, kw)
        a = reference.resolve_compress_args(k, k, k[..., 0], **kw)
        assert (got["B"], got["sink"], got["recent"], got["mode"]) == (a.B, a.sink, a.recent, a.mode)


def test_config_errors():
    with pytest.raises(ValueError, match="q_heads: must be a multiple of kv_heads"):
        Config(kv_heads=3, q_heads=8)
    with pytest.raises(ValueError, match="dtypes: expected some of"):
        Config(dtypes=("float64",))
    with pytest.raises(ValueError, match="lengths: expected integers >= 64"):
        Config(lengths=(10,))
    assert Config.from_json(json.loads(json.dumps(SMALL.to_json()))) == SMALL


def test_synthetic_numpy_statistics():
    k, v, a = cases.synthetic_numpy(2, 4000, 64, "float16", 5)
    assert k.dtype == np.float16 and a.dtype == np.float32 and (a >= 0).all()
    s = reference.adjacent_similarity(k)
    # about a quarter of the links start a new run (similarity near 0), the others spread over (0.3, 1)
    assert 0.2 < np.mean(s < 0.25) < 0.3
    inside = s[s > 0.25]
    assert inside.min() < 0.45 and np.quantile(inside, 0.5) < 0.9 and inside.max() > 0.99
    assert np.array_equal(k, cases.synthetic_numpy(2, 4000, 64, "float16", 5)[0])


def test_manifest_errors(tmp_path):
    with pytest.raises(ManifestError, match=r"no manifest at .*run `scripts/gpu-check.sh prepare`"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(ManifestError, match="is not JSON"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(dict(schema=99)))
    with pytest.raises(ManifestError, match="has schema 99"):
        load_manifest(tmp_path)
    m = dict(schema=cases.SCHEMA, target="cpu", config={}, data={},
             artifacts=dict(a=dict(file="a.so", functions=["f"])), cases=[])
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match=r"artifact 'a' .*a.so\) is missing"):
        load_manifest(tmp_path)
    (tmp_path / "a.so").write_text("")
    m["cases"] = [dict(id="x", kind="compress", artifact="a", function="g", data="d", expected=dict(source="npz"))]
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="case 'x': artifact 'a' has no function 'g'"):
        load_manifest(tmp_path)
    m["cases"][0]["function"] = "f"
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="case 'x' uses unknown data 'd'"):
        load_manifest(tmp_path)


# -- comparisons (torch on the CPU) ----------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


def _ref_case(policy="kvmerger", L=300, dtype="float32", **kw):
    torch = _torch()
    from kvmerge import torch_ref

    k, v, a = cases.synthetic_numpy(2, L, 64, dtype, 11)
    args = cases.resolve(L, dict(policy=policy, **kw))
    hv = {"heavy": args["heavy"]} if policy == "kvmerger" else {}
    exp = reference.compress(k, v, a, policy=policy, budget=args["B"], sink=args["sink"], recent=args["recent"],
                             mode=args["mode"], eps=args["eps"], sigma=args["sigma"], **hv)
    t = tuple(torch_ref.from_numpy(x) for x in (k, v, a))
    return torch, args, t, {n: torch_ref.from_numpy(x) for n, x in exp.items()}


def test_compare_tolerances():
    torch = _torch()
    from kvmerge.gpucheck import checks

    e = torch.tensor([1.0, -2.5, 3e-5, 0.0], dtype=torch.float16)
    one_ulp = torch.tensor([1.0 + 2 ** -10, -2.5, 3e-5, 0.0], dtype=torch.float16)
    assert checks.compare_floats("keys", one_ulp, e, "float16") is None
    three = torch.tensor([1.0 + 3 * 2 ** -10, -2.5, 3e-5, 0.0], dtype=torch.float16)
    msg = checks.compare_floats("keys", three, e, "float16")
    assert msg.startswith("keys: 1 of 4 elements off, worst at [0]: got 1.0029")
    nan = e.clone()
    nan[3] = float("nan")
    assert "worst at [3]" in checks.compare_floats("values", nan, e, "float16")
    assert "shape (3,), expected (4,)" in checks.compare_floats("keys", e[:3], e, "float16")
    f = torch.tensor([1000.0], dtype=torch.float32)
    assert checks.compare_floats("keys", f * (1 + 1.5e-5), f, "float32") is None
    assert checks.compare_floats("keys", f * (1 + 3e-5), f, "float32") is not None
    assert checks.compare_exact("counts", torch.tensor([[1, 2], [3, 4]]), torch.tensor([[1, 2], [3, 5]])) == \
        "counts: 1 of 4 differ, first at [1, 1]: got 4, expected 5"


@pytest.mark.parametrize("policy,kw", [("kvmerger", dict(ratio=0.5)), ("kvmerger", dict(ratio=0.35, sigma="paper")),
                                       ("kvmerger", dict(ratio=0.5, mode="threshold", eps=0.3)),
                                       ("h2o", dict(ratio=0.35)), ("streaming", dict(ratio=0.5))])
def test_check_compress_torch_ref_vs_reference(policy, kw):
    """torch_ref's result passes against the reference's; a changed one fails."""
    torch, args, t, exp = _ref_case(policy, **kw)
    from kvmerge import torch_ref
    from kvmerge.gpucheck import checks

    got = torch_ref.compress(*t, **args)
    assert checks.check_compress(args, *t, got, exp, "float32") == dict(status="PASS", problems=[], note="")
    bad = dict(got, values=got["values"].clone())
    bad["values"][1, 3, 5] += 1e-3
    v = checks.check_compress(args, *t, bad, exp, "float32")
    assert v["status"] == "FAIL" and v["problems"][0].startswith("values: 1 of") and "[1, 3, 5]" in v["problems"][0]
    bad = dict(got, positions=got["positions"].clone())
    bad["positions"][0, 7] += 1
    v = checks.check_compress(args, *t, bad, exp, "float32")
    assert v["status"] == "FAIL" and any(p.startswith("positions:") for p in v["problems"])


def _swap_one_cut(torch, slot, sim, lo, hi):
    """The slot map with the cut on the most similar cut link of head 0 moved to the least
    similar merged link; returns (slot, the similarity gap)."""
    c = slot[0, 1:] != slot[0, :-1]
    ms, cm = sim[0, lo:hi], c[lo:hi]
    i = lo + int(torch.argmax(torch.where(cm, ms, torch.full_like(ms, -9))))
    j = lo + int(torch.argmin(torch.where(~cm, ms, torch.full_like(ms, 9))))
    c = c.clone()
    c[i], c[j] = False, True
    s = slot.clone()
    s[0] = torch.cat((torch.zeros(1, dtype=s.dtype), torch.cumsum(c.to(s.dtype), 0)))
    return s, float(sim[0, j] - sim[0, i])


def test_tie_aware_kvmerger_check():
    """A slot map that decides one link pair the other way fails; the diagnosis says whether the
    two similarities are within the slack (near-ties: the kernel's similarities are not the shared
    order) and whether its merge of its own map is right (torch_ref's merge of that map)."""
    from kvmerge import torch_ref
    from kvmerge.gpucheck import checks

    # spec v2 (heavy hitters from the scores): the reference's own map passes, and needs the scores
    torch, args2, t2, exp2 = _ref_case("kvmerger", ratio=0.5)
    assert args2["heavy"] > 0
    slot2 = torch_ref.slot_map_from_counts(exp2["counts"], exp2["lengths"], t2[0].shape[1])
    assert checks.validate_kvmerger_slots(t2[0], slot2, args2, scores=t2[2]) is None
    assert "need the scores" in checks.validate_kvmerger_slots(t2[0], slot2, args2)
    # the swap test below is spec v1's rule (every free link)
    torch, args, t, exp = _ref_case("kvmerger", ratio=0.5, heavy=0, sigma="auto")
    k, v, a = t
    H, L, _ = k.shape
    slot = torch_ref.slot_map_from_counts(exp["counts"], exp["lengths"], L)
    assert checks.validate_kvmerger_slots(k, slot, args) is None
    sim = torch_ref.adjacent_similarity(k.to(torch.float64))
    swapped, gap = _swap_one_cut(torch, slot, sim, args["sink"], L - args["recent"] - 1)
    assert gap > checks.DELTA  # random data: no near-tie at the threshold
    got = torch_ref.merge(k, v, a, swapped, swapped[:, -1] + 1, args["B"], args["sigma"], k.dtype, v.dtype)
    strict = checks.check_compress(args, k, v, a, got, exp, "float32")
    assert strict["status"] == "FAIL" and "not the spec's: head 0: a cut link has similarity" in strict["problems"][-1]
    # within the slack: still a failure (every path computes the same similarities), diagnosed
    # as near-ties decided the other way, with the merge of the kernel's own map checked
    loose = checks.check_compress(args, k, v, a, got, exp, "float32", delta=gap * 1.001)
    assert loose["status"] == "FAIL" and loose["note"].startswith("2 near-tie link(s)")
    assert loose["note"].endswith("is right")
    # the same slot map with a wrong merged value: the diagnosis says so
    got["keys"] = got["keys"].clone()
    got["keys"][0, 2, 0] += 0.5
    wrong = checks.check_compress(args, k, v, a, got, exp, "float32", delta=gap * 1.001)
    assert wrong["status"] == "FAIL" and wrong["note"].endswith("wrong too")
    assert any(p.startswith("keys:") for p in wrong["problems"])
    # structural errors are never near-ties
    s = slot.clone()
    s[0] = 0  # everything merged into slot 0
    assert "sink or recent" in checks.validate_kvmerger_slots(k, s, args)
    bad_counts = dict(got, counts=got["counts"].clone())
    bad_counts["counts"][0, 0] += 1
    v2 = checks.check_compress(args, k, v, a, bad_counts, exp, "float32")
    assert v2["status"] == "FAIL" and any("not a partition" in p for p in v2["problems"])


def test_threshold_validation_branches():
    torch, args, t, exp = _ref_case("kvmerger", ratio=0.5, mode="threshold", eps=0.3, heavy=0, sigma="auto")
    from kvmerge import torch_ref
    from kvmerge.gpucheck import checks

    k = t[0]
    slot = torch_ref.slot_map_from_counts(exp["counts"], exp["lengths"], k.shape[1])
    assert int(exp["lengths"][0]) < args["B"]  # the threshold branch
    assert checks.validate_kvmerger_slots(k, slot, args) is None
    budget_args = dict(args, mode="budget")  # the same map is not the budget rule's
    assert "middle links cut, the budget cuts exactly" in checks.validate_kvmerger_slots(k, slot, budget_args)


def test_h2o_mismatch_always_fails():
    torch, args, t, exp = _ref_case("h2o", ratio=0.35)
    from kvmerge import torch_ref
    from kvmerge.gpucheck import checks

    got = torch_ref.compress(*t, **args)
    got["positions"] = got["positions"].clone()
    got["positions"][1, 10] -= 1
    v = checks.check_compress(args, *t, got, exp, "float32", delta=10.0)
    assert v["status"] == "FAIL"


def test_synthetic_torch():
    torch = _torch()
    from kvmerge import reference as ref
    from kvmerge.gpucheck import checks

    k, v, a = checks.synthetic(2, 4000, 64, "bfloat16", 9, "cpu")
    assert (k.dtype, v.dtype, a.dtype) == (torch.bfloat16, torch.bfloat16, torch.float32)
    assert torch.equal(k, checks.synthetic(2, 4000, 64, "bfloat16", 9, "cpu")[0])
    s = ref.adjacent_similarity(k.float().numpy())
    assert 0.2 < np.mean(s < 0.25) < 0.3  # the distribution of cases.synthetic_numpy
    inside = s[s > 0.25]
    assert inside.min() < 0.45 and np.quantile(inside, 0.5) < 0.9 and inside.max() > 0.99
    q = checks.synthetic_query(8, 64, "float16", 3, "cpu")
    assert q.shape == (8, 64) and q.dtype == torch.float16


# -- the run step end to end on CPU artifacts -----------------------------------------------------

@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    pytest.importorskip("torch")
    try:
        from kvmerge.compiled import tool

        tool("kvmerge-aot")
    except FileNotFoundError:  # pragma: no cover
        pytest.skip("kvmerge-aot is not built")
    from kvmerge.gpucheck.prepare import prepare

    out = tmp_path_factory.mktemp("gpucheck") / "prepared"
    lines = []
    prepare(out, SMALL, target="cpu", log=lines.append)
    return out, lines


def test_prepared_directory(prepared):
    out, lines = prepared
    m = load_manifest(out)
    assert m["target"] == "cpu x86-64-v3" and m["bytes"] < 12 * 2**20
    assert set(m["artifacts"]) == {"ref-f32", "ref-bf16", "fixture", "large-f32", "large-bf16"}
    assert os.access(out / "bin" / "kvmerge-aot-run", os.X_OK)
    with np.load(out / "expected.npz") as z:
        for c in m["cases"]:
            if c["expected"]["source"] == "npz":
                names = cases.COMPRESS_RESULTS if c["kind"] == "compress" else ("out",)
                for n in names:
                    assert cases.case_key(c["id"], n) in z.files
    # the shipped expectation is the reference's on the shipped inputs
    arrays = cases.Arrays(out)
    c = next(c for c in m["cases"] if c["id"] == "ref/bf16/L192/kvmerger-v1-r0.35")
    k, v, a = arrays.data(m["data"][c["data"]])
    assert k.dtype.name == "bfloat16"
    exp = reference.compress(k, v, a, policy="kvmerger", ratio=0.35, heavy=0, sigma="auto")
    got = arrays.expected(c, cases.COMPRESS_RESULTS)
    for n in cases.COMPRESS_RESULTS:
        assert np.array_equal(np.asarray(got[n]).view(np.uint8), np.asarray(exp[n]).view(np.uint8)), n
    # nothing of LLVM or MLIR in what travels
    for f in [out / "bin" / "kvmerge-aot-run"] + sorted(out.glob("*.so")):
        ldd = subprocess.run(["ldd", str(f)], capture_output=True, text=True).stdout
        assert "libMLIR" not in ldd and "libLLVM" not in ldd and "libc.so" in ldd, f
    assert any("MiB in" in line for line in lines)


def test_run_cpu_end_to_end(prepared, tmp_path):
    from kvmerge.gpucheck.run import run

    out, _ = prepared
    rc = run(out, tmp_path, deadline_s=600, reps=2)
    r = json.loads((tmp_path / "results.json").read_text())
    bad = [c for c in r["cases"] if c["status"] != "PASS"]
    assert rc == 0 and r["status"] == "pass" and not bad, bad
    assert len(r["cases"]) == len(load_manifest(out)["cases"])
    assert r["runner"]["status"] == "PASS"
    comp, att = r["timing"]["compress"], r["timing"]["attention"]
    assert {x["policy"] for x in comp} == {p for p, _ in cases.LARGE_POLICIES}  # bf16 is timed without f16
    assert {x["which"] for x in att} == {"compressed", "full"}
    assert all(x["kernels_ms"] > 0 and x["torch_ms"] > 0 for x in comp + att)
    report = (tmp_path / "report.md").read_text()
    assert "CPU self-test of the harness" in report and "## Fused compress" in report
    assert "## Decode attention" in report and "| large/bf16/L320/h2o-r0.35 | PASS |" in report
    assert (tmp_path / "log.txt").read_text().count("PASS ") >= len(r["cases"])


def test_run_detects_a_wrong_expectation(prepared, tmp_path):
    from kvmerge.gpucheck.run import run

    src, _ = prepared
    p = tmp_path / "prepared"
    shutil.copytree(src, p)
    with np.load(p / "expected.npz") as z:
        e = {k: z[k] for k in z.files}
    key = cases.case_key("ref/f32/L192/kvmerger-r0.5", "values")
    e[key] = e[key].copy()
    e[key][1, 4, 2] += 0.01
    key = cases.case_key("ref/f32/L192/h2o-r0.35", "positions")
    e[key] = e[key].copy()
    e[key][0, 20] += 1
    np.savez(p / "expected.npz", **e)
    rc = run(p, tmp_path / "out", only=r"^ref/f32/L192/(kvmerger-r0\.5|h2o-r0\.35)$", do_timing=False)
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    by = {c["id"]: c for c in r["cases"]}
    assert rc == 1 and r["status"] == "fail" and len(by) == 2
    assert by["ref/f32/L192/kvmerger-r0.5"]["problems"][0].startswith("values: 1 of")
    assert "[1, 4, 2]" in by["ref/f32/L192/kvmerger-r0.5"]["problems"][0]
    assert any(x.startswith("positions: 1 of") for x in by["ref/f32/L192/h2o-r0.35"]["problems"])


def test_run_deadline(prepared, tmp_path):
    from kvmerge.gpucheck.run import run

    out, _ = prepared
    rc = run(out, tmp_path, deadline_s=0)
    r = json.loads((tmp_path / "results.json").read_text())
    assert rc == 3 and r["status"] == "incomplete"
    assert {c["status"] for c in r["cases"]} == {"SKIP"} and r["timing"]["skipped"]


def test_run_without_manifest(tmp_path):
    from kvmerge.gpucheck.run import run

    rc = run(tmp_path / "nothing", tmp_path / "out")
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    assert rc == 2 and r["status"] == "no-manifest" and "scripts/gpu-check.sh prepare" in r["error"]


def test_run_cuda_without_driver(tmp_path):
    """A prepared CUDA directory on a machine without a driver: the run step stops at once, exit 2,
    with the artifact runtime's message, in the log and results.json (through scripts/gpu-check.sh)."""
    if _has_driver():
        pytest.skip("a CUDA driver is present")
    pytest.importorskip("torch")
    try:
        from kvmerge.compiled import tool

        tool("kvmerge-aot")
    except FileNotFoundError:  # pragma: no cover
        pytest.skip("kvmerge-aot is not built")
    p = tmp_path / "prepared"
    p.mkdir()
    L = 256
    args = cases.resolve(L, dict(policy="kvmerger", ratio=0.5))
    src = compress_module((2, L, 64), (2, L, 64), np.float16, **args).replace("@compress(", "@c(", 1)
    aot.build(src, p / "g.so", target="cuda", chip="sm_90a", gpu_format="isa")
    m = dict(schema=cases.SCHEMA, target="cuda sm_90a isa", config=SMALL.to_json(),
             artifacts=dict(g=dict(file="g.so", functions=["c"])),
             data={"d": dict(source="synthetic", dtype="float16", shape=[2, L, 64], seed=1)},
             cases=[dict(id="x", kind="compress", family="large", artifact="g", function="c", dtype="float16",
                         shape=[2, L, 64], data="d", args=args, expected=dict(source="torch_ref"), timing=False)])
    (p / "manifest.json").write_text(json.dumps(m))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run([str(REPO / "scripts" / "gpu-check.sh"), "run", str(p), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    r = json.loads((out / "results.json").read_text())
    assert r["status"] == "no-device" and r["cases"] == []
    assert "cannot load the CUDA driver (libcuda.so.1)" in r["error"]
    assert "this artifact (target cuda sm_90a isa) needs an NVIDIA GPU with its driver" in r["error"]
    assert r["error"] in (out / "log.txt").read_text() and r["error"] in proc.stdout
    assert "Stopped:" in (out / "report.md").read_text()


def test_prepare_refuses_foreign_directory(tmp_path):
    from kvmerge.gpucheck.prepare import prepare

    (tmp_path / "precious.txt").write_text("x")
    with pytest.raises(ValueError, match="is not a prepared directory"):
        prepare(tmp_path, SMALL, target="cpu")
    assert (tmp_path / "precious.txt").exists()


def test_run_without_torch(tmp_path):
    """The run step on a machine without torch stops at once with a clear message (exit 2)."""
    try:
        from kvmerge.compiled import tool

        tool("kvmerge-aot")
    except FileNotFoundError:  # pragma: no cover
        pytest.skip("kvmerge-aot is not built")
    p = tmp_path / "prepared"
    p.mkdir()
    args = cases.resolve(128, dict(policy="h2o", ratio=0.5))
    src = compress_module((1, 128, 64), (1, 128, 64), np.float32, **args).replace("@compress(", "@c(", 1)
    aot.build(src, p / "c.so", target="cpu")
    m = dict(schema=cases.SCHEMA, target="cpu x86-64-v3", config=SMALL.to_json(),
             artifacts=dict(c=dict(file="c.so", functions=["c"])),
             data={"d": dict(source="synthetic", dtype="float32", shape=[1, 128, 64], seed=1)},
             cases=[dict(id="x", kind="compress", family="large", artifact="c", function="c", dtype="float32",
                         shape=[1, 128, 64], data="d", args=args, expected=dict(source="torch_ref"), timing=False)])
    (p / "manifest.json").write_text(json.dumps(m))
    block = tmp_path / "block"
    block.mkdir()
    (block / "torch.py").write_text('raise ModuleNotFoundError("No module named \'torch\'", name="torch")\n')
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(block))
    out = tmp_path / "out"
    proc = subprocess.run([str(REPO / "scripts" / "gpu-check.sh"), "run", str(p), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    r = json.loads((out / "results.json").read_text())
    assert r["status"] == "no-torch" and "needs PyTorch" in r["error"] and "No module named 'torch'" in r["error"]
