//===- KVCacheToGPU.cpp - kvcache ops -> gpu.launch kernels ---------------===//
//
// Lowers kvcache ops to hand-mapped `gpu.launch` kernels on buffers (see
// docs/gpu.md for the mapping):
//
//   similarity   16 lanes per (head, link), two links per warp: each lane
//                sums its elements of the head dim in f64, the 16 partial
//                sums are combined by an xor butterfly (gpu.shuffle): the
//                summation order of every path (emitCosine).
//   merge_sets / one thread block per head: the bitwise-search selection of
//   select_sets  the CPU lowering, each step a block-wide count (warp shuffle
//                reduction + workgroup memory), then the slot map by a
//                block-wide exclusive prefix scan (gpu.shuffle up).
//   merge        three kernels: zero the slot ranges, find every slot's
//                [start, end) (one thread per token), then one block per
//                (head, slot): pivot/score sum by block reductions,
//                distances one warp per member, weights over members,
//                weighted sums with threads over D (f32 accumulation).
//   attention    split-K flash decoding: one block per (key chunk, KV head,
//                query) with one warp per query head of the GQA group, K/V
//                tiles staged once in workgroup memory for the whole group,
//                online softmax per warp; a second kernel combines the
//                chunks' (max, normalizer, accumulator) partials.
//
// Like convert-kvcache-to-loops, tensors are bridged with
// bufferization.to_buffer / to_tensor, so the kernels are written against
// host memrefs; kvmerge-gpu-stage-buffers later gives every launch device
// copies. Ops this pass does not map (f64 storage, accumulated_scores,
// attention with a scores result or non-static head dims) are left for
// convert-kvcache-to-loops, i.e. they run on the host.
//
//===----------------------------------------------------------------------===//

#include "../Common/LoopEmitter.h"
#include "kvmerge/Conversion/Passes.h"
#include "kvmerge/Dialect/KVCache/IR/KVCache.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Transforms/RegionUtils.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/TypeSwitch.h"

#include <limits>

namespace kvmerge {
#define GEN_PASS_DEF_CONVERTKVCACHETOGPU
#define GEN_PASS_DEF_KVMERGEGPUSTAGEBUFFERS
#define GEN_PASS_DEF_KVMERGEGPUHIDELAUNCHES
#define GEN_PASS_DEF_KVMERGEGPURESTORELAUNCHES
#include "kvmerge/Conversion/Passes.h.inc"
} // namespace kvmerge

using namespace mlir;
using namespace kvmerge::kvcache;
using namespace kvmerge::conversion;

namespace {

constexpr int64_t kWarp = 32;
/// merge_sets / select_sets: one block of 16 warps per head.
constexpr int64_t kSelectThreads = 512;
/// similarity: 8 warps per block, two links per warp.
constexpr int64_t kSimilarityWarps = 8;
/// merge: slot kernel block, and the per-token kernels' block.
constexpr int64_t kMergeThreads = 128;
constexpr int64_t kTokenThreads = 256;
/// attention: keys staged per tile; target number of split-K blocks.
constexpr int64_t kAttentionTile = 32;
constexpr int64_t kAttentionTargetBlocks = 1024;
/// Largest static head dim the attention kernel keeps in registers.
constexpr int64_t kAttentionMaxDim = 256;

//===----------------------------------------------------------------------===//
// Emitter
//===----------------------------------------------------------------------===//

struct G : LoopEmitterBase<G> {
  /// Inside a launch: thread id (x) and the block size (x).
  Value tid, ntid;

  G(OpBuilder &builder, Location loc, Value tid = {}, Value ntid = {})
      : LoopEmitterBase(builder, loc), tid(tid), ntid(ntid) {}
  G nested(OpBuilder &nb, Location l) { return G(nb, l, tid, ntid); }

  //===--------------------------------------------------------------------===//
  // Kernels
  //===--------------------------------------------------------------------===//

  /// A `gpu.launch` over grid (gx, gy, gz) with `threads` threads (x) and the
  /// given workgroup buffers; `body` gets block ids (x, y, z) and the
  /// workgroup buffers. The launch is named `kernel` after outlining.
  void launch(StringRef kernel, Value gx, Value gy, Value gz, Value threads,
              ArrayRef<Type> workgroup,
              function_ref<void(G &, ValueRange, ValueRange)> body) {
    static unsigned counter = 0;
    Value one = idx(1);
    auto module = FlatSymbolRefAttr::get(
        b.getContext(), (kernel + "_" + Twine(counter++)).str());
    auto function = FlatSymbolRefAttr::get(b.getContext(), kernel);
    auto op = gpu::LaunchOp::create(b, gx, gy, gz, threads, one, one,
                                    /*dynamicSharedMemorySize=*/nullptr,
                                    /*asyncTokenType=*/nullptr,
                                    /*asyncDependencies=*/{}, workgroup,
                                    /*privateAttributions=*/{}, nullptr,
                                    nullptr, nullptr, module, function);
    Block &block = op.getBody().front();
    OpBuilder nb = OpBuilder::atBlockBegin(&block);
    G e(nb, b.getLoc());
    auto ids = op.getBlockIds();
    e.tid = op.getThreadIds().x;
    e.ntid = op.getBlockSize().x;
    body(e, ValueRange{ids.x, ids.y, ids.z},
         ValueRange(op.getWorkgroupAttributions()));
    gpu::TerminatorOp::create(e.b);
  }
  Type workgroupType(int64_t n, Type elt) {
    auto space = gpu::AddressSpaceAttr::get(b.getContext(),
                                            gpu::AddressSpace::Workgroup);
    return MemRefType::get({n}, elt, MemRefLayoutAttrInterface{}, space);
  }
  void barrier() { gpu::BarrierOp::create(b); }
  Value lane() { return remu(tid, idx(kWarp)); }
  Value warp() { return divu(tid, idx(kWarp)); }

