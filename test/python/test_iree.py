"""Interop with the real IREE: kvmerge's export (--kvmerge-export-upstream) of the bundled attention
blocks, with compression inserted, compiled by iree-compile (llvm-cpu) and run by IREE's runtime on
real K/V states; every output is compared with kvmerge.reference. The export is also run through
kvmerge's own CPU pipeline, so it is checked even where IREE is missing.

IREE comes from PyPI (iree-base-compiler / iree-base-runtime, python/requirements-iree.txt,
installed by scripts/setup.sh); if the wheels cannot be installed the IREE cases skip and say so.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from kvmerge import blocks, compiled

ULP16 = lambda x: np.exp2(np.floor(np.log2(np.maximum(np.abs(x), 2.0 ** -14)))) * 2.0 ** -10

try:
    import iree.compiler  # noqa: F401
    import iree.runtime  # noqa: F401
    HAVE_IREE = True
except ImportError:  # pragma: no cover - depends on the machine
    HAVE_IREE = False


@pytest.fixture(scope="module", params=["smollm2", "llama7b"])
def block(request):
    return request.param, blocks.load_data(request.param)


def check(r, data, what, ulps=1):
    assert r["same_slots"], f"{what}: slot maps differ from the reference"
    for field in ("keys", "values"):
        got = r["outputs"][field].astype(np.float64)
        exp = r["reference"][field].astype(np.float64)
        assert (np.abs(got - exp) <= ULP16(exp) * ulps * 1.0001).all(), f"{what} {field}"
    bound = 2e-5 * max(1.0, float(np.abs(data.values).max()))
    assert r["prefill_err"] <= bound and r["decode_err"] <= bound, (r["prefill_err"], r["decode_err"])


def test_export_is_upstream_only():
    text = blocks.compile_block("smollm2", export=True)
    ops = {line.split("=", 1)[1].split()[0] for line in text.splitlines()
           if "=" in line and line.strip().startswith("%") and "." in line.split("=", 1)[1].split()[0]}
    dialects = {op.split(".")[0] for op in ops}
    assert dialects <= {"linalg", "tensor", "arith", "math", "scf"}, dialects
    assert "kvcache." not in text.replace("kvcache.role", "")
    assert "memref" not in text and "bufferization" not in text


@pytest.mark.parametrize("policy", ["kvmerger", "h2o", "streaming"])
def test_export_through_kvmerge_cpu(block, policy):
    name, data = block
    check(blocks.run_block(name, policy, data, backend="export"), data, f"{name} {policy} export")


@pytest.mark.skipif(not HAVE_IREE, reason="the IREE wheels (iree-base-compiler, iree-base-runtime) "
                    "are not installed: pip install -r python/requirements-iree.txt")
@pytest.mark.parametrize("policy", ["kvmerger", "h2o", "streaming"])
def test_iree_runs_the_export(block, policy):
    name, data = block
    # IREE's llvm-cpu evaluates math.exp with its own polynomial and reorders sums: the Gaussian
    # weights differ in the last bits, so a merged f16 entry may land 2 ulps away (3 of 2M here).
    check(blocks.run_block(name, policy, data, backend="iree"), data, f"{name} {policy} iree", ulps=2)


@pytest.mark.skipif(not HAVE_IREE, reason="IREE wheels not installed")
def test_iree_compile_cli(tmp_path):
    """The command in docs/iree.md: iree-compile on the exported file."""
    src = tmp_path / "smollm2-exported.mlir"
    src.write_text(blocks.compile_block("smollm2", export=True))
    import iree.compiler.tools as tools
    out = tmp_path / "smollm2.vmfb"
    subprocess.run([tools.binaries.find_tool("iree-compile"), str(src), "--iree-hal-target-device=local",
                    "--iree-hal-local-target-device-backends=llvm-cpu", "--iree-llvmcpu-target-cpu=host",
                    "-o", str(out)], check=True, capture_output=True)
    assert out.stat().st_size > 0
