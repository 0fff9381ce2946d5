//===- Outline.cpp - one private function per distinct kvcache op ---------===//
//
// Outlines kvcache.compress / kvcache.attention into private functions keyed
// by the op's attributes and types, so identical ops (one per layer of a
// model) are lowered once and called many times.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Dialect/KVCache/Transforms/Passes.h"

#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/xxhash.h"

namespace kvmerge::kvcache {
#define GEN_PASS_DEF_KVCACHEOUTLINE
#include "kvmerge/Dialect/KVCache/Transforms/Passes.h.inc"
} // namespace kvmerge::kvcache

using namespace mlir;
using namespace kvmerge::kvcache;

namespace {

/// Identity of an op up to its operands: name, attributes, types.
std::string signatureOf(Operation *op) {
  std::string s;
  llvm::raw_string_ostream os(s);
  os << op->getName() << op->getRawDictionaryAttrs()
     << op->getPropertiesAsAttribute();
  for (Type t : op->getOperandTypes())
    os << t;
  os << "->";
  for (Type t : op->getResultTypes())
    os << t;
  return s;
}

struct OutlinePass : kvmerge::kvcache::impl::KVCacheOutlineBase<OutlinePass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<Operation *> ops;
    module.walk([&](Operation *op) {
      if (!isa<CompressOp, AttentionOp>(op))
        return;
      auto parent = op->getParentOfType<func::FuncOp>();
      if (!parent || parent.getSymName().starts_with("__kvmerge_"))
        return;
      // Dynamically shaped results stay inline: a private function
      // returning them could not take caller-allocated outputs.
      if (llvm::all_of(op->getResultTypes(), [](Type t) {
            return cast<ShapedType>(t).hasStaticShape();
          }))
        ops.push_back(op);
    });
    llvm::StringMap<func::FuncOp> outlined;
    OpBuilder b(module.getContext());
    for (Operation *op : ops) {
      std::string sig = signatureOf(op);
      func::FuncOp &callee = outlined[sig];
      if (!callee) {
        std::string name =
            ("__kvmerge_" + op->getName().stripDialect() + "_" +
             llvm::utohexstr(llvm::xxh3_64bits(sig), /*LowerCase=*/true))
                .str();
        std::replace(name.begin(), name.end(), '.', '_');
        b.setInsertionPointToEnd(module.getBody());
        callee = func::FuncOp::create(
            b, op->getLoc(), name,
            b.getFunctionType(op->getOperandTypes(), op->getResultTypes()));
        callee.setPrivate();
        Block *body = callee.addEntryBlock();
        b.setInsertionPointToStart(body);
        IRMapping map;
        map.map(op->getOperands(), body->getArguments());
        Operation *clone = b.clone(*op, map);
        func::ReturnOp::create(b, op->getLoc(), clone->getResults());
      }
      b.setInsertionPoint(op);
      auto call =
          func::CallOp::create(b, op->getLoc(), callee, op->getOperands());
      op->replaceAllUsesWith(call.getResults());
      op->erase();
    }
  }
};

} // namespace
