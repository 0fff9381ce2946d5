//===- LoopEmitter.h - Shared emitter for the kvcache lowerings -*- C++ -*-===//
//
// The builder layer and the shared algorithm pieces of
// convert-kvcache-to-loops and convert-kvcache-to-gpu. `LoopEmitterBase` is a
// CRTP base over ImplicitLocOpBuilder: scalar, memref and bufferization
// helpers plus scf control flow whose bodies get a `Derived &` made by
// `Derived::nested(OpBuilder &, Location)`, so derived emitters (the GPU one
// carries thread ids) are passed into nested regions. Private to
// lib/Conversion.
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_LIB_CONVERSION_COMMON_LOOPEMITTER_H
#define KVMERGE_LIB_CONVERSION_COMMON_LOOPEMITTER_H

#include "kvmerge/Dialect/KVCache/IR/KVCache.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "mlir/IR/PatternMatch.h"

#include <cstdint>
#include <limits>

namespace kvmerge::conversion {

//===----------------------------------------------------------------------===//
// LoopEmitterBase: a thin layer over ImplicitLocOpBuilder for loop code.
//===----------------------------------------------------------------------===//

template <typename Derived> struct LoopEmitterBase {
  using Value = mlir::Value;
  using ValueRange = mlir::ValueRange;
  using Type = mlir::Type;
  using Values = llvm::SmallVector<Value>;

  mlir::ImplicitLocOpBuilder b;
  mlir::arith::FastMathFlagsAttr fm;

  LoopEmitterBase(mlir::OpBuilder &builder, mlir::Location loc)
      : b(loc, builder),
        fm(mlir::arith::FastMathFlagsAttr::get(
            builder.getContext(), mlir::arith::FastMathFlags::reassoc |
                                      mlir::arith::FastMathFlags::contract)) {}

  // Constants.
  Value idx(int64_t v) { return mlir::arith::ConstantIndexOp::create(b, v); }
  Value i32(int64_t v) { return mlir::arith::ConstantIntOp::create(b, v, 32); }
  Value flt(double v, Type t) {
    return mlir::arith::ConstantOp::create(b, b.getFloatAttr(t, v));
  }
  Value f32(double v) { return flt(v, b.getF32Type()); }

  // Index/integer arithmetic.
  Value add(Value x, Value y) { return mlir::arith::AddIOp::create(b, x, y); }
  Value sub(Value x, Value y) { return mlir::arith::SubIOp::create(b, x, y); }
  Value mul(Value x, Value y) { return mlir::arith::MulIOp::create(b, x, y); }
  Value divu(Value x, Value y) { return mlir::arith::DivUIOp::create(b, x, y); }
  Value remu(Value x, Value y) { return mlir::arith::RemUIOp::create(b, x, y); }
  Value ceilDiv(Value x, Value y) { return divu(add(x, sub(y, idx(1))), y); }
  Value cmp(mlir::arith::CmpIPredicate p, Value x, Value y) {
    return mlir::arith::CmpIOp::create(b, p, x, y);
  }
  Value select(Value c, Value x, Value y) {
    return mlir::arith::SelectOp::create(b, c, x, y);
  }
  Value andI(Value x, Value y) { return mlir::arith::AndIOp::create(b, x, y); }
  Value orI(Value x, Value y) { return mlir::arith::OrIOp::create(b, x, y); }
  Value minS(Value x, Value y) { return mlir::arith::MinSIOp::create(b, x, y); }
  Value maxS(Value x, Value y) { return mlir::arith::MaxSIOp::create(b, x, y); }
  Value toIndex(Value v) {
    return mlir::arith::IndexCastOp::create(b, b.getIndexType(), v);
  }
  Value toI32(Value v) {
    return mlir::arith::IndexCastOp::create(b, b.getI32Type(), v);
  }
  Value ext32(Value i1) {
    return mlir::arith::ExtUIOp::create(b, b.getI32Type(), i1);
  }

  // Floating point (reductions may be reassociated).
  Value fadd(Value x, Value y) {
    return mlir::arith::AddFOp::create(b, x, y, fm);
  }
  Value fsub(Value x, Value y) {
    return mlir::arith::SubFOp::create(b, x, y, fm);
  }
  Value fmul(Value x, Value y) {
    return mlir::arith::MulFOp::create(b, x, y, fm);
  }
  Value fdiv(Value x, Value y) { return mlir::arith::DivFOp::create(b, x, y); }
  // IEEE operations exactly as written: no reassociation, no contraction
  // into a fused multiply-add (results every path must reproduce bit for
  // bit, see emitCosine).
  Value faddExact(Value x, Value y) {
    return mlir::arith::AddFOp::create(b, x, y);
  }
  Value fmulExact(Value x, Value y) {
    return mlir::arith::MulFOp::create(b, x, y);
  }
  Value fneg(Value x) { return mlir::arith::NegFOp::create(b, x); }
  Value fcmp(mlir::arith::CmpFPredicate p, Value x, Value y) {
    return mlir::arith::CmpFOp::create(b, p, x, y);
  }
  Value fmax(Value x, Value y) {
    return mlir::arith::MaximumFOp::create(b, x, y);
  }
  Value exp(Value x) { return mlir::math::ExpOp::create(b, x); }
  Value sqrt(Value x) { return mlir::math::SqrtOp::create(b, x); }
  Value log(Value x) { return mlir::math::LogOp::create(b, x); }
  /// Converts a float between storage and compute types.
  Value convert(Value v, Type to) {
    Type from = v.getType();
    if (from == to)
      return v;
    if (from.getIntOrFloatBitWidth() < to.getIntOrFloatBitWidth())
      return mlir::arith::ExtFOp::create(b, to, v);
    return mlir::arith::TruncFOp::create(b, to, v);
  }
  Value siToF(Value v, Type t) {
    return mlir::arith::SIToFPOp::create(
        b, t, mlir::arith::IndexCastOp::create(b, b.getI64Type(), v));
  }

  // Memory.
  Value load(Value mem, ValueRange ivs) {
    return mlir::memref::LoadOp::create(b, mem, ivs);
  }
  void store(Value v, Value mem, ValueRange ivs) {
    mlir::memref::StoreOp::create(b, v, mem, ivs);
  }
  /// Size `i` of a memref: a constant when it is static.
  Value dim(Value mem, int64_t i) {
    auto type = llvm::cast<mlir::MemRefType>(mem.getType());
    if (!type.isDynamicDim(i))
      return idx(type.getDimSize(i));
    return mlir::memref::DimOp::create(b, mem, i);
  }
  /// A fresh buffer of `shape` (dynamic entries from `dynSizes`, in order).
  Value alloc(llvm::ArrayRef<int64_t> shape, Type elt, ValueRange dynSizes) {
    return mlir::memref::AllocOp::create(b, mlir::MemRefType::get(shape, elt),
                                         dynSizes);
  }
  Value allocLike(Type tensorType, ValueRange sizes) {
    auto rt = llvm::cast<mlir::RankedTensorType>(tensorType);
    Values dyn;
    for (int64_t i = 0; i < rt.getRank(); ++i)
      if (rt.isDynamicDim(i))
        dyn.push_back(sizes[i]);
    return alloc(rt.getShape(), rt.getElementType(), dyn);
  }

  // Bridges between tensors and buffers.
  Value toBuffer(Value tensor) {
    auto rt = llvm::cast<mlir::RankedTensorType>(tensor.getType());
    return mlir::bufferization::ToBufferOp::create(
        b, mlir::MemRefType::get(rt.getShape(), rt.getElementType()), tensor,
        /*read_only=*/true);
  }
  Value toTensor(Value buffer, Type tensorType) {
    return mlir::bufferization::ToTensorOp::create(b, tensorType, buffer,
                                                   /*restrict=*/true,
                                                   /*writable=*/true);
  }

  // Control flow. Bodies get an emitter of the derived type at the start of
  // the new region.
  using Pred = llvm::function_ref<Value(Derived &, Value)>;
  using LoopBody = llvm::function_ref<void(Derived &, Value)>;
  using IterBody = llvm::function_ref<Values(Derived &, Value, ValueRange)>;
  using ParBody = llvm::function_ref<void(Derived &, ValueRange)>;
  using Body = llvm::function_ref<void(Derived &)>;
  using ValuesBody = llvm::function_ref<Values(Derived &)>;
  /// An i32 count of a predicate over [lb, ub), e.g. `count` below.
  using CountFn = llvm::function_ref<Value(Derived &, Value, Value, Pred)>;

  void forLoop(Value lb, Value ub, Value step, LoopBody body) {
    mlir::scf::ForOp::create(
        b, lb, ub, step, ValueRange{},
        [&](mlir::OpBuilder &nb, mlir::Location l, Value iv, ValueRange) {
          Derived e = derived().nested(nb, l);
          body(e, iv);
          mlir::scf::YieldOp::create(e.b);
        });
  }
  void forLoop(Value lb, Value ub, LoopBody body) {
    forLoop(lb, ub, idx(1), body);
  }
  Values forLoop(Value lb, Value ub, Value step, ValueRange init,
                 IterBody body) {
    auto loop = mlir::scf::ForOp::create(
        b, lb, ub, step, init,
        [&](mlir::OpBuilder &nb, mlir::Location l, Value iv, ValueRange args) {
          Derived e = derived().nested(nb, l);
          mlir::scf::YieldOp::create(e.b, body(e, iv, args));
        });
    return Values(loop.getResults());
  }
  Values forLoop(Value lb, Value ub, ValueRange init, IterBody body) {
    return forLoop(lb, ub, idx(1), init, body);
  }
  void parallel(ValueRange lbs, ValueRange ubs, ParBody body) {
    Values steps(lbs.size(), idx(1));
    mlir::scf::ParallelOp::create(
        b, lbs, ubs, steps,
        [&](mlir::OpBuilder &nb, mlir::Location l, ValueRange ivs) {
          Derived e = derived().nested(nb, l);
          body(e, ivs);
        });
  }
  /// Parallel count of `pred` over [lb, ub), as an i32.
  Value count(Value lb, Value ub, Pred pred) {
    Value zero = i32(0);
    auto par = mlir::scf::ParallelOp::create(
        b, ValueRange{lb}, ValueRange{ub}, ValueRange{idx(1)}, ValueRange{zero},
        [&](mlir::OpBuilder &nb, mlir::Location l, ValueRange ivs, ValueRange) {
          Derived e = derived().nested(nb, l);
          Value one = e.ext32(pred(e, ivs[0]));
          auto reduce = mlir::scf::ReduceOp::create(e.b, ValueRange{one});
          // The builder made the combiner block (lhs, rhs); fill it.
          mlir::Block &block = reduce.getReductions()[0].front();
          Value lhs = block.getArgument(0), rhs = block.getArgument(1);
          e.b.setInsertionPointToStart(&block);
          mlir::scf::ReduceReturnOp::create(e.b, e.add(lhs, rhs));
        });
    return par.getResult(0);
  }
  void ifThen(Value cond, Body then) {
    mlir::scf::IfOp::create(b, cond,
                            [&](mlir::OpBuilder &nb, mlir::Location l) {
                              Derived e = derived().nested(nb, l);
                              then(e);
                              mlir::scf::YieldOp::create(e.b);
                            });
  }
  void ifThenElse(Value cond, Body then, Body otherwise) {
    mlir::scf::IfOp::create(
        b, cond,
        [&](mlir::OpBuilder &nb, mlir::Location l) {
          Derived e = derived().nested(nb, l);
          then(e);
          mlir::scf::YieldOp::create(e.b);
        },
        [&](mlir::OpBuilder &nb, mlir::Location l) {
          Derived e = derived().nested(nb, l);
          otherwise(e);
          mlir::scf::YieldOp::create(e.b);
        });
  }
  Values ifElse(Value cond, ValuesBody then, ValuesBody otherwise) {
    auto op = mlir::scf::IfOp::create(
        b, cond,
        [&](mlir::OpBuilder &nb, mlir::Location l) {
          Derived e = derived().nested(nb, l);
          mlir::scf::YieldOp::create(e.b, then(e));
        },
        [&](mlir::OpBuilder &nb, mlir::Location l) {
          Derived e = derived().nested(nb, l);
          mlir::scf::YieldOp::create(e.b, otherwise(e));
        });
    return Values(op.getResults());
  }

private:
  Derived &derived() { return static_cast<Derived &>(*this); }
};

//===----------------------------------------------------------------------===//
// Shared algorithm pieces
//===----------------------------------------------------------------------===//

/// f64 storage computes in f64; everything else accumulates in f32.
inline mlir::Type computeType(mlir::Type storage) {
  return storage.isF64() ? storage
                         : mlir::Float32Type::get(storage.getContext());
}

inline mlir::Type elementType(mlir::Value v) {
  return llvm::cast<mlir::ShapedType>(v.getType()).getElementType();
}

/// Order-preserving unsigned key of an f32 (`-0.0` maps like `+0.0`, so
/// equal floats have equal keys): `a < b` iff `key(a) <u key(b)`.
template <typename E> mlir::Value orderedKey(E &e, mlir::Value f) {
  using namespace mlir;
  Value zero = e.flt(0.0, f.getType());
  Value isZero = e.fcmp(arith::CmpFPredicate::OEQ, f, zero);
  f = e.select(isZero, zero, f);
  Value bits = arith::BitcastOp::create(e.b, e.b.getI32Type(), f);
  Value neg = e.cmp(arith::CmpIPredicate::slt, bits, e.i32(0));
  Value flipAll = arith::XOrIOp::create(e.b, bits, e.i32(-1));
  Value flipSign = arith::XOrIOp::create(
      e.b, bits, e.i32(static_cast<int32_t>(0x80000000u)));
  return e.select(neg, flipAll, flipSign);
}

/// A selection of the `k` smallest keys of a range, ties broken by a rank
/// (the token index, or its mirror): an item is selected iff
/// `key <u threshold || (key == threshold && rank <= rankLimit)`.
struct Selection {
  mlir::Value threshold; // i32, compared unsigned
  mlir::Value rankLimit; // index, compared signed
};

/// Finds the selection of the `k` (index) smallest keys over tokens
/// [lb, ub). `keyOf(t)` gives a token's key and `rankOf(t)` its tie rank
/// (distinct per token, smaller = selected first). Two bitwise binary
/// searches, each step one `count(e, lb, ub, pred)` (an i32 count of `pred`
/// over [lb, ub), e.g. a parallel loop or a block-wide count): the k-th
/// smallest key, then the rank of the last selected item among the keys
/// equal to it. All counts are uniform over the emitted loops.
template <typename E>
Selection selectSmallest(E &e, mlir::Value lb, mlir::Value ub, mlir::Value k,
                         typename E::CountFn count, typename E::Pred keyOf,
                         typename E::Pred rankOf) {
  using namespace mlir;
  using Values = SmallVector<Value>;
  Value kI32 = e.toI32(k);
  // threshold = max{v : #(key <u v) < k}: the k-th smallest key.
  Value threshold =
      e.forLoop(e.idx(0), e.idx(32), ValueRange{e.i32(0)},
                [&](E &e, Value iv, ValueRange args) -> Values {
                  Value shift = e.sub(e.i32(31), e.toI32(iv));
                  Value bit = arith::ShLIOp::create(e.b, e.i32(1), shift);
                  Value trial = e.orI(args[0], bit);
                  Value below = count(e, lb, ub, [&](E &e, Value t) {
                    return e.cmp(arith::CmpIPredicate::ult, keyOf(e, t), trial);
                  });
                  Value ok = e.cmp(arith::CmpIPredicate::slt, below, kI32);
                  return {e.select(ok, trial, args[0])};
                })[0];
  Value less = count(e, lb, ub, [&](E &e, Value t) {
    return e.cmp(arith::CmpIPredicate::ult, keyOf(e, t), threshold);
  });
  Value equal = count(e, lb, ub, [&](E &e, Value t) {
    return e.cmp(arith::CmpIPredicate::eq, keyOf(e, t), threshold);
  });
  Value need = e.sub(kI32, less);
  // All equal keys selected: no rank search needed.
  Value allEqual = e.cmp(arith::CmpIPredicate::sge, need, equal);
  Value rankLimit = e.ifElse(
      allEqual,
      [&](E &e) -> Values {
        return {e.idx(std::numeric_limits<int32_t>::max())};
      },
      [&](E &e) -> Values {
        // rankLimit = max{r : #(key == threshold && rank < r) < need}.
        Value r = e.forLoop(
            e.idx(0), e.idx(31), ValueRange{e.i32(0)},
            [&](E &e, Value iv, ValueRange args) -> Values {
              Value shift = e.sub(e.i32(30), e.toI32(iv));
              Value bit = arith::ShLIOp::create(e.b, e.i32(1), shift);
              Value trial = e.orI(args[0], bit);
              Value trialIdx = e.toIndex(trial);
              Value before = count(e, lb, ub, [&](E &e, Value t) {
                Value eq =
                    e.cmp(arith::CmpIPredicate::eq, keyOf(e, t), threshold);
                Value lt =
                    e.cmp(arith::CmpIPredicate::slt, rankOf(e, t), trialIdx);
                return e.andI(eq, lt);
              });
              Value ok = e.cmp(arith::CmpIPredicate::slt, before, need);
              return {e.select(ok, trial, args[0])};
            })[0];
        return {e.toIndex(r)};
      })[0];
  return {threshold, rankLimit};
}

template <typename E>
mlir::Value isSelected(E &e, const Selection &s, mlir::Value key,
                       mlir::Value rank) {
  using mlir::arith::CmpIPredicate;
  mlir::Value lt = e.cmp(CmpIPredicate::ult, key, s.threshold);
  mlir::Value eq = e.cmp(CmpIPredicate::eq, key, s.threshold);
  mlir::Value inRank = e.cmp(CmpIPredicate::sle, rank, s.rankLimit);
  return e.orI(lt, e.andI(eq, inRank));
}

/// The token regions of one head: `[0, sink)`, middle `[sink, recentStart)`,
/// recent `[recentStart, L)`, clamped for caches shorter than
/// `sink + recent` (only possible with dynamic lengths).
struct Regions {
  mlir::Value sink, middleLen, recentStart;
};

template <typename E>
Regions regions(E &e, mlir::Value length, int64_t sink, int64_t recent) {
  mlir::Value s = e.minS(e.idx(sink), length);
  mlir::Value m = e.maxS(e.sub(e.sub(length, s), e.idx(recent)), e.idx(0));
  return {s, m, e.add(s, m)};
}

/// Merge-set identification of one head (step 1 of the spec): the middle
/// links to cut, as a Selection over the order-preserving keys `keyOf(t)` of
/// the links t in [r.sink, r.recentStart - 1). Budget mode: the
/// `middle - 1` weakest links (ties: the older first). Threshold mode: the
/// links below `eps`, unless that makes more than `middle` sets (then the
/// budget cut). Every link when the middle already fits. `count` is the
/// lowering's count (parallel loop, block-wide count, sequential loop).
template <typename E>
Selection selectMergeCuts(E &e, const Regions &r, int64_t middle,
                          mlir::Value budgetCuts, bool threshold, double eps,
                          typename E::CountFn count, typename E::Pred keyOf) {
  using namespace mlir;
  using Values = SmallVector<Value>;
  Value lastMiddle = e.sub(r.recentStart, e.idx(1));
  auto rankOf = [](E &, Value t) { return t; };
  Value fits = e.cmp(arith::CmpIPredicate::sle, r.middleLen, e.idx(middle));
  auto selectBudget = [&](E &e) -> Values {
    Selection s =
        selectSmallest(e, r.sink, lastMiddle, budgetCuts, count, keyOf, rankOf);
    return {s.threshold, s.rankLimit};
  };
  auto everyLink = [](E &e) -> Values {
    return {e.i32(-1), e.idx(std::numeric_limits<int32_t>::max())};
  };
  Values sel;
  if (threshold) {
    Value epsKey = orderedKey(e, e.flt(eps, e.b.getF32Type()));
    Value below = count(e, r.sink, lastMiddle, [&](E &e, Value t) {
      return e.cmp(arith::CmpIPredicate::ult, keyOf(e, t), epsKey);
    });
    Value tooMany =
        e.cmp(arith::CmpIPredicate::sgt, below, e.toI32(budgetCuts));
    sel = e.ifElse(fits, everyLink, [&](E &e) {
      return e.ifElse(tooMany, selectBudget, [&](E &e) -> Values {
        return {epsKey, e.idx(-1)};
      });
    });
  } else {
    sel = e.ifElse(fits, everyLink, selectBudget);
  }
  return {sel[0], sel[1]};
}

template <typename E>
Selection selectMergeCuts(E &e, const Regions &r, int64_t middle,
                          bool threshold, double eps, typename E::CountFn count,
                          typename E::Pred keyOf) {
  return selectMergeCuts(e, r, middle, e.idx(middle - 1), threshold, eps,
                         count, keyOf);
}

/// Eviction selection of one head (H2O / StreamingLLM): the `middle` middle
/// tokens with the largest score, ties to the newer (`keyOf` is the
/// complemented order key of the score, `rankOf` the distance from the
/// newest token); every middle token when they fit; none for `middle == 0`.
template <typename E>
Selection selectKept(E &e, const Regions &r, int64_t middle,
                     typename E::CountFn count, typename E::Pred keyOf,
                     typename E::Pred rankOf) {
  using namespace mlir;
  using Values = SmallVector<Value>;
  if (middle == 0)
    return {e.i32(0), e.idx(-1)};
  Value fits = e.cmp(arith::CmpIPredicate::sle, r.middleLen, e.idx(middle));
  Values sel = e.ifElse(
      fits,
      [](E &e) -> Values {
        return {e.i32(-1), e.idx(std::numeric_limits<int32_t>::max())};
      },
      [&](E &e) -> Values {
        Selection s = selectSmallest(e, r.sink, r.recentStart, e.idx(middle),
                                     count, keyOf, rankOf);
        return {s.threshold, s.rankLimit};
      });
  return {sel[0], sel[1]};
}

//===----------------------------------------------------------------------===//
// Heavy hitters (spec v2)
//===----------------------------------------------------------------------===//

/// The order key of a heavy-hitter candidate: the complemented order key of
/// its score (largest score first).
template <typename E> mlir::Value heavyKey(E &e, mlir::Value score) {
  using namespace mlir;
  return arith::XOrIOp::create(e.b, orderedKey(e, score), e.i32(-1))
      .getResult();
}

/// The two selections of KVMerger's step 1 with heavy hitters: `heavy` are
/// the `heavy` middle tokens of largest score (ties: the newer), `cuts` the
/// links cut among the others, over the masked link keys of
/// `mergeLinkKey`.
struct MergeCutSelections {
  Selection cuts, heavy;
};

/// Whether middle token `t` is a heavy hitter (`scoreKeyOf` = heavyKey of
/// its score; the tie rank is the distance from the newest token).
template <typename E>
mlir::Value isHeavyToken(E &e, const Selection &heavy,
                         typename E::Pred scoreKeyOf, mlir::Value length,
                         mlir::Value t) {
  return isSelected(e, heavy, scoreKeyOf(e, t), e.sub(length, t));
}

/// Whether middle link `t` (joining t and t+1, both middle tokens) touches a
/// heavy hitter: such links are always cut.
template <typename E>
mlir::Value isForcedLink(E &e, const Selection &heavy,
                         typename E::Pred scoreKeyOf, mlir::Value length,
                         mlir::Value t) {
  return e.orI(isHeavyToken(e, heavy, scoreKeyOf, length, t),
               isHeavyToken(e, heavy, scoreKeyOf, length,
                            e.add(t, e.idx(1))));
}

/// The order key of middle link `t` for the cut selection: the similarity's
/// key, or the largest key (never among the selected smallest) for a link
/// that is cut anyway.
template <typename E>
mlir::Value mergeLinkKey(E &e, const Selection &heavy,
                         typename E::Pred scoreKeyOf, mlir::Value length,
                         typename E::Pred simKeyOf, mlir::Value t) {
  return e.select(isForcedLink(e, heavy, scoreKeyOf, length, t), e.i32(-1),
                  simKeyOf(e, t));
}

/// The heavy hitters of step 1 and what they leave for the cuts: the
/// selection of the `heavy` middle tokens of largest score (`scoreKeyOf` =
/// heavyKey of the score, ties to the newer), and the budget of cuts among
/// the free links, `middle - heavy - n_seg` (n_seg: the segments of mergeable
/// tokens the heavy hitters leave).
struct HeavySplit {
  Selection heavy;
  mlir::Value budgetCuts; // index
};

template <typename E>
HeavySplit selectHeavy(E &e, const Regions &r, int64_t middle, int64_t heavy,
                       mlir::Value length, typename E::CountFn count,
                       typename E::Pred scoreKeyOf) {
  using namespace mlir;
  using Values = SmallVector<Value>;
  auto rankOf = [&](E &e, Value t) { return e.sub(length, t); };
  Selection hs = selectKept(e, r, heavy, count, scoreKeyOf, rankOf);
  auto isHeavy = [&](E &e, Value t) {
    return isHeavyToken(e, hs, scoreKeyOf, length, t);
  };
  // A segment starts at every mergeable token after the sink or a heavy one.
  Value segments = count(e, r.sink, r.recentStart, [&](E &e, Value t) {
    Value first = e.cmp(arith::CmpIPredicate::eq, t, r.sink);
    Value afterHeavy = e.ifElse(
        first,
        [&](E &e) -> Values {
          return {arith::ConstantIntOp::create(e.b, 1, 1)};
        },
        [&](E &e) -> Values { return {isHeavy(e, e.sub(t, e.idx(1)))}; })[0];
    Value mergeable = arith::XOrIOp::create(
        e.b, isHeavy(e, t), arith::ConstantIntOp::create(e.b, 1, 1));
    return e.andI(mergeable, afterHeavy);
  });
  Value budgetCuts =
      e.maxS(e.sub(e.idx(middle - heavy), e.toIndex(segments)), e.idx(0));
  return {hs, budgetCuts};
}

/// Step 1 with `heavy > 0` heavy hitters: selects them, counts the n_seg
/// segments of mergeable tokens they leave, and selects the cuts among the
/// free links: the `middle - heavy - n_seg` weakest (budget), or those
/// below eps unless they are more (threshold).
template <typename E>
MergeCutSelections
selectMergeCutsWithHeavy(E &e, const Regions &r, int64_t middle, int64_t heavy,
                         bool threshold, double eps, mlir::Value length,
                         typename E::CountFn count, typename E::Pred simKeyOf,
                         typename E::Pred scoreKeyOf) {
  using namespace mlir;
  HeavySplit h = selectHeavy(e, r, middle, heavy, length, count, scoreKeyOf);
  Selection cuts = selectMergeCuts(
      e, r, middle, h.budgetCuts, threshold, eps, count, [&](E &e, Value t) {
        return mergeLinkKey(e, h.heavy, scoreKeyOf, length, simKeyOf, t);
      });
  return {cuts, h.heavy};
}

/// Whether middle link `t` is cut, given the selections of
/// selectMergeCutsWithHeavy.
template <typename E>
mlir::Value isMergeCut(E &e, const MergeCutSelections &s,
                       typename E::Pred scoreKeyOf, mlir::Value length,
                       typename E::Pred simKeyOf, mlir::Value t) {
  return e.orI(
      isForcedLink(e, s.heavy, scoreKeyOf, length, t),
      isSelected(e, s.cuts,
                 mergeLinkKey(e, s.heavy, scoreKeyOf, length, simKeyOf, t), t));
}

//===----------------------------------------------------------------------===//
// Cosine similarity of adjacent keys (docs/reference.md, project choice 3)
//===----------------------------------------------------------------------===//

/// Lanes of the similarity's summation order: lane j sums the terms of the
/// elements d = j, j + 16, j + 32, ... in increasing d.
constexpr int64_t kCosineLanes = 16;

/// The three f64 lane sums of one link: x.y, x.x, y.y.
struct CosineLanes {
  llvm::SmallVector<mlir::Value> dot, xx, yy;
};

/// Adds element `k` of x and y (storage type, widened exactly to f64) to the
/// lane sums `lane` of `acc`.
template <typename E>
void addCosineTerm(E &e, CosineLanes &acc, int64_t lane, mlir::Value x,
                   mlir::Value y) {
  mlir::Type f64 = e.b.getF64Type();
  x = e.convert(x, f64);
  y = e.convert(y, f64);
  acc.dot[lane] = e.faddExact(acc.dot[lane], e.fmulExact(x, y));
  acc.xx[lane] = e.faddExact(acc.xx[lane], e.fmulExact(x, x));
  acc.yy[lane] = e.faddExact(acc.yy[lane], e.fmulExact(y, y));
}

/// Combines the kCosineLanes partial sums by halving (lane j += lane j + w
/// for w = 8, 4, 2, 1) and returns lane 0: the order a warp's xor butterfly
/// computes in its lane 0.
template <typename E>
mlir::Value combineCosineLanes(E &e, llvm::ArrayRef<mlir::Value> lanes) {
  llvm::SmallVector<mlir::Value> v(lanes);
  for (int64_t w = kCosineLanes / 2; w > 0; w /= 2)
    for (int64_t j = 0; j < w; ++j)
      v[j] = e.faddExact(v[j], v[j + w]);
  return v[0];
}

/// The similarity from the f64 sums: 0 if sqrt(xx) * sqrt(yy) is 0, else
/// dot / (sqrt(xx) * sqrt(yy)) clipped to [-1, 1]; rounded once to f32.
template <typename E>
mlir::Value cosineFromSums(E &e, mlir::Value dot, mlir::Value xx,
                           mlir::Value yy) {
  using namespace mlir;
  Type f64 = e.b.getF64Type();
  Value zero = e.flt(0.0, f64);
  Value den = e.fmulExact(e.sqrt(xx), e.sqrt(yy));
  Value zeroDen = e.fcmp(arith::CmpFPredicate::OEQ, den, zero);
  Value c = e.fdiv(dot, e.select(zeroDen, e.flt(1.0, f64), den));
  c = arith::MinimumFOp::create(e.b, e.flt(1.0, f64),
                                e.fmax(e.flt(-1.0, f64), c));
  c = e.select(zeroDen, zero, c);
  return e.convert(c, e.b.getF32Type());
}

/// Cosine similarity of two keys of `d` elements, element k read by
/// `x(e, k)` and `y(e, k)` in their storage type, computed in the order every
/// path (NumPy reference, CPU loops, upstream export, GPU kernels) follows,
/// so that all of them get the same f32 bits: products and sums in f64
/// without contraction, kCosineLanes interleaved lane sums
/// (combineCosineLanes), then cosineFromSums. A sequential loop over chunks
/// of kCosineLanes elements; the lane updates of one chunk are independent.
template <typename E>
mlir::Value emitCosine(E &e, mlir::Value d, typename E::Pred x,
                       typename E::Pred y) {
  using namespace mlir;
  using Values = SmallVector<Value>;
  constexpr int64_t W = kCosineLanes;
  Value zero = e.flt(0.0, e.b.getF64Type());
  auto pack = [](const CosineLanes &c) {
    Values all(c.dot);
    all.append(c.xx);
    all.append(c.yy);
    return all;
  };
  auto unpack = [](ValueRange all) {
    CosineLanes c;
    c.dot.assign(all.begin(), all.begin() + W);
    c.xx.assign(all.begin() + W, all.begin() + 2 * W);
    c.yy.assign(all.begin() + 2 * W, all.end());
    return c;
  };
  CosineLanes init;
  init.dot.assign(W, zero);
  init.xx.assign(W, zero);
  init.yy.assign(W, zero);
  Value chunks = e.divu(d, e.idx(W));
  CosineLanes acc = unpack(e.forLoop(
      e.idx(0), chunks, pack(init),
      [&](E &e, Value c, ValueRange args) -> Values {
        CosineLanes a = unpack(args);
        Value base = e.mul(c, e.idx(W));
        for (int64_t j = 0; j < W; ++j) {
          Value k = e.add(base, e.idx(j));
          addCosineTerm(e, a, j, x(e, k), y(e, k));
        }
        return pack(a);
      }));
  // The last, partial chunk: lanes past the end add nothing.
  Value base = e.mul(chunks, e.idx(W));
  if (std::optional<int64_t> dc = getConstantIntValue(d)) {
    for (int64_t j = 0; j < *dc % W; ++j) {
      Value k = e.add(base, e.idx(j));
      addCosineTerm(e, acc, j, x(e, k), y(e, k));
    }
  } else {
    for (int64_t j = 0; j < W - 1; ++j) {
      Value k = e.add(base, e.idx(j));
      Value inside = e.cmp(arith::CmpIPredicate::ult, k, d);
      Values lane = e.ifElse(
          inside,
          [&](E &e) -> Values {
            CosineLanes one{{acc.dot[j]}, {acc.xx[j]}, {acc.yy[j]}};
            addCosineTerm(e, one, 0, x(e, k), y(e, k));
            return {one.dot[0], one.xx[0], one.yy[0]};
          },
          [&](E &) -> Values { return {acc.dot[j], acc.xx[j], acc.yy[j]}; });
      acc.dot[j] = lane[0];
      acc.xx[j] = lane[1];
      acc.yy[j] = lane[2];
    }
  }
  return cosineFromSums(e, combineCosineLanes(e, acc.dot),
                        combineCosineLanes(e, acc.xx),
                        combineCosineLanes(e, acc.yy));
}

/// emitCosine for rows of a memref with unit stride in the last dim (`mem`
/// at `[prefixX..., k]` and `[prefixY..., k]`), the lanes as the elements of
/// vector<kCosineLanes x f64> values: the same operations in the same order,
/// so the same bits, in vector registers. The last, partial chunk is a
/// masked load (lanes past the end add +0).
template <typename E>
mlir::Value emitCosineVector(E &e, mlir::Value mem, mlir::ValueRange prefixX,
                             mlir::ValueRange prefixY, mlir::Value d) {
  using namespace mlir;
  using Values = SmallVector<Value>;
  constexpr int64_t W = kCosineLanes;
  Type f32 = e.b.getF32Type(), f64 = e.b.getF64Type();
  Type storage = llvm::cast<MemRefType>(mem.getType()).getElementType();
  auto vec = [](Type t, int64_t n = W) { return VectorType::get({n}, t); };
  Value zero = arith::ConstantOp::create(
      e.b, DenseElementsAttr::get(vec(f64), e.b.getFloatAttr(f64, 0.0)));
  auto at = [](ValueRange prefix, Value k) {
    Values ivs(prefix);
    ivs.push_back(k);
    return ivs;
  };
  // f16/bf16 -> f32 -> f64: both steps exact (and the first one native).
  auto widen = [&](E &e, Value v) {
    if (storage.getIntOrFloatBitWidth() < 32)
      v = arith::ExtFOp::create(e.b, vec(f32), v);
    if (storage != f64)
      v = arith::ExtFOp::create(e.b, vec(f64), v);
    return v;
  };
  auto add = [](E &e, ValueRange acc, Value x, Value y) -> Values {
    return {e.faddExact(acc[0], e.fmulExact(x, y)),
            e.faddExact(acc[1], e.fmulExact(x, x)),
            e.faddExact(acc[2], e.fmulExact(y, y))};
  };
  Value chunks = e.divu(d, e.idx(W));
  Values acc = e.forLoop(
      e.idx(0), chunks, ValueRange{zero, zero, zero},
      [&](E &e, Value c, ValueRange args) -> Values {
        Value k = e.mul(c, e.idx(W));
        Value x = vector::LoadOp::create(e.b, vec(storage), mem, at(prefixX, k));
        Value y = vector::LoadOp::create(e.b, vec(storage), mem, at(prefixY, k));
        return add(e, args, widen(e, x), widen(e, y));
      });
  std::optional<int64_t> dc = getConstantIntValue(d);
  if (!dc || *dc % W) {
    Value k = e.mul(chunks, e.idx(W));
    Value mask = vector::CreateMaskOp::create(e.b, vec(e.b.getI1Type()),
                                              ValueRange{e.sub(d, k)});
    Value pass = arith::ConstantOp::create(
        e.b,
        DenseElementsAttr::get(vec(storage), e.b.getFloatAttr(storage, 0.0)));
    Value x = vector::MaskedLoadOp::create(e.b, vec(storage), mem,
                                           at(prefixX, k), mask, pass);
    Value y = vector::MaskedLoadOp::create(e.b, vec(storage), mem,
                                           at(prefixY, k), mask, pass);
    acc = add(e, acc, widen(e, x), widen(e, y));
  }
  // combineCosineLanes on the vector elements.
  auto combine = [&](Value v) {
    for (int64_t w = W / 2; w > 0; w /= 2) {
      auto half = [&](int64_t offset) {
        return vector::ExtractStridedSliceOp::create(
            e.b, v, ArrayRef<int64_t>{offset}, ArrayRef<int64_t>{w},
            ArrayRef<int64_t>{1});
      };
      v = e.faddExact(half(0), half(w));
    }
    return vector::ExtractOp::create(e.b, v, ArrayRef<int64_t>{0})
        .getResult();
  };
  return cosineFromSums(e, combine(acc[0]), combine(acc[1]), combine(acc[2]));
}

//===----------------------------------------------------------------------===//
// Pass driver
//===----------------------------------------------------------------------===//

/// Calls `lower(op, rewriter)`, with the insertion point at `op`, for every
/// kvcache op under `root` in walk order (collected before any is lowered).
/// Fails with an error at the first kvcache.compress: it must have been
/// decomposed by kvmerge-decompose-compress.
inline mlir::LogicalResult lowerKVCacheOps(
    mlir::Operation *root,
    llvm::function_ref<void(mlir::Operation *, mlir::RewriterBase &)> lower) {
  llvm::SmallVector<mlir::Operation *> ops;
  root->walk([&](mlir::Operation *op) {
    if (llvm::isa<kvcache::KVCacheDialect>(op->getDialect()))
      ops.push_back(op);
  });
  mlir::IRRewriter rewriter(root->getContext());
  for (mlir::Operation *op : ops) {
    rewriter.setInsertionPoint(op);
    if (auto compress = llvm::dyn_cast<kvcache::CompressOp>(op)) {
      compress.emitOpError()
          << "must be decomposed first (run kvmerge-decompose-compress)";
      return mlir::failure();
    }
    lower(op, rewriter);
  }
  return mlir::success();
}

} // namespace kvmerge::conversion

#endif // KVMERGE_LIB_CONVERSION_COMMON_LOOPEMITTER_H
