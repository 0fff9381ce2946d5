"""Writes a Llama attention block (prefill + decode) in upstream MLIR dialects only.

The IR is what a torch-mlir-style frontend emits for grouped-query attention on post-RoPE
queries/keys: f16 storage widened with arith.extf, GQA by linalg.broadcast + tensor.collapse_shape,
Q.K^T as linalg.batch_matmul with a transposing indexing map, a scale, a causal masked fill on
linalg.index, the max / sub+exp / sum / div softmax chain, and P.V. The prefill returns its K/V
caches (marked `kvcache.role`), the decode reads a cache of `capacity` slots.

    python scripts/gen_attention_block.py --hq 9 --hkv 3 --queries 64 --keys 1024 --dim 64 \
        --capacity 512 > examples/smollm2-block.mlir
    python scripts/gen_attention_block.py --layers 32 ...   # a module of 32 such blocks (benchmarks)
"""

from __future__ import annotations

import argparse
import math


def block(hq, hkv, m, n, d, capacity, suffix="", dtype="f16"):
    g = hq // hkv
    t = lambda *s, e="f32": "tensor<" + "x".join(map(str, s)) + f"x{e}>"
    m3 = "affine_map<(d0, d1, d2) -> (d0, d1, d2)>"
    mr = "affine_map<(d0, d1, d2) -> (d0, d1)>"
    par3 = '["parallel", "parallel", "parallel"]'
    scale = 1.0 / math.sqrt(d)

    def attention(q, k, v, rows, cols, causal, out):
        tag = out.lstrip("%")
        s = []
        kk, vv = k, v
        if g > 1:
            for name, x in (("k", k), ("v", v)):
                s.append(f"    %{name}b0{tag} = tensor.empty() : {t(hkv, g, cols, d)}")
                s.append(f"    %{name}b{tag} = linalg.broadcast ins({x} : {t(hkv, cols, d)}) "
                         f"outs(%{name}b0{tag} : {t(hkv, g, cols, d)}) dimensions = [1]")
                s.append(f"    %{name}r{tag} = tensor.collapse_shape %{name}b{tag} [[0, 1], [2], [3]] "
                         f": {t(hkv, g, cols, d)} into {t(hq, cols, d)}")
            kk, vv = f"%kr{tag}", f"%vr{tag}"
        st = t(hq, rows, cols)
        s += [f"    %s0{tag} = tensor.empty() : {st}",
              f"    %sz{tag} = linalg.fill ins(%zero : f32) outs(%s0{tag} : {st}) -> {st}",
              f"    %s{tag} = linalg.batch_matmul indexing_maps = [affine_map<(b, m, n, k) -> (b, m, k)>, "
              f"affine_map<(b, m, n, k) -> (b, n, k)>, affine_map<(b, m, n, k) -> (b, m, n)>]",
              f"        ins({q}, {kk} : {t(hq, rows, d)}, {t(hq, cols, d)}) outs(%sz{tag} : {st}) -> {st}",
              f"    %ss{tag} = linalg.generic {{indexing_maps = [{m3}, {m3}], iterator_types = {par3}}} "
              f"ins(%s{tag} : {st}) outs(%s0{tag} : {st}) {{",
              f"    ^bb0(%in: f32, %o: f32):",
              f"      %x = arith.mulf %in, %scale : f32",
              f"      linalg.yield %x : f32",
              f"    }} -> {st}"]
        src = f"%ss{tag}"
        if causal:
            s += [f"    %sm{tag} = linalg.generic {{indexing_maps = [{m3}, {m3}], iterator_types = {par3}}} "
                  f"ins(%ss{tag} : {st}) outs(%s0{tag} : {st}) {{",
                  f"    ^bb0(%in: f32, %o: f32):",
                  f"      %i = linalg.index 1 : index",
                  f"      %j = linalg.index 2 : index",
                  f"      %off = arith.constant {cols - rows} : index",
                  f"      %last = arith.addi %i, %off : index",
                  f"      %future = arith.cmpi ugt, %j, %last : index",
                  f"      %x = arith.select %future, %ninf, %in : f32",
                  f"      linalg.yield %x : f32",
                  f"    }} -> {st}"]
            src = f"%sm{tag}"
        rt = t(hq, rows)
        s += [f"    %r0{tag} = tensor.empty() : {rt}",
              f"    %mf{tag} = linalg.fill ins(%ninf : f32) outs(%r0{tag} : {rt}) -> {rt}",
              f"    %mx{tag} = linalg.generic {{indexing_maps = [{m3}, {mr}], "
              f"iterator_types = [\"parallel\", \"parallel\", \"reduction\"]}} ins({src} : {st}) outs(%mf{tag} : {rt}) {{",
              f"    ^bb0(%in: f32, %o: f32):",
              f"      %x = arith.maximumf %in, %o : f32",
              f"      linalg.yield %x : f32",
              f"    }} -> {rt}",
              f"    %e{tag} = linalg.generic {{indexing_maps = [{m3}, {mr}, {m3}], iterator_types = {par3}}} "
              f"ins({src}, %mx{tag} : {st}, {rt}) outs(%s0{tag} : {st}) {{",
              f"    ^bb0(%in: f32, %mm: f32, %o: f32):",
              f"      %x = arith.subf %in, %mm : f32",
              f"      %y = math.exp %x : f32",
              f"      linalg.yield %y : f32",
              f"    }} -> {st}",
              f"    %zf{tag} = linalg.fill ins(%zero : f32) outs(%r0{tag} : {rt}) -> {rt}",
              f"    %sum{tag} = linalg.generic {{indexing_maps = [{m3}, {mr}], "
              f"iterator_types = [\"parallel\", \"parallel\", \"reduction\"]}} ins(%e{tag} : {st}) outs(%zf{tag} : {rt}) {{",
              f"    ^bb0(%in: f32, %o: f32):",
              f"      %x = arith.addf %in, %o : f32",
              f"      linalg.yield %x : f32",
              f"    }} -> {rt}",
              f"    %p{tag} = linalg.generic {{indexing_maps = [{m3}, {mr}, {m3}], iterator_types = {par3}}} "
              f"ins(%e{tag}, %sum{tag} : {st}, {rt}) outs(%s0{tag} : {st}) {{",
              f"    ^bb0(%in: f32, %z: f32, %o: f32):",
              f"      %x = arith.divf %in, %z : f32",
              f"      linalg.yield %x : f32",
              f"    }} -> {st}"]
        ot = t(hq, rows, d)
        s += [f"    %o0{tag} = tensor.empty() : {ot}",
              f"    %oz{tag} = linalg.fill ins(%zero : f32) outs(%o0{tag} : {ot}) -> {ot}",
              f"    {out} = linalg.batch_matmul ins(%p{tag}, {vv} : {st}, {t(hq, cols, d)}) "
              f"outs(%oz{tag} : {ot}) -> {ot}"]
        return s

    def widen(names_shapes):
        return [f"    %{n}f = arith.extf %{n} : {t(*sh, e=dtype)} to {t(*sh)}" for n, sh in names_shapes]

    consts = ["    %zero = arith.constant 0.0 : f32",
              "    %ninf = arith.constant 0xFF800000 : f32",
              f"    %scale = arith.constant {scale!r} : f32"]
    kv_ret = f'{t(hkv, n, d, e=dtype)} {{kvcache.role = "keys"}}, {t(hkv, n, d, e=dtype)} {{kvcache.role = "values"}}'
    pre = [f"  func.func @prefill{suffix}(%q: {t(hq, m, d, e=dtype)}, %k: {t(hkv, n, d, e=dtype)}, "
           f"%v: {t(hkv, n, d, e=dtype)}) -> ({t(hq, m, d)}, {kv_ret}) {{"]
    pre += consts + widen([("q", (hq, m, d)), ("k", (hkv, n, d)), ("v", (hkv, n, d))])
    pre += attention("%qf", "%kf", "%vf", m, n, True, "%o")
    pre += [f"    return %o, %k, %v : {t(hq, m, d)}, {t(hkv, n, d, e=dtype)}, {t(hkv, n, d, e=dtype)}", "  }"]
    dec = [f"  func.func @decode{suffix}(%q: {t(hq, 1, d, e=dtype)}, "
           f"%k: {t(hkv, capacity, d, e=dtype)} {{kvcache.role = \"keys\"}}, "
           f"%v: {t(hkv, capacity, d, e=dtype)} {{kvcache.role = \"values\"}}) -> {t(hq, 1, d)} {{"]
    dec += consts + widen([("q", (hq, 1, d)), ("k", (hkv, capacity, d)), ("v", (hkv, capacity, d))])
    dec += attention("%qf", "%kf", "%vf", 1, capacity, False, "%o")
    dec += [f"    return %o : {t(hq, 1, d)}", "  }"]
    return "\n".join(pre + dec)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hq", type=int, required=True)
    ap.add_argument("--hkv", type=int, required=True)
    ap.add_argument("--queries", type=int, required=True, help="prefill queries (the last M positions)")
    ap.add_argument("--keys", type=int, required=True, help="prefill cache length N")
    ap.add_argument("--dim", type=int, required=True)
    ap.add_argument("--capacity", type=int, required=True, help="slots of the decode cache")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    print(f"// {a.title or 'Llama attention block'}: generated by scripts/gen_attention_block.py")
    print(f"// (Hq={a.hq}, Hkv={a.hkv}, queries={a.queries}, keys={a.keys}, D={a.dim}, "
          f"decode capacity={a.capacity}), upstream dialects only.")
    print("module {")
    for i in range(a.layers):
        print(block(a.hq, a.hkv, a.queries, a.keys, a.dim, a.capacity, suffix="" if a.layers == 1 else f"_{i}"))
    print("}")


if __name__ == "__main__":
    main()