  /// Butterfly (xor) all-reduce over the 32 lanes of a warp.
  Value warpReduce(Value v, function_ref<Value(G &, Value, Value)> combine) {
    for (int32_t offset = kWarp / 2; offset > 0; offset /= 2) {
      auto shuffle =
          gpu::ShuffleOp::create(b, v, offset, kWarp, gpu::ShuffleMode::XOR);
      v = combine(*this, v, shuffle.getShuffleResult());
    }
    return v;
  }
  /// Sum over each group of `n` (a power of two <= 32) consecutive lanes in
  /// halving order: offsets n/2, ..., 1, every lane taking part, exact IEEE
  /// additions (combineCosineLanes' order in the group's first lane). A
  /// 64-bit value is shuffled as two 32-bit halves.
  Value lanesSum(Value v, int64_t n) {
    for (int64_t offset = n / 2; offset > 0; offset /= 2)
      v = faddExact(v, shuffleXor(v, offset));
    return v;
  }
  Value shuffleXor(Value v, int64_t offset) {
    auto xorShuffle = [&](Value x) -> Value {
      return gpu::ShuffleOp::create(b, x, offset, kWarp,
                                    gpu::ShuffleMode::XOR)
          .getShuffleResult();
    };
    if (v.getType().getIntOrFloatBitWidth() != 64)
      return xorShuffle(v);
    Type i32t = b.getI32Type(), i64t = b.getI64Type();
    Value bits = arith::BitcastOp::create(b, i64t, v);
    Value lo = arith::TruncIOp::create(b, i32t, bits);
    Value hi = arith::TruncIOp::create(
        b, i32t,
        arith::ShRUIOp::create(b, bits,
                               arith::ConstantIntOp::create(b, 32, 64)));
    Value slo = arith::ExtUIOp::create(b, i64t, xorShuffle(lo));
    Value shi = arith::ExtUIOp::create(b, i64t, xorShuffle(hi));
    Value joined = arith::OrIOp::create(
        b, slo,
        arith::ShLIOp::create(b, shi,
                              arith::ConstantIntOp::create(b, 32, 64)));
    return arith::BitcastOp::create(b, v.getType(), joined);
  }
  Value warpSum(Value v) {
    bool isFloat = isa<FloatType>(v.getType());
    return warpReduce(v, [&](G &e, Value x, Value y) {
      return isFloat ? e.fadd(x, y) : e.add(x, y);
    });
  }
  Value warpMax(Value v) {
    return warpReduce(v, [](G &e, Value x, Value y) { return e.fmax(x, y); });
  }
  /// Block-wide all-reduce of a uniform-type scalar: warp shuffles, then the
  /// `warps` partials through workgroup memory `shm` (two barriers; the
  /// result is in every thread and `shm` is free again on return).
  Value blockReduce(Value v, Value shm, int64_t warps, Value identity,
                    function_ref<Value(G &, Value, Value)> combine) {
    Value w = warpReduce(v, combine);
    Value isLead = cmp(arith::CmpIPredicate::eq, lane(), idx(0));
    Value wid = warp();
    ifThen(isLead, [&](G &e) { e.store(w, shm, {wid}); });
    barrier();
    Value r = forLoop(idx(0), idx(warps), ValueRange{identity},
                      [&](G &e, Value i, ValueRange acc) -> SmallVector<Value> {
                        return {combine(e, acc[0], e.load(shm, {i}))};
                      })[0];
    barrier();
    return r;
  }
  Value blockSum(Value v, Value shm, int64_t warps) {
    bool isFloat = isa<FloatType>(v.getType());
    Value zero = isFloat ? flt(0.0, v.getType()) : i32(0);
    return blockReduce(v, shm, warps, zero, [&](G &e, Value x, Value y) {
      return isFloat ? e.fadd(x, y) : e.add(x, y);
    });
  }
  /// Block-wide exclusive prefix scan of an i32 (one value per thread) and
  /// the block total: shuffle-up warp scans, warp totals in `shm`.
  std::pair<Value, Value> blockScan(Value x, Value shm, int64_t warps) {
    Value ln = lane(), wid = warp();
    Value inclusive = x;
    for (int32_t offset = 1; offset < kWarp; offset *= 2) {
      auto shuffle = gpu::ShuffleOp::create(b, inclusive, offset, kWarp,
                                            gpu::ShuffleMode::UP);
      Value got =
          select(shuffle.getValid(), shuffle.getShuffleResult(), i32(0));
      inclusive = add(inclusive, got);
    }
    Value isLast = cmp(arith::CmpIPredicate::eq, ln, idx(kWarp - 1));
    ifThen(isLast, [&](G &e) { e.store(inclusive, shm, {wid}); });
    barrier();
    auto sums =
        forLoop(idx(0), idx(warps), ValueRange{i32(0), i32(0)},
                [&](G &e, Value i, ValueRange acc) -> SmallVector<Value> {
                  Value t = e.load(shm, {i});
                  Value before = e.cmp(arith::CmpIPredicate::ult, i, wid);
                  return {e.add(acc[0], e.select(before, t, e.i32(0))),
                          e.add(acc[1], t)};
                });
    barrier();
    return {add(sums[0], sub(inclusive, x)), sums[1]};
  }
  /// Block-strided count of `pred` over [lb, ub), reduced over the block.
  Value blockCount(Value lb, Value ub, Value shm, int64_t warps,
                   function_ref<Value(G &, Value)> pred) {
    Value local =
        forLoop(add(lb, tid), ub, ntid, ValueRange{i32(0)},
                [&](G &e, Value t, ValueRange acc) -> SmallVector<Value> {
                  return {e.add(acc[0], e.ext32(pred(e, t)))};
                })[0];
    return blockSum(local, shm, warps);
  }
  /// Block-strided loop over [lb, ub).
  void blockFor(Value lb, Value ub, function_ref<void(G &, Value)> body) {
    forLoop(add(lb, tid), ub, ntid, body);
  }
};

bool isF64(Value v) { return elementType(v).isF64(); }

//===----------------------------------------------------------------------===//
// Shared algorithms (as in convert-kvcache-to-loops, counts block-wide)
//===----------------------------------------------------------------------===//

/// Block-wide scan of `flag` over tokens [lb, ub) in tiles of the block
/// size; `visit(t, before, flag)` runs for every token in range. Returns the
/// total number of flags (uniform).
Value blockScanRange(G &e, Value lb, Value ub, Value shm, int64_t warps,
                     function_ref<Value(G &, Value)> flag,
                     function_ref<void(G &, Value, Value, Value)> visit) {
  return e.forLoop(
      lb, ub, e.ntid, ValueRange{e.i32(0)},
      [&](G &e, Value base, ValueRange carry) -> SmallVector<Value> {
        Value t = e.add(base, e.tid);
        Value inRange = e.cmp(arith::CmpIPredicate::slt, t, ub);
        Value f = e.ifElse(
            inRange,
            [&](G &e) -> SmallVector<Value> { return {e.ext32(flag(e, t))}; },
            [&](G &e) -> SmallVector<Value> { return {e.i32(0)}; })[0];
        auto scan = e.blockScan(f, shm, warps);
        Value excl = scan.first, total = scan.second;
        e.ifThen(inRange, [&](G &e) { visit(e, t, e.add(carry[0], excl), f); });
        return {e.add(carry[0], total)};
      })[0];
}

//===----------------------------------------------------------------------===//
// similarity
//===----------------------------------------------------------------------===//

bool lowerSimilarity(SimilarityOp op, RewriterBase &rewriter) {
  if (isF64(op.getKeys()))
    return false;
  G e(rewriter, op.getLoc());
  Value keys = e.toBuffer(op.getKeys());
  Value h = e.dim(keys, 0), l = e.dim(keys, 1), d = e.dim(keys, 2);
  Value links = e.maxS(e.sub(l, e.idx(1)), e.idx(0));
  Value out = e.allocLike(op.getResult().getType(), {h, links});
  constexpr int64_t perWarp = kWarp / kCosineLanes;
  constexpr int64_t perBlock = kSimilarityWarps * perWarp;
  Value gx = e.maxS(e.ceilDiv(links, e.idx(perBlock)), e.idx(1));
  e.launch(
      "kvmerge_similarity", gx, h, e.idx(1), e.idx(kSimilarityWarps * kWarp),
      {}, [&](G &e, ValueRange bid, ValueRange) {
        Value head = bid[1];
        // kCosineLanes lanes per link, perWarp links per warp: the lanes of
        // emitCosine's order, combined by the xor butterfly within each
        // group of kCosineLanes lanes.
        Value first = e.mul(e.add(e.mul(bid[0], e.idx(kSimilarityWarps)),
                                  e.warp()),
                            e.idx(perWarp));
        // Warp-uniform condition: the whole warp takes the branch (its
        // shuffles need every lane).
        e.ifThen(e.cmp(arith::CmpIPredicate::slt, first, links), [&](G &e) {
          Value lane = e.lane();
          Value sub = e.remu(lane, e.idx(kCosineLanes));
          Value link = e.add(first, e.divu(lane, e.idx(kCosineLanes)));
          Value valid = e.cmp(arith::CmpIPredicate::slt, link, links);
          // A group past the last link repeats it (and does not store).
          Value at = e.minS(link, e.sub(links, e.idx(1)));
          Value t1 = e.add(at, e.idx(1));
          Value zero = e.flt(0.0, e.b.getF64Type());
          SmallVector<Value> sums = e.forLoop(
              sub, d, e.idx(kCosineLanes), ValueRange{zero, zero, zero},
              [&](G &e, Value k, ValueRange acc) -> SmallVector<Value> {
                CosineLanes one{{acc[0]}, {acc[1]}, {acc[2]}};
                addCosineTerm(e, one, 0, e.load(keys, {head, at, k}),
                              e.load(keys, {head, t1, k}));
                return {one.dot[0], one.xx[0], one.yy[0]};
              });
          for (Value &v : sums)
            v = e.lanesSum(v, kCosineLanes);
          Value leader = e.cmp(arith::CmpIPredicate::eq, sub, e.idx(0));
          e.ifThen(e.andI(valid, leader), [&](G &e) {
            e.store(cosineFromSums(e, sums[0], sums[1], sums[2]), out,
                    {head, link});
          });
        });
      });
  rewriter.replaceOp(op, e.toTensor(out, op.getResult().getType()));
  return true;
}

//===----------------------------------------------------------------------===//
// merge_sets / select_sets
//===----------------------------------------------------------------------===//

constexpr int64_t kSelectWarps = kSelectThreads / kWarp;

bool lowerMergeSets(MergeSetsOp op, RewriterBase &rewriter) {
  G e(rewriter, op.getLoc());
  Value sim = e.toBuffer(op.getSimilarity());
  Value h = e.dim(sim, 0);
  Value length = e.add(e.dim(sim, 1), e.idx(1));
  Value slots = e.allocLike(op.getSlots().getType(), {h, length});
  Value lengths = e.allocLike(op.getLengths().getType(), {h});
  int64_t middle = op.getMiddle();
  int64_t sink = op.getSink(), recent = op.getRecent();
  bool threshold = op.getMode() == MergeMode::threshold;
  double eps = op.getEps().convertToDouble();
  int64_t heavy = op.getHeavy();
  Value scores = heavy > 0 ? e.toBuffer(op.getScores()) : Value();
  Type i32 = e.b.getI32Type();

  e.launch(
      "kvmerge_merge_sets", h, e.idx(1), e.idx(1), e.idx(kSelectThreads),
      {e.workgroupType(kSelectWarps, i32)},
      [&](G &e, ValueRange bid, ValueRange wg) {
        Value head = bid[0], shm = wg[0];
        Regions r = regions(e, length, sink, recent);
        Value lastMiddle = e.sub(r.recentStart, e.idx(1));
        auto keyOf = [&](G &e, Value t) {
          return orderedKey(e, e.load(sim, {head, t}));
        };
        auto countFn = [&](G &e, Value lb, Value ub, G::Pred pred) {
          return e.blockCount(lb, ub, shm, kSelectWarps, pred);
        };
        auto scoreKeyOf = [&](G &e, Value t) {
          return heavyKey(e, e.load(scores, {head, t}));
        };
        // Without heavy hitters `hs` is unused.
        MergeCutSelections hs{};
        Selection s;
        if (heavy > 0) {
          hs = selectMergeCutsWithHeavy(e, r, middle, heavy, threshold, eps,
                                        length, countFn, keyOf, scoreKeyOf);
          s = hs.cuts;
        } else {
          s = selectMergeCuts(e, r, middle, threshold, eps, countFn, keyOf);
        }
        auto cutOf = [&](G &e, Value t) -> Value {
          if (heavy > 0)
            return isMergeCut(e, hs, scoreKeyOf, length, keyOf, t);
          return isSelected(e, s, keyOf(e, t), t);
        };
        // Sink tokens: their own slot.
        e.blockFor(e.idx(0), r.sink, [&](G &e, Value t) {
          e.store(e.toI32(t), slots, {head, t});
        });
        // Middle: slot = sink + cuts before t (block-wide scan).
        Value sinkI32 = e.toI32(r.sink);
        Value cuts = blockScanRange(
            e, r.sink, r.recentStart, shm, kSelectWarps,
            [&](G &e, Value t) -> Value {
              Value inner = e.cmp(arith::CmpIPredicate::slt, t, lastMiddle);
              return e.ifElse(
                  inner,
                  [&](G &e) -> SmallVector<Value> { return {cutOf(e, t)}; },
                  [&](G &e) -> SmallVector<Value> {
                    return {arith::ConstantIntOp::create(e.b, 0, 1)};
                  })[0];
            },
            [&](G &e, Value t, Value before, Value) {
              e.store(e.add(sinkI32, before), slots, {head, t});
            });
        Value hasMiddle =
            e.cmp(arith::CmpIPredicate::sgt, r.middleLen, e.idx(0));
        Value sets = e.select(hasMiddle, e.add(cuts, e.i32(1)), e.i32(0));
        Value recentBase = e.add(sinkI32, sets);
        e.blockFor(r.recentStart, length, [&](G &e, Value t) {
          Value offset = e.toI32(e.sub(t, r.recentStart));
          e.store(e.add(recentBase, offset), slots, {head, t});
        });
        e.ifThen(e.cmp(arith::CmpIPredicate::eq, e.tid, e.idx(0)), [&](G &e) {
          Value recentLen = e.toI32(e.sub(length, r.recentStart));
          e.store(e.add(recentBase, recentLen), lengths, {head});
        });
      });
  rewriter.replaceOp(op, {e.toTensor(slots, op.getSlots().getType()),
                          e.toTensor(lengths, op.getLengths().getType())});
  return true;
}

bool lowerSelectSets(SelectSetsOp op, RewriterBase &rewriter) {
  G e(rewriter, op.getLoc());
  Value scores = e.toBuffer(op.getScores());
  Value h = e.dim(scores, 0), length = e.dim(scores, 1);
  Value slots = e.allocLike(op.getSlots().getType(), {h, length});
  Value lengths = e.allocLike(op.getLengths().getType(), {h});
  int64_t middle = op.getMiddle();
  int64_t sink = op.getSink(), recent = op.getRecent();
  Type i32 = e.b.getI32Type();

  e.launch(
      "kvmerge_select_sets", h, e.idx(1), e.idx(1), e.idx(kSelectThreads),
      {e.workgroupType(kSelectWarps, i32)},
      [&](G &e, ValueRange bid, ValueRange wg) {
        Value head = bid[0], shm = wg[0];
        Regions r = regions(e, length, sink, recent);
        auto keyOf = [&](G &e, Value t) {
          Value key = orderedKey(e, e.load(scores, {head, t}));
          return arith::XOrIOp::create(e.b, key, e.i32(-1)).getResult();
        };
        auto rankOf = [&](G &e, Value t) { return e.sub(length, t); };
        Selection s = selectKept(
            e, r, middle,
            [&](G &e, Value lb, Value ub, G::Pred pred) {
              return e.blockCount(lb, ub, shm, kSelectWarps, pred);
            },
            keyOf, rankOf);
        e.blockFor(e.idx(0), r.sink, [&](G &e, Value t) {
          e.store(e.toI32(t), slots, {head, t});
        });
        Value sinkI32 = e.toI32(r.sink);
        Value nKept = blockScanRange(
            e, r.sink, r.recentStart, shm, kSelectWarps,
            [&](G &e, Value t) {
              return isSelected(e, s, keyOf(e, t), rankOf(e, t));
            },
            [&](G &e, Value t, Value before, Value flag) {
              Value kept = e.cmp(arith::CmpIPredicate::ne, flag, e.i32(0));
              e.store(e.select(kept, e.add(sinkI32, before), e.i32(-1)), slots,
                      {head, t});
            });
        Value recentBase = e.add(sinkI32, nKept);
        e.blockFor(r.recentStart, length, [&](G &e, Value t) {
          Value offset = e.toI32(e.sub(t, r.recentStart));
          e.store(e.add(recentBase, offset), slots, {head, t});
        });
        e.ifThen(e.cmp(arith::CmpIPredicate::eq, e.tid, e.idx(0)), [&](G &e) {
          e.store(e.add(recentBase, e.toI32(e.sub(length, r.recentStart))),
                  lengths, {head});
        });
      });
  rewriter.replaceOp(op, {e.toTensor(slots, op.getSlots().getType()),
                          e.toTensor(lengths, op.getLengths().getType())});
  return true;
}

//===----------------------------------------------------------------------===//
// merge
//===----------------------------------------------------------------------===//

constexpr int64_t kMergeWarps = kMergeThreads / kWarp;

bool lowerMerge(MergeOp op, RewriterBase &rewriter) {
  if (isF64(op.getKeys()) || isF64(op.getValues()))
    return false;
  G e(rewriter, op.getLoc());
  Value keys = e.toBuffer(op.getKeys());
  Value values = e.toBuffer(op.getValues());
  Value scores = e.toBuffer(op.getScores());
  Value slots = e.toBuffer(op.getSlots());
  Value lengths = e.toBuffer(op.getLengths());
  Type kt = elementType(op.getKeys()), vt = elementType(op.getValues());
  Type f32 = e.b.getF32Type(), i32 = e.b.getI32Type();
  Value h = e.dim(keys, 0), l = e.dim(keys, 1), d = e.dim(keys, 2),
        dv = e.dim(values, 2);
  Value capacity;
  {
    auto rt = cast<RankedTensorType>(op.getKeysInit().getType());
    capacity = rt.isDynamicDim(1)
                   ? tensor::DimOp::create(e.b, op.getKeysInit(), 1).getResult()
                   : e.idx(rt.getDimSize(1));
  }
  Value outK = e.allocLike(op.getMergedKeys().getType(), {h, capacity, d});
  Value outV = e.allocLike(op.getMergedValues().getType(), {h, capacity, dv});
  Value outP = e.allocLike(op.getPositions().getType(), {h, capacity});
  Value outC = e.allocLike(op.getCounts().getType(), {h, capacity});
  Value outS = e.allocLike(op.getMergedScores().getType(), {h, capacity});
  Value start =
      e.alloc({ShapedType::kDynamic, ShapedType::kDynamic}, i32, {h, capacity});
  Value end =
      e.alloc({ShapedType::kDynamic, ShapedType::kDynamic}, i32, {h, capacity});
  Value weight =
      e.alloc({ShapedType::kDynamic, ShapedType::kDynamic}, f32, {h, l});

  // 1. Empty ranges for every slot.
  Value slotBlocks =
      e.maxS(e.ceilDiv(capacity, e.idx(kTokenThreads)), e.idx(1));
  e.launch("kvmerge_merge_init", slotBlocks, h, e.idx(1), e.idx(kTokenThreads),
           {}, [&](G &e, ValueRange bid, ValueRange) {
             Value s = e.add(e.mul(bid[0], e.idx(kTokenThreads)), e.tid);
             e.ifThen(e.cmp(arith::CmpIPredicate::slt, s, capacity), [&](G &e) {
               e.store(e.i32(0), start, {bid[1], s});
               e.store(e.i32(0), end, {bid[1], s});
             });
           });
  // 2. Slot boundaries, one thread per token.
  Value tokenBlocks = e.maxS(e.ceilDiv(l, e.idx(kTokenThreads)), e.idx(1));
  e.launch(
      "kvmerge_merge_ranges", tokenBlocks, h, e.idx(1), e.idx(kTokenThreads),
      {}, [&](G &e, ValueRange bid, ValueRange) {
        Value head = bid[1];
        Value t = e.add(e.mul(bid[0], e.idx(kTokenThreads)), e.tid);
        e.ifThen(e.cmp(arith::CmpIPredicate::slt, t, l), [&](G &e) {
          Value lastToken = e.sub(l, e.idx(1));
          Value s = e.load(slots, {head, t});
          Value valid =
              e.andI(e.cmp(arith::CmpIPredicate::sge, s, e.i32(0)),
                     e.cmp(arith::CmpIPredicate::slt, e.toIndex(s), capacity));
          e.ifThen(valid, [&](G &e) {
            Value si = e.toIndex(s);
            Value first = e.cmp(arith::CmpIPredicate::eq, t, e.idx(0));
            Value prev =
                e.load(slots, {head, e.maxS(e.sub(t, e.idx(1)), e.idx(0))});
            Value opens =
                e.orI(first, e.cmp(arith::CmpIPredicate::ne, prev, s));
            e.ifThen(opens, [&](G &e) {
              e.store(e.toI32(t), start, {head, si});
            });
            Value last = e.cmp(arith::CmpIPredicate::eq, t, lastToken);
            Value next =
                e.load(slots, {head, e.minS(e.add(t, e.idx(1)), lastToken)});
            Value closes =
                e.orI(last, e.cmp(arith::CmpIPredicate::ne, next, s));
            e.ifThen(closes, [&](G &e) {
              e.store(e.toI32(e.add(t, e.idx(1))), end, {head, si});
            });
          });
        });
      });

  // 3. One block per (slot, head).
  SigmaAttr sigma = op.getSigmaOrDefault();
  e.launch(
      "kvmerge_merge_slots", capacity, h, e.idx(1), e.idx(kMergeThreads),
      {e.workgroupType(kMergeWarps, f32), e.workgroupType(kMergeWarps, i32)},
      [&](G &e, ValueRange bid, ValueRange wg) {
        Value slot = bid[0], head = bid[1];
        Value shmF = wg[0], shmI = wg[1];
        Value len = e.toIndex(e.load(lengths, {head}));
        Value used = e.cmp(arith::CmpIPredicate::slt, slot, len);
        Value isLead = e.cmp(arith::CmpIPredicate::eq, e.tid, e.idx(0));
        Value zero = e.f32(0.0);
        auto zeroRow = [&](G &e, Value out, Value width, Type t) {
          Value z = e.flt(0.0, t);
          e.blockFor(e.idx(0), width, [&](G &e, Value k) {
            e.store(z, out, {head, slot, k});
          });
        };
        // `used` is block-uniform: barriers inside are safe.
        e.ifThenElse(
            used,
            [&](G &e) {
              Value a = e.toIndex(e.load(start, {head, slot}));
              Value b = e.toIndex(e.load(end, {head, slot}));
              Value n = e.sub(b, a);
              // Pivot (largest score, ties to the newest) and score sum.
              Value ninf = e.f32(-std::numeric_limits<double>::infinity());
              auto local = e.forLoop(
                  e.add(a, e.tid), b, e.ntid, ValueRange{ninf, e.i32(-1), zero},
                  [&](G &e, Value t, ValueRange acc) -> SmallVector<Value> {
                    Value sc = e.load(scores, {head, t});
                    Value ge = e.fcmp(arith::CmpFPredicate::OGE, sc, acc[0]);
                    return {e.select(ge, sc, acc[0]),
                            e.select(ge, e.toI32(t), acc[1]),
                            arith::AddFOp::create(e.b, acc[2], sc).getResult()};
                  });
              // Argmax over the block: value, then index (newest wins ties).
              Value best = local[0], bestIdx = local[1];
              for (int32_t offset = kWarp / 2; offset > 0; offset /= 2) {
                auto os = gpu::ShuffleOp::create(e.b, best, offset, kWarp,
                                                 gpu::ShuffleMode::XOR);
                auto oi = gpu::ShuffleOp::create(e.b, bestIdx, offset, kWarp,
                                                 gpu::ShuffleMode::XOR);
                Value s2 = os.getShuffleResult(), i2 = oi.getShuffleResult();
                Value takes = e.orI(
                    e.fcmp(arith::CmpFPredicate::OGT, s2, best),
                    e.andI(e.fcmp(arith::CmpFPredicate::OEQ, s2, best),
                           e.cmp(arith::CmpIPredicate::sgt, i2, bestIdx)));
                best = e.select(takes, s2, best);
                bestIdx = e.select(takes, i2, bestIdx);
              }
              Value wid = e.warp();
              e.ifThen(e.cmp(arith::CmpIPredicate::eq, e.lane(), e.idx(0)),
                       [&](G &e) {
                         e.store(best, shmF, {wid});
                         e.store(bestIdx, shmI, {wid});
                       });
              e.barrier();
              auto piv = e.forLoop(
                  e.idx(0), e.idx(kMergeWarps), ValueRange{ninf, e.i32(-1)},
                  [&](G &e, Value w, ValueRange acc) -> SmallVector<Value> {
                    Value s2 = e.load(shmF, {w}), i2 = e.load(shmI, {w});
                    Value takes = e.orI(
                        e.fcmp(arith::CmpFPredicate::OGT, s2, acc[0]),
                        e.andI(e.fcmp(arith::CmpFPredicate::OEQ, s2, acc[0]),
                               e.cmp(arith::CmpIPredicate::sgt, i2, acc[1])));
                    return {e.select(takes, s2, acc[0]),
                            e.select(takes, i2, acc[1])};
                  });
              e.barrier();
              // No comparable score (all NaN): the CPU lowering keeps `a`.
              Value found = e.cmp(arith::CmpIPredicate::sge, piv[1], e.i32(0));
              Value p = e.select(found, e.toIndex(piv[1]), a);
              Value scoreSum = e.blockSum(local[2], shmF, kMergeWarps);
              e.ifThen(isLead, [&](G &e) {
                e.store(e.toI32(p), outP, {head, slot});
                e.store(e.toI32(n), outC, {head, slot});
                e.store(scoreSum, outS, {head, slot});
              });
              Value single = e.cmp(arith::CmpIPredicate::eq, n, e.idx(1));
              e.ifThenElse(
                  single,
                  [&](G &e) {
                    e.blockFor(e.idx(0), d, [&](G &e, Value k) {
                      e.store(e.load(keys, {head, p, k}), outK,
                              {head, slot, k});
                    });
                    e.blockFor(e.idx(0), dv, [&](G &e, Value k) {
                      e.store(e.load(values, {head, p, k}), outV,
                              {head, slot, k});
                    });
                  },
                  [&](G &e) {
                    // Squared distances to the pivot: one warp per member,
                    // lanes over D.
                    Value lane = e.lane();
                    Value isLane0 =
                        e.cmp(arith::CmpIPredicate::eq, lane, e.idx(0));
                    Value warpTotal = e.forLoop(
                        e.add(a, e.warp()), b, e.idx(kMergeWarps),
                        ValueRange{zero},
                        [&](G &e, Value t,
                            ValueRange acc) -> SmallVector<Value> {
                          Value part = e.forLoop(
                              lane, d, e.idx(kWarp), ValueRange{zero},
                              [&](G &e, Value k,
                                  ValueRange s) -> SmallVector<Value> {
                                Value x = e.fsub(
                                    e.convert(e.load(keys, {head, p, k}), f32),
                                    e.convert(e.load(keys, {head, t, k}), f32));
                                return {e.fadd(s[0], e.fmul(x, x))};
                              })[0];
                          Value dist = e.warpSum(part);
                          e.ifThen(isLane0, [&](G &e) {
                            e.store(dist, weight, {head, t});
                          });
                          return {e.fadd(acc[0], dist)};
                        })[0];
                    // Every lane holds its warp's total: count lane 0 only.
                    Value total = e.blockSum(e.select(isLane0, warpTotal, zero),
                                             shmF, kMergeWarps);
                    Value nF = e.siToF(n, f32);
                    Value two = e.f32(2.0);
                    Value sigma2;
                    switch (sigma.getKind()) {
                    case SigmaKind::automatic:
                      sigma2 = e.fdiv(total, e.fsub(nF, e.f32(1.0)));
                      break;
                    case SigmaKind::fixed: {
                      Value sv = e.f32(sigma.getValue().convertToDouble());
                      sigma2 = e.fmul(sv, sv);
                      break;
                    }
                    case SigmaKind::paper: {
                      Value s02 = e.fdiv(total, nF);
                      Value s0zero =
                          e.fcmp(arith::CmpFPredicate::OEQ, s02, zero);
                      Value safe = e.select(s0zero, e.f32(1.0), s02);
                      Value part = e.forLoop(
                          e.add(a, e.tid), b, e.ntid, ValueRange{zero},
                          [&](G &e, Value t,
                              ValueRange acc) -> SmallVector<Value> {
                            Value dist = e.load(weight, {head, t});
                            Value g =
                                e.exp(e.fdiv(e.fneg(dist), e.fmul(two, safe)));
                            return {e.fadd(acc[0], g)};
                          })[0];
                      Value g0 = e.blockSum(part, shmF, kMergeWarps);
                      Value sg = e.fdiv(g0, e.fmul(e.sqrt(two), nF));
                      sigma2 = e.select(s0zero, zero, e.fmul(sg, sg));
                      break;
                    }
                    }
                    Value equalW =
                        e.fcmp(arith::CmpFPredicate::OEQ, sigma2, zero);
                    Value safe2 = e.select(equalW, e.f32(1.0), sigma2);
                    Value gpart = e.forLoop(
                        e.add(a, e.tid), b, e.ntid, ValueRange{zero},
                        [&](G &e, Value t,
                            ValueRange acc) -> SmallVector<Value> {
                          Value dist = e.load(weight, {head, t});
                          Value g =
                              e.exp(e.fdiv(e.fneg(dist), e.fmul(two, safe2)));
                          g = e.select(equalW, e.f32(1.0), g);
                          e.store(g, weight, {head, t});
                          return {e.fadd(acc[0], g)};
                        })[0];
                    // The block sum's barrier also publishes the weights.
                    Value gsum = e.blockSum(gpart, shmF, kMergeWarps);
                    Value inv = e.fdiv(e.f32(1.0), gsum);
                    // Weighted sums: threads over D, members in order, f32.
                    auto accumulate = [&](G &e, Value src, Value width,
                                          Value out, Type storage) {
                      e.blockFor(e.idx(0), width, [&](G &e, Value k) {
                        Value sum = e.forLoop(
                            a, b, ValueRange{zero},
                            [&](G &e, Value t,
                                ValueRange acc) -> SmallVector<Value> {
                              Value w = e.load(weight, {head, t});
                              Value x =
                                  e.convert(e.load(src, {head, t, k}), f32);
                              return {e.fadd(acc[0], e.fmul(w, x))};
                            })[0];
                        e.store(e.convert(e.fmul(sum, inv), storage), out,
                                {head, slot, k});
                      });
                    };
                    accumulate(e, keys, d, outK, kt);
                    accumulate(e, values, dv, outV, vt);
                  });
            },
            [&](G &e) {
              zeroRow(e, outK, d, kt);
              zeroRow(e, outV, dv, vt);
              e.ifThen(isLead, [&](G &e) {
                e.store(e.i32(0), outP, {head, slot});
                e.store(e.i32(0), outC, {head, slot});
                e.store(e.f32(0.0), outS, {head, slot});
              });
            });
      });
  rewriter.replaceOp(op, {e.toTensor(outK, op.getMergedKeys().getType()),
                          e.toTensor(outV, op.getMergedValues().getType()),
                          e.toTensor(outP, op.getPositions().getType()),
                          e.toTensor(outC, op.getCounts().getType()),
                          e.toTensor(outS, op.getMergedScores().getType())});
  return true;
}

//===----------------------------------------------------------------------===//
// attention (split-K flash decoding)
//===----------------------------------------------------------------------===//

bool lowerAttention(AttentionOp op, RewriterBase &rewriter) {
  // Masked attention (raised frontend IR) and the scores variant run on the
  // host through convert-kvcache-to-loops.
  if (op.getScoresInit() || op.getMask())
    return false;
  auto qt = cast<RankedTensorType>(op.getQuery().getType());
  auto kt = cast<RankedTensorType>(op.getKeys().getType());
  auto vtt = cast<RankedTensorType>(op.getValues().getType());
  if (qt.getElementType().isF64() || kt.getElementType().isF64() ||
      vtt.getElementType().isF64() || elementType(op.getInit()).isF64())
    return false;
  if (qt.isDynamicDim(2) || vtt.isDynamicDim(2))
    return false;
  int64_t dStatic = qt.getDimSize(2), dvStatic = vtt.getDimSize(2);
  if (dStatic < 1 || dvStatic < 1 || dStatic > kAttentionMaxDim ||
      dvStatic > kAttentionMaxDim)
    return false;
  // GQA group in one block: at most 32 warps.
  if (!qt.isDynamicDim(0) && !kt.isDynamicDim(0) &&
      qt.getDimSize(0) / std::max<int64_t>(kt.getDimSize(0), 1) > 32)
    return false;

  G e(rewriter, op.getLoc());
  Value q = e.toBuffer(op.getQuery());
  Value k = e.toBuffer(op.getKeys());
  Value v = e.toBuffer(op.getValues());
  Value lengths = op.getLengths() ? e.toBuffer(op.getLengths()) : Value();
  Value counts = op.getCounts() ? e.toBuffer(op.getCounts()) : Value();
  bool countBias = op.getCountBias();
  bool causal = op.getCausal();
  Type ot = elementType(op.getInit());
  Type kst = kt.getElementType(), vst = vtt.getElementType();
  Type f32 = e.b.getF32Type();
  Value hq = e.dim(q, 0), lq = e.dim(q, 1);
  Value hkv = e.dim(k, 0), s = e.dim(k, 1);
  Value group = e.divu(hq, hkv);
  Value out = e.allocLike(op.getResult().getType(), {hq, lq, e.idx(dvStatic)});
  double scaleValue = op.getScale() ? op.getScale()->convertToDouble()
                                    : 1.0 / std::sqrt(double(dStatic));

  // Chunk size: enough blocks to fill the device, a multiple of the tile.
  int64_t bytes = std::max<int64_t>(kst.getIntOrFloatBitWidth(),
                                    vst.getIntOrFloatBitWidth()) /
                  8;
  int64_t tile = std::clamp<int64_t>(32768 / ((dStatic + dvStatic) * bytes), 1,
                                     kAttentionTile);
  Value tileV = e.idx(tile);
  Value rows = e.maxS(e.mul(hkv, lq), e.idx(1));
  Value perChunk = e.ceilDiv(
      s, e.maxS(e.divu(e.idx(kAttentionTargetBlocks), rows), e.idx(1)));
  Value chunk = e.mul(e.maxS(e.ceilDiv(perChunk, tileV), e.idx(1)), tileV);
  Value chunks = e.maxS(e.ceilDiv(s, chunk), e.idx(1));
  Value pm = e.alloc(
      {ShapedType::kDynamic, ShapedType::kDynamic, ShapedType::kDynamic}, f32,
      {hq, lq, chunks});
  Value pz = e.alloc(
      {ShapedType::kDynamic, ShapedType::kDynamic, ShapedType::kDynamic}, f32,
      {hq, lq, chunks});
  Value pacc = e.alloc({ShapedType::kDynamic, ShapedType::kDynamic,
                        ShapedType::kDynamic, dvStatic},
                       f32, {hq, lq, chunks});
  int64_t jq = (dStatic + kWarp - 1) / kWarp;
  int64_t jv = (dvStatic + kWarp - 1) / kWarp;

  auto visible = [&](G &e, Value h, Value i) {
    Value n = s;
    if (lengths)
      n = e.maxS(e.minS(e.toIndex(e.load(lengths, {h})), s), e.idx(0));
    // Causal: the queries are the last Lq of the valid slots.
    if (causal)
      n = e.minS(n, e.add(i, e.add(e.sub(n, lq), e.idx(1))));
    return n;
  };
  // Column `jj * 32 + lane` of a width-`width` row, clamped in range, and
  // whether it is a real column.
  auto column = [&](G &e, int64_t jj,
                    int64_t width) -> std::pair<Value, Value> {
    Value col = e.add(e.lane(), e.idx(jj * kWarp));
    if ((jj + 1) * kWarp <= width)
      return {col, Value()};
    Value inRange = e.cmp(arith::CmpIPredicate::slt, col, e.idx(width));
    return {e.minS(col, e.idx(width - 1)), inRange};
  };

  e.launch(
      "kvmerge_attention_split", chunks, hkv, lq, e.mul(group, e.idx(kWarp)),
      {e.workgroupType(tile * dStatic, kst),
       e.workgroupType(tile * dvStatic, vst)},
      [&](G &e, ValueRange bid, ValueRange wg) {
        Value c = bid[0], h = bid[1], i = bid[2];
        Value sK = wg[0], sV = wg[1];
        Value j = e.add(e.mul(h, group), e.warp());
        Value n = visible(e, h, i);
        Value chunkStart = e.mul(c, chunk);
        Value chunkEnd = e.minS(e.add(chunkStart, chunk), n);
        // Query row in registers, pre-scaled.
        SmallVector<Value> qr;
        Value scale = e.f32(scaleValue);
        for (int64_t jj = 0; jj < jq; ++jj) {
          auto [col, inRange] = column(e, jj, dStatic);
          Value x = e.fmul(e.convert(e.load(q, {j, i, col}), f32), scale);
          qr.push_back(inRange ? e.select(inRange, x, e.f32(0.0)) : x);
        }
        SmallVector<Value> init = {
            e.f32(-std::numeric_limits<double>::infinity()), e.f32(0.0)};
        for (int64_t jj = 0; jj < jv; ++jj)
          init.push_back(e.f32(0.0));
        auto state = e.forLoop(
            chunkStart, chunkEnd, tileV, init,
            [&](G &e, Value ts, ValueRange st) -> SmallVector<Value> {
              // Stage the tile's K and V rows once for the whole GQA group.
              Value last = e.sub(chunkEnd, e.idx(1));
              auto stage = [&](Value src, Value dst, int64_t width) {
                Value w = e.idx(width);
                e.blockFor(e.idx(0), e.idx(tile * width), [&](G &e, Value x) {
                  Value row = e.divu(x, w), col = e.remu(x, w);
                  Value t = e.minS(e.add(ts, row), last);
                  e.store(e.load(src, {h, t, col}), dst, {x});
                });
              };
              stage(k, sK, dStatic);
              stage(v, sV, dvStatic);
              e.barrier();
              Value nrows = e.minS(tileV, e.sub(chunkEnd, ts));
              auto next = e.forLoop(
                  e.idx(0), nrows, st,
                  [&](G &e, Value r, ValueRange st) -> SmallVector<Value> {
                    Value part = e.f32(0.0);
                    for (int64_t jj = 0; jj < jq; ++jj) {
                      auto [col, inRange] = column(e, jj, dStatic);
                      Value kx = e.convert(
                          e.load(sK, {e.add(e.mul(r, e.idx(dStatic)), col)}),
                          f32);
                      Value prod = e.fmul(qr[jj], kx);
                      if (inRange)
                        prod = e.select(inRange, prod, e.f32(0.0));
                      part = e.fadd(part, prod);
                    }
                    Value logit = e.warpSum(part);
                    if (countBias) {
                      Value cnt = e.load(counts, {h, e.add(ts, r)});
                      logit = e.fadd(
                          logit, e.log(arith::SIToFPOp::create(e.b, f32, cnt)));
                    }
                    Value m = e.fmax(st[0], logit);
                    Value corr = e.exp(e.fsub(st[0], m));
                    Value p = e.exp(e.fsub(logit, m));
                    SmallVector<Value> res = {m,
                                              e.fadd(e.fmul(st[1], corr), p)};
                    for (int64_t jj = 0; jj < jv; ++jj) {
                      auto [col, inRange] = column(e, jj, dvStatic);
                      Value vx = e.convert(
                          e.load(sV, {e.add(e.mul(r, e.idx(dvStatic)), col)}),
                          f32);
                      res.push_back(
                          e.fadd(e.fmul(st[2 + jj], corr), e.fmul(p, vx)));
                    }
                    return res;
                  });
              e.barrier();
              return next;
            });
        e.ifThen(e.cmp(arith::CmpIPredicate::eq, e.lane(), e.idx(0)),
                 [&](G &e) {
                   e.store(state[0], pm, {j, i, c});
                   e.store(state[1], pz, {j, i, c});
                 });
        for (int64_t jj = 0; jj < jv; ++jj) {
          auto [col, inRange] = column(e, jj, dvStatic);
          auto write = [&, col = col](G &e) {
            e.store(state[2 + jj], pacc, {j, i, c, col});
          };
          if (inRange)
            e.ifThen(inRange, write);
          else
            write(e);
        }
      });

  e.launch(
      "kvmerge_attention_combine", hq, lq, e.idx(1), e.idx(kWarp), {},
      [&](G &e, ValueRange bid, ValueRange) {
        Value j = bid[0], i = bid[1];
        Value ninf = e.f32(-std::numeric_limits<double>::infinity());
        Value zero = e.f32(0.0);
        Value mLocal =
            e.forLoop(e.lane(), chunks, e.idx(kWarp), ValueRange{ninf},
                      [&](G &e, Value c, ValueRange acc) -> SmallVector<Value> {
                        return {e.fmax(acc[0], e.load(pm, {j, i, c}))};
                      })[0];
        Value mAll = e.warpMax(mLocal);
        auto weightOf = [&](G &e, Value c) {
          Value mc = e.load(pm, {j, i, c});
          Value empty = e.fcmp(arith::CmpFPredicate::OEQ, mc, ninf);
          Value w = e.exp(e.fsub(mc, mAll));
          return e.select(empty, zero, w);
        };
        Value zLocal = e.forLoop(
            e.lane(), chunks, e.idx(kWarp), ValueRange{zero},
            [&](G &e, Value c, ValueRange acc) -> SmallVector<Value> {
              Value w = weightOf(e, c);
              return {e.fadd(acc[0], e.fmul(w, e.load(pz, {j, i, c})))};
            })[0];
        Value zAll = e.warpSum(zLocal);
        Value isEmpty = e.fcmp(arith::CmpFPredicate::OEQ, zAll, zero);
        Value inv = e.fdiv(e.f32(1.0), e.select(isEmpty, e.f32(1.0), zAll));
        SmallVector<Value> init(jv, zero);
        auto acc = e.forLoop(
            e.idx(0), chunks, init,
            [&](G &e, Value c, ValueRange acc) -> SmallVector<Value> {
              Value w = weightOf(e, c);
              SmallVector<Value> res;
              for (int64_t jj = 0; jj < jv; ++jj) {
                auto [col, inRange] = column(e, jj, dvStatic);
                res.push_back(
                    e.fadd(acc[jj], e.fmul(w, e.load(pacc, {j, i, c, col}))));
              }
              return res;
            });
        for (int64_t jj = 0; jj < jv; ++jj) {
          auto [col, inRange] = column(e, jj, dvStatic);
          auto write = [&, col = col](G &e) {
            e.store(e.convert(e.fmul(acc[jj], inv), ot), out, {j, i, col});
          };
          if (inRange)
            e.ifThen(inRange, write);
          else
            write(e);
        }
      });
  rewriter.replaceOp(op, e.toTensor(out, op.getResult().getType()));
  return true;
}

struct ConvertKVCacheToGPUPass
    : kvmerge::impl::ConvertKVCacheToGPUBase<ConvertKVCacheToGPUPass> {
  void runOnOperation() override {
    auto lower = [](Operation *op, RewriterBase &rewriter) {
      // Ops without a GPU mapping stay for convert-kvcache-to-loops; whether
      // an op was mapped is not needed here.
      (void)llvm::TypeSwitch<Operation *, bool>(op)
          .Case([&](SimilarityOp o) { return lowerSimilarity(o, rewriter); })
          .Case([&](MergeSetsOp o) { return lowerMergeSets(o, rewriter); })
          .Case([&](SelectSetsOp o) { return lowerSelectSets(o, rewriter); })
          .Case([&](MergeOp o) { return lowerMerge(o, rewriter); })
          .Case([&](AttentionOp o) { return lowerAttention(o, rewriter); })
          .Default([](Operation *) { return false; });
    };
    if (failed(lowerKVCacheOps(getOperation(), lower)))
      signalPassFailure();
  }
};

//===----------------------------------------------------------------------===//
// kvmerge-gpu-hide-launches / kvmerge-gpu-restore-launches
//===----------------------------------------------------------------------===//

constexpr StringLiteral kKernelAttr = "kvmerge.kernel";

struct HideLaunchesPass
    : kvmerge::impl::KVMergeGPUHideLaunchesBase<HideLaunchesPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<gpu::LaunchFuncOp> launches;
    module.walk([&](gpu::LaunchFuncOp op) { launches.push_back(op); });
    unsigned counter = 0;
    SymbolTable symbols(module);
    for (gpu::LaunchFuncOp op : launches) {
      if (op.getAsyncToken() || !op.getAsyncDependencies().empty() ||
          op.hasClusterSize() || op.getDynamicSharedMemorySize() ||
          op.getAsyncObject()) {
        op.emitOpError("kvmerge-gpu-hide-launches: only synchronous launches "
                       "without clusters or dynamic shared memory");
        return signalPassFailure();
      }
      SmallVector<Value> operands = {op.getGridSizeX(),  op.getGridSizeY(),
                                     op.getGridSizeZ(),  op.getBlockSizeX(),
                                     op.getBlockSizeY(), op.getBlockSizeZ()};
      llvm::append_range(operands, op.getKernelOperands());
      OpBuilder builder(module.getBodyRegion());
      builder.setInsertionPointToStart(module.getBody());
      std::string name;
      do
        name = ("__kvmerge_gpu_launch_" + Twine(counter++)).str();
      while (symbols.lookup(name));
      auto decl = func::FuncOp::create(
          builder, op.getLoc(), name,
          builder.getFunctionType(ValueRange(operands).getTypes(), {}));
      decl.setPrivate();
      symbols.insert(decl);
      builder.setInsertionPoint(op);
      auto call = func::CallOp::create(builder, op.getLoc(), decl, operands);
      call->setAttr(kKernelAttr, op.getKernel());
      op.erase();
    }
  }
};

