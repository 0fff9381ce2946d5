//===- ExportABI.cpp - kvmerge-aot-export-abi -----------------------------===//
//
// Emits, into the lowered host module, the manifest and the packed entry
// points that libKVMergeAOTRuntime.a (lib/Runtime/AOT/AOTRuntime.cpp) reads.
// The manifest's format is described in Passes.td and parsed there.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/AOT/Passes.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"

namespace kvmerge {
#define GEN_PASS_DEF_AOTEXPORTABI
#include "kvmerge/AOT/Passes.h.inc"
} // namespace kvmerge

using namespace mlir;

namespace {

StringRef dtypeName(Type type) {
  if (type.isF16())
    return "f16";
  if (type.isBF16())
    return "bf16";
  if (type.isF32())
    return "f32";
  if (type.isF64())
    return "f64";
  switch (type.getIntOrFloatBitWidth()) {
  case 8:
    return "i8";
  case 32:
    return "i32";
  default:
    return "i64";
  }
}

/// One `value` line of the manifest.
std::string valueLine(StringRef role, Type type) {
  std::string line;
  llvm::raw_string_ostream os(line);
  os << "value " << role << " ";
  if (auto tensor = dyn_cast<RankedTensorType>(type)) {
    os << "tensor " << dtypeName(tensor.getElementType()) << " "
       << tensor.getRank();
    for (int64_t size : tensor.getShape())
      os << " " << (ShapedType::isDynamic(size) ? -1 : size);
  } else {
    os << "scalar " << dtypeName(type) << " 0";
  }
  os << " " << type << "\n";
  return line;
}

struct AOTExportABIPass
    : public kvmerge::impl::AOTExportABIBase<AOTExportABIPass> {
  using AOTExportABIBase::AOTExportABIBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *context = &getContext();
    auto abi = module->getAttrOfType<ArrayAttr>(kvmerge::kAOTABIAttrName);
    if (!abi) {
      module.emitError() << "no '" << kvmerge::kAOTABIAttrName
                         << "' attribute: run kvmerge-aot-record-abi before "
                            "lowering";
      return signalPassFailure();
    }
    if (target.empty() || StringRef(target).contains('\n')) {
      module.emitError() << "the target option must be one non-empty line";
      return signalPassFailure();
    }
    Location loc = module.getLoc();
    auto ptrType = LLVM::LLVMPointerType::get(context);
    auto voidType = LLVM::LLVMVoidType::get(context);
    OpBuilder builder = OpBuilder::atBlockEnd(module.getBody());

    std::string manifest = "kvmerge-aot-abi 1\ntarget " + target + "\n";
    SmallVector<LLVM::LLVMFuncOp> entries;
    for (auto [index, attr] : llvm::enumerate(abi)) {
      auto entry = dyn_cast<DictionaryAttr>(attr);
      auto name = entry ? entry.getAs<StringAttr>("sym_name") : StringAttr();
      auto typeAttr = entry ? entry.getAs<TypeAttr>("function_type") : TypeAttr();
      auto type = typeAttr ? dyn_cast<FunctionType>(typeAttr.getValue())
                           : FunctionType();
      if (!name || !type) {
        module.emitError() << "malformed '" << kvmerge::kAOTABIAttrName
                           << "' entry " << index;
        return signalPassFailure();
      }
      std::string cifaceName = ("_mlir_ciface_" + name.getValue()).str();
      auto ciface = module.lookupSymbol<LLVM::LLVMFuncOp>(cifaceName);
      if (!ciface || ciface.isExternal()) {
        module.emitError() << "function '" << name.getValue() << "' has no '"
                           << cifaceName
                           << "' after lowering (was the pipeline run with "
                              "emit-c-interface=false?)";
        return signalPassFailure();
      }
      LLVM::LLVMFunctionType cifaceType = ciface.getFunctionType();
      unsigned expected = type.getNumInputs() + type.getNumResults();
      if (!isa<LLVM::LLVMVoidType>(cifaceType.getReturnType()) ||
          cifaceType.getNumParams() != expected || cifaceType.isVarArg()) {
        ciface.emitError() << "expected '" << cifaceName << "' to return "
                           << "nothing and take " << expected
                           << " arguments (inputs, then one out-param per "
                              "result), got "
                           << cifaceType;
        return signalPassFailure();
      }
      for (auto [i, input] : llvm::enumerate(type.getInputs()))
        if (isa<RankedTensorType>(input) !=
            isa<LLVM::LLVMPointerType>(cifaceType.getParamType(i))) {
          ciface.emitError() << "argument " << i << " of '" << cifaceName
                             << "' has type " << cifaceType.getParamType(i)
                             << ", which does not pass " << input;
          return signalPassFailure();
        }

      manifest += ("function " + name.getValue() + " " +
                   Twine(type.getNumInputs()) + " " +
                   Twine(type.getNumResults()) + "\n")
                      .str();
      for (Type input : type.getInputs())
        manifest += valueLine("in", input);
      for (Type result : type.getResults())
        manifest += valueLine("out", result);

      // void __kvmerge_aot_entry_N(ptr args): args[i] points to argument i.
      auto function = LLVM::LLVMFuncOp::create(
          builder, loc, ("__kvmerge_aot_entry_" + Twine(index)).str(),
          LLVM::LLVMFunctionType::get(voidType, {ptrType}),
          LLVM::Linkage::Internal);
      Block *block;
      {
        OpBuilder::InsertionGuard guard(builder);
        block = function.addEntryBlock(builder);
      }
      OpBuilder body = OpBuilder::atBlockBegin(block);
      Value args = function.getArgument(0);
      SmallVector<Value> operands;
      for (unsigned i = 0; i < expected; ++i) {
        Value slot = LLVM::GEPOp::create(
            body, loc, ptrType, ptrType, args,
            ArrayRef<LLVM::GEPArg>{static_cast<int32_t>(i)});
        Value pointer = LLVM::LoadOp::create(body, loc, ptrType, slot);
        operands.push_back(LLVM::LoadOp::create(
            body, loc, cifaceType.getParamType(i), pointer));
      }
      LLVM::CallOp::create(body, loc, ciface, operands);
      LLVM::ReturnOp::create(body, loc, ValueRange());
      entries.push_back(function);
    }
    manifest += "end\n";
    manifest.push_back('\0');

    auto charArray = LLVM::LLVMArrayType::get(IntegerType::get(context, 8),
                                              manifest.size());
    LLVM::GlobalOp::create(builder, loc, charArray, /*isConstant=*/true,
                           LLVM::Linkage::External, "__kvmerge_aot_manifest",
                           builder.getStringAttr(manifest));
    auto entryArray = LLVM::LLVMArrayType::get(ptrType, entries.size());
    auto table = LLVM::GlobalOp::create(
        builder, loc, entryArray, /*isConstant=*/true, LLVM::Linkage::External,
        "__kvmerge_aot_entries", Attribute());
    Block *initBlock;
    {
      OpBuilder::InsertionGuard guard(builder);
      initBlock = builder.createBlock(&table.getInitializerRegion());
    }
    OpBuilder init = OpBuilder::atBlockBegin(initBlock);
    Value array = LLVM::UndefOp::create(init, loc, entryArray);
    for (auto [i, function] : llvm::enumerate(entries)) {
      Value address = LLVM::AddressOfOp::create(init, loc, function);
      array = LLVM::InsertValueOp::create(init, loc, array, address,
                                          ArrayRef<int64_t>{int64_t(i)});
    }
    LLVM::ReturnOp::create(init, loc, array);
    module->removeAttr(kvmerge::kAOTABIAttrName);
  }
};

} // namespace
