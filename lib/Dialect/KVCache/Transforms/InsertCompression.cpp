//===- InsertCompression.cpp - compress prefill caches, mask decode -------===//
//
// Inserts KV-cache compression around `kvcache.attention`: a prefill that
// returns its caches returns them compressed (scored by the attention's own
// probabilities), a decode that reads compressed caches reads only their
// valid slots. See the pass description in Passes.td.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Dialect/KVCache/Transforms/Passes.h"

#include "mlir/AsmParser/AsmParser.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"

namespace kvmerge::kvcache {
#define GEN_PASS_DEF_KVCACHEINSERTCOMPRESSION
#include "kvmerge/Dialect/KVCache/Transforms/Passes.h.inc"
} // namespace kvmerge::kvcache

using namespace mlir;
using namespace kvmerge::kvcache;

namespace {

constexpr StringLiteral kRole = "kvcache.role";

StringRef roleOf(DictionaryAttr attrs) {
  if (!attrs)
    return {};
  if (auto s = attrs.getAs<StringAttr>(kRole))
    return s.getValue();
  return {};
}

struct InsertCompressionPass
    : kvmerge::kvcache::impl::KVCacheInsertCompressionBase<
          InsertCompressionPass> {
  using Base::Base;

  /// The policy attribute the options describe, checked by its verifier.
  FailureOr<PolicyAttr> buildPolicy() {
    std::string text;
    llvm::raw_string_ostream os(text);
    os << "#kvcache.policy<" << policy;
    if (policy != "full") {
      StringRef b = budget;
      bool isRatio = b.contains('.') || b.contains('e');
      if (!isRatio) {
        int64_t slots;
        if (b.getAsInteger(10, slots))
          isRatio = true;
        else
          os << ", slots = " << slots;
      }
      if (isRatio)
        os << ", ratio = " << budget;
      os << ", sink = " << sink;
      if (recent >= 0 && policy != "streaming")
        os << ", recent = " << recent;
      if (policy == "kvmerger")
        os << ", mode = " << mode << ", eps = " << eps
           << ", sigma = " << sigma;
    }
    os << ">";
    std::string message;
    Attribute attr;
    {
      ScopedDiagnosticHandler capture(&getContext(), [&](Diagnostic &d) {
        message = d.str();
        return success();
      });
      attr = parseAttribute(text, &getContext());
    }
    auto policyAttr = dyn_cast_or_null<PolicyAttr>(attr);
    if (!policyAttr) {
      // At the module's location, without dumping the whole module.
      mlir::emitError(getOperation().getLoc())
          << "invalid kvmerge-insert-compression options (" << text
          << "): " << message;
      return failure();
    }
    return policyAttr;
  }

  void runOnOperation() override {
    ModuleOp module = getOperation();
    bool anyAttention = false;
    module.walk([&](AttentionOp) { anyAttention = true; });
    if (!anyAttention) {
      mlir::emitError(module.getLoc())
          << "kvmerge-insert-compression found no attention: "
                            "run --kvmerge-raise-attention first or write "
                            "kvcache.attention";
      return signalPassFailure();
    }
    FailureOr<PolicyAttr> policyAttr = buildPolicy();
    if (failed(policyAttr))
      return signalPassFailure();
    for (auto func : module.getOps<func::FuncOp>())
      if (!func.isExternal() && failed(processFunction(func, *policyAttr)))
        return signalPassFailure();
  }

  LogicalResult processFunction(func::FuncOp func, PolicyAttr policyAttr) {
    SmallVector<AttentionOp> attentions;
    func.walk([&](AttentionOp op) { attentions.push_back(op); });
    if (attentions.empty())
      return success();
    auto ret = cast<func::ReturnOp>(func.getBody().back().getTerminator());

    // Marked results must be caches of an attention.
    for (auto [i, value] : llvm::enumerate(ret.getOperands())) {
      StringRef role = roleOf(func.getResultAttrDict(i));
      if (role != "keys" && role != "values")
        continue;
      bool found = llvm::any_of(attentions, [&](AttentionOp a) {
        return (role == "keys" ? a.getKeys() : a.getValues()) == value;
      });
      if (!found)
        return func.emitError() << "result #" << i << " is marked "
                                << kRole << " = \"" << role
                                << "\" but is not the " << role
                                << " of an attention in the function";
    }

    for (AttentionOp att : attentions) {
      int keysResult = -1, valuesResult = -1;
      for (auto [i, value] : llvm::enumerate(ret.getOperands())) {
        if (value == att.getKeys() && keysResult < 0)
          keysResult = i;
        else if (value == att.getValues() && valuesResult < 0)
          valuesResult = i;
      }
      if (keysResult >= 0 && valuesResult >= 0) {
        bool marked = roleOf(func.getResultAttrDict(keysResult)) == "keys" &&
                      roleOf(func.getResultAttrDict(valuesResult)) == "values";
        if (!marked)
          att->emitRemark() << "results #" << keysResult << " and #"
                            << valuesResult
                            << " are this attention's keys and values: "
                               "compressing them as a prefill cache (mark "
                               "them with kvcache.role to make it explicit)";
        if (failed(compressPrefill(func, att, keysResult, valuesResult,
                                   policyAttr)))
          return failure();
        continue;
      }
      maskDecode(func, att);
    }
    return success();
  }

  LogicalResult compressPrefill(func::FuncOp func, AttentionOp att,
                                int keysResult, int valuesResult,
                                PolicyAttr policyAttr) {
    auto keysType = cast<RankedTensorType>(att.getKeys().getType());
    auto valuesType = cast<RankedTensorType>(att.getValues().getType());
    int64_t h = keysType.getDimSize(0), l = keysType.getDimSize(1);
    if (ShapedType::isDynamic(l) && !policyAttr.getStaticBudget() &&
        policyAttr.getKind() != PolicyKind::full)
      return att.emitError() << "a ratio budget needs a static cache length; "
                                "use budget=<slots>";
    int64_t capacity = policyAttr.getBudget(l);
    OpBuilder b(att);
    Location loc = att.getLoc();

    // The attention also returns the accumulated scores of its keys.
    Value scores = att.getScores();
    if (!scores) {
      auto scoresType = RankedTensorType::get({h, l}, b.getF32Type());
      Value init = tensor::EmptyOp::create(b, loc, scoresType.getShape(),
                                           b.getF32Type());
      auto scored = AttentionOp::create(
          b, loc, att.getResult().getType(), scoresType, att.getQuery(),
          att.getKeys(), att.getValues(), att.getLengths(), att.getCounts(),
          att.getInit(), init, att.getScaleAttr(), att.getCausalAttr(),
          att.getCountBiasAttr());
      att.getResult().replaceAllUsesWith(scored.getResult());
      att.erase();
      att = scored;
      scores = scored.getScores();
    }

    auto ret = cast<func::ReturnOp>(func.getBody().back().getTerminator());
    b.setInsertionPoint(ret);
    auto slotType = [&](Type elt) {
      return RankedTensorType::get({h, capacity}, elt);
    };
    Type i32 = b.getI32Type();
    auto compress = CompressOp::create(
        b, loc,
        TypeRange{RankedTensorType::get({h, capacity, keysType.getDimSize(2)},
                                        keysType.getElementType()),
                  RankedTensorType::get({h, capacity, valuesType.getDimSize(2)},
                                        valuesType.getElementType()),
                  slotType(i32), slotType(i32), slotType(b.getF32Type()),
                  RankedTensorType::get({h}, i32)},
        att.getKeys(), att.getValues(), scores, policyAttr);
    if (failed(compress.verify())) // reports the budget problem on the op
      return failure();

    // Return the compressed caches and the slot metadata.
    SmallVector<Value> results(ret.getOperands());
    results[keysResult] = compress.getCompressedKeys();
    results[valuesResult] = compress.getCompressedValues();
    unsigned first = results.size();
    results.append({compress.getPositions(), compress.getCounts(),
                    compress.getCompressedScores(), compress.getLengths()});
    ret->setOperands(results);
    func.setType(FunctionType::get(func.getContext(),
                                   func.getArgumentTypes(),
                                   ValueRange(results).getTypes()));
    MLIRContext *ctx = func.getContext();
    auto mark = [&](unsigned i, StringRef role) {
      func.setResultAttr(i, kRole, StringAttr::get(ctx, role));
    };
    mark(keysResult, "keys");
    mark(valuesResult, "values");
    mark(first, "positions");
    mark(first + 1, "counts");
    mark(first + 2, "scores");
    mark(first + 3, "lengths");
    return success();
  }

  void maskDecode(func::FuncOp func, AttentionOp att) {
    auto argOf = [&](Value v) -> std::optional<unsigned> {
      auto arg = dyn_cast<BlockArgument>(v);
      if (!arg || arg.getOwner() != &func.getBody().front())
        return std::nullopt;
      return arg.getArgNumber();
    };
    std::optional<unsigned> k = argOf(att.getKeys()), v = argOf(att.getValues());
    if (!k || !v || att.getLengths())
      return;
    if (roleOf(func.getArgAttrDict(*k)) != "keys" ||
        roleOf(func.getArgAttrDict(*v)) != "values") {
      att->emitRemark() << "reads its keys/values from arguments #" << *k
                        << " and #" << *v
                        << " that are not marked kvcache.role = "
                           "\"keys\"/\"values\": attending to every slot";
      return;
    }
    // The lengths argument: marked, or appended.
    auto h = cast<RankedTensorType>(att.getKeys().getType()).getDimSize(0);
    auto lengthsType =
        RankedTensorType::get({h}, IntegerType::get(func.getContext(), 32));
    Value lengths;
    for (unsigned i = 0, e = func.getNumArguments(); i < e; ++i)
      if (roleOf(func.getArgAttrDict(i)) == "lengths")
        lengths = func.getArgument(i);
    if (!lengths) {
      unsigned index = func.getNumArguments();
      if (failed(func.insertArgument(
              index, lengthsType,
              DictionaryAttr::get(func.getContext(),
                                  {NamedAttribute(
                                      StringAttr::get(func.getContext(), kRole),
                                      StringAttr::get(func.getContext(),
                                                      "lengths"))}),
              func.getLoc())))
        return;
      lengths = func.getArgument(index);
    }
    att.getLengthsMutable().assign(lengths);
  }
};

} // namespace
