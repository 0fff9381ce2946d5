//===- RecordABI.cpp - kvmerge-aot-record-abi -----------------------------===//
//
// Checks the public functions against the artifact C ABI
// (include/kvmerge-c/AOT.h) and records their signatures before lowering.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/AOT/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "llvm/ADT/StringExtras.h"

namespace kvmerge {
#define GEN_PASS_DEF_AOTRECORDABI
#include "kvmerge/AOT/Passes.h.inc"
} // namespace kvmerge

using namespace mlir;

namespace {

/// Whether the C ABI has a dtype for `type`.
bool isABIElementType(Type type) {
  if (type.isF16() || type.isBF16() || type.isF32() || type.isF64())
    return true;
  auto integer = dyn_cast<IntegerType>(type);
  return integer && !integer.isUnsigned() &&
         llvm::is_contained({8u, 32u, 64u}, integer.getWidth());
}

/// Why `type` cannot be an argument (or a result), or "" if it can.
std::string whyNot(Type type, bool isResult) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  if (!tensor) {
    if (isResult)
      return "results must be ranked tensors";
    if (!isABIElementType(type))
      return "arguments must be ranked tensors or scalars of f16, bf16, f32, "
             "f64, i8, i32 or i64";
    return "";
  }
  if (tensor.getEncoding())
    return "tensors with an encoding have no C ABI";
  if (!isABIElementType(tensor.getElementType()))
    return "the element type must be f16, bf16, f32, f64, i8, i32 or i64";
  if (isResult && !tensor.hasStaticShape())
    return "results must have static shapes, because the caller allocates "
           "every output";
  return "";
}

bool isIdentifier(StringRef name) {
  if (name.empty() || !(llvm::isAlpha(name[0]) || name[0] == '_'))
    return false;
  return llvm::all_of(name, [](char c) {
    return llvm::isAlnum(c) || c == '_' || c == '.' || c == '$';
  });
}

struct AOTRecordABIPass
    : public kvmerge::impl::AOTRecordABIBase<AOTRecordABIPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *context = &getContext();
    SmallVector<Attribute> functions;
    bool failed = false;
    for (auto func : module.getOps<func::FuncOp>()) {
      if (func.isExternal() || !func.isPublic())
        continue;
      if (!isIdentifier(func.getSymName())) {
        func.emitError() << "function name '" << func.getSymName()
                         << "' is not an identifier "
                            "([A-Za-z_][A-Za-z0-9_.$]*), which the artifact "
                            "ABI needs";
        failed = true;
        continue;
      }
      FunctionType type = func.getFunctionType();
      for (auto [i, input] : llvm::enumerate(type.getInputs()))
        if (std::string why = whyNot(input, false); !why.empty()) {
          func.emitError() << "argument " << i << " of '" << func.getSymName()
                           << "' has type " << input << ": " << why;
          failed = true;
        }
      for (auto [i, result] : llvm::enumerate(type.getResults()))
        if (std::string why = whyNot(result, true); !why.empty()) {
          func.emitError() << "result " << i << " of '" << func.getSymName()
                           << "' has type " << result << ": " << why;
          failed = true;
        }
      // Compiled code never writes into a caller's input.
      for (auto [i, input] : llvm::enumerate(type.getInputs()))
        if (isa<TensorType>(input))
          func.setArgAttr(
              i, bufferization::BufferizationDialect::kWritableAttrName,
              BoolAttr::get(context, false));
      functions.push_back(DictionaryAttr::get(
          context,
          {NamedAttribute(StringAttr::get(context, "sym_name"),
                          func.getSymNameAttr()),
           NamedAttribute(StringAttr::get(context, "function_type"),
                          TypeAttr::get(type))}));
    }
    if (failed)
      return signalPassFailure();
    if (functions.empty()) {
      module.emitError()
          << "the module has no public function with a body to compile";
      return signalPassFailure();
    }
    module->setAttr(kvmerge::kAOTABIAttrName,
                    ArrayAttr::get(context, functions));
  }
};

} // namespace
