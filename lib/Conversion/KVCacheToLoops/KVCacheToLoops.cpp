//===- KVCacheToLoops.cpp - kvcache ops -> parallel loops on buffers ------===//
//
// Lowers every kvcache op to scf/memref/arith/math on buffers. Tensor
// operands are bridged with `bufferization.to_buffer`, results with
// `bufferization.to_tensor` of fresh allocations, so one-shot bufferization
// of the surrounding tensor program completes the job.
//
// The structure is parallel where the algorithm is (scf.parallel over heads,
// links, tokens, slots, chunks); the only sequential pieces are the
// per-chunk walks of a two-level prefix scan and the walks over one merging
// set's members. See docs/lowering.md.
//
//===----------------------------------------------------------------------===//

#include "../Common/LoopEmitter.h"
#include "kvmerge/Conversion/Passes.h"
#include "kvmerge/Dialect/KVCache/IR/KVCache.h"

#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "mlir/IR/PatternMatch.h"
#include "llvm/ADT/TypeSwitch.h"

#include <limits>

namespace kvmerge {
#define GEN_PASS_DEF_CONVERTKVCACHETOLOOPS
#include "kvmerge/Conversion/Passes.h.inc"
} // namespace kvmerge

using namespace mlir;
using namespace kvmerge::kvcache;
using namespace kvmerge::conversion;

