//===- LowerParallelLaunches.cpp - launches -> kvmerge_parallel_for -------===//
//
// kvmerge-lower-parallel-launches (LLVM dialect): each launch declaration
// made by kvmerge-outline-parallel-loops gets a task that unpacks a context
// struct and calls the body; its calls store the captured values into a
// stack struct and call kvmerge_parallel_for (see Passes.td).
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Conversion/Passes.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/SymbolTable.h"

namespace kvmerge {
#define GEN_PASS_DEF_KVMERGELOWERPARALLELLAUNCHES
#include "kvmerge/Conversion/Passes.h.inc"
} // namespace kvmerge

using namespace mlir;

namespace {

constexpr StringLiteral kRuntimeFunction = "kvmerge_parallel_for";

struct LowerParallelLaunchesPass
    : kvmerge::impl::KVMergeLowerParallelLaunchesBase<
          LowerParallelLaunchesPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *context = &getContext();
    SymbolTable symbols(module);
    SmallVector<LLVM::LLVMFuncOp> launches;
    for (auto func : module.getOps<LLVM::LLVMFuncOp>())
      if (func->hasAttr("kvmerge.parallel_body"))
        launches.push_back(func);
    if (launches.empty())
      return;

    auto ptr = LLVM::LLVMPointerType::get(context);
    auto i64 = IntegerType::get(context, 64);
    auto voidType = LLVM::LLVMVoidType::get(context);
    OpBuilder mb(context);
    mb.setInsertionPointToEnd(module.getBody());
    auto runtime = symbols.lookup<LLVM::LLVMFuncOp>(kRuntimeFunction);
    if (!runtime) {
      runtime = LLVM::LLVMFuncOp::create(
          mb, module.getLoc(), kRuntimeFunction,
          LLVM::LLVMFunctionType::get(voidType, {i64, ptr, ptr}));
      symbols.insert(runtime);
    }

    for (LLVM::LLVMFuncOp launch : launches) {
      Location loc = launch.getLoc();
      auto bodyRef = dyn_cast<FlatSymbolRefAttr>(
          launch->getAttr("kvmerge.parallel_body"));
      auto body = bodyRef ? symbols.lookup<LLVM::LLVMFuncOp>(bodyRef.getValue())
                          : LLVM::LLVMFuncOp();
      LLVM::LLVMFunctionType launchType = launch.getFunctionType();
      if (!body || body.isExternal() || launchType.getNumParams() < 1 ||
          launchType.getParamType(0) != i64 ||
          body.getFunctionType().getNumParams() !=
              launchType.getNumParams() + 1) {
        launch.emitOpError("is not a parallel launch of a defined body with "
                           "matching captures (run "
                           "kvmerge-outline-parallel-loops and the LLVM "
                           "conversion with 64-bit indices first)");
        return signalPassFailure();
      }
      body.setLinkage(LLVM::Linkage::Internal);
      ArrayRef<Type> captured = launchType.getParams().drop_front();
      auto contextType = LLVM::LLVMStructType::getLiteral(
          context, SmallVector<Type>(captured));

      // The task: unpack the context, call the body on [begin, end).
      auto task = LLVM::LLVMFuncOp::create(
          mb, loc, (body.getName() + "_task").str(),
          LLVM::LLVMFunctionType::get(voidType, {i64, i64, ptr}),
          LLVM::Linkage::Internal);
      symbols.insert(task);
      Block *entry = task.addEntryBlock(mb);
      {
        OpBuilder tb = OpBuilder::atBlockBegin(entry);
        Value packed =
            LLVM::LoadOp::create(tb, loc, contextType, entry->getArgument(2));
        SmallVector<Value> args{entry->getArgument(0), entry->getArgument(1)};
        for (int64_t i = 0, e = captured.size(); i < e; ++i)
          args.push_back(LLVM::ExtractValueOp::create(tb, loc, packed, i));
        LLVM::CallOp::create(tb, loc, body, args);
        LLVM::ReturnOp::create(tb, loc, ValueRange{});
      }

      // Every call: pack into a stack struct, call the runtime.
      SmallVector<LLVM::CallOp> calls;
      module.walk([&](LLVM::CallOp call) {
        if (call.getCallee() == launch.getName())
          calls.push_back(call);
      });
      for (LLVM::CallOp call : calls) {
        auto parent = call->getParentOfType<LLVM::LLVMFuncOp>();
        OpBuilder ab = OpBuilder::atBlockBegin(&parent.getBody().front());
        Value one = LLVM::ConstantOp::create(ab, loc, i64, 1);
        Value slot = LLVM::AllocaOp::create(ab, loc, ptr, contextType, one);
        OpBuilder cb(call);
        Value packed = LLVM::UndefOp::create(cb, loc, contextType);
        for (int64_t i = 0, e = captured.size(); i < e; ++i)
          packed = LLVM::InsertValueOp::create(cb, loc, packed,
                                               call.getOperand(i + 1), i);
        LLVM::StoreOp::create(cb, loc, packed, slot);
        Value fn = LLVM::AddressOfOp::create(cb, loc, ptr, task.getName());
        LLVM::CallOp::create(cb, loc, runtime,
                             ValueRange{call.getOperand(0), fn, slot});
        call.erase();
      }
      symbols.erase(launch);
    }
  }
};

} // namespace
