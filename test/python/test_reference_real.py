"""The reference on REAL key/value states: the committed fixtures (test/data/*_kv.npz, made by
scripts/make_fixtures.py from stories260K on TinyStories and SmolLM2-135M on Pride and
Prejudice; the forward passes themselves are tested in test_models.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from kvmerge import reference as R

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize("name", ["stories260k_kv.npz", "smollm2_kv.npz"])
def test_observation_window_scores_are_reproduced(name):
    """scores_obs in the fixture = reference.accumulated_scores over the stored f16 queries."""
    z = np.load(DATA / name)
    i = 0
    q_obs, k = z["q_obs"][i], z["keys"][i]
    hq, w, d = q_obs.shape
    q = np.zeros((hq, k.shape[1], d), np.float16)
    q[:, -w:] = q_obs
    a = R.accumulated_scores(q, k, obs_window=w)
    np.testing.assert_allclose(a, z["scores_obs"][i], rtol=1e-4, atol=1e-6)
    g = hq // k.shape[0]
    np.testing.assert_allclose(a.sum(axis=1), g * w, rtol=1e-4)


@pytest.mark.parametrize("name", ["stories260k_kv.npz", "smollm2_kv.npz"])
def test_real_kv_compression(name):
    z = np.load(DATA / name)
    for i in range(len(z["layers"])):
        k, v, a = z["keys"][i].astype(np.float32), z["values"][i].astype(np.float32), z["scores"][i]
        hkv, n, _ = k.shape
        sim = R.adjacent_similarity(k)
        assert np.all(np.isfinite(sim)) and np.all(np.abs(sim) <= 1)
        full_lengths = np.full(hkv, n, np.int32)
        errs = {}
        for ratio in (0.5, 0.35):
            b = math.ceil(ratio * n)
            for policy in ("kvmerger", "h2o", "streaming"):
                out = R.compress(k, v, a, policy=policy, ratio=ratio)
                assert out["lengths"].tolist() == [b] * hkv
                counts = out["counts"].sum(axis=1).tolist()
                assert counts == ([n] * hkv if policy == "kvmerger" else [b] * hkv)
                rel = []
                for q in z["q_next"][i].transpose(1, 0, 2).astype(np.float32):  # next tokens' queries
                    full = R.attention(q, k, v, full_lengths)
                    comp = R.attention(q, out["keys"], out["values"], out["lengths"])
                    rel.append(np.linalg.norm(comp - full) / np.linalg.norm(full))
                errs[(policy, ratio)] = float(np.mean(rel))
            thr = R.compress(k, v, a, ratio=ratio, mode="threshold", eps=0.75)
            assert np.all(thr["lengths"] <= b) and np.all(thr["counts"].sum(axis=1) == n)
        # sanity, not a quality claim (docs/results.md has those): no policy produces garbage
        assert all(np.isfinite(e) and e < 1.0 for e in errs.values()), errs