struct RestoreLaunchesPass
    : kvmerge::impl::KVMergeGPURestoreLaunchesBase<RestoreLaunchesPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<func::CallOp> calls;
    module.walk([&](func::CallOp call) {
      if (call->hasAttr(kKernelAttr))
        calls.push_back(call);
    });
    llvm::SetVector<StringRef> decls;
    for (func::CallOp call : calls) {
      auto kernel = call->getAttrOfType<SymbolRefAttr>(kKernelAttr);
      auto func =
          SymbolTable::lookupNearestSymbolFrom<gpu::GPUFuncOp>(call, kernel);
      if (!func || call.getNumOperands() < 6) {
        call.emitOpError("kvmerge-gpu-restore-launches: unknown kernel ")
            << kernel;
        return signalPassFailure();
      }
      OpBuilder builder(call);
      ValueRange ops = call.getOperands();
      gpu::LaunchFuncOp::create(
          builder, call.getLoc(), func, gpu::KernelDim3{ops[0], ops[1], ops[2]},
          gpu::KernelDim3{ops[3], ops[4], ops[5]},
          /*dynamicSharedMemorySize=*/Value(), ops.drop_front(6));
      decls.insert(call.getCallee());
      call.erase();
    }
    for (StringRef name : decls)
      if (auto decl = module.lookupSymbol<func::FuncOp>(name))
        if (decl.symbolKnownUseEmpty(module))
          decl.erase();
  }
};

