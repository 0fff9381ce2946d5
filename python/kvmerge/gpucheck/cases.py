"""The GPU check's cases and its manifest (NumPy only: both steps import this).

Three families of cases, each a ``compress`` function per (policy, dtype) plus decode
``attention`` functions over the compressed and the full cache (GQA):

* ``ref``: synthetic caches of ``ref_length`` tokens (default 1K), inputs and the expected outputs
  of :mod:`kvmerge.reference` computed by the prepare step and shipped;
* ``fixture``: the real SmolLM2 KV states of ``test/data/smollm2_kv.npz`` (f16, and a bf16 cast),
  read from the tree, expected outputs of the reference shipped;
* ``large``: synthetic caches of ``lengths`` tokens (default 4K, 32K, 128K; ``kv_heads`` x
  ``head_dim`` = 8 x 128, ``q_heads`` = 32), generated on the GPU from a seed; expected outputs
  from :mod:`kvmerge.torch_ref` on the GPU (validated against the reference on the CPU by
  ``test/python/test_torch_ref.py``). The f16 ones (else the first dtype's) are also timed.

The manifest (``manifest.json``) lists data sources, artifacts and cases; :func:`load_manifest`
checks it and names what is wrong.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

SCHEMA = 1
DTYPES = ("float32", "float16", "bfloat16")
SHORT = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}
REPO = Path(__file__).resolve().parents[3]

# (name, arguments of kvmerge.reference.compress). The threshold cases take both branches of the
# spec on the synthetic caches: eps = 0.3 cuts fewer links than the budget allows (only the
# boundaries between runs), eps = 0.75 cuts too many (the budget rule decides).
REF_POLICIES: Tuple[Tuple[str, dict], ...] = (
    ("kvmerger-r0.5", dict(policy="kvmerger", ratio=0.5)),
    ("kvmerger-v1-r0.35", dict(policy="kvmerger", ratio=0.35, heavy=0, sigma="auto")),
    ("kvmerger-thr0.3-s0.7-r0.5", dict(policy="kvmerger", ratio=0.5, mode="threshold", eps=0.3, sigma=0.7)),
    ("h2o-r0.35", dict(policy="h2o", ratio=0.35)),
    ("streaming-r0.5", dict(policy="streaming", ratio=0.5)),
)
LARGE_POLICIES: Tuple[Tuple[str, dict], ...] = (
    ("kvmerger-r0.5", dict(policy="kvmerger", ratio=0.5)),
    ("kvmerger-thr0.75-paper-r0.35", dict(policy="kvmerger", ratio=0.35, mode="threshold", eps=0.75,
                                          sigma="paper")),
    ("h2o-r0.35", dict(policy="h2o", ratio=0.35)),
    ("streaming-r0.5", dict(policy="streaming", ratio=0.5)),
)
FIXTURE_POLICIES: Tuple[Tuple[str, dict], ...] = (
    ("kvmerger-r0.5", dict(policy="kvmerger", ratio=0.5)),
    ("kvmerger-thr0.75-r0.35", dict(policy="kvmerger", ratio=0.35, mode="threshold", eps=0.75)),
    ("h2o-r0.35", dict(policy="h2o", ratio=0.35)),
    ("streaming-r0.5", dict(policy="streaming", ratio=0.5)),
)
FIXTURE = "repo:test/data/smollm2_kv.npz"


@dataclasses.dataclass(frozen=True)
class Config:
    """The case grid. The defaults are the GPU check; tests use a small one."""

    kv_heads: int = 8
    q_heads: int = 32
    head_dim: int = 128
    lengths: Tuple[int, ...] = (4096, 32768, 131072)
    ref_length: int = 1024
    ref_kv_heads: int = 2
    ref_q_heads: int = 8
    dtypes: Tuple[str, ...] = DTYPES
    fixture: bool = True
    seed: int = 2026

    def __post_init__(self):
        for name in ("kv_heads", "q_heads", "head_dim", "ref_length", "ref_kv_heads", "ref_q_heads"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)!r}")
        if self.q_heads % self.kv_heads or self.ref_q_heads % self.ref_kv_heads:
            raise ValueError(f"q_heads: must be a multiple of kv_heads (GQA), got {self.q_heads}/{self.kv_heads} "
                             f"and {self.ref_q_heads}/{self.ref_kv_heads}")
        if not self.lengths or any(not isinstance(L, int) or L < 64 for L in self.lengths):
            raise ValueError(f"lengths: expected integers >= 64, got {self.lengths!r}")
        bad = [d for d in self.dtypes if d not in DTYPES]
        if bad or not self.dtypes:
            raise ValueError(f"dtypes: expected some of {', '.join(DTYPES)}, got {self.dtypes!r}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Config":
        d = dict(d)
        d["lengths"] = tuple(d["lengths"])
        d["dtypes"] = tuple(d["dtypes"])
        return cls(**d)


def resolve(L: int, kw: dict) -> dict:
    """The resolved compress arguments (B, sink, recent, mode, eps, sigma) for ``L`` tokens, as
    :func:`kvmerge.reference.resolve_compress_args` resolves them (they do not depend on H, D)."""
    from .. import reference

    one = np.ones((1, L, 1), np.float32)
    a = reference.resolve_compress_args(one, one, one[..., 0], **kw)
    return dict(policy=a.policy, B=int(a.B), sink=int(a.sink), recent=int(a.recent), mode=a.mode,
                eps=float(a.eps), sigma=a.sigma if isinstance(a.sigma, str) else float(a.sigma),
                heavy=int(a.heavy))


def _seed(*parts) -> int:
    """A stable 31-bit seed from the case's parts (no Python hash randomization)."""
    h = 2166136261
    for b in "/".join(map(str, parts)).encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h & 0x7FFFFFFF


