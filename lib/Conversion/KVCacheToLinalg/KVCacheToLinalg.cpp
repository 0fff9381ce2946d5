//===- KVCacheToLinalg.cpp - kvcache ops -> linalg on tensors (export) ----===//
//
// The export lowering: every kvcache op becomes linalg on tensors (plus
// tensor/arith/math/scf inside linalg bodies), no buffers, so that any
// MLIR-based compiler that ingests linalg-on-tensors (IREE's iree-compile,
// torch-mlir style pipelines) can take kvmerge's output.
//
// Each result is a linalg.generic over its own index space whose body
// computes one element by reading ("gathering") the inputs with
// tensor.extract; the per-head selection and the per-slot statistics are
// small generics of their own, so every generic is embarrassingly parallel
// and maps to a dispatch. Attention is the textbook linalg graph (Q.K^T
// contraction, masked softmax, P.V) with GQA through broadcast.
//
// Cost: the slot map of a head is O(L^2) (each token counts the cuts before
// it) and each merged element re-reads its set; fine for the model blocks it
// exports, the CPU pipeline (convert-kvcache-to-loops) is the fast path.
//
//===----------------------------------------------------------------------===//

#include "../Common/LoopEmitter.h"
#include "kvmerge/Conversion/Passes.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "llvm/ADT/TypeSwitch.h"

namespace kvmerge {
#define GEN_PASS_DEF_CONVERTKVCACHETOLINALG
#include "kvmerge/Conversion/Passes.h.inc"
} // namespace kvmerge

using namespace mlir;
using namespace kvmerge::kvcache;
using namespace kvmerge::conversion;

namespace {

struct E : LoopEmitterBase<E> {
  using LoopEmitterBase::LoopEmitterBase;
  E nested(OpBuilder &nb, Location l) { return E(nb, l); }

