"""The real-model evaluation (--quick, stories260K) and the real-data fixtures in test/data/."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kvmerge import reference

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "test" / "data"
FIXTURES = {"smollm2": DATA / "smollm2_kv.npz", "stories260k": DATA / "stories260k_kv.npz"}
# documented in test/data/README.md: (n_layers stored, Hq, Hkv, L, N next, W obs, D)
SHAPES = {"smollm2": (4, 9, 3, 1024, 16, 64, 64), "stories260k": (5, 8, 4, 256, 16, 32, 8)}


# ---------------------------------------------------------------------------- quick eval
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    from kvmerge.models.llama2c import default_dir
    if not (default_dir() / "stories260K.bin").is_file():
        pytest.skip("shared/data/stories260K not found")
    from kvmerge.eval import main
    out = tmp_path_factory.mktemp("evalq")
    rc = main(["--quick", "--out", str(out), "--no-progress", "--json", str(out / "r.json")])
    return rc, out


def test_quick_eval_writes_report(quick_run, capsys):
    rc, out = quick_run
    assert rc == 0
    md = (out / "results.md").read_text()
    for name in ("obs1_similarity.png", "obs2_persistence.png", "quality_layers.png"):
        assert f"({name})" in md
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            continue
        assert (out / name).stat().st_size > 10_000, name
    assert "## Quality at fixed budgets" in md
    for row in ("| full |", "| streaming |", "| h2o |", "| kvmerger |"):
        assert row in md, row
    assert "attn rel. err @0.35" in md and "ppl @0.5" in md


def test_quick_eval_numbers(quick_run):
    from kvmerge.eval import summarize
    _, out = quick_run
    res = json.loads((out / "r.json").read_text())
    s = summarize(res)
    assert res["config"]["ratios"] == [0.5, 0.35]
    assert s["rel_err"]["full"] < 1e-5
    for pol in ("streaming", "h2o", "kvmerger"):
        for r in (0.5, 0.35):
            k = f"{pol}@{r}"
            assert 0.0 < s["rel_err"][k] < 1.0, k
            assert abs(s["kept"][k] - r) < 0.01, k
            assert np.isfinite(s["ppl"][k]) and s["ppl"][k] > 1.0
        # a smaller budget cannot be closer to the full attention on average
        assert s["rel_err"][f"{pol}@0.35"] >= 0.9 * s["rel_err"][f"{pol}@0.5"]
    nl = res["model"]["n_layers"]
    assert np.asarray(s["mergeable_keys"]).shape == (len(res["docs"]), nl)
    # observation 1 on real states: keys are more similar than values
    assert np.mean(s["mergeable_keys"]) > np.mean(s["mergeable_values"])
    assert res["validation"]["ppl"] < 7.0


# ---------------------------------------------------------------------------- fixtures
def _load(name):
    p = FIXTURES[name]
    if not p.is_file():
        pytest.skip(f"{p} missing: run scripts/make_fixtures.py")
    z = np.load(p)
    return {k: z[k] for k in z.files}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_shapes(name):
    f = _load(name)
    nl, hq, hkv, L, N, W, D = SHAPES[name]
    meta = json.loads(str(f["meta"]))
    assert (meta["prefill"], meta["n_next"], meta["obs_window"], meta["head_dim"]) == (L, N, W, D)
    assert f["layers"].shape == (nl,) and f["layers"].tolist() == meta["layers"]
    assert f["tokens"].shape == (L + N,) and f["tokens"].dtype == np.int32
    exp = {"keys": ((nl, hkv, L, D), np.float16), "values": ((nl, hkv, L, D), np.float16),
           "scores": ((nl, hkv, L), np.float32), "q_obs": ((nl, hq, W, D), np.float16),
           "scores_obs": ((nl, hkv, L), np.float32), "q_next": ((nl, hq, N, D), np.float16),
           "k_next": ((nl, hkv, N, D), np.float16), "v_next": ((nl, hkv, N, D), np.float16),
           "o_next": ((nl, hq, N, D), np.float32)}
    for k, (shape, dt) in exp.items():
        assert f[k].shape == shape and f[k].dtype == dt, (k, f[k].shape, f[k].dtype)
        assert np.all(np.isfinite(f[k])), k
    g = hq // hkv
    # H2O scores: every causal query distributes probability 1 over G heads
    np.testing.assert_allclose(f["scores"].sum(-1), g * L, rtol=1e-3)
    np.testing.assert_allclose(f["scores_obs"].sum(-1), g * W, rtol=1e-3)
    assert (f["scores"] >= 0).all()


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_reference_consistency(name):
    """accumulated_scores / attention of the reference reproduce what the model computed."""
    f = _load(name)
    nl, hq, hkv, L, N, W, D = SHAPES[name]
    for i in range(nl):
        q = np.zeros((hq, L, D), np.float16)
        q[:, L - W:] = f["q_obs"][i]
        a = reference.accumulated_scores(q, f["keys"][i], obs_window=W)
        np.testing.assert_allclose(a, f["scores_obs"][i], rtol=1e-3, atol=1e-4)
        for t in (0, N - 1):
            k = np.concatenate([f["keys"][i], f["k_next"][i][:, :t + 1]], 1)
            v = np.concatenate([f["values"][i], f["v_next"][i][:, :t + 1]], 1)
            o = reference.attention(f["q_next"][i][:, t], k, v, np.full(hkv, L + t + 1))
            np.testing.assert_allclose(o, f["o_next"][i][:, t], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", sorted(FIXTURES))
@pytest.mark.parametrize("policy", ["full", "streaming", "h2o", "kvmerger"])
@pytest.mark.parametrize("ratio", [0.5, 0.35])
def test_compress_on_fixture(name, policy, ratio):
    f = _load(name)
    nl, hq, hkv, L, N, W, D = SHAPES[name]
    i = nl - 1
    out = reference.compress(f["keys"][i], f["values"][i], f["scores"][i], policy=policy,
                             ratio=None if policy == "full" else ratio)
    B = L if policy == "full" else int(np.ceil(ratio * L))
    assert out["keys"].shape == (hkv, B, D) and out["keys"].dtype == np.float16
    assert out["values"].shape == (hkv, B, D)
    for k in ("positions", "counts", "scores"):
        assert out[k].shape == (hkv, B), k
    assert out["lengths"].shape == (hkv,) and (out["lengths"] == B).all()
    assert (out["counts"].sum(1) == (L if policy in ("full", "kvmerger") else B)).all()
    if policy == "kvmerger":   # merged slots carry the summed scores of their set
        np.testing.assert_allclose(out["scores"].sum(1), f["scores"][i].sum(1), rtol=1e-4)
    # the compressed cache stays close to the full one for the next queries (loose bound)
    q = f["q_next"][i][:, 0]
    full = reference.attention(q, f["keys"][i], f["values"][i], np.full(hkv, L))
    comp = reference.attention(q, out["keys"], out["values"], out["lengths"])
    err = np.linalg.norm(comp - full) / np.linalg.norm(full)
    assert err < (1e-6 if policy == "full" else 0.8), err


def test_kvmerger_threshold_on_fixture():
    f = _load("smollm2")
    i = 1
    out = reference.compress(f["keys"][i], f["values"][i], f["scores"][i], ratio=0.5,
                             mode="threshold", eps=0.75)
    assert (out["lengths"] <= 512).all()
    sim = reference.adjacent_similarity(f["keys"][i])
    assert sim.shape == (3, 1023)
