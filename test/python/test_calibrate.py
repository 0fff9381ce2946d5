"""kvmerge.calibrate: per-layer budgets from real keys, same total memory as the uniform budget."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kvmerge import calibrate, compiled, reference

DATA = Path(__file__).resolve().parents[1] / "data"


def test_weights_rule_and_validation():
    w = calibrate.allocate_weights([0.9, 0.5, 0.7, 0.9], ratio=0.5)
    assert w.mean() == pytest.approx(1.0)
    assert w[1] > w[2] > w[0] == pytest.approx(w[3])   # less mergeable -> more slots
    assert np.all(w >= 0.5) and np.all(w <= 2.0)
    np.testing.assert_allclose(calibrate.allocate_weights([0.3] * 5, ratio=0.35), 1.0)
    with pytest.raises(ValueError, match="^mergeable"):
        calibrate.allocate_weights([1.5], ratio=0.5)
    with pytest.raises(ValueError, match="^ratio"):
        calibrate.allocate_weights([0.5], ratio=0.0)


@pytest.mark.parametrize("ratio", [0.5, 0.35, 0.9])
def test_same_total_memory_as_uniform(ratio):
    rng = np.random.default_rng(0)
    w = calibrate.allocate_weights(rng.random(30), ratio=ratio)
    for L in (97, 320, 2048, 2049, 8192):
        slots = calibrate.layer_slots(w, ratio=ratio, length=L)
        assert sum(slots) == 30 * reference.budget_from_ratio(ratio, L)
        assert max(slots) <= L and min(slots) >= 1


def test_calibrate_from_real_keys():
    z = np.load(DATA / "smollm2_kv.npz")
    keys = [k.astype(np.float32) for k in z["keys"]]
    res = calibrate.calibrate_from_keys(keys, ratio=0.5)
    assert len(res["layer_budgets"]) == len(keys)
    # the recorded mergeable fraction is Observation 2's measure
    s = reference.adjacent_similarity(keys[0])
    assert res["mergeable"][0] == pytest.approx(float((s >= 0.75).mean()))
    assert np.mean(res["layer_budgets"]) == pytest.approx(0.5)
    L = keys[0].shape[1]
    slots = calibrate.layer_slots(res["weights"], ratio=0.5, length=L)
    assert sum(slots) == len(keys) * reference.budget_from_ratio(0.5, L)


def test_budgets_file_read_by_the_pass(tmp_path):
    """The JSON goes straight into --kvmerge-insert-compression=budgets-file=..."""
    res = {"layer_budgets": [0.75, 0.25]}
    f = tmp_path / "b.json"
    f.write_text(json.dumps(res))
    att = ("  %o{i} = kvcache.attention ins(%q, %k{i}, %v{i} : tensor<4x32x16xf32>, tensor<2x32x16xf32>, "
           "tensor<2x32x16xf32>) outs(%e : tensor<4x32x16xf32>) causal\n")
    t = "tensor<2x32x16xf32>"
    src = (f"func.func @p(%q: tensor<4x32x16xf32>, %k0: {t}, %v0: {t}, %k1: {t}, %v1: {t}) -> "
           f"(tensor<4x32x16xf32>, {t}, {t}, tensor<4x32x16xf32>, {t}, {t}) {{\n"
           "  %e = tensor.empty() : tensor<4x32x16xf32>\n" + att.format(i=0) + att.format(i=1) +
           f"  return %o0, %k0, %v0, %o1, %k1, %v1 : tensor<4x32x16xf32>, {t}, {t}, tensor<4x32x16xf32>, {t}, {t}\n}}\n")
    out = subprocess.run([compiled.tool("kvmerge-opt"), f"--kvmerge-insert-compression=budgets-file={f}"],
                         input=src, capture_output=True, text=True, check=True).stdout
    assert "tensor<2x24x16xf32>" in out and "tensor<2x8x16xf32>" in out