  Value extract(Value t, ValueRange ivs) {
    return tensor::ExtractOp::create(b, t, ivs);
  }
  /// Size `i` of a tensor: a constant when it is static.
  Value dimOf(Value t, int64_t i) {
    auto type = cast<RankedTensorType>(t.getType());
    if (!type.isDynamicDim(i))
      return idx(type.getDimSize(i));
    return tensor::DimOp::create(b, t, i);
  }
  /// A sequential i32 count of `pred` over [lb, ub) (inside a generic body).
  Value seqCount(Value lb, Value ub, Pred pred) {
    return forLoop(lb, ub, ValueRange{i32(0)},
                   [&](E &e, Value t, ValueRange acc) -> Values {
                     return {e.add(acc[0], e.ext32(pred(e, t)))};
                   })[0];
  }
  Value empty(RankedTensorType type, ValueRange sizes) {
    Values dyn;
    for (int64_t i = 0; i < type.getRank(); ++i)
      if (type.isDynamicDim(i))
        dyn.push_back(sizes[i]);
    return tensor::EmptyOp::create(b, type.getShape(), type.getElementType(),
                                   dyn);
  }
  /// Results of `types` (same shape, `sizes` the full sizes) where element
  /// `ivs` is `body(ivs)`: one all-parallel linalg.generic.
  Values generate(ArrayRef<RankedTensorType> types, ValueRange sizes,
                  function_ref<Values(E &, ValueRange)> body) {
    Values inits;
    SmallVector<Type> resultTypes;
    for (RankedTensorType t : types) {
      inits.push_back(empty(t, sizes));
      resultTypes.push_back(t);
    }
    int64_t rank = types.front().getRank();
    SmallVector<AffineMap> maps(types.size(), b.getMultiDimIdentityMap(rank));
    SmallVector<utils::IteratorType> iters(rank, utils::IteratorType::parallel);
    auto op = linalg::GenericOp::create(
        b, resultTypes, ValueRange{}, inits, maps, iters,
        [&](OpBuilder &nb, Location l, ValueRange) {
          E e(nb, l);
          Values ivs;
          for (int64_t i = 0; i < rank; ++i)
            ivs.push_back(linalg::IndexOp::create(e.b, i));
          linalg::YieldOp::create(e.b, body(e, ivs));
        });
    return Values(op->getResults());
  }
};

using Values = SmallVector<Value>;

//===----------------------------------------------------------------------===//
// similarity
//===----------------------------------------------------------------------===//

/// Cosine similarity (f32) of keys t and t+1 of head h, in the order every
/// path computes (emitCosine).
Value linkSimilarity(E &e, Value keys, Value d, Value h, Value t) {
  Value t1 = e.add(t, e.idx(1));
  return emitCosine(
      e, d, [&](E &e, Value k) { return e.extract(keys, {h, t, k}); },
      [&](E &e, Value k) { return e.extract(keys, {h, t1, k}); });
}

void lowerSimilarity(SimilarityOp op, RewriterBase &rewriter) {
  E e(rewriter, op.getLoc());
  Value keys = op.getKeys();
  Value h = e.dimOf(keys, 0), d = e.dimOf(keys, 2);
  Value links = e.maxS(e.sub(e.dimOf(keys, 1), e.idx(1)), e.idx(0));
  auto type = cast<RankedTensorType>(op.getResult().getType());
  rewriter.replaceOp(
      op, e.generate({type}, {h, links}, [&](E &e, ValueRange ivs) -> Values {
        return {linkSimilarity(e, keys, d, ivs[0], ivs[1])};
      }));
}

//===----------------------------------------------------------------------===//
// merge_sets / select_sets: a per-head selection, then the slot map
//===----------------------------------------------------------------------===//

/// How one head cuts/keeps: selected iff key <u threshold or (key ==
/// threshold and rank <= rankLimit); computed per head by a generic.
struct HeadSelection {
  Value threshold; // tensor<H x i32>
  Value rankLimit; // tensor<H x i32> (ranks and limits fit in i32)
};

HeadSelection selectPerHead(E &e, Value heads,
                            function_ref<Values(E &, Value)> selectOf) {
  auto i32T = RankedTensorType::get({ShapedType::kDynamic}, e.b.getI32Type());
  Values r = e.generate({i32T, i32T}, {heads}, [&](E &e, ValueRange ivs) {
    Values sel = selectOf(e, ivs[0]);
    return Values{sel[0], e.toI32(sel[1])};
  });
  return {r[0], r[1]};
}

Selection selectionOf(E &e, const HeadSelection &s, Value h) {
  return {e.extract(s.threshold, {h}), e.toIndex(e.extract(s.rankLimit, {h}))};
}

void lowerMergeSets(MergeSetsOp op, RewriterBase &rewriter) {
  E e(rewriter, op.getLoc());
  Value sim = op.getSimilarity();
  Value heads = e.dimOf(sim, 0);
  Value length = e.add(e.dimOf(sim, 1), e.idx(1));
  int64_t sink = op.getSink(), recent = op.getRecent(), middle = op.getMiddle();
  bool threshold = op.getMode() == MergeMode::threshold;
  double eps = op.getEps().convertToDouble();
  auto keyOf = [&](E &e, Value h, Value t) {
    return orderedKey(e, e.extract(sim, {h, t}));
  };
  auto countFn = [](E &e, Value lb, Value ub, E::Pred p) {
    return e.seqCount(lb, ub, p);
  };
  int64_t heavy = op.getHeavy();
  Value scores = op.getScores();
  auto scoreKeyOf = [&](E &e, Value h, Value t) {
    return heavyKey(e, e.extract(scores, {h, t}));
  };
  HeadSelection sel, heavySel;
  if (heavy > 0) {
    // One generic per head finds both selections; they are split in two.
    auto i32T = RankedTensorType::get({ShapedType::kDynamic}, e.b.getI32Type());
    Values r4 = e.generate(
        {i32T, i32T, i32T, i32T}, {heads}, [&](E &e, ValueRange ivs) -> Values {
          Value h = ivs[0];
          Regions r = regions(e, length, sink, recent);
          MergeCutSelections s = selectMergeCutsWithHeavy(
              e, r, middle, heavy, threshold, eps, length, countFn,
              [&](E &e, Value t) { return keyOf(e, h, t); },
              [&](E &e, Value t) { return scoreKeyOf(e, h, t); });
          return Values{s.cuts.threshold, e.toI32(s.cuts.rankLimit),
                        s.heavy.threshold, e.toI32(s.heavy.rankLimit)};
        });
    sel = {r4[0], r4[1]};
    heavySel = {r4[2], r4[3]};
  } else {
    sel = selectPerHead(e, heads, [&](E &e, Value h) -> Values {
      Regions r = regions(e, length, sink, recent);
      Selection s =
          selectMergeCuts(e, r, middle, threshold, eps, countFn,
                          [&](E &e, Value t) { return keyOf(e, h, t); });
      return Values{s.threshold, s.rankLimit};
    });
  }
  auto cutAt = [&](E &e, Value h, Value t) -> Value {
    Selection s = selectionOf(e, sel, h);
    if (heavy == 0)
      return isSelected(e, s, keyOf(e, h, t), t);
    MergeCutSelections both{s, selectionOf(e, heavySel, h)};
    return isMergeCut(
        e, both, [&](E &e, Value j) { return scoreKeyOf(e, h, j); }, length,
        [&](E &e, Value j) { return keyOf(e, h, j); }, t);
  };
  // Cut link t (t < last middle token) of head h.
  auto cut = [&](E &e, Value h, const Regions &r, Value t) {
    Value inner =
        e.cmp(arith::CmpIPredicate::slt, t, e.sub(r.recentStart, e.idx(1)));
    // Read the link only inside the middle (it may not exist otherwise).
    return e.ifElse(
        inner,
        [&](E &e) -> Values { return {cutAt(e, h, t)}; },
        [&](E &e) -> Values {
          return {arith::ConstantIntOp::create(e.b, 0, 1)};
        })[0];
  };
  auto slotsType = cast<RankedTensorType>(op.getSlots().getType());
  auto lengthsType = cast<RankedTensorType>(op.getLengths().getType());
  // slot[h, t]: t in the sink; sink + cuts before t in the middle; after the
  // sets in the recent window.
  Value slots = e.generate(
      {slotsType}, {heads, length}, [&](E &e, ValueRange ivs) -> Values {
        Value h = ivs[0], t = ivs[1];
        Regions r = regions(e, length, sink, recent);
        Value sinkI32 = e.toI32(r.sink);
        Value inSink = e.cmp(arith::CmpIPredicate::slt, t, r.sink);
        Value inMiddle = e.cmp(arith::CmpIPredicate::slt, t, r.recentStart);
        return e.ifElse(
            inSink, [&](E &e) -> Values { return {e.toI32(t)}; },
            [&](E &e) -> Values {
              Value before =
                  e.seqCount(r.sink, e.minS(t, r.recentStart),
                             [&](E &e, Value j) { return cut(e, h, r, j); });
              return e.ifElse(
                  inMiddle,
                  [&](E &e) -> Values { return {e.add(sinkI32, before)}; },
                  [&](E &e) -> Values {
                    Value hasMiddle =
                        e.cmp(arith::CmpIPredicate::sgt, r.middleLen, e.idx(0));
                    Value sets =
                        e.select(hasMiddle, e.add(before, e.i32(1)), e.i32(0));
                    Value offset = e.toI32(e.sub(t, r.recentStart));
                    return {e.add(e.add(sinkI32, sets), offset)};
                  });
            });
      })[0];
  Value lengths =
      e.generate({lengthsType}, {heads}, [&](E &e, ValueRange ivs) -> Values {
        Value h = ivs[0];
        Regions r = regions(e, length, sink, recent);
        Value cuts = e.seqCount(r.sink, r.recentStart,
                                [&](E &e, Value j) { return cut(e, h, r, j); });
        Value hasMiddle =
            e.cmp(arith::CmpIPredicate::sgt, r.middleLen, e.idx(0));
        Value sets = e.select(hasMiddle, e.add(cuts, e.i32(1)), e.i32(0));
        return {e.add(e.add(e.toI32(r.sink), sets),
                      e.toI32(e.sub(length, r.recentStart)))};
      })[0];
  rewriter.replaceOp(op, {slots, lengths});
}

void lowerSelectSets(SelectSetsOp op, RewriterBase &rewriter) {
  E e(rewriter, op.getLoc());
  Value scores = op.getScores();
  Value heads = e.dimOf(scores, 0), length = e.dimOf(scores, 1);
  int64_t sink = op.getSink(), recent = op.getRecent(), middle = op.getMiddle();
  // Largest score first (complemented key); ties keep the newer token.
  auto keyOf = [&](E &e, Value h, Value t) {
    Value key = orderedKey(e, e.extract(scores, {h, t}));
    return arith::XOrIOp::create(e.b, key, e.i32(-1)).getResult();
  };
  auto rankOf = [&](E &e, Value t) { return e.sub(length, t); };
  auto countFn = [](E &e, Value lb, Value ub, E::Pred p) {
    return e.seqCount(lb, ub, p);
  };
  HeadSelection sel = selectPerHead(e, heads, [&](E &e, Value h) -> Values {
    Regions r = regions(e, length, sink, recent);
    Selection s = selectKept(
        e, r, middle, countFn, [&](E &e, Value t) { return keyOf(e, h, t); },
        rankOf);
    return Values{s.threshold, s.rankLimit};
  });
  auto kept = [&](E &e, Value h, Value t) {
    return isSelected(e, selectionOf(e, sel, h), keyOf(e, h, t), rankOf(e, t));
  };
  auto slotsType = cast<RankedTensorType>(op.getSlots().getType());
  auto lengthsType = cast<RankedTensorType>(op.getLengths().getType());
  Value slots = e.generate(
      {slotsType}, {heads, length}, [&](E &e, ValueRange ivs) -> Values {
        Value h = ivs[0], t = ivs[1];
        Regions r = regions(e, length, sink, recent);
        Value sinkI32 = e.toI32(r.sink);
        Value inSink = e.cmp(arith::CmpIPredicate::slt, t, r.sink);
        Value inMiddle = e.cmp(arith::CmpIPredicate::slt, t, r.recentStart);
        return e.ifElse(
            inSink, [&](E &e) -> Values { return {e.toI32(t)}; },
            [&](E &e) -> Values {
              Value before =
                  e.seqCount(r.sink, e.minS(t, r.recentStart),
                             [&](E &e, Value j) { return kept(e, h, j); });
              return e.ifElse(
                  inMiddle,
                  [&](E &e) -> Values {
                    return {e.select(kept(e, h, t), e.add(sinkI32, before),
                                     e.i32(-1))};
                  },
                  [&](E &e) -> Values {
                    Value offset = e.toI32(e.sub(t, r.recentStart));
                    return {e.add(e.add(sinkI32, before), offset)};
                  });
            });
      })[0];
  Value lengths =
      e.generate({lengthsType}, {heads}, [&](E &e, ValueRange ivs) -> Values {
        Value h = ivs[0];
        Regions r = regions(e, length, sink, recent);
        Value n = e.seqCount(r.sink, r.recentStart,
                             [&](E &e, Value j) { return kept(e, h, j); });
        return {e.add(e.add(e.toI32(r.sink), n),
                      e.toI32(e.sub(length, r.recentStart)))};
      })[0];
  rewriter.replaceOp(op, {slots, lengths});
}

//===----------------------------------------------------------------------===//
// merge: per-slot statistics, per-token weights, merged rows
//===----------------------------------------------------------------------===//

void lowerMerge(MergeOp op, RewriterBase &rewriter) {
  E e(rewriter, op.getLoc());
  Value keys = op.getKeys(), values = op.getValues(), scores = op.getScores();
  Value slots = op.getSlots(), lengths = op.getLengths();
  Type kt = elementType(keys), vt = elementType(values);
  Type ct = computeType(
      kt.isF64() || vt.isF64() ? Float64Type::get(kt.getContext()) : kt);
  Type f32 = e.b.getF32Type(), i32 = e.b.getI32Type();
  Value heads = e.dimOf(keys, 0), l = e.dimOf(keys, 1), d = e.dimOf(keys, 2),
        dv = e.dimOf(values, 2);
  auto outK = cast<RankedTensorType>(op.getMergedKeys().getType());
  Value capacity = outK.isDynamicDim(1) ? e.dimOf(op.getKeysInit(), 1)
                                        : e.idx(outK.getDimSize(1));
  auto dyn2 = [](Type t) {
    return RankedTensorType::get({ShapedType::kDynamic, ShapedType::kDynamic},
                                 t);
  };
  SigmaAttr sigma = op.getSigmaOrDefault();

  // 1. Per slot: member range [start, end), pivot, count, score sum.
  Values stats = e.generate(
      {dyn2(e.b.getI64Type()), dyn2(e.b.getI64Type()), dyn2(e.b.getI64Type()),
       dyn2(f32)},
      {heads, capacity}, [&](E &e, ValueRange ivs) -> Values {
        Value h = ivs[0], s = ivs[1];
        Value sI32 = e.toI32(s);
        Value ninf = e.flt(-std::numeric_limits<double>::infinity(), f32);
        Value none = e.idx(-1);
        // start, end, pivot, best score, score sum
        Values acc = e.forLoop(
            e.idx(0), l, ValueRange{none, none, none, ninf, e.flt(0.0, f32)},
            [&](E &e, Value t, ValueRange a) -> Values {
              Value in = e.cmp(arith::CmpIPredicate::eq,
                               e.extract(slots, {h, t}), sI32);
              return e.ifElse(
                  in,
                  [&](E &e) -> Values {
                    Value sc = e.extract(scores, {h, t});
                    Value first =
                        e.cmp(arith::CmpIPredicate::slt, a[0], e.idx(0));
                    Value ge = e.fcmp(arith::CmpFPredicate::OGE, sc, a[3]);
                    return {e.select(first, t, a[0]), e.add(t, e.idx(1)),
                            e.select(ge, t, a[2]), e.select(ge, sc, a[3]),
                            arith::AddFOp::create(e.b, a[4], sc)};
                  },
                  [&](E &) -> Values { return Values(a); });
            });
        auto i64 = [&](Value v) {
          return arith::IndexCastOp::create(e.b, e.b.getI64Type(), v)
              .getResult();
        };
        return {i64(acc[0]), i64(acc[1]), i64(acc[2]), acc[4]};
      });
  Value start = stats[0], end = stats[1], pivot = stats[2], scoreSum = stats[3];
  auto rangeOf = [&](E &e, Value h, Value s) {
    Value a = e.toIndex(e.extract(start, {h, s}));
    Value b = e.toIndex(e.extract(end, {h, s}));
    Value empty = e.cmp(arith::CmpIPredicate::slt, a, e.idx(0));
    return std::make_pair(e.select(empty, e.idx(0), a),
                          e.select(empty, e.idx(0), b));
  };
  auto distance = [&](E &e, Value h, Value p, Value t) {
    return e.forLoop(e.idx(0), d, ValueRange{e.flt(0.0, ct)},
                     [&](E &e, Value k, ValueRange a) -> Values {
                       Value x =
                           e.fsub(e.convert(e.extract(keys, {h, p, k}), ct),
                                  e.convert(e.extract(keys, {h, t, k}), ct));
                       return {e.fadd(a[0], e.fmul(x, x))};
                     })[0];
  };
  // 2. Per slot: sigma^2 (0 = equal weights) and the normalizer G.
  Values norm = e.generate(
      {dyn2(ct), dyn2(ct)}, {heads, capacity},
      [&](E &e, ValueRange ivs) -> Values {
        Value h = ivs[0], s = ivs[1];
        auto ab = rangeOf(e, h, s);
        Value a = ab.first, b = ab.second;
        Value p = e.toIndex(e.extract(pivot, {h, s}));
        Value zero = e.flt(0.0, ct);
        Value n = e.sub(b, a);
        Value nF = e.siToF(n, ct);
        Value two = e.flt(2.0, ct);
        Value total = e.forLoop(a, b, ValueRange{zero},
                                [&](E &e, Value t, ValueRange acc) -> Values {
                                  return {e.fadd(acc[0], distance(e, h, p, t))};
                                })[0];
        Value sigma2;
        switch (sigma.getKind()) {
        case SigmaKind::automatic:
          sigma2 = e.fdiv(total, e.fsub(nF, e.flt(1.0, ct)));
          break;
        case SigmaKind::fixed: {
          Value sv = e.flt(sigma.getValue().convertToDouble(), ct);
          sigma2 = e.fmul(sv, sv);
          break;
        }
        case SigmaKind::paper: {
          Value s02 = e.fdiv(total, nF);
          Value s0zero = e.fcmp(arith::CmpFPredicate::OEQ, s02, zero);
          Value safe = e.select(s0zero, e.flt(1.0, ct), s02);
          Value g0 =
              e.forLoop(a, b, ValueRange{zero},
                        [&](E &e, Value t, ValueRange acc) -> Values {
                          Value g = e.exp(e.fdiv(
                              arith::NegFOp::create(e.b, distance(e, h, p, t)),
                              e.fmul(two, safe)));
                          return {e.fadd(acc[0], g)};
                        })[0];
          Value sg = e.fdiv(g0, e.fmul(e.sqrt(two), nF));
          sigma2 = e.select(s0zero, zero, e.fmul(sg, sg));
          break;
        }
        }
        // One member (or sigma^2 = 0 / NaN from 0/0): equal weights.
        Value single = e.cmp(arith::CmpIPredicate::sle, n, e.idx(1));
        Value equal = arith::OrIOp::create(
            e.b, single, e.fcmp(arith::CmpFPredicate::UEQ, sigma2, zero));
        sigma2 = e.select(equal, zero, sigma2);
        Value safe2 = e.select(equal, e.flt(1.0, ct), sigma2);
        Value gsum = e.forLoop(
            a, b, ValueRange{zero},
            [&](E &e, Value t, ValueRange acc) -> Values {
              Value g =
                  e.exp(e.fdiv(arith::NegFOp::create(e.b, distance(e, h, p, t)),
                               e.fmul(two, safe2)));
              return {e.fadd(acc[0], e.select(equal, e.flt(1.0, ct), g))};
            })[0];
        return {sigma2, gsum};
      });
  // 3. Per token: its normalized weight in its slot.
  Value weight =
      e.generate({dyn2(ct)}, {heads, l}, [&](E &e, ValueRange ivs) -> Values {
        Value h = ivs[0], t = ivs[1];
        Value s = e.extract(slots, {h, t});
        Value valid =
            e.andI(e.cmp(arith::CmpIPredicate::sge, s, e.i32(0)),
                   e.cmp(arith::CmpIPredicate::slt, e.toIndex(s), capacity));
        return e.ifElse(
            valid,
            [&](E &e) -> Values {
              Value si = e.toIndex(s);
              Value p = e.toIndex(e.extract(pivot, {h, si}));
              Value sigma2 = e.extract(norm[0], {h, si});
              Value gsum = e.extract(norm[1], {h, si});
              Value zero = e.flt(0.0, ct);
              Value equal = e.fcmp(arith::CmpFPredicate::OEQ, sigma2, zero);
              Value safe2 = e.select(equal, e.flt(1.0, ct), sigma2);
              Value g =
                  e.exp(e.fdiv(arith::NegFOp::create(e.b, distance(e, h, p, t)),
                               e.fmul(e.flt(2.0, ct), safe2)));
              return {e.fdiv(e.select(equal, e.flt(1.0, ct), g), gsum)};
            },
            [&](E &e) -> Values { return {e.flt(0.0, ct)}; });
      })[0];
  // 4. Merged rows: slot s's members, weighted, rounded once.
  auto mergedRows = [&](Value src, Type storage, Value width,
                        RankedTensorType type) {
    return e.generate(
        {type}, {heads, capacity, width}, [&](E &e, ValueRange ivs) -> Values {
          Value h = ivs[0], s = ivs[1], k = ivs[2];
          auto ab = rangeOf(e, h, s);
          Value a = ab.first, b = ab.second;
          Value sum = e.forLoop(
              a, b, ValueRange{e.flt(0.0, ct)},
              [&](E &e, Value t, ValueRange acc) -> Values {
                Value x = e.convert(e.extract(src, {h, t, k}), ct);
                return {e.fadd(acc[0], e.fmul(e.extract(weight, {h, t}), x))};
              })[0];
          // A singleton is copied exactly (as the reference does).
          Value single = e.cmp(arith::CmpIPredicate::eq, e.sub(b, a), e.idx(1));
          Value copied = e.extract(src, {h, e.maxS(a, e.idx(0)), k});
          return {e.select(single, copied, e.convert(sum, storage))};
        })[0];
  };
  Value mk = mergedRows(keys, kt, d, outK);
  Value mv = mergedRows(values, vt, dv,
                        cast<RankedTensorType>(op.getMergedValues().getType()));
  auto slotMeta = [&](RankedTensorType type, bool isCount) {
    return e.generate(
        {type}, {heads, capacity}, [&](E &e, ValueRange ivs) -> Values {
          Value h = ivs[0], s = ivs[1];
          Value len = e.toIndex(e.extract(lengths, {h}));
          Value used = e.cmp(arith::CmpIPredicate::slt, s, len);
          auto ab = rangeOf(e, h, s);
          Value a = ab.first, b = ab.second;
          Value v = isCount ? e.toI32(e.sub(b, a))
                            : arith::TruncIOp::create(e.b, i32,
                                                      e.extract(pivot, {h, s}))
                                  .getResult();
          return {e.select(used, v, e.i32(0))};
        })[0];
  };
  Value positions =
      slotMeta(cast<RankedTensorType>(op.getPositions().getType()), false);
  Value counts =
      slotMeta(cast<RankedTensorType>(op.getCounts().getType()), true);
  Value mergedScores = e.generate(
      {cast<RankedTensorType>(op.getMergedScores().getType())},
      {heads, capacity}, [&](E &e, ValueRange ivs) -> Values {
        Value len = e.toIndex(e.extract(lengths, {ivs[0]}));
        Value used = e.cmp(arith::CmpIPredicate::slt, ivs[1], len);
        return {e.select(used, e.extract(scoreSum, ivs), e.flt(0.0, f32))};
      })[0];
  rewriter.replaceOp(op, {mk, mv, positions, counts, mergedScores});
}

//===----------------------------------------------------------------------===//
// attention: Q.K^T, masked softmax, P.V (and the scores' sums)
//===----------------------------------------------------------------------===//

void lowerAttention(AttentionOp op, RewriterBase &rewriter) {
  E e(rewriter, op.getLoc());
  Value q = op.getQuery(), k = op.getKeys(), v = op.getValues();
  Value lengths = op.getLengths(), counts = op.getCounts();
  bool causal = op.getCausal(), countBias = op.getCountBias();
  Type ct = computeType(elementType(q));
  Value hq = e.dimOf(q, 0), lq = e.dimOf(q, 1), d = e.dimOf(q, 2);
  Value s = e.dimOf(k, 1), dv = e.dimOf(v, 2);
  Value group = e.divu(hq, e.dimOf(k, 0));
  Value mask = op.getMask(), maskGroup;
  bool maskPerQuery = false;
  if (mask) {
    maskGroup = e.divu(hq, e.dimOf(mask, 0));
    maskPerQuery = cast<RankedTensorType>(mask.getType()).getDimSize(1) != 1;
  }
  Value scale = op.getScale() ? e.flt(op.getScale()->convertToDouble(), ct)
                              : e.fdiv(e.flt(1.0, ct), e.sqrt(e.siToF(d, ct)));
  Value ninf = e.flt(-std::numeric_limits<double>::infinity(), ct);
  auto dyn3 = RankedTensorType::get(
      {ShapedType::kDynamic, ShapedType::kDynamic, ShapedType::kDynamic}, ct);
  // Masked, scaled logits [Hq, Lq, S]: -inf on slots a query does not see.
  Value logits =
      e.generate({dyn3}, {hq, lq, s}, [&](E &e, ValueRange ivs) -> Values {
        Value j = ivs[0], i = ivs[1], t = ivs[2];
        Value h = e.divu(j, group);
        Value bias;
        Value valid = s;
        if (lengths)
          valid = e.maxS(e.minS(e.toIndex(e.extract(lengths, {h})), s),
                         e.idx(0));
        Value seen = e.cmp(arith::CmpIPredicate::slt, t, valid);
        // Causal: the queries are the last Lq of the valid slots.
        if (causal)
          seen = e.andI(seen, e.cmp(arith::CmpIPredicate::sle, t,
                                    e.add(i, e.sub(valid, lq))));
        if (mask) {
          Value row = e.divu(j, maskGroup);
          Value mi = maskPerQuery ? i : e.idx(0);
          Value m = e.extract(mask, {row, mi, t});
          if (m.getType().isInteger(1))
            seen = e.andI(seen, m);
          else
            bias = e.convert(m, ct);
        }
        return e.ifElse(
            seen,
            [&](E &e) -> Values {
              Value dot =
                  e.forLoop(e.idx(0), d, ValueRange{e.flt(0.0, ct)},
                            [&](E &e, Value c, ValueRange a) -> Values {
                              Value x = e.convert(e.extract(q, {j, i, c}), ct);
                              Value y = e.convert(e.extract(k, {h, t, c}), ct);
                              return {e.fadd(a[0], e.fmul(x, y))};
                            })[0];
              Value logit = e.fmul(dot, scale);
              if (countBias)
                logit = e.fadd(logit, e.log(arith::SIToFPOp::create(
                                          e.b, ct, e.extract(counts, {h, t}))));
              if (bias)
                logit = e.fadd(logit, bias);
              return {logit};
            },
            [&](E &) -> Values { return {ninf}; });
      })[0];
  // Row max and normalizer [Hq, Lq] (an empty row gives max -inf, sum 0).
  auto dyn2 =
      RankedTensorType::get({ShapedType::kDynamic, ShapedType::kDynamic}, ct);
  Values rowStats =
      e.generate({dyn2, dyn2}, {hq, lq}, [&](E &e, ValueRange ivs) -> Values {
        Value m = e.forLoop(
            e.idx(0), s, ValueRange{ninf},
            [&](E &e, Value t, ValueRange a) -> Values {
              return {e.fmax(a[0], e.extract(logits, {ivs[0], ivs[1], t}))};
            })[0];
        Value finite = e.fcmp(arith::CmpFPredicate::ONE, m, ninf);
        Value shift = e.select(finite, m, e.flt(0.0, ct));
        Value z = e.forLoop(e.idx(0), s, ValueRange{e.flt(0.0, ct)},
                            [&](E &e, Value t, ValueRange a) -> Values {
                              Value x = e.extract(logits, {ivs[0], ivs[1], t});
                              return {e.fadd(a[0], e.exp(e.fsub(x, shift)))};
                            })[0];
        return {shift, z};
      });
  auto probability = [&](E &e, Value j, Value i, Value t) {
    Value z = e.extract(rowStats[1], {j, i});
    Value p = e.exp(
        e.fsub(e.extract(logits, {j, i, t}), e.extract(rowStats[0], {j, i})));
    Value empty = e.fcmp(arith::CmpFPredicate::OEQ, z, e.flt(0.0, ct));
    return e.select(empty, e.flt(0.0, ct),
                    e.fdiv(p, e.select(empty, e.flt(1.0, ct), z)));
  };
  Type ot = elementType(op.getInit());
  Value out = e.generate(
      {cast<RankedTensorType>(op.getResult().getType())}, {hq, lq, dv},
      [&](E &e, ValueRange ivs) -> Values {
        Value j = ivs[0], i = ivs[1], c = ivs[2];
        Value h = e.divu(j, group);
        Value acc = e.forLoop(
            e.idx(0), s, ValueRange{e.flt(0.0, ct)},
            [&](E &e, Value t, ValueRange a) -> Values {
              Value y = e.convert(e.extract(v, {h, t, c}), ct);
              return {e.fadd(a[0], e.fmul(probability(e, j, i, t), y))};
            })[0];
        return {e.convert(acc, ot)};
      })[0];
  if (!op.getScoresInit()) {
    rewriter.replaceOp(op, out);
    return;
  }
  Value scores = e.generate(
      {cast<RankedTensorType>(op.getScores().getType())}, {e.dimOf(k, 0), s},
      [&](E &e, ValueRange ivs) -> Values {
        Value h = ivs[0], t = ivs[1];
        Value total = e.forLoop(
            e.idx(0), group, ValueRange{e.flt(0.0, ct)},
            [&](E &e, Value g, ValueRange a) -> Values {
              Value j = e.add(e.mul(h, group), g);
              return e.forLoop(e.idx(0), lq, ValueRange{a[0]},
                               [&](E &e, Value i, ValueRange b) -> Values {
                                 return {e.fadd(b[0], probability(e, j, i, t))};
                               });
            })[0];
        return {e.convert(total, e.b.getF32Type())};
      })[0];
  rewriter.replaceOp(op, {out, scores});
}

//===----------------------------------------------------------------------===//
// append: valid slots, new entries, zeros (a gather-style generic)
//===----------------------------------------------------------------------===//

void lowerAppend(AppendOp op, RewriterBase &rewriter) {
  E e(rewriter, op.getLoc());
  Value cache = op.getCache(), add = op.getAdded(), lengths = op.getLengths();
  auto rt = cast<RankedTensorType>(op.getResult().getType());
  Value p = e.dimOf(cache, 1), t = e.dimOf(add, 1);
  Values sizes;
  for (int64_t i = 0; i < rt.getRank(); ++i)
    sizes.push_back(i == 1 ? e.add(p, t) : e.dimOf(cache, i));
  auto validOf = [&](E &e, Value h) {
    return e.maxS(e.minS(e.toIndex(e.extract(lengths, {h})), p), e.idx(0));
  };
  Value zero = arith::ConstantOp::create(
      e.b, cast<TypedAttr>(e.b.getZeroAttr(rt.getElementType())));
  Value out = e.generate({rt}, sizes, [&](E &e, ValueRange ivs) -> Values {
    Value n = validOf(e, ivs[0]);
    return e.ifElse(
        e.cmp(arith::CmpIPredicate::slt, ivs[1], n),
        [&](E &e) -> Values { return {e.extract(cache, ivs)}; },
        [&](E &e) -> Values {
          Value k = e.sub(ivs[1], n);
          return e.ifElse(
              e.cmp(arith::CmpIPredicate::slt, k, t),
              [&](E &e) -> Values {
                Values at(ivs);
                at[1] = k;
                return {e.extract(add, at)};
              },
              [&](E &) -> Values { return {zero}; });
        });
  })[0];
  auto lengthsType = cast<RankedTensorType>(op.getNewLengths().getType());
  Value newLengths = e.generate({lengthsType}, {sizes[0]},
                                [&](E &e, ValueRange ivs) -> Values {
                                  return {e.toI32(e.add(validOf(e, ivs[0]), t))};
                                })[0];
  rewriter.replaceOp(op, {out, newLengths});
}

struct ConvertKVCacheToLinalgPass
    : kvmerge::impl::ConvertKVCacheToLinalgBase<ConvertKVCacheToLinalgPass> {
  void runOnOperation() override {
    auto lower = [](Operation *op, RewriterBase &rewriter) {
      llvm::TypeSwitch<Operation *>(op)
          .Case([&](SimilarityOp o) { lowerSimilarity(o, rewriter); })
          .Case([&](MergeSetsOp o) { lowerMergeSets(o, rewriter); })
          .Case([&](SelectSetsOp o) { lowerSelectSets(o, rewriter); })
          .Case([&](MergeOp o) { lowerMerge(o, rewriter); })
          .Case([&](AttentionOp o) { lowerAttention(o, rewriter); })
          .Case([&](AppendOp o) { lowerAppend(o, rewriter); })
          .Default([](Operation *op) {
            op->emitOpError("has no export lowering (run "
                            "kvmerge-decompose-compress first; "
                            "fused_merge and accumulated_scores are not "
                            "exported)");
          });
    };
    if (failed(lowerKVCacheOps(getOperation(), lower)))
      return signalPassFailure();
    bool left = false;
    getOperation()->walk(
        [&](Operation *op) { left |= isa<KVCacheDialect>(op->getDialect()); });
    if (left)
      signalPassFailure();
  }
};

} // namespace
