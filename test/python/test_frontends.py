"""Real frontends, executed: Hugging Face modules exported by torch-mlir at test time, raised and
compressed by kvmerge, compiled (kvmerge's CPU pipeline, and IREE for the export), and compared
with torch eager on the same inputs.

* full cache: every output of the raised module vs torch — f32 within 1e-5 of the output's
  scale; f16/bf16 within 2 ulps of it (the raised attention accumulates in f32 where torch rounds
  its intermediates to the storage type);
* prefill compressed: the compressed caches equal ``kvmerge.reference.compress`` of the module's
  own post-RoPE K/V scored by ``kvmerge.reference.accumulated_scores`` of its own queries (slot
  maps exact, values to f32 rounding), and the layer output is unchanged;
* decode over the compressed cache: equals torch's decode layer fed that cache as its past;
* the integrated IREE path: the same module through ``--kvmerge-export-upstream`` into the real
  iree-compile / IREE runtime.

Needs torch, transformers and torch-mlir (python/requirements-torch.txt, installed by
scripts/setup.sh); skips, saying so, where they are missing.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch not installed: pip install -r python/requirements-torch.txt")
pytest.importorskip("transformers", reason="transformers not installed (python/requirements-torch.txt)")
pytest.importorskip("torch_mlir", reason="torch-mlir not installed (python/requirements-torch.txt)")

from kvmerge import compiled, frontends as fe, reference  # noqa: E402
from kvmerge.errors import CompileError  # noqa: E402

try:
    import iree.compiler  # noqa: F401
    import iree.runtime  # noqa: F401
    HAVE_IREE = True
except ImportError:  # pragma: no cover
    HAVE_IREE = False

EPS = {"f32": 1e-5, "f16": 2 * 2.0 ** -10, "bf16": 2 * 2.0 ** -7}


kvmerge_opt = fe.kvmerge_opt


def raise_and_run(spec: fe.Spec, text: str, inputs, n_out, *passes):
    return fe.raise_and_run(text, inputs, n_out, *passes)


def close(got, want, eps, what):
    err = fe.rel_error(got, want)
    assert err <= eps, f"{what}: relative error {err:.3g} > {eps:.3g}"
    return err


NUMERIC = [
    fe.Spec(kind="attn_prefill", impl="eager"),
    fe.Spec(kind="layer_prefill", impl="sdpa"),
    fe.Spec(kind="layer_decode", impl="eager", tokens=1),
    fe.Spec(kind="attn_decode", impl="sdpa", tokens=1),
    fe.Spec(kind="layer_decode", impl="sdpa", tokens=3),
    fe.Spec(kind="layer_prefill", impl="eager", batch=2),
    fe.Spec(kind="layer_prefill", impl="eager", batch=2, padding=True),
    fe.Spec(kind="layer_prefill", impl="sdpa", batch=2, padding=True),
    fe.Spec(kind="layer_prefill", impl="eager", dtype="bf16"),
    fe.Spec(kind="layer_prefill", impl="sdpa", dtype="f16"),
    fe.Spec(kind="layer_decode", impl="eager", dtype="bf16", tokens=1),
    fe.Spec(family="qwen2", kind="layer_prefill", impl="eager"),
    fe.Spec(family="mistral", kind="layer_decode", impl="sdpa", tokens=1),
    # Families whose attention is spelled differently: q/k norms (Qwen3), the model's own scale
    # (Granite), a fused qkv projection (Phi-3).
    fe.Spec(family="qwen3", kind="layer_prefill", impl="sdpa"),
    fe.Spec(family="granite", kind="layer_decode", impl="eager", tokens=1),
    fe.Spec(family="phi3", kind="layer_prefill", impl="eager"),
    # SmolLM2-135M's attention shapes: hidden 576, 9 query / 3 KV heads, head_dim 64.
    fe.Spec(kind="layer_prefill", impl="sdpa", shape="smollm2", tokens=128),
    fe.Spec(kind="layer_decode", impl="eager", shape="smollm2", cache=128, tokens=1),
    # Head layouts: no GQA (repeat_kv is the identity), one KV head, head_dim 24.
    fe.Spec(kind="layer_prefill", impl="eager", shape="mha"),
    fe.Spec(kind="layer_decode", impl="sdpa", shape="mqa", tokens=1),
    fe.Spec(kind="layer_prefill", impl="sdpa", shape="odd"),
]


def test_softcapped_logits_are_not_raised_and_say_why():
    """Gemma 2 eager soft-caps the logits (tanh): not softmax(alpha * QK^T + bias) V, so it is
    not raised, and the remark names the tanh."""
    text = fe.export(fe.Spec(family="gemma2", kind="layer_prefill", impl="eager"))
    out, diag = kvmerge_opt(text, "--kvmerge-raise-attention=remarks=true", stderr=True)
    assert "kvcache.attention" not in out
    assert "not raised to kvcache.attention: logits are not an affine function of Q . K^T " \
           "(they apply 'math.tanh' to it)" in diag


def test_granite_compressed_cache_is_scored_at_the_model_scale():
    """Granite's attention_multiplier (0.2, not 1/sqrt(D)) is the raised scale, and the prefill
    cache is compressed with scores at that scale (kvmerge.reference at scale 0.2)."""
    row = fe.check(fe.Spec(family="granite", kind="layer_prefill", impl="eager"))
    assert "scale = 0.2," in row["raised"], row["raised"]
    assert row["full_err"] <= 1e-5 and row["out_err"] <= 1e-5, row
    ok, err = row["cache"]
    assert ok and err <= 1e-5, row


@pytest.mark.parametrize("shape", ["mha", "mqa", "odd"])
def test_head_layouts_are_raised_and_compressed(shape):
    """No GQA, one KV head, head_dim 24: raised with the right group, the prefill cache compressed
    equal to kvmerge.reference on the module's own K/V, the layer output unchanged."""
    cfg = fe.SHAPES[shape]
    row = fe.check(fe.Spec(kind="layer_prefill", impl="eager", shape=shape))
    group = cfg["num_attention_heads"] // cfg["num_key_value_heads"]
    assert f"raised attention (G = {group}," in row["raised"], row["raised"]
    assert row["full_err"] <= 1e-5 and row["out_err"] <= 1e-5, row
    ok, err = row["cache"]
    assert ok and err <= 1e-5, row


