//===- OutlineParallelLoops.cpp - scf.parallel -> runtime tasks -----------===//
//
// kvmerge-outline-parallel-loops: every outermost scf.parallel without
// results becomes a body function over a range of linearized iterations and
// a call of a launch declaration (see Passes.td). The launch turns into a
// kvmerge_parallel_for call in kvmerge-lower-parallel-launches.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Conversion/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Transforms/RegionUtils.h"

namespace kvmerge {
#define GEN_PASS_DEF_KVMERGEOUTLINEPARALLELLOOPS
#include "kvmerge/Conversion/Passes.h.inc"
} // namespace kvmerge

using namespace mlir;

namespace {

/// Outlines `loop` (in `func`) and replaces it by a launch call.
void outline(scf::ParallelOp loop, SymbolTable &symbols, ModuleOp module) {
  Location loc = loop.getLoc();
  MLIRContext *context = loop.getContext();
  OpBuilder b(loop);
  Type index = b.getIndexType();

  // Values from above: constants are cloned into the body, everything else
  // is passed. Bounds and steps are always passed (the body delinearizes).
  SetVector<Value> above;
  getUsedValuesDefinedAbove(loop.getRegion(), above);
  SmallVector<Value> captures;
  SmallVector<Operation *> constants;
  for (Value v : above) {
    Operation *def = v.getDefiningOp();
    if (def && def->hasTrait<OpTrait::ConstantLike>() &&
        def->getNumResults() == 1)
      constants.push_back(def);
    else
      captures.push_back(v);
  }
  unsigned rank = loop.getNumLoops();
  // Trip counts in the caller: max(ceildiv(ub - lb, step), 0), folded when
  // the bounds are constants (so is the body's delinearization then).
  SmallVector<Value> counts;
  Value total;
  int64_t staticTotal = 1;
  bool allStatic = true;
  for (unsigned d = 0; d < rank; ++d) {
    std::optional<int64_t> lb = getConstantIntValue(loop.getLowerBound()[d]);
    std::optional<int64_t> ub = getConstantIntValue(loop.getUpperBound()[d]);
    std::optional<int64_t> step = getConstantIntValue(loop.getStep()[d]);
    if (lb && ub && step && *step > 0) {
      int64_t count = std::max<int64_t>((*ub - *lb + *step - 1) / *step, 0);
      counts.push_back(arith::ConstantIndexOp::create(b, loc, count));
      staticTotal *= count;
      continue;
    }
    allStatic = false;
    Value span = arith::SubIOp::create(b, loc, loop.getUpperBound()[d],
                                       loop.getLowerBound()[d]);
    Value count = arith::CeilDivSIOp::create(b, loc, span, loop.getStep()[d]);
    count = arith::MaxSIOp::create(
        b, loc, count, arith::ConstantIndexOp::create(b, loc, 0));
    counts.push_back(count);
  }
  if (allStatic) {
    total = arith::ConstantIndexOp::create(b, loc, staticTotal);
  } else {
    total = arith::ConstantIndexOp::create(b, loc, 1);
    for (Value count : counts)
      total = arith::MulIOp::create(b, loc, total, count);
  }
  // Bounds, steps and counts: constants are rebuilt in the body, the rest
  // is passed with the captures.
  SmallVector<Value> loopValues;
  llvm::append_range(loopValues, loop.getLowerBound());
  llvm::append_range(loopValues, loop.getStep());
  llvm::append_range(loopValues, counts);
  SmallVector<Value> passed;
  for (Value v : loopValues)
    if (!getConstantIntValue(v))
      passed.push_back(v);
  llvm::append_range(passed, captures);

  // The body: func(begin, end, passed...).
  SmallVector<Type> bodyInputs{index, index};
  for (Value v : passed)
    bodyInputs.push_back(v.getType());
  OpBuilder mb(module.getBodyRegion());
  mb.setInsertionPointToEnd(module.getBody());
  auto body = func::FuncOp::create(mb, loc, "__kvmerge_parallel_body",
                                   FunctionType::get(context, bodyInputs, {}));
  body.setPrivate();
  symbols.insert(body);
  Block *entry = body.addEntryBlock();
  OpBuilder bb = OpBuilder::atBlockBegin(entry);
  IRMapping map;
  for (auto [i, v] : llvm::enumerate(passed))
    map.map(v, entry->getArgument(i + 2));
  for (Operation *c : constants)
    bb.clone(*c, map);
  auto inBody = [&](Value v) -> Value {
    if (std::optional<int64_t> c = getConstantIntValue(v))
      return arith::ConstantIndexOp::create(bb, loc, *c);
    return map.lookup(v);
  };
  SmallVector<Value> lbs, steps, countArgs;
  for (unsigned d = 0; d < rank; ++d) {
    lbs.push_back(inBody(loop.getLowerBound()[d]));
    steps.push_back(inBody(loop.getStep()[d]));
    countArgs.push_back(inBody(counts[d]));
  }
  Value step1 = arith::ConstantIndexOp::create(bb, loc, 1);
  auto forOp = scf::ForOp::create(bb, loc, entry->getArgument(0),
                                  entry->getArgument(1), step1);
  func::ReturnOp::create(bb, loc);
  // Delinearize (row-major, the last dimension fastest).
  OpBuilder fb = OpBuilder::atBlockBegin(forOp.getBody());
  Value rest = forOp.getInductionVar();
  SmallVector<Value> ivs(rank);
  for (int d = static_cast<int>(rank) - 1; d >= 0; --d) {
    Value within = rest;
    if (d > 0) {
      within = arith::RemUIOp::create(fb, loc, rest, countArgs[d]);
      rest = arith::DivUIOp::create(fb, loc, rest, countArgs[d]);
    }
    Value scaled = arith::MulIOp::create(fb, loc, within, steps[d]);
    ivs[d] = arith::AddIOp::create(fb, loc, lbs[d], scaled);
  }
  Block &loopBody = loop.getRegion().front();
  for (unsigned d = 0; d < rank; ++d)
    map.map(loopBody.getArgument(d), ivs[d]);
  for (Operation &op : loopBody.without_terminator())
    fb.clone(op, map);

  // The launch declaration and the call that replaces the loop.
  SmallVector<Type> launchInputs{index};
  for (Value v : passed)
    launchInputs.push_back(v.getType());
  auto launch = func::FuncOp::create(
      mb, loc, "__kvmerge_parallel_launch",
      FunctionType::get(context, launchInputs, {}));
  launch.setPrivate();
  symbols.insert(launch);
  launch->setAttr("kvmerge.parallel_body",
                  FlatSymbolRefAttr::get(body.getSymNameAttr()));
  SmallVector<Value> operands{total};
  llvm::append_range(operands, passed);
  func::CallOp::create(b, loc, launch, operands);
  loop.erase();
}

struct OutlineParallelLoopsPass
    : kvmerge::impl::KVMergeOutlineParallelLoopsBase<OutlineParallelLoopsPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<scf::ParallelOp> loops;
    for (auto func : module.getOps<func::FuncOp>()) {
      if (func.isExternal())
        continue;
      func.walk([&](scf::ParallelOp loop) {
        if (loop.getNumResults() == 0 &&
            !loop->getParentOfType<scf::ParallelOp>())
          loops.push_back(loop);
      });
    }
    SymbolTable symbols(module);
    for (scf::ParallelOp loop : loops)
      outline(loop, symbols, module);
  }
};

} // namespace