namespace {

/// Number of tokens one chunk of the two-level prefix scan walks.
constexpr int64_t kScanChunk = 1024;

//===----------------------------------------------------------------------===//
// Emitter: the shared loop emitter (see lib/Conversion/Common/LoopEmitter.h).
//===----------------------------------------------------------------------===//

struct Emitter : LoopEmitterBase<Emitter> {
  using LoopEmitterBase::LoopEmitterBase;
  Emitter nested(OpBuilder &nb, Location l) { return Emitter(nb, l); }
};

//===----------------------------------------------------------------------===//
// Shared algorithms
//===----------------------------------------------------------------------===//

/// Two-level exclusive prefix scan of 0/1 flags over tokens [lb, ub):
/// chunk totals in parallel, a short walk over chunk totals, then every
/// chunk walks its tokens in parallel with the others, calling
/// `visit(t, flagsBefore, flag)`. `scratch` holds at least
/// ceil((ub - lb) / kScanChunk) i32 entries for this scan. Returns the
/// number of flags (i32).
Value chunkedScan(Emitter &e, Value lb, Value ub, Value scratch,
                 ValueRange scratchPrefix,
                 function_ref<Value(Emitter &, Value)> flag,
                 function_ref<void(Emitter &, Value, Value, Value)> visit) {
  Value chunk = e.idx(kScanChunk);
  Value n = e.maxS(e.sub(ub, lb), e.idx(0));
  Value chunks = e.divu(e.add(n, e.idx(kScanChunk - 1)), chunk);
  auto at = [&](Value c) {
    SmallVector<Value> ivs(scratchPrefix);
    ivs.push_back(c);
    return ivs;
  };
  auto chunkRange = [&](Emitter &e, Value c) {
    Value begin = e.add(lb, e.mul(c, chunk));
    Value end = e.minS(e.add(begin, chunk), ub);
    return std::make_pair(begin, end);
  };
  e.parallel({e.idx(0)}, {chunks}, [&](Emitter &e, ValueRange ivs) {
    auto [begin, end] = chunkRange(e, ivs[0]);
    Value total = e.count(begin, end, flag);
    e.store(total, scratch, at(ivs[0]));
  });
  Value total = e.forLoop(
      e.idx(0), chunks, ValueRange{e.i32(0)},
      [&](Emitter &e, Value c, ValueRange args) -> SmallVector<Value> {
        Value total = e.load(scratch, at(c));
        e.store(args[0], scratch, at(c));
        return {e.add(args[0], total)};
      })[0];
  e.parallel({e.idx(0)}, {chunks}, [&](Emitter &e, ValueRange ivs) {
    auto [begin, end] = chunkRange(e, ivs[0]);
    Value base = e.load(scratch, at(ivs[0]));
    e.forLoop(begin, end, ValueRange{base},
              [&](Emitter &e, Value t, ValueRange args) -> SmallVector<Value> {
                Value f = e.ext32(flag(e, t));
                visit(e, t, args[0], f);
                return {e.add(args[0], f)};
              });
  });
  return total;
}

//===----------------------------------------------------------------------===//
// Op lowerings
//===----------------------------------------------------------------------===//

/// Cosine similarity (f32) of keys t and t+1 of head h, in the order every
/// path computes (emitCosine), with vector registers; 0 for a zero norm.
Value emitLinkSimilarity(Emitter &e, Value keys, Value d, Value h, Value t) {
  return emitCosineVector(e, keys, {h, t}, {h, e.add(t, e.idx(1))}, d);
}

void lowerSimilarity(SimilarityOp op, RewriterBase &rewriter) {
  Emitter e(rewriter, op.getLoc());
  Value keys = e.toBuffer(op.getKeys());
  Value h = e.dim(keys, 0), l = e.dim(keys, 1), d = e.dim(keys, 2);
  Value links = e.maxS(e.sub(l, e.idx(1)), e.idx(0));
  Value out = e.allocLike(op.getResult().getType(), {h, links});
  e.parallel({e.idx(0), e.idx(0)}, {h, links}, [&](Emitter &e, ValueRange ivs) {
    e.store(emitLinkSimilarity(e, keys, d, ivs[0], ivs[1]), out, ivs);
  });
  rewriter.replaceOp(op, e.toTensor(out, op.getResult().getType()));
}

/// Where emitMergeSlotMap writes a head's slots: the slot map `slots[h, t]`
/// (a slot per token), or, for a merge that walks the slots in order, only
/// where each slot starts: `starts[h, s]` (i32) is the first token of slot
/// s and `starts[h, lengths[h]]` = L, so slot s holds the tokens
/// [starts[h, s], starts[h, s + 1]) (merging slots are runs).
struct SlotOutput {
  Value slots, starts;
};

/// Writes the slots of one head given which middle links are cut, and
/// `lengths[h]`.
void emitMergeSlotMap(Emitter &e, Value h, Value length, const Regions &r,
                      const SlotOutput &out, Value lengths, Value scratch,
                      function_ref<Value(Emitter &, Value)> cut) {
  // Token t is the first token of slot s.
  auto opens = [&](Emitter &e, Value s, Value t) {
    e.store(e.toI32(t), out.starts, {h, e.toIndex(s)});
  };
  // Sink tokens: their own slot.
  e.parallel({e.idx(0)}, {r.sink}, [&](Emitter &e, ValueRange ivs) {
    if (out.starts)
      opens(e, e.toI32(ivs[0]), ivs[0]);
    else
      e.store(e.toI32(ivs[0]), out.slots, {h, ivs[0]});
  });
  // Middle: slot = sink + cuts before t; link t joins t and t+1, so the
  // last middle token's "link" never counts.
  Value lastMiddle = e.sub(r.recentStart, e.idx(1));
  Value sinkI32 = e.toI32(r.sink);
  // Only links inside the middle are read: the last middle token has no link
  // there (its similarity entry may not exist when recent = 0).
  auto cutInMiddle = [&](Emitter &e, Value t) -> Value {
    Value inner = e.cmp(arith::CmpIPredicate::slt, t, lastMiddle);
    return e.ifElse(
        inner, [&](Emitter &e) -> Emitter::Values { return {cut(e, t)}; },
        [&](Emitter &e) -> Emitter::Values {
          return {arith::ConstantIntOp::create(e.b, 0, 1)};
        })[0];
  };
  Value cuts = chunkedScan(
      e, r.sink, r.recentStart, scratch, {h}, cutInMiddle,
      [&](Emitter &e, Value t, Value before, Value flag) {
        Value slot = e.add(sinkI32, before);
        if (!out.starts) {
          e.store(slot, out.slots, {h, t});
          return;
        }
        e.ifThen(e.cmp(arith::CmpIPredicate::eq, t, r.sink),
                 [&](Emitter &e) { opens(e, slot, t); });
        e.ifThen(e.cmp(arith::CmpIPredicate::ne, flag, e.i32(0)),
                 [&](Emitter &e) {
                   opens(e, e.add(slot, e.i32(1)), e.add(t, e.idx(1)));
                 });
      });
  Value hasMiddle = e.cmp(arith::CmpIPredicate::sgt, r.middleLen, e.idx(0));
  Value sets = e.select(hasMiddle, e.add(cuts, e.i32(1)), e.i32(0));
  Value recentBase = e.add(sinkI32, sets);
  e.parallel({r.recentStart}, {length}, [&](Emitter &e, ValueRange ivs) {
    Value slot = e.add(recentBase, e.toI32(e.sub(ivs[0], r.recentStart)));
    if (out.starts)
      opens(e, slot, ivs[0]);
    else
      e.store(slot, out.slots, {h, ivs[0]});
  });
  Value recentLen = e.toI32(e.sub(length, r.recentStart));
  Value used = e.add(recentBase, recentLen);
  e.store(used, lengths, {h});
  if (out.starts)
    opens(e, used, length);
}

/// What merge-set identification needs besides the similarities.
struct MergeSetsParams {
  int64_t sink, recent, middle;
  bool threshold;
  double eps;
  int64_t heavy = 0;
  Value scores = {}; // [H, L] f32 buffer, needed when heavy > 0
  /// [H, L] i32 scratch: the order keys of the links the cut selection reads
  /// and, with heavy hitters, of the scores (see emitMergeSetsHead).
  Value linkKeys = {}, scoreKeys = {};
};

/// Allocates the key scratch of `p` for `heads` x `length` tokens.
void allocMergeSetsScratch(Emitter &e, MergeSetsParams &p, Value heads,
                           Value length) {
  auto keys = [&] {
    return e.alloc({ShapedType::kDynamic, ShapedType::kDynamic},
                   e.b.getI32Type(), {heads, length});
  };
  p.linkKeys = keys();
  if (p.heavy > 0)
    p.scoreKeys = keys();
}

/// Merge-set identification of one head: selects the cut links of the
/// middle (`sim[head, t]`, t < length - 1) and writes `slots[head, :]` and
/// `lengths[head]`. `scratch[head, :]` holds the scan's chunk totals.
///
/// The selections count keys over the middle some 35 times each (bitwise
/// binary searches); the keys are computed once into `p.linkKeys` /
/// `p.scoreKeys` (one elementwise loop each), so that every count is a
/// compare-and-add over i32 that LLVM vectorizes, and a head's keys stay in
/// cache across the counts.
void emitMergeSetsHead(Emitter &e, Value head, Value length, Value sim,
                       const SlotOutput &slots, Value lengths, Value scratch,
                       const MergeSetsParams &p) {
  Regions r = regions(e, length, p.sink, p.recent);
  Value lastMiddle = e.sub(r.recentStart, e.idx(1));
  auto countFn = [](Emitter &e, Value lb, Value ub, Emitter::Pred pred) {
    return e.count(lb, ub, pred);
  };
  auto simKeyOf = [&](Emitter &e, Value t) {
    return orderedKey(e, e.load(sim, {head, t}));
  };
  auto linkKeyOf = [&](Emitter &e, Value t) {
    return e.load(p.linkKeys, {head, t});
  };
  if (p.heavy > 0) {
    e.forLoop(r.sink, r.recentStart, [&](Emitter &e, Value t) {
      e.store(heavyKey(e, e.load(p.scores, {head, t})), p.scoreKeys,
              {head, t});
    });
    auto scoreKeyOf = [&](Emitter &e, Value t) {
      return e.load(p.scoreKeys, {head, t});
    };
    HeavySplit hs =
        selectHeavy(e, r, p.middle, p.heavy, length, countFn, scoreKeyOf);
    // Links that touch a heavy hitter are cut anyway: the largest key.
    e.forLoop(r.sink, lastMiddle, [&](Emitter &e, Value t) {
      e.store(mergeLinkKey(e, hs.heavy, scoreKeyOf, length, simKeyOf, t),
              p.linkKeys, {head, t});
    });
    Selection cuts =
        selectMergeCuts(e, r, p.middle, hs.budgetCuts, p.threshold, p.eps,
                        countFn, linkKeyOf);
    emitMergeSlotMap(e, head, length, r, slots, lengths, scratch,
                     [&](Emitter &e, Value t) {
                       return e.orI(isForcedLink(e, hs.heavy, scoreKeyOf,
                                                 length, t),
                                    isSelected(e, cuts, linkKeyOf(e, t), t));
                     });
    return;
  }
  e.forLoop(r.sink, lastMiddle, [&](Emitter &e, Value t) {
    e.store(simKeyOf(e, t), p.linkKeys, {head, t});
  });
  Selection s =
      selectMergeCuts(e, r, p.middle, p.threshold, p.eps, countFn, linkKeyOf);
  emitMergeSlotMap(
      e, head, length, r, slots, lengths, scratch,
      [&](Emitter &e, Value t) { return isSelected(e, s, linkKeyOf(e, t), t); });
}

/// Chunk-total scratch of the slot-map scan for caches of `length` tokens.
Value allocScanScratch(Emitter &e, Value heads, Value length) {
  Value chunks =
      e.divu(e.add(length, e.idx(kScanChunk - 1)), e.idx(kScanChunk));
  return e.alloc({ShapedType::kDynamic, ShapedType::kDynamic}, e.b.getI32Type(),
                 {heads, chunks});
}

void lowerMergeSets(MergeSetsOp op, RewriterBase &rewriter) {
  Emitter e(rewriter, op.getLoc());
  Value sim = e.toBuffer(op.getSimilarity());
  Value h = e.dim(sim, 0);
  Value length = e.add(e.dim(sim, 1), e.idx(1));
  Value slots = e.allocLike(op.getSlots().getType(), {h, length});
  Value lengths = e.allocLike(op.getLengths().getType(), {h});
  Value scratch = allocScanScratch(e, h, length);
  MergeSetsParams p{
      static_cast<int64_t>(op.getSink()), static_cast<int64_t>(op.getRecent()),
      static_cast<int64_t>(op.getMiddle()),
      op.getMode() == MergeMode::threshold, op.getEps().convertToDouble()};
  p.heavy = op.getHeavy();
  if (p.heavy > 0)
    p.scores = e.toBuffer(op.getScores());
  allocMergeSetsScratch(e, p, h, length);
  e.parallel({e.idx(0)}, {h}, [&](Emitter &e, ValueRange ivs) {
    emitMergeSetsHead(e, ivs[0], length, sim, SlotOutput{slots, {}}, lengths,
                      scratch, p);
  });
  rewriter.replaceOp(op, {e.toTensor(slots, op.getSlots().getType()),
                          e.toTensor(lengths, op.getLengths().getType())});
}

void lowerSelectSets(SelectSetsOp op, RewriterBase &rewriter) {
  Emitter e(rewriter, op.getLoc());
  Value scores = e.toBuffer(op.getScores());
  Value h = e.dim(scores, 0), length = e.dim(scores, 1);
  Value slots = e.allocLike(op.getSlots().getType(), {h, length});
  Value lengths = e.allocLike(op.getLengths().getType(), {h});
  Value scratch = allocScanScratch(e, h, length);
  int64_t middle = op.getMiddle();

  e.parallel({e.idx(0)}, {h}, [&](Emitter &e, ValueRange ivs) {
    Value head = ivs[0];
    Regions r = regions(e, length, op.getSink(), op.getRecent());
    // Largest score first: complement the order key; ties keep the newer
    // token: rank by distance from the newest.
    auto keyOf = [&](Emitter &e, Value t) {
      Value key = orderedKey(e, e.load(scores, {head, t}));
      return arith::XOrIOp::create(e.b, key, e.i32(-1)).getResult();
    };
    auto rankOf = [&](Emitter &e, Value t) { return e.sub(length, t); };
    Selection s = selectKept(
        e, r, middle,
        [](Emitter &e, Value lb, Value ub, Emitter::Pred pred) {
          return e.count(lb, ub, pred);
        },
        keyOf, rankOf);
    auto kept = [&](Emitter &e, Value t) {
      return isSelected(e, s, keyOf(e, t), rankOf(e, t));
    };
    e.parallel({e.idx(0)}, {r.sink}, [&](Emitter &e, ValueRange ivs) {
      e.store(e.toI32(ivs[0]), slots, {head, ivs[0]});
    });
    Value sinkI32 = e.toI32(r.sink);
    Value nKept = chunkedScan(
        e, r.sink, r.recentStart, scratch, {head}, kept,
        [&](Emitter &e, Value t, Value before, Value flag) {
          Value isKept = e.cmp(arith::CmpIPredicate::ne, flag, e.i32(0));
          e.store(e.select(isKept, e.add(sinkI32, before), e.i32(-1)), slots,
                  {head, t});
        });
    Value recentBase = e.add(sinkI32, nKept);
    e.parallel({r.recentStart}, {length}, [&](Emitter &e, ValueRange ivs) {
      Value offset = e.toI32(e.sub(ivs[0], r.recentStart));
      e.store(e.add(recentBase, offset), slots, {head, ivs[0]});
    });
    e.store(e.add(recentBase, e.toI32(e.sub(length, r.recentStart))), lengths,
            {head});
  });
  rewriter.replaceOp(op, {e.toTensor(slots, op.getSlots().getType()),
                          e.toTensor(lengths, op.getLengths().getType())});
}

/// Buffers, sizes and types one merge reads and writes.
struct MergeContext {
  Value keys, values, scores, slots, lengths;
  Value outK, outV, outP, outC, outS;
  Value start, end, weight; // per-slot member ranges, per-token weights
  /// Instead of start/end: the slot starts of SlotOutput (i32 [H, B + 1]),
  /// when the slots are runs written by emitMergeSlotMap (the fused region).
  Value starts;
  /// Per-head f32 accumulation rows for f16/bf16 storage, when the slots of a
  /// head are merged one after another (the fused region); null otherwise.
  Value rowK, rowV;
  Type kt, vt, ct;
  Value l, d, dv, capacity;
  SigmaAttr sigma;
};

/// Allocates the outputs and scratch of a merge of `capacity` slots.
MergeContext makeMergeContext(Emitter &e, Value keys, Value values,
                              Value scores, Type kt, Type vt,
                              ArrayRef<Type> outTypes, Value capacity,
                              SigmaAttr sigma, bool slotStarts = false) {
  MergeContext m;
  m.keys = keys;
  m.values = values;
  m.scores = scores;
  m.kt = kt;
  m.vt = vt;
  m.ct = computeType(
      kt.isF64() || vt.isF64() ? Float64Type::get(kt.getContext()) : kt);
  Value h = e.dim(keys, 0);
  m.l = e.dim(keys, 1);
  m.d = e.dim(keys, 2);
  m.dv = e.dim(values, 2);
  m.capacity = capacity;
  m.sigma = sigma;
  m.outK = e.allocLike(outTypes[0], {h, capacity, m.d});
  m.outV = e.allocLike(outTypes[1], {h, capacity, m.dv});
  m.outP = e.allocLike(outTypes[2], {h, capacity});
  m.outC = e.allocLike(outTypes[3], {h, capacity});
  m.outS = e.allocLike(outTypes[4], {h, capacity});
  Type index = e.b.getIndexType();
  if (slotStarts) {
    m.starts = e.alloc({ShapedType::kDynamic, ShapedType::kDynamic},
                       e.b.getI32Type(), {h, e.add(capacity, e.idx(1))});
  } else {
    m.start = e.alloc({ShapedType::kDynamic, ShapedType::kDynamic}, index,
                      {h, capacity});
    m.end = e.alloc({ShapedType::kDynamic, ShapedType::kDynamic}, index,
                    {h, capacity});
  }
  m.weight =
      e.alloc({ShapedType::kDynamic, ShapedType::kDynamic}, m.ct, {h, m.l});
  return m;
}

/// Records token t of `head` as the start and/or end of its slot's member
/// range (slot maps are contiguous per slot; evicted tokens have slot -1).
void emitSlotRange(Emitter &e, const MergeContext &m, Value head, Value t) {
  Value last = e.sub(m.l, e.idx(1));
  Value s = e.load(m.slots, {head, t});
  Value valid = arith::AndIOp::create(
      e.b, e.cmp(arith::CmpIPredicate::sge, s, e.i32(0)),
      e.cmp(arith::CmpIPredicate::slt, e.toIndex(s), m.capacity));
  e.ifThen(valid, [&](Emitter &e) {
    Value si = e.toIndex(s);
    Value first = e.cmp(arith::CmpIPredicate::eq, t, e.idx(0));
    Value prev = e.load(m.slots, {head, e.maxS(e.sub(t, e.idx(1)), e.idx(0))});
    Value opens = arith::OrIOp::create(
        e.b, first, e.cmp(arith::CmpIPredicate::ne, prev, s));
    e.ifThen(opens, [&](Emitter &e) { e.store(t, m.start, {head, si}); });
    Value isLast = e.cmp(arith::CmpIPredicate::eq, t, last);
    Value next = e.load(m.slots, {head, e.minS(e.add(t, e.idx(1)), last)});
    Value closes = arith::OrIOp::create(
        e.b, isLast, e.cmp(arith::CmpIPredicate::ne, next, s));
    e.ifThen(closes, [&](Emitter &e) {
      e.store(e.add(t, e.idx(1)), m.end, {head, si});
    });
  });
}

/// Merges slot `slot` of `head` (KVMerger steps 2-3), or zeroes it past the
/// head's length.
void emitMergeSlot(Emitter &e, const MergeContext &m, Value head, Value slot) {
  Type f32 = e.b.getF32Type();
  Value len = e.toIndex(e.load(m.lengths, {head}));
  Value used = e.cmp(arith::CmpIPredicate::slt, slot, len);
  auto zeroRow = [&](Emitter &e, Value out, Value width, Type t) {
    Value z = e.flt(0.0, t);
    e.forLoop(e.idx(0), width, [&](Emitter &e, Value k) {
      e.store(z, out, {head, slot, k});
    });
  };
  e.ifThenElse(
      used,
      [&](Emitter &e) {
        Value a, b;
        if (m.starts) {
          a = e.toIndex(e.load(m.starts, {head, slot}));
          b = e.toIndex(e.load(m.starts, {head, e.add(slot, e.idx(1))}));
        } else {
          a = e.load(m.start, {head, slot});
          b = e.load(m.end, {head, slot});
        }
        Value n = e.sub(b, a);
        // Pivot: the largest score, ties to the newest; and the score sum.
        Value ninf = e.flt(-std::numeric_limits<double>::infinity(), f32);
        auto piv = e.forLoop(
            a, b, ValueRange{a, ninf, e.flt(0.0, f32)},
            [&](Emitter &e, Value t, ValueRange acc) -> SmallVector<Value> {
              Value sc = e.load(m.scores, {head, t});
              Value ge = e.fcmp(arith::CmpFPredicate::OGE, sc, acc[1]);
              return {e.select(ge, t, acc[0]), e.select(ge, sc, acc[1]),
                      arith::AddFOp::create(e.b, acc[2], sc).getResult()};
            });
        Value p = piv[0];
        e.store(e.toI32(p), m.outP, {head, slot});
        e.store(e.toI32(n), m.outC, {head, slot});
        e.store(piv[2], m.outS, {head, slot});
        Value single = e.cmp(arith::CmpIPredicate::eq, n, e.idx(1));
        e.ifThenElse(
            single,
            [&](Emitter &e) {
              e.forLoop(e.idx(0), m.d, [&](Emitter &e, Value k) {
                e.store(e.load(m.keys, {head, p, k}), m.outK, {head, slot, k});
              });
              e.forLoop(e.idx(0), m.dv, [&](Emitter &e, Value k) {
                e.store(e.load(m.values, {head, p, k}), m.outV,
                        {head, slot, k});
              });
            },
            [&](Emitter &e) {
              Value zero = e.flt(0.0, m.ct);
              // Squared distances to the pivot, kept per token.
              Value total = e.forLoop(
                  a, b, ValueRange{zero},
                  [&](Emitter &e, Value t,
                      ValueRange acc) -> SmallVector<Value> {
                    Value dist = e.forLoop(
                        e.idx(0), m.d, ValueRange{zero},
                        [&](Emitter &e, Value k,
                            ValueRange s) -> SmallVector<Value> {
                          Value x = e.fsub(
                              e.convert(e.load(m.keys, {head, p, k}), m.ct),
                              e.convert(e.load(m.keys, {head, t, k}), m.ct));
                          return {e.fadd(s[0], e.fmul(x, x))};
                        })[0];
                    e.store(dist, m.weight, {head, t});
                    return {e.fadd(acc[0], dist)};
                  })[0];
              Value nF = e.siToF(n, m.ct);
              Value two = e.flt(2.0, m.ct);
              Value sigma2;
              switch (m.sigma.getKind()) {
              case SigmaKind::automatic:
                sigma2 = e.fdiv(total, e.fsub(nF, e.flt(1.0, m.ct)));
                break;
              case SigmaKind::fixed: {
                Value sv = e.flt(m.sigma.getValue().convertToDouble(), m.ct);
                sigma2 = e.fmul(sv, sv);
                break;
              }
              case SigmaKind::paper: {
                Value s02 = e.fdiv(total, nF);
                Value s0zero = e.fcmp(arith::CmpFPredicate::OEQ, s02, zero);
                Value safe = e.select(s0zero, e.flt(1.0, m.ct), s02);
                Value g0 = e.forLoop(
                    a, b, ValueRange{zero},
                    [&](Emitter &e, Value t,
                        ValueRange acc) -> SmallVector<Value> {
                      Value dist = e.load(m.weight, {head, t});
                      Value g = e.exp(e.fdiv(arith::NegFOp::create(e.b, dist),
                                             e.fmul(two, safe)));
                      return {e.fadd(acc[0], g)};
                    })[0];
                Value sg = e.fdiv(g0, e.fmul(e.sqrt(two), nF));
                // s0^2 == 0 means equal weights: force sigma^2 = 0.
                sigma2 = e.select(s0zero, zero, e.fmul(sg, sg));
                break;
              }
              }
              Value equalW = e.fcmp(arith::CmpFPredicate::OEQ, sigma2, zero);
              Value safe2 = e.select(equalW, e.flt(1.0, m.ct), sigma2);
              Value gsum =
                  e.forLoop(a, b, ValueRange{zero},
                            [&](Emitter &e, Value t,
                                ValueRange acc) -> SmallVector<Value> {
                              Value dist = e.load(m.weight, {head, t});
                              Value g =
                                  e.exp(e.fdiv(arith::NegFOp::create(e.b, dist),
                                               e.fmul(two, safe2)));
                              g = e.select(equalW, e.flt(1.0, m.ct), g);
                              e.store(g, m.weight, {head, t});
                              return {e.fadd(acc[0], g)};
                            })[0];
              // Weighted sums. When storage is the compute type the output
              // row is the accumulator (token-major, vectorizable over D);
              // otherwise each element is reduced over the set in f32 and
              // rounded once.
              auto accumulate = [&](Emitter &e, Value src, Value width,
                                    Value out, Type storage) {
                if (storage == m.ct) {
                  e.forLoop(e.idx(0), width, [&](Emitter &e, Value k) {
                    e.store(zero, out, {head, slot, k});
                  });
                  e.forLoop(a, b, [&](Emitter &e, Value t) {
                    Value w = e.fdiv(e.load(m.weight, {head, t}), gsum);
                    e.forLoop(e.idx(0), width, [&](Emitter &e, Value k) {
                      Value x = e.load(src, {head, t, k});
                      e.store(
                          e.fadd(e.load(out, {head, slot, k}), e.fmul(w, x)),
                          out, {head, slot, k});
                    });
                  });
                  return;
                }
                Value inv = e.fdiv(e.flt(1.0, m.ct), gsum);
                Value row = src == m.keys ? m.rowK : m.rowV;
                if (row) {
                  // Token-major into the head's compute-type row (vectorizes
                  // over D), rounded to the storage type once at the end.
                  e.forLoop(e.idx(0), width, [&](Emitter &e, Value k) {
                    e.store(zero, row, {head, k});
                  });
                  e.forLoop(a, b, [&](Emitter &e, Value t) {
                    Value w = e.load(m.weight, {head, t});
                    e.forLoop(e.idx(0), width, [&](Emitter &e, Value k) {
                      Value x = e.convert(e.load(src, {head, t, k}), m.ct);
                      e.store(e.fadd(e.load(row, {head, k}), e.fmul(w, x)), row,
                              {head, k});
                    });
                  });
                  e.forLoop(e.idx(0), width, [&](Emitter &e, Value k) {
                    e.store(
                        e.convert(e.fmul(e.load(row, {head, k}), inv), storage),
                        out, {head, slot, k});
                  });
                  return;
                }
                e.forLoop(e.idx(0), width, [&](Emitter &e, Value k) {
                  Value sum = e.forLoop(
                      a, b, ValueRange{zero},
                      [&](Emitter &e, Value t,
                          ValueRange acc) -> SmallVector<Value> {
                        Value w = e.load(m.weight, {head, t});
                        Value x = e.convert(e.load(src, {head, t, k}), m.ct);
                        return {e.fadd(acc[0], e.fmul(w, x))};
                      })[0];
                  e.store(e.convert(e.fmul(sum, inv), storage), out,
                          {head, slot, k});
                });
              };
              accumulate(e, m.keys, m.d, m.outK, m.kt);
              accumulate(e, m.values, m.dv, m.outV, m.vt);
            });
      },
      [&](Emitter &e) {
        zeroRow(e, m.outK, m.d, m.kt);
        zeroRow(e, m.outV, m.dv, m.vt);
        e.store(e.i32(0), m.outP, {head, slot});
        e.store(e.i32(0), m.outC, {head, slot});
        e.store(e.flt(0.0, f32), m.outS, {head, slot});
      });
}

void lowerMerge(MergeOp op, RewriterBase &rewriter) {
  Emitter e(rewriter, op.getLoc());
  Value keys = e.toBuffer(op.getKeys());
  Value values = e.toBuffer(op.getValues());
  auto rt = cast<RankedTensorType>(op.getKeysInit().getType());
  Value capacity =
      rt.isDynamicDim(1)
          ? tensor::DimOp::create(e.b, op.getKeysInit(), 1).getResult()
          : e.idx(rt.getDimSize(1));
  MergeContext m = makeMergeContext(
      e, keys, values, e.toBuffer(op.getScores()), elementType(op.getKeys()),
      elementType(op.getValues()), llvm::to_vector(op->getResultTypes()),
      capacity, op.getSigmaOrDefault());
  m.slots = e.toBuffer(op.getSlots());
  m.lengths = e.toBuffer(op.getLengths());
  Value h = e.dim(keys, 0);
  // Slot member ranges (empty until found), one parallel pass over tokens,
  // then one parallel iteration per output slot.
  e.parallel({e.idx(0), e.idx(0)}, {h, capacity},
             [&](Emitter &e, ValueRange ivs) {
               e.store(e.idx(0), m.start, ivs);
               e.store(e.idx(0), m.end, ivs);
             });
  e.parallel({e.idx(0), e.idx(0)}, {h, m.l}, [&](Emitter &e, ValueRange ivs) {
    emitSlotRange(e, m, ivs[0], ivs[1]);
  });
  e.parallel(
      {e.idx(0), e.idx(0)}, {h, capacity},
      [&](Emitter &e, ValueRange ivs) { emitMergeSlot(e, m, ivs[0], ivs[1]); });
  rewriter.replaceOp(op, {e.toTensor(m.outK, op.getMergedKeys().getType()),
                          e.toTensor(m.outV, op.getMergedValues().getType()),
                          e.toTensor(m.outP, op.getPositions().getType()),
                          e.toTensor(m.outC, op.getCounts().getType()),
                          e.toTensor(m.outS, op.getMergedScores().getType())});
}

/// The fused per-head region: one parallel iteration per KV head sweeps its
/// keys in token order for the adjacent similarities, selects the merge
/// sets (the scan writes where each slot starts), and merges slot after slot
/// in token order; every K/V row of the head is streamed from memory in
/// order (a set's rows are revisited while they are in cache).
void lowerFusedMerge(FusedMergeOp op, RewriterBase &rewriter) {
  Emitter e(rewriter, op.getLoc());
  Value keys = e.toBuffer(op.getKeys());
  Value values = e.toBuffer(op.getValues());
  Type kt = elementType(op.getKeys());
  auto rt = cast<RankedTensorType>(op.getKeysInit().getType());
  Value capacity =
      rt.isDynamicDim(1)
          ? tensor::DimOp::create(e.b, op.getKeysInit(), 1).getResult()
          : e.idx(rt.getDimSize(1));
  MergeContext m = makeMergeContext(
      e, keys, values, e.toBuffer(op.getScores()), kt,
      elementType(op.getValues()),
      llvm::to_vector(TypeRange(op->getResultTypes()).take_front(5)), capacity,
      op.getSigmaOrDefault(), /*slotStarts=*/true);
  Value h = e.dim(keys, 0);
  Value links = e.maxS(e.sub(m.l, e.idx(1)), e.idx(0));
  Value sim = e.alloc({ShapedType::kDynamic, ShapedType::kDynamic},
                      e.b.getF32Type(), {h, links});
  m.lengths = e.allocLike(op.getLengths().getType(), {h});
  Value scratch = allocScanScratch(e, h, m.l);
  // Slots of a head are merged one after another: one accumulation row per
  // head serves all of them.
  if (kt != m.ct)
    m.rowK =
        e.alloc({ShapedType::kDynamic, ShapedType::kDynamic}, m.ct, {h, m.d});
  if (m.vt != m.ct)
    m.rowV =
        e.alloc({ShapedType::kDynamic, ShapedType::kDynamic}, m.ct, {h, m.dv});
  MergeSetsParams p{
      static_cast<int64_t>(op.getSink()), static_cast<int64_t>(op.getRecent()),
      static_cast<int64_t>(op.getMiddle()),
      op.getMode() == MergeMode::threshold, op.getEps().convertToDouble()};
  p.heavy = op.getHeavy();
  p.scores = m.scores;
  allocMergeSetsScratch(e, p, h, m.l);
  e.parallel({e.idx(0)}, {h}, [&](Emitter &e, ValueRange ivs) {
    Value head = ivs[0];
    e.parallel({e.idx(0)}, {links}, [&](Emitter &e, ValueRange t) {
      e.store(emitLinkSimilarity(e, keys, m.d, head, t[0]), sim,
              {head, t[0]});
    });
    // The scan writes where each slot starts (no slot map, no pass over the
    // tokens to find the slots' ranges).
    emitMergeSetsHead(e, head, m.l, sim, SlotOutput{{}, m.starts}, m.lengths,
                      scratch, p);
    e.forLoop(e.idx(0), capacity,
              [&](Emitter &e, Value s) { emitMergeSlot(e, m, head, s); });
  });
  rewriter.replaceOp(op, {e.toTensor(m.outK, op.getMergedKeys().getType()),
                          e.toTensor(m.outV, op.getMergedValues().getType()),
                          e.toTensor(m.outP, op.getPositions().getType()),
                          e.toTensor(m.outC, op.getCounts().getType()),
                          e.toTensor(m.outS, op.getMergedScores().getType()),
                          e.toTensor(m.lengths, op.getLengths().getType())});
}

Value scaleOr(Emitter &e, std::optional<llvm::APFloat> scale, Value d,
              Type ct) {
  if (scale)
    return e.flt(scale->convertToDouble(), ct);
  return e.fdiv(e.flt(1.0, ct), e.sqrt(e.siToF(d, ct)));
}

void lowerAccumulatedScores(AccumulatedScoresOp op, RewriterBase &rewriter) {
  Emitter e(rewriter, op.getLoc());
  Value q = e.toBuffer(op.getQueries());
  Value k = e.toBuffer(op.getKeys());
  Type ct = computeType(elementType(op.getQueries()));
  Type f32 = e.b.getF32Type();
  Value hq = e.dim(q, 0), l = e.dim(q, 1), d = e.dim(q, 2), hkv = e.dim(k, 0);
  Value group = e.divu(hq, hkv);
  Value out = e.allocLike(op.getResult().getType(), {hkv, l});
  Value row =
      e.alloc({ShapedType::kDynamic, ShapedType::kDynamic}, ct, {hkv, l});
  Value acc =
      e.alloc({ShapedType::kDynamic, ShapedType::kDynamic}, ct, {hkv, l});
  Value scale = scaleOr(e, op.getScale(), d, ct);
  Value first = e.idx(0);
  if (std::optional<uint64_t> w = op.getWindow())
    first = e.maxS(e.sub(l, e.idx(*w)), e.idx(0));
  e.parallel({e.idx(0)}, {hkv}, [&](Emitter &e, ValueRange ivs) {
    Value h = ivs[0];
    // Sum over the G query heads of this KV head and the observed queries
    // in `acc`; `row` holds one query's logits, then probabilities.
    e.forLoop(e.idx(0), l, [&](Emitter &e, Value t) {
      e.store(e.flt(0.0, ct), acc, {h, t});
    });
    e.forLoop(e.idx(0), group, [&](Emitter &e, Value g) {
      Value j = e.add(e.mul(h, group), g);
      e.forLoop(first, l, [&](Emitter &e, Value i) {
        Value upto = e.add(i, e.idx(1));
        Value ninf = e.flt(-std::numeric_limits<double>::infinity(), ct);
        Value mx = e.forLoop(
            e.idx(0), upto, ValueRange{ninf},
            [&](Emitter &e, Value t, ValueRange m) -> SmallVector<Value> {
              Value dot = e.forLoop(
                  e.idx(0), d, ValueRange{e.flt(0.0, ct)},
                  [&](Emitter &e, Value c, ValueRange s) -> SmallVector<Value> {
                    Value x = e.convert(e.load(q, {j, i, c}), ct);
                    Value y = e.convert(e.load(k, {h, t, c}), ct);
                    return {e.fadd(s[0], e.fmul(x, y))};
                  })[0];
              Value logit = e.fmul(dot, scale);
              e.store(logit, row, {h, t});
              return {e.fmax(m[0], logit)};
            })[0];
        Value z = e.forLoop(
            e.idx(0), upto, ValueRange{e.flt(0.0, ct)},
            [&](Emitter &e, Value t, ValueRange s) -> SmallVector<Value> {
              Value p = e.exp(e.fsub(e.load(row, {h, t}), mx));
              e.store(p, row, {h, t});
              return {e.fadd(s[0], p)};
            })[0];
        e.forLoop(e.idx(0), upto, [&](Emitter &e, Value t) {
          Value p = e.fdiv(e.load(row, {h, t}), z);
          e.store(e.fadd(e.load(acc, {h, t}), p), acc, {h, t});
        });
      });
    });
    e.forLoop(e.idx(0), l, [&](Emitter &e, Value t) {
      e.store(e.convert(e.load(acc, {h, t}), f32), out, {h, t});
    });
  });
  rewriter.replaceOp(op, e.toTensor(out, op.getResult().getType()));
}

void lowerAttention(AttentionOp op, RewriterBase &rewriter) {
  Emitter e(rewriter, op.getLoc());
  Value q = e.toBuffer(op.getQuery());
  Value k = e.toBuffer(op.getKeys());
  Value v = e.toBuffer(op.getValues());
  Value lengths = op.getLengths() ? e.toBuffer(op.getLengths()) : Value();
  Value counts = op.getCounts() ? e.toBuffer(op.getCounts()) : Value();
  bool countBias = op.getCountBias();
  bool causal = op.getCausal();
  Type ot = elementType(op.getInit());
  Type ct = computeType(elementType(op.getQuery()));
  Value hq = e.dim(q, 0), lq = e.dim(q, 1), d = e.dim(q, 2);
  Value hkv = e.dim(k, 0), s = e.dim(k, 1), dv = e.dim(v, 2);
  Value group = e.divu(hq, hkv);
  Value out = e.allocLike(op.getResult().getType(), {hq, lq, dv});
  // The output is the accumulator when it has the compute type.
  Value acc = ot == ct ? out
                       : e.alloc({ShapedType::kDynamic, ShapedType::kDynamic,
                                  ShapedType::kDynamic},
                                 ct, {hq, lq, dv});
  Value scale = scaleOr(e, op.getScale(), d, ct);
  // Row max and normalizer of every (query head, query), kept when the
  // accumulated scores are asked for.
  Value stats;
  if (op.getScoresInit())
    stats =
        e.alloc({2, ShapedType::kDynamic, ShapedType::kDynamic}, ct, {hq, lq});
  // Number of slots query i of KV head h sees.
  auto visible = [&](Emitter &e, Value h, Value i) {
    Value n = s;
    if (lengths)
      n = e.maxS(e.minS(e.toIndex(e.load(lengths, {h})), s), e.idx(0));
    // Causal: the queries are the last Lq of the valid slots.
    if (causal)
      n = e.minS(n, e.add(i, e.add(e.sub(n, lq), e.idx(1))));
    return n;
  };
  // A mask row per `maskGroup` query heads; `maskPerQuery` when it is not
  // broadcast over the queries. A float mask is added to the logits; an i1
  // mask turns invisible slots into -inf logits.
  Value mask = op.getMask() ? e.toBuffer(op.getMask()) : Value();
  Value maskGroup;
  bool maskPerQuery = false;
  if (mask) {
    maskGroup = e.divu(hq, e.dim(mask, 0));
    maskPerQuery = cast<RankedTensorType>(op.getMask().getType())
                       .getDimSize(1) != 1;
  }
  Value ninfC = e.flt(-std::numeric_limits<double>::infinity(), ct);
  auto logitOf = [&](Emitter &e, Value j, Value i, Value h, Value t) {
    Value dot =
        e.forLoop(e.idx(0), d, ValueRange{e.flt(0.0, ct)},
                  [&](Emitter &e, Value c, ValueRange a) -> SmallVector<Value> {
                    Value x = e.convert(e.load(q, {j, i, c}), ct);
                    Value y = e.convert(e.load(k, {h, t, c}), ct);
                    return {e.fadd(a[0], e.fmul(x, y))};
                  })[0];
    Value logit = e.fmul(dot, scale);
    if (countBias) {
      Value cnt = e.load(counts, {h, t});
      logit = e.fadd(logit, e.log(arith::SIToFPOp::create(e.b, ct, cnt)));
    }
    if (mask) {
      Value m = e.load(mask, {e.divu(j, maskGroup),
                              maskPerQuery ? i : e.idx(0), t});
      logit = m.getType().isInteger(1) ? e.select(m, logit, ninfC)
                                       : e.fadd(logit, e.convert(m, ct));
    }
    return logit;
  };
  // One parallel iteration per (KV head, query). Its visible slots are
  // walked in blocks of kSlotBlock, and each block serves the G query heads
  // of the group in turn, so a block of K and V rows is read from memory once
  // for the group and reused from cache. Per query head, a blocked online
  // softmax: the block's logits (kept in a row on the stack) and their max,
  // one rescale of the normalizer and the accumulator by
  // exp(max_old - max), then the block's weights exp(logit - max) and their
  // weighted value rows. The logits, weights and value rows are loops
  // without a dependency from one slot to the next (LLVM vectorizes them);
  // only the per-block rescale is sequential. Each head's running max and
  // normalizer live in `state` between blocks (the kept `stats` when the
  // scores are asked for).
  constexpr int64_t kSlotBlock = 64;
  Value state = stats ? stats
                      : e.alloc({2, ShapedType::kDynamic, ShapedType::kDynamic},
                                ct, {hq, lq});
  e.parallel({e.idx(0), e.idx(0)}, {hkv, lq}, [&](Emitter &e, ValueRange ivs) {
    Value h = ivs[0], i = ivs[1];
    Value n = visible(e, h, i);
    Value zero = e.flt(0.0, ct), one = e.flt(1.0, ct);
    Value first = e.mul(h, group), last = e.add(first, group);
    e.forLoop(first, last, [&](Emitter &e, Value j) {
      e.forLoop(e.idx(0), dv, [&](Emitter &e, Value c) {
        e.store(zero, acc, {j, i, c});
      });
      e.store(ninfC, state, {e.idx(0), j, i});
      e.store(zero, state, {e.idx(1), j, i});
    });
    Value row =
        memref::AllocaOp::create(e.b, MemRefType::get({kSlotBlock}, ct));
    Value block = e.idx(kSlotBlock);
    e.forLoop(e.idx(0), n, block, [&](Emitter &e, Value t0) {
      Value cnt = e.sub(e.minS(e.add(t0, block), n), t0);
      e.forLoop(first, last, [&](Emitter &e, Value j) {
        Value mOld = e.load(state, {e.idx(0), j, i});
        Value blockMax = e.forLoop(
            e.idx(0), cnt, ValueRange{ninfC},
            [&](Emitter &e, Value u, ValueRange mx) -> SmallVector<Value> {
              Value logit = logitOf(e, j, i, h, e.add(t0, u));
              e.store(logit, row, {u});
              return {e.fmax(mx[0], logit)};
            })[0];
        Value m = e.fmax(mOld, blockMax);
        // Only -inf logits so far (masked slots): no weight, no rescale.
        Value none = e.fcmp(arith::CmpFPredicate::OEQ, m, ninfC);
        Value ref = e.select(none, zero, m);
        Value corr = e.select(none, one, e.exp(e.fsub(mOld, ref)));
        Value sum = e.forLoop(
            e.idx(0), cnt, ValueRange{zero},
            [&](Emitter &e, Value u, ValueRange a) -> SmallVector<Value> {
              Value p = e.exp(e.fsub(e.load(row, {u}), ref));
              e.store(p, row, {u});
              return {e.fadd(a[0], p)};
            })[0];
        e.forLoop(e.idx(0), dv, [&](Emitter &e, Value c) {
          e.store(e.fmul(e.load(acc, {j, i, c}), corr), acc, {j, i, c});
        });
        e.forLoop(e.idx(0), cnt, [&](Emitter &e, Value u) {
          Value p = e.load(row, {u});
          Value t = e.add(t0, u);
          e.forLoop(e.idx(0), dv, [&](Emitter &e, Value c) {
            Value y = e.convert(e.load(v, {h, t, c}), ct);
            e.store(e.fadd(e.load(acc, {j, i, c}), e.fmul(p, y)), acc,
                    {j, i, c});
          });
        });
        e.store(m, state, {e.idx(0), j, i});
        e.store(e.fadd(e.fmul(e.load(state, {e.idx(1), j, i}), corr), sum),
                state, {e.idx(1), j, i});
      });
    });
    e.forLoop(first, last, [&](Emitter &e, Value j) {
      Value zs = e.load(state, {e.idx(1), j, i});
      Value empty = e.fcmp(arith::CmpFPredicate::OEQ, zs, zero);
      Value z = e.select(empty, one, zs);
      if (stats)
        e.store(z, stats, {e.idx(1), j, i});
      e.forLoop(e.idx(0), dv, [&](Emitter &e, Value c) {
        e.store(e.convert(e.fdiv(e.load(acc, {j, i, c}), z), ot), out,
                {j, i, c});
      });
    });
  });
  if (!stats) {
    rewriter.replaceOp(op, e.toTensor(out, op.getResult().getType()));
    return;
  }
  // Accumulated scores: one parallel iteration per (KV head, slot) sums the
  // probabilities its G query heads and Lq queries gave it.
  Value scores = e.allocLike(op.getScores().getType(), {hkv, s});
  e.parallel({e.idx(0), e.idx(0)}, {hkv, s}, [&](Emitter &e, ValueRange ivs) {
    Value h = ivs[0], t = ivs[1];
    Value total = e.forLoop(
        e.idx(0), group, ValueRange{e.flt(0.0, ct)},
        [&](Emitter &e, Value g, ValueRange acc) -> SmallVector<Value> {
          Value j = e.add(e.mul(h, group), g);
          Value sum = e.forLoop(
              e.idx(0), lq, ValueRange{acc[0]},
              [&](Emitter &e, Value i, ValueRange a) -> SmallVector<Value> {
                Value seen =
                    e.cmp(arith::CmpIPredicate::slt, t, visible(e, h, i));
                auto r = e.ifElse(
                    seen,
                    [&](Emitter &e) -> SmallVector<Value> {
                      Value mx = e.load(stats, {e.idx(0), j, i});
                      Value p = e.exp(e.fsub(logitOf(e, j, i, h, t), mx));
                      p = e.fdiv(p, e.load(stats, {e.idx(1), j, i}));
                      if (mask) // a row without a visible slot
                        p = e.select(
                            e.fcmp(arith::CmpFPredicate::OEQ, mx, ninfC),
                            e.flt(0.0, ct), p);
                      return {e.fadd(a[0], p)};
                    },
                    [&](Emitter &) -> SmallVector<Value> { return {a[0]}; });
                return {r[0]};
              })[0];
          return {sum};
        })[0];
    e.store(e.convert(total, e.b.getF32Type()), scores, {h, t});
  });
  rewriter.replaceOp(op, {e.toTensor(out, op.getResult().getType()),
                          e.toTensor(scores, op.getScores().getType())});
}

/// Copies the valid slots, then the new entries, then zeros, one head per
/// parallel iteration (kvcache.append).
void lowerAppend(AppendOp op, RewriterBase &rewriter) {
  Emitter e(rewriter, op.getLoc());
  Value cache = e.toBuffer(op.getCache()), add = e.toBuffer(op.getAdded());
  Value lengths = e.toBuffer(op.getLengths());
  auto rt = cast<RankedTensorType>(op.getResult().getType());
  int64_t rank = rt.getRank();
  Value p = e.dim(cache, 1), t = e.dim(add, 1);
  SmallVector<Value> sizes;
  for (int64_t i = 0; i < rank; ++i)
    sizes.push_back(i == 1 ? e.add(p, t) : e.dim(cache, i));
  Value out = e.allocLike(rt, sizes);
  Value outLengths = e.allocLike(op.getNewLengths().getType(), {sizes[0]});
  Value zero = arith::ConstantOp::create(
      e.b, cast<TypedAttr>(e.b.getZeroAttr(rt.getElementType())));
  e.parallel({e.idx(0)}, {sizes[0]}, [&](Emitter &e, ValueRange ivs) {
    Value h = ivs[0];
    Value n = e.maxS(e.minS(e.toIndex(e.load(lengths, {h})), p), e.idx(0));
    e.store(e.toI32(e.add(n, t)), outLengths, {h});
    // One slot: the trailing dims in nested loops.
    std::function<void(Emitter &, SmallVector<Value>)> row =
        [&](Emitter &e, SmallVector<Value> idx) {
          if (static_cast<int64_t>(idx.size()) < rank) {
            e.forLoop(e.idx(0), sizes[idx.size()], [&](Emitter &e, Value c) {
              SmallVector<Value> next = idx;
              next.push_back(c);
              row(e, next);
            });
            return;
          }
          Value slot = idx[1];
          Value v = e.ifElse(
              e.cmp(arith::CmpIPredicate::slt, slot, n),
              [&](Emitter &e) -> SmallVector<Value> {
                return {e.load(cache, idx)};
              },
              [&](Emitter &e) -> SmallVector<Value> {
                Value k = e.sub(slot, n);
                return e.ifElse(
                    e.cmp(arith::CmpIPredicate::slt, k, t),
                    [&](Emitter &e) -> SmallVector<Value> {
                      SmallVector<Value> at = idx;
                      at[1] = k;
                      return {e.load(add, at)};
                    },
                    [&](Emitter &) -> SmallVector<Value> { return {zero}; });
              })[0];
          e.store(v, out, idx);
        };
    e.forLoop(e.idx(0), sizes[1], [&](Emitter &e, Value s) {
      row(e, {h, s});
    });
  });
  rewriter.replaceOp(op, {e.toTensor(out, rt),
                          e.toTensor(outLengths, op.getNewLengths().getType())});
}

struct ConvertKVCacheToLoopsPass
    : kvmerge::impl::ConvertKVCacheToLoopsBase<ConvertKVCacheToLoopsPass> {
  void runOnOperation() override {
    auto lower = [](Operation *op, RewriterBase &rewriter) {
      llvm::TypeSwitch<Operation *>(op)
          .Case([&](SimilarityOp o) { lowerSimilarity(o, rewriter); })
          .Case([&](MergeSetsOp o) { lowerMergeSets(o, rewriter); })
          .Case([&](SelectSetsOp o) { lowerSelectSets(o, rewriter); })
          .Case([&](MergeOp o) { lowerMerge(o, rewriter); })
          .Case([&](FusedMergeOp o) { lowerFusedMerge(o, rewriter); })
          .Case([&](AccumulatedScoresOp o) {
            lowerAccumulatedScores(o, rewriter);
          })
          .Case([&](AttentionOp o) { lowerAttention(o, rewriter); })
          .Case([&](AppendOp o) { lowerAppend(o, rewriter); });
    };
    if (failed(lowerKVCacheOps(getOperation(), lower)))
      signalPassFailure();
  }
};

} // namespace