def synthetic_numpy(H: int, L: int, D: int, dtype: str, seed: int):
    """Keys in runs of similar keys (a run starts with probability 1/4; a per-token noise level in
    [0.05, 1.5] spreads the similarities inside runs over about (0.3, 1)), random values,
    gamma(1/2, 2) scores. The same distribution as :func:`kvmerge.gpucheck.checks.synthetic`."""
    rng = np.random.default_rng(seed)
    run_id = np.cumsum(rng.random((H, L)) < 0.25, axis=1)
    bases = rng.standard_normal((H, L + 1, D))
    noise = 0.05 + 1.45 * rng.random((H, L, 1))
    k = np.take_along_axis(bases, run_id[..., None], axis=1) + noise * rng.standard_normal((H, L, D))
    v = rng.standard_normal((H, L, D))
    a = rng.standard_normal((H, L)) ** 2
    return k.astype(numpy_dtype(dtype)), v.astype(numpy_dtype(dtype)), a.astype(np.float32)


def numpy_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def as_dtype(a: np.ndarray, name: str) -> np.ndarray:
    """An array loaded from .npy/.npz with its dtype restored (bf16 is stored as raw 2 bytes)."""
    if name == "bfloat16" and a.dtype.itemsize == 2 and a.dtype.kind in "Vu":
        try:
            import ml_dtypes

            return a.view(ml_dtypes.bfloat16)
        except ImportError:  # pragma: no cover
            return a
    return a