@pytest.mark.parametrize("spec", NUMERIC, ids=lambda s: s.name)
def test_raised_module_matches_torch(spec):
    text = fe.export(spec)
    inputs, want = fe.reference(spec)
    _, got = raise_and_run(spec, text, inputs, len(want))
    for i, (g, w) in enumerate(zip(got, want)):
        close(g, w, EPS[spec.dtype], f"{spec.name} output {i}")


PREFILL = fe.Spec(kind="layer_prefill", impl="eager", tokens=24)


@pytest.fixture(scope="module")
def prefill():
    inputs, outputs, (q, k, v) = fe.capture(PREFILL)
    return fe.export(PREFILL), inputs, outputs, q, k, v


@pytest.mark.parametrize("policy", ["kvmerger", "h2o", "streaming"])
def test_prefill_compression_matches_reference(prefill, policy):
    text, inputs, want, q, k, v = prefill
    options = f"policy={policy} budget=0.5" + (" sigma=auto" if policy == "kvmerger" else "")
    _, got = raise_and_run(PREFILL, text, inputs, 7, f"--kvmerge-insert-compression={options}")
    out, ck, cv, pos, cnt, sc, lengths = got
    close(out, want[0], 1e-5, "layer output with compression inserted")
    scores = reference.accumulated_scores(q[0], k[0])
    kwargs = {"sigma": "auto"} if policy == "kvmerger" else {}
    ref = reference.compress(k[0], v[0], scores, policy=policy, ratio=0.5, **kwargs)
    np.testing.assert_array_equal(pos, ref["positions"])
    np.testing.assert_array_equal(cnt, ref["counts"])
    np.testing.assert_array_equal(lengths, ref["lengths"])
    close(sc, ref["scores"], 1e-5, "compressed scores")
    close(ck[0], ref["keys"], 1e-5, "compressed keys")
    close(cv[0], ref["values"], 1e-5, "compressed values")


def test_decode_over_compressed_cache_matches_torch(prefill):
    text, inputs, _, _, _, _ = prefill
    _, (_, ck, cv, _, _, _, lengths) = raise_and_run(
        PREFILL, text, inputs, 7, "--kvmerge-insert-compression=policy=h2o budget=0.5")
    slots = ck.shape[2]
    assert (lengths == slots).all()  # budget mode fills every slot
    decode = fe.Spec(kind="layer_decode", impl="eager", cache=slots, tokens=1)
    d_inputs, d_want, _ = fe.capture(decode, past=(ck, cv))
    raised, got = raise_and_run(decode, fe.export(decode), d_inputs + [lengths], 4,
                                "--kvmerge-insert-compression=budget=0.5")
    assert "kvcache.append" in raised
    close(got[0], d_want[0], 1e-5, "decode output over the compressed cache")
    # The grown cache: the valid slots, then the new token; lengths + 1.
    close(got[1], d_want[1], 1e-5, "grown keys")
    close(got[2], d_want[2], 1e-5, "grown values")
    np.testing.assert_array_equal(got[3], lengths + 1)


