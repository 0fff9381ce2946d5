//===- ReassociateReductions.cpp - fastmath on linalg reductions ----------===//
//
// kvmerge-reassociate-reductions (see Passes.td): reduction generics may be
// summed in any order and contracted into FMAs, so that LLVM vectorizes the
// matmuls and norms of a frontend's program.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"

namespace kvmerge {
#define GEN_PASS_DEF_KVMERGEREASSOCIATEREDUCTIONS
#include "kvmerge/Transforms/Passes.h.inc"
} // namespace kvmerge

using namespace mlir;

namespace {

struct ReassociateReductionsPass
    : kvmerge::impl::KVMergeReassociateReductionsBase<
          ReassociateReductionsPass> {
  void runOnOperation() override {
    auto flags = arith::FastMathFlags::reassoc | arith::FastMathFlags::contract;
    getOperation()->walk([&](linalg::GenericOp generic) {
      if (generic.getNumReductionLoops() == 0)
        return;
      generic.getBody()->walk([&](arith::ArithFastMathInterface op) {
        arith::FastMathFlagsAttr old = op.getFastMathFlagsAttr();
        auto attr = arith::FastMathFlagsAttr::get(
            op->getContext(),
            (old ? old.getValue() : arith::FastMathFlags::none) | flags);
        op->setAttr(op.getFastMathAttrName(), attr);
      });
    });
  }
};

} // namespace