def _fn(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


class Grid:
    """Builds the manifest's data sources, artifacts (functions per artifact) and cases."""

    def __init__(self, config: Config):
        self.config = config
        self.data: Dict[str, dict] = {}
        self.cases: List[dict] = []
        self.functions: Dict[str, Dict[str, dict]] = {}  # artifact -> function -> signature

    def _function(self, artifact: str, name: str, signature: dict) -> str:
        fns = self.functions.setdefault(artifact, {})
        if name in fns and fns[name] != signature:  # pragma: no cover - naming bug
            raise AssertionError(f"function {name} has two signatures")
        fns[name] = signature
        return name

    def compress(self, family, dtype, data, H, L, D, policy_name, kw, expected, timing=False) -> dict:
        args = resolve(L, kw)
        artifact = f"{family}-{SHORT[dtype]}" if family != "fixture" else "fixture"
        name = self._function(artifact, _fn(f"c_{dtype}_{H}x{L}x{D}_{policy_name}"),
                              dict(kind="compress", dtype=dtype, shape=[H, L, D], args=args))
        case = dict(id=f"{data}/{policy_name}", kind="compress", family=family, artifact=artifact, function=name, dtype=dtype,
                    shape=[H, L, D], data=data, args=args, expected=expected, timing=timing)
        self.cases.append(case)
        return case

    def attention(self, family, over: dict, which: str, Hq: int, query: dict, expected: dict,
                  timing=False) -> dict:
        H, L, D = over["shape"]
        S = over["args"]["B"] if which == "compressed" else L
        bias = which == "compressed"
        dtype = over["dtype"]
        name = self._function(over["artifact"], _fn(f"att_{dtype}_{Hq}x{H}x{S}x{D}_{'bias' if bias else 'nobias'}"),
                              dict(kind="attention", dtype=dtype, q_heads=Hq, shape=[H, S, D], count_bias=bias))
        case = dict(id=f"{over['id']}/attention-{which}", kind="attention", family=family,
                    artifact=over["artifact"], function=name, dtype=dtype, q_heads=Hq, shape=[H, S, D],
                    cache=dict(case=over["id"], which=which), count_bias=bias, query=query,
                    expected=expected, timing=timing)
        self.cases.append(case)
        return case

    def build(self) -> "Grid":
        c = self.config
        for dtype in c.dtypes:
            # ref: shipped inputs and reference outputs.
            H, L, D = c.ref_kv_heads, c.ref_length, c.head_dim
            key = f"ref/{SHORT[dtype]}/L{L}"
            self.data[key] = dict(source="npz", file=f"ref-{SHORT[dtype]}.npz", arrays=["k", "v", "a"],
                                  dtype=dtype, shape=[H, L, D], seed=_seed("ref", dtype, c.seed))
            for i, (pname, kw) in enumerate(REF_POLICIES):
                cc = self.compress("ref", dtype, key, H, L, D, pname, kw, dict(source="npz", file="expected.npz"))
                if i in (0, 1):  # both budgets (0.5, 0.35); the full cache once
                    self.attention("ref", cc, "compressed", c.ref_q_heads,
                                   dict(source="npz", file=f"ref-{SHORT[dtype]}.npz", array="q"),
                                   dict(source="npz", file="expected.npz"))
                if i == 0:
                    self.attention("ref", cc, "full", c.ref_q_heads,
                                   dict(source="npz", file=f"ref-{SHORT[dtype]}.npz", array="q"),
                                   dict(source="npz", file="expected.npz"))
        if c.fixture:
            for layer in range(4):
                for dtype in ("float16", "bfloat16"):
                    if dtype == "bfloat16" and layer != 1:
                        continue
                    key = f"fixture/{SHORT[dtype]}/layer{layer}"
                    self.data[key] = dict(source="npz", file=FIXTURE, arrays=["keys", "values", "scores"],
                                          index=layer, dtype=dtype, shape=[3, 1024, 64])
                    policies = FIXTURE_POLICIES if dtype == "float16" else FIXTURE_POLICIES[:1]
                    for i, (pname, kw) in enumerate(policies):
                        cc = self.compress("fixture", dtype, key, 3, 1024, 64, pname, kw,
                                           dict(source="npz", file="expected.npz"))
                        if i in (0, 1):  # the real next-token queries (Hq = 9: GQA, G = 3)
                            self.attention("fixture", cc, "compressed", 9,
                                           dict(source="npz", file=FIXTURE, array="q_next", index=layer),
                                           dict(source="npz", file="expected.npz"))
        for dtype in c.dtypes:
            for L in c.lengths:
                H, D = c.kv_heads, c.head_dim
                key = f"large/{SHORT[dtype]}/L{L}"
                self.data[key] = dict(source="synthetic", dtype=dtype, shape=[H, L, D],
                                      seed=_seed("large", dtype, L, c.seed))
                timing = dtype == ("float16" if "float16" in c.dtypes else c.dtypes[0])
                for i, (pname, kw) in enumerate(LARGE_POLICIES):
                    cc = self.compress("large", dtype, key, H, L, D, pname, kw, dict(source="torch_ref"),
                                       timing=timing)
                    if i == 0:
                        for which in ("compressed", "full"):
                            self.attention("large", cc, which, c.q_heads,
                                           dict(source="synthetic", seed=_seed("q", dtype, L, c.seed)),
                                           dict(source="torch_ref"), timing=timing)
        return self


def case_key(case_id: str, name: str) -> str:
    """The key of one expected array in expected.npz."""
    return case_id.replace("/", "|") + "|" + name


# -- the manifest ---------------------------------------------------------------------------------

class ManifestError(ValueError):
    """The prepared directory or its manifest is missing or inconsistent."""


def load_manifest(prepared) -> dict:
    """Reads and checks ``prepared/manifest.json``: schema, artifacts present, every case's data,
    artifact, function and expectation defined. Raises :class:`ManifestError` naming the problem."""
    prepared = Path(prepared)
    path = prepared / "manifest.json"
    if not path.is_file():
        raise ManifestError(f"prepared: no manifest at '{path}' (run `scripts/gpu-check.sh prepare` on a machine "
                            f"with the kvmerge build, and carry the directory to the GPU machine)")
    try:
        m = json.loads(path.read_text())
    except ValueError as e:
        raise ManifestError(f"prepared: '{path}' is not JSON: {e}") from None
    if not isinstance(m, dict) or m.get("schema") != SCHEMA:
        raise ManifestError(f"prepared: '{path}' has schema {m.get('schema') if isinstance(m, dict) else None!r}; "
                            f"this kvmerge reads {SCHEMA} (prepare again)")
    for field in ("target", "config", "artifacts", "data", "cases"):
        if field not in m:
            raise ManifestError(f"prepared: '{path}' has no '{field}'")
    for name, a in m["artifacts"].items():
        if not (prepared / a["file"]).is_file():
            raise ManifestError(f"prepared: artifact '{name}' ({prepared / a['file']}) is missing")
    ids = set()
    for case in m["cases"]:
        cid = case.get("id")
        if cid in ids:
            raise ManifestError(f"prepared: case '{cid}' appears twice")
        ids.add(cid)
        if case.get("artifact") not in m["artifacts"]:
            raise ManifestError(f"prepared: case '{cid}' uses unknown artifact {case.get('artifact')!r}")
        if case["function"] not in m["artifacts"][case["artifact"]]["functions"]:
            raise ManifestError(f"prepared: case '{cid}': artifact '{case['artifact']}' has no function "
                                f"'{case['function']}'")
        if case["kind"] == "compress":
            if case.get("data") not in m["data"]:
                raise ManifestError(f"prepared: case '{cid}' uses unknown data {case.get('data')!r}")
        elif case["kind"] == "attention":
            if case["cache"]["case"] not in ids:
                raise ManifestError(f"prepared: case '{cid}' is over '{case['cache']['case']}', which is not "
                                    f"an earlier case")
        else:
            raise ManifestError(f"prepared: case '{cid}' has unknown kind {case.get('kind')!r}")
        if case["expected"]["source"] not in ("npz", "torch_ref"):
            raise ManifestError(f"prepared: case '{cid}' has unknown expectation {case['expected']['source']!r}")
    for key, d in m["data"].items():
        if d["source"] == "npz" and not resolve_file(prepared, d["file"]).is_file():
            raise ManifestError(f"prepared: data '{key}' reads '{resolve_file(prepared, d['file'])}', which is missing")
    return m


def resolve_file(prepared, name: str) -> Path:
    """A manifest file name: ``repo:PATH`` is in the source tree, anything else in ``prepared``."""
    return REPO / name[len("repo:"):] if name.startswith("repo:") else Path(prepared) / name


class Arrays:
    """Loads the manifest's npz files once each."""

    def __init__(self, prepared):
        self.prepared = Path(prepared)
        self._files: Dict[str, dict] = {}

    def file(self, name: str):
        if name not in self._files:
            with np.load(resolve_file(self.prepared, name)) as z:
                self._files[name] = {k: z[k] for k in z.files}
        return self._files[name]

    def data(self, d: dict):
        """(k, v, a) NumPy arrays of a data source of kind npz."""
        z = self.file(d["file"])
        out = []
        for i, name in enumerate(d["arrays"]):
            a = z[name] if "index" not in d else z[name][d["index"]]
            if i < 2:
                a = as_dtype(a, d["dtype"])
                if a.dtype != numpy_dtype(d["dtype"]):
                    a = a.astype(numpy_dtype(d["dtype"]))
            out.append(np.ascontiguousarray(a))
        return tuple(out)

    def query(self, q: dict, dtype: str):
        z = self.file(q["file"])
        a = z[q["array"]] if "index" not in q else z[q["array"]][q["index"]]
        if a.ndim == 3:  # q_next [Hq, T, D]: the first next token
            a = a[:, 0]
        a = as_dtype(a, dtype)
        if a.dtype != numpy_dtype(dtype):
            a = a.astype(numpy_dtype(dtype))
        return np.ascontiguousarray(a)

    def expected(self, case: dict, names: Sequence[str]):
        z = self.file(case["expected"]["file"])
        return {n: as_dtype(z[case_key(case["id"], n)], case["dtype"]) if n in ("keys", "values")
                else z[case_key(case["id"], n)] for n in names}


COMPRESS_RESULTS = ("keys", "values", "positions", "counts", "scores", "lengths")


def budget_share(case: dict) -> float:
    return case["args"]["B"] / case["shape"][1]


def nbytes(shape, dtype: str) -> int:
    return int(math.prod(shape)) * (4 if dtype == "float32" else 2)