def test_compressed_decode_attends_only_to_valid_slots(prefill):
    """Fewer valid slots than the cache holds (threshold mode): the new token lands right after
    them and attention ignores the rest, whatever it holds — torch over the valid slots only
    (its new token at the same position) gives the same output."""
    text, inputs, _, _, _, _ = prefill
    _, (_, ck, cv, _, _, _, _) = raise_and_run(
        PREFILL, text, inputs, 7, "--kvmerge-insert-compression=policy=h2o budget=0.5")
    slots = ck.shape[2]
    valid = slots - 3
    lengths = np.full((ck.shape[1],), valid, np.int32)
    pk, pv = ck[:, :, :valid].copy(), cv[:, :, :valid].copy()
    short = fe.Spec(kind="layer_decode", impl="eager", cache=valid, tokens=1, position=slots)
    _, want, _ = fe.capture(short, past=(pk, pv))
    junk_k, junk_v = ck.copy(), cv.copy()
    junk_k[:, :, valid:] = 1e3  # what lies past the valid slots must not matter
    junk_v[:, :, valid:] = -1e3
    decode = fe.Spec(kind="layer_decode", impl="eager", cache=slots, tokens=1)
    d_inputs, _, _ = fe.capture(decode, past=(junk_k, junk_v))
    _, got = raise_and_run(decode, fe.export(decode), d_inputs + [lengths], 4,
                           "--kvmerge-insert-compression=budget=0.5")
    close(got[0], want[0], 1e-5, "decode output over the valid slots")
    close(got[1][:, :, :valid + 1], want[1], 1e-5, "valid slots, then the new key")
    close(got[2][:, :, :valid + 1], want[2], 1e-5, "valid slots, then the new value")
    assert not np.any(got[1][:, :, valid + 1:]) and not np.any(got[2][:, :, valid + 1:])
    np.testing.assert_array_equal(got[3], lengths + 1)


@pytest.mark.skipif(not HAVE_IREE, reason="the IREE wheels are not installed "
                    "(pip install -r python/requirements-iree.txt)")
@pytest.mark.parametrize("spec", [fe.Spec(kind="layer_prefill", impl="sdpa"),
                                  fe.Spec(kind="layer_decode", impl="eager", tokens=1)],
                         ids=lambda s: s.name)
def test_iree_runs_the_raised_and_exported_module(spec):
    """torch-mlir -> kvmerge (raise, compress) -> --kvmerge-export-upstream -> iree-compile."""
    from kvmerge import blocks
    text = fe.export(spec)
    inputs, want = fe.reference(spec)
    exported = kvmerge_opt(text, "--kvmerge-raise-attention", "--kvmerge-insert-compression=budget=0.5",
                           "--canonicalize", "--cse", "--kvmerge-export-upstream")
    assert "kvcache." not in exported.replace("kvcache.role", "")
    run = blocks.iree_runner(exported)
    ours = compiled.run(exported, "main", inputs + ([np.full((2,), spec.cache, np.int32)]
                                                    if spec.decode else []),
                        7 if not spec.decode else 4)
    got = run("main", inputs + ([np.full((2,), spec.cache, np.int32)] if spec.decode else []),
              len(ours))
    close(got[0], want[0], 1e-5, "IREE: layer output vs torch")
    for i, (g, o) in enumerate(zip(got, ours)):
        if o.dtype.kind == "f":
            close(g, o, 1e-5, f"IREE vs kvmerge CPU, output {i}")
        else:
            np.testing.assert_array_equal(g, o)


@pytest.mark.skipif(not HAVE_IREE, reason="the IREE wheels are not installed "
                    "(pip install -r python/requirements-iree.txt)")
def test_iree_input_form_gets_a_clear_diagnostic(tmp_path):
    """iree-turbine's export through ``iree-compile --compile-to=input`` is IREE's own input form
    (util/hal dialects): kvmerge does not read it and says which path works. Printed generically,
    it parses with --allow-unregistered-dialect and the attention is raised, but insertion cannot
    rewrite a util.func signature and warns."""
    aot = pytest.importorskip("iree.turbine.aot", reason="iree-turbine not installed")
    import shutil
    import subprocess
    spec = fe.Spec(kind="layer_prefill", impl="eager")
    model, inputs = fe.build(spec)
    (tmp_path / "torch.mlir").write_text(str(aot.export(model, *inputs).mlir_module))
    iree_compile = shutil.which("iree-compile") or str(Path(sys.executable).parent / "iree-compile")
    for name, extra in (("input.mlir", []), ("generic.mlir", ["--mlir-print-op-generic"])):
        subprocess.run([iree_compile, "--compile-to=input", *extra, str(tmp_path / "torch.mlir"),
                        "-o", str(tmp_path / name)], check=True, capture_output=True)
    with pytest.raises(CompileError) as e:
        kvmerge_opt((tmp_path / "input.mlir").read_text(), "--kvmerge-raise-attention")
    assert "this is IREE's input form" in str(e.value) and "linalg-on-tensors" in str(e.value)
    out, diag = kvmerge_opt((tmp_path / "generic.mlir").read_text(), "--allow-unregistered-dialect",
                            "--kvmerge-raise-attention=remarks=true",
                            "--kvmerge-insert-compression=budget=0.5", stderr=True)
    assert "remark: raised attention (G = 2, scale = 0.25, causal)" in diag
    assert "warning: not compressed: this attention is inside 'util.func', not a func.func" in diag
    assert "kvcache.compress" not in out