//===----------------------------------------------------------------------===//
// kvmerge-gpu-stage-buffers
//===----------------------------------------------------------------------===//

/// Ops that may sit between two launches of one staging group: no memory
/// effects (index arithmetic, dims) or a host allocation.
bool canJoinGroup(Operation *op) {
  if (isa<memref::AllocOp>(op))
    return true;
  return op->getNumRegions() == 0 && isMemoryEffectFree(op);
}

struct StageBuffersPass
    : kvmerge::impl::KVMergeGPUStageBuffersBase<StageBuffersPass> {
  void runOnOperation() override {
    SmallVector<Block *> blocks;
    getOperation()->walk([&](gpu::LaunchFuncOp launch) {
      Block *block = launch->getBlock();
      if (!llvm::is_contained(blocks, block))
        blocks.push_back(block);
    });
    for (Block *block : blocks)
      if (failed(stageBlock(*block)))
        return signalPassFailure();
  }

  LogicalResult stageBlock(Block &block) {
    // Maximal runs of launches (with only joinable ops between them).
    SmallVector<SmallVector<Operation *>> groups;
    SmallVector<Operation *> current;
    auto flush = [&] {
      while (!current.empty() && !isa<gpu::LaunchFuncOp>(current.back()))
        current.pop_back();
      if (!current.empty())
        groups.push_back(current);
      current.clear();
    };
    for (Operation &op : block) {
      if (isa<gpu::LaunchFuncOp>(op) ||
          (!current.empty() && canJoinGroup(&op))) {
        current.push_back(&op);
        continue;
      }
      flush();
    }
    flush();
    for (auto &group : groups)
      if (failed(stageGroup(group)))
        return failure();
    return success();
  }

  /// Kernel argument indices the kernel may write.
  static llvm::SmallDenseSet<unsigned> writtenArguments(gpu::LaunchFuncOp op) {
    llvm::SmallDenseSet<unsigned> written;
    auto func = SymbolTable::lookupNearestSymbolFrom<gpu::GPUFuncOp>(
        op, op.getKernel());
    if (!func) {
      // Unknown body: assume every memref is written.
      for (auto [i, v] : llvm::enumerate(op.getKernelOperands()))
        written.insert(i);
      return written;
    }
    func.walk([&](Operation *inner) {
      auto effects = dyn_cast<MemoryEffectOpInterface>(inner);
      if (!effects)
        return;
      SmallVector<MemoryEffects::EffectInstance> list;
      effects.getEffects(list);
      for (auto &effect : list) {
        if (!isa<MemoryEffects::Write>(effect.getEffect()))
          continue;
        if (auto arg = dyn_cast_or_null<BlockArgument>(effect.getValue()))
          if (arg.getOwner() == &func.getBody().front())
            written.insert(arg.getArgNumber());
      }
    });
    return written;
  }

  LogicalResult stageGroup(ArrayRef<Operation *> group) {
    SmallVector<gpu::LaunchFuncOp> launches;
    for (Operation *op : group)
      if (auto launch = dyn_cast<gpu::LaunchFuncOp>(op))
        launches.push_back(launch);
    Operation *firstLaunch = launches.front();
    // Hoist the group's other ops above the first launch (launches have no
    // results, so nothing in the group depends on them).
    llvm::SmallPtrSet<Operation *, 8> hoisted;
    for (Operation *op : group)
      if (!isa<gpu::LaunchFuncOp>(op)) {
        if (firstLaunch->isBeforeInBlock(op))
          op->moveBefore(firstLaunch);
        if (isa<memref::AllocOp>(op))
          hoisted.insert(op);
      }

    llvm::SetVector<Value> captured;
    llvm::SmallPtrSet<Value, 8> written;
    for (gpu::LaunchFuncOp launch : launches) {
      llvm::SmallDenseSet<unsigned> writes = writtenArguments(launch);
      for (auto [i, value] : llvm::enumerate(launch.getKernelOperands()))
        if (isa<MemRefType>(value.getType())) {
          captured.insert(value);
          if (writes.contains(i))
            written.insert(value);
        }
    }
    llvm::SmallPtrSet<Operation *, 8> launchSet;
    for (gpu::LaunchFuncOp launch : launches)
      launchSet.insert(launch);

    OpBuilder before(firstLaunch);
    OpBuilder after(launches.back()->getBlock(),
                    std::next(Block::iterator(launches.back())));
    Location loc = firstLaunch->getLoc();
    SmallVector<std::pair<Value, Value>> copyBack;
    SmallVector<Value> deviceBuffers;
    for (Value host : captured) {
      auto type = cast<MemRefType>(host.getType());
      if (!type.getLayout().isIdentity() || type.getMemorySpace())
        return firstLaunch->emitError()
               << "kvmerge-gpu-stage-buffers: cannot stage a buffer with a "
                  "non-identity layout or a memory space: "
               << type;
      // A device-only temporary: allocated in this function and used by
      // nothing but these launches (and its dealloc). Everything else
      // (function arguments, buffers the host reads or wrote) has host
      // contents that matter.
      Operation *def = host.getDefiningOp();
      bool hostUse = !def || !isa<memref::AllocOp>(def) ||
                     llvm::any_of(host.getUsers(), [&](Operation *user) {
                       return !launchSet.contains(user) &&
                              !isa<memref::DeallocOp, memref::DimOp>(user);
                     });
      SmallVector<Value> dyn;
      for (int64_t i = 0; i < type.getRank(); ++i)
        if (type.isDynamicDim(i))
          dyn.push_back(memref::DimOp::create(before, loc, host, i));
      auto deviceAlloc = gpu::AllocOp::create(
          before, loc, type, /*asyncToken=*/Type(), ValueRange{}, dyn,
          ValueRange{}, /*hostShared=*/false);
      Value device = deviceAlloc.getMemref();
      bool fresh = (def && hoisted.contains(def)) || !hostUse;
      if (!fresh)
        gpu::MemcpyOp::create(before, loc, TypeRange{}, ValueRange{}, device,
                              host);
      host.replaceUsesWithIf(device, [&](OpOperand &use) {
        return launchSet.contains(use.getOwner());
      });
      if (written.contains(host) && hostUse)
        copyBack.push_back({host, device});
      deviceBuffers.push_back(device);
    }
    for (auto [host, device] : copyBack)
      gpu::MemcpyOp::create(after, loc, TypeRange{}, ValueRange{}, host,
                            device);
    for (Value device : deviceBuffers)
      gpu::DeallocOp::create(after, loc, TypeRange{}, ValueRange{}, device);
    return success();
  }
};

} // namespace
