//===- InsertCompression.cpp - compress prefill caches, mask decode -------===//
//
// Inserts KV-cache compression around `kvcache.attention`: a prefill that
// returns its caches returns them compressed (scored by the attention's own
// probabilities), a decode that reads compressed caches reads only their
// valid slots. See the pass description in Passes.td.
//
//===----------------------------------------------------------------------===//

#include "CacheViews.h"

#include "kvmerge/Dialect/KVCache/Transforms/Passes.h"

#include "mlir/AsmParser/AsmParser.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"
#include "llvm/Support/FormatVariadic.h"

#include <cmath>
#include "llvm/Support/Format.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

namespace kvmerge::kvcache {
#define GEN_PASS_DEF_KVCACHEINSERTCOMPRESSION
#include "kvmerge/Dialect/KVCache/Transforms/Passes.h.inc"
} // namespace kvmerge::kvcache

using namespace mlir;
using namespace kvmerge::kvcache;

namespace {

constexpr StringLiteral kRole = "kvcache.role";

/// `value` as an MLIR float literal that parses back to the same double
/// (`1.00000000000000001e-05`; `1e-05` is not MLIR syntax).
std::string formatFloatLiteral(double value) {
  return llvm::formatv("{0:e17}", value).str();
}

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

  /// `sigma` as policy syntax (numbers as exact float literals).
  std::string formatSigma() {
    double value;
    if (sigma == "auto" || sigma == "paper" ||
        StringRef(sigma).getAsDouble(value))
      return sigma;
    return formatFloatLiteral(value);
  }

  /// An invalid option, named, at the module's location.
  LogicalResult optionError(const Twine &message) {
    mlir::emitError(getOperation().getLoc())
        << "invalid kvmerge-insert-compression option " << message;
    return failure();
  }

  /// Checks each option on its own, so that errors name the option (and
  /// no option text can inject policy parameters); the policy attribute's
  /// verifier checks how they combine.
  LogicalResult checkOptions(StringRef b) {
    StringRef p = policy;
    if (p != "full" && p != "streaming" && p != "h2o" && p != "kvmerger")
      return optionError("policy=" + p +
                         ": expected full, streaming, h2o or kvmerger");
    std::string range = "[1, " + std::to_string(PolicyAttr::kMaxSlots) + "]";
    int64_t slots;
    double ratio;
    if (b.getAsInteger(10, slots) ? b.getAsDouble(ratio) ||
                                        !(ratio > 0.0 && ratio <= 1.0)
                                  : slots < 1 || slots > PolicyAttr::kMaxSlots)
      return optionError("budget=" + b +
                         ": expected a ratio in (0, 1] (e.g. 0.5) or a number "
                         "of slots in " + range);
    if (sink < 0 || sink > PolicyAttr::kMaxSlots)
      return optionError("sink=" + Twine(sink) + ": expected an integer in [0, " +
                         Twine(PolicyAttr::kMaxSlots) + "]");
    if (recent < -1 || recent > PolicyAttr::kMaxSlots)
      return optionError("recent=" + Twine(recent) +
                         ": expected -1 (the default, ceil(B / 4)) or an "
                         "integer in [0, " +
                         Twine(PolicyAttr::kMaxSlots) + "]");
    if (mode != "budget" && mode != "threshold")
      return optionError("mode=" + mode + ": expected budget or threshold");
    if (!(eps >= -1.0 && eps <= 1.0))
      return optionError("eps=" + formatFloatLiteral(eps) +
                         ": expected a cosine similarity in [-1, 1]");
    double sigmaValue;
    if (sigma != "auto" && sigma != "paper" &&
        (StringRef(sigma).getAsDouble(sigmaValue) || !(sigmaValue > 0.0) ||
         !std::isfinite(sigmaValue)))
      return optionError("sigma=" + sigma +
                         ": expected auto, paper or a finite positive number");
    if (heavy < -1 || heavy > PolicyAttr::kMaxSlots)
      return optionError("heavy=" + Twine(heavy) +
                         ": expected -1 (the policy's default) or an "
                         "integer in [0, " +
                         Twine(PolicyAttr::kMaxSlots) + "]");
    return success();
  }

  /// The policy attribute the options describe, checked by its verifier.
  FailureOr<PolicyAttr> buildPolicy(StringRef b) {
    if (failed(checkOptions(b)))
      return failure();
    std::string text;
    llvm::raw_string_ostream os(text);
    os << "#kvcache.policy<" << policy;
    if (policy != "full") {
      bool isRatio = b.contains('.') || b.contains('e');
      if (!isRatio) {
        int64_t slots;
        if (b.getAsInteger(10, slots))
          isRatio = true;
        else
          os << ", slots = " << slots;
      }
      double ratio;
      if (isRatio && !b.getAsDouble(ratio))
        os << ", ratio = " << formatFloatLiteral(ratio);
      os << ", sink = " << sink;
      if (recent >= 0 && policy != "streaming")
        os << ", recent = " << recent;
      if (policy == "kvmerger" && heavy >= 0)
        os << ", heavy = " << heavy;
      if (policy == "kvmerger")
        os << ", mode = " << mode << ", eps = " << formatFloatLiteral(eps)
           << ", sigma = " << formatSigma();
      else if (heavy >= 0)
        os << ", heavy = " << heavy; // rejected by the verifier, by name
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
    FailureOr<PolicyAttr> policyAttr = buildPolicy(budget);
    if (failed(policyAttr))
      return signalPassFailure();
    FailureOr<SmallVector<PolicyAttr>> perLayer = buildLayerPolicies();
    if (failed(perLayer))
      return signalPassFailure();
    // Caches are function results and arguments: an attention whose function
    // is not a func.func (IREE's util.func, another dialect's function) keeps
    // its caches, and says so.
    module.walk([&](AttentionOp att) {
      if (att->getParentOfType<func::FuncOp>())
        return;
      Operation *top = att;
      while (top->getParentOp() && top->getParentOp() != module)
        top = top->getParentOp();
      att->emitWarning() << "not compressed: this attention is inside '"
                         << top->getName().getStringRef()
                         << "', not a func.func, and "
                            "kvmerge-insert-compression rewrites func.func "
                            "signatures (give kvmerge the frontend's "
                            "linalg-on-tensors, docs/frontends.md)";
    });
    for (auto func : module.getOps<func::FuncOp>())
      if (!func.isExternal() &&
          failed(processFunction(func, *policyAttr, *perLayer)))
        return signalPassFailure();
  }

  /// The budgets of `layer-budgets` or `budgets-file` (empty: none).
  FailureOr<SmallVector<std::string>> layerBudgetTexts() {
    Location loc = getOperation().getLoc();
    if (!layerBudgets.empty() && !budgetsFile.empty()) {
      mlir::emitError(loc) << "kvmerge-insert-compression: give one of "
                              "layer-budgets and budgets-file, not both";
      return failure();
    }
    SmallVector<std::string> texts(layerBudgets.begin(), layerBudgets.end());
    if (budgetsFile.empty())
      return texts;
    auto buffer = llvm::MemoryBuffer::getFile(budgetsFile);
    if (!buffer) {
      mlir::emitError(loc) << "kvmerge-insert-compression: cannot read "
                              "budgets-file '"
                           << budgetsFile << "': "
                           << buffer.getError().message();
      return failure();
    }
    llvm::Expected<llvm::json::Value> json =
        llvm::json::parse((*buffer)->getBuffer());
    if (!json) {
      mlir::emitError(loc) << "kvmerge-insert-compression: budgets-file '"
                           << budgetsFile << "' is not JSON: "
                           << llvm::toString(json.takeError());
      return failure();
    }
    const llvm::json::Object *obj = json->getAsObject();
    const llvm::json::Array *list =
        obj ? obj->getArray("layer_budgets") : nullptr;
    if (!list) {
      mlir::emitError(loc) << "kvmerge-insert-compression: budgets-file '"
                           << budgetsFile
                           << "' has no \"layer_budgets\" list";
      return failure();
    }
    for (const llvm::json::Value &v : *list) {
      if (std::optional<int64_t> i = v.getAsInteger()) {
        texts.push_back(std::to_string(*i));
      } else if (std::optional<double> d = v.getAsNumber()) {
        std::string t;
        llvm::raw_string_ostream os(t);
        os << llvm::format("%.17g", *d);
        if (!StringRef(t).contains('.') && !StringRef(t).contains('e'))
          t += ".0";
        texts.push_back(t);
      } else if (std::optional<StringRef> str = v.getAsString()) {
        texts.push_back(str->str());
      } else {
        mlir::emitError(loc) << "kvmerge-insert-compression: budgets-file '"
                             << budgetsFile
                             << "': every layer budget must be a number";
        return failure();
      }
    }
    return texts;
  }

  /// One policy per per-layer budget (empty without per-layer budgets).
  FailureOr<SmallVector<PolicyAttr>> buildLayerPolicies() {
    FailureOr<SmallVector<std::string>> texts = layerBudgetTexts();
    if (failed(texts))
      return failure();
    SmallVector<PolicyAttr> policies;
    for (const std::string &t : *texts) {
      FailureOr<PolicyAttr> p = buildPolicy(t);
      if (failed(p))
        return failure();
      policies.push_back(*p);
    }
    return policies;
  }

  /// Where an attention's caches come from and go to.
  struct Caches {
    ViewChain keys, values;
    // Prefill: the function results that are views of the caches.
    int keysResult = -1, valuesResult = -1;
    int64_t keysAt = -1, valuesAt = -1; // their index in the chains
    // Decode: concat(cache argument, new) along the tokens, at this index.
    int64_t keysConcat = -1, valuesConcat = -1;
    // Decode over cache arguments read directly (through views).
    std::optional<unsigned> keysArg, valuesArg;
  };

  static std::optional<unsigned> argOf(func::FuncOp func, Value v) {
    auto arg = dyn_cast<BlockArgument>(v);
    if (!arg || arg.getOwner() != &func.getBody().front())
      return std::nullopt;
    return arg.getArgNumber();
  }

  /// The index in `chain` of a tensor.concat of a function argument and new
  /// tokens along the token axis, or -1.
  static int64_t findConcat(func::FuncOp func, const ViewChain &chain) {
    for (auto [i, v] : llvm::enumerate(chain.values)) {
      auto concat = v.getDefiningOp<tensor::ConcatOp>();
      if (concat && concat.getInputs().size() == 2 &&
          static_cast<int64_t>(concat.getDim()) == chain.tokenDim[i] &&
          argOf(func, concat.getInputs()[0]))
        return i;
    }
    return -1;
  }

  Caches analyze(func::FuncOp func, AttentionOp att, func::ReturnOp ret) {
    Caches c;
    c.keys = ViewChain::trace(att.getKeys());
    c.values = ViewChain::trace(att.getValues());
    // The returned view closest to the attention.
    auto returned = [&](const ViewChain &chain, int &result, int64_t &at) {
      for (int64_t i = chain.values.size() - 1; i >= 0 && result < 0; --i)
        for (auto [r, value] : llvm::enumerate(ret.getOperands()))
          if (value == chain.values[i]) {
            result = r;
            at = i;
            break;
          }
    };
    returned(c.keys, c.keysResult, c.keysAt);
    returned(c.values, c.valuesResult, c.valuesAt);
    c.keysConcat = findConcat(func, c.keys);
    c.valuesConcat = findConcat(func, c.values);
    c.keysArg = argOf(func, c.keys.values.front());
    c.valuesArg = argOf(func, c.values.values.front());
    return c;
  }

  LogicalResult processFunction(func::FuncOp func, PolicyAttr policyAttr,
                                ArrayRef<PolicyAttr> layerPolicies) {
    SmallVector<AttentionOp> attentions;
    func.walk([&](AttentionOp op) { attentions.push_back(op); });
    if (attentions.empty())
      return success();
    auto ret = cast<func::ReturnOp>(func.getBody().back().getTerminator());

    std::vector<Caches> caches;
    for (AttentionOp att : attentions)
      caches.push_back(analyze(func, att, ret));

    // Marked results must be caches of an attention.
    for (unsigned i = 0, e = ret.getNumOperands(); i < e; ++i) {
      StringRef role = roleOf(func.getResultAttrDict(i));
      if (role != "keys" && role != "values")
        continue;
      bool found = llvm::any_of(caches, [&](const Caches &c) {
        return (role == "keys" ? c.keysResult : c.valuesResult) ==
               static_cast<int>(i);
      });
      if (!found)
        return func.emitError() << "result #" << i << " is marked "
                                << kRole << " = \"" << role
                                << "\" but is not the " << role
                                << " of an attention in the function";
    }

    // Per-layer budgets: one per compressed prefill attention, in order.
    if (!layerPolicies.empty()) {
      int64_t prefills = llvm::count_if(caches, [](const Caches &c) {
        return !(c.keysConcat >= 0 && c.valuesConcat >= 0) &&
               c.keysResult >= 0 && c.valuesResult >= 0;
      });
      if (prefills > 0 &&
          prefills != static_cast<int64_t>(layerPolicies.size()))
        return func.emitError()
               << "kvmerge-insert-compression: " << layerPolicies.size()
               << " per-layer budgets given, but this function compresses "
               << prefills << " prefill attentions (one budget each)";
    }
    unsigned lengthsUsed = 0, prefillIndex = 0;
    for (auto [att, c] : llvm::zip(attentions, caches)) {
      bool decodeConcat = c.keysConcat >= 0 && c.valuesConcat >= 0;
      if (decodeConcat) {
        if (failed(appendDecode(func, att, c, lengthsUsed)))
          return failure();
        continue;
      }
      if (c.keysResult >= 0 && c.valuesResult >= 0) {
        bool marked =
            roleOf(func.getResultAttrDict(c.keysResult)) == "keys" &&
            roleOf(func.getResultAttrDict(c.valuesResult)) == "values";
        if (!marked)
          att->emitRemark() << "results #" << c.keysResult << " and #"
                            << c.valuesResult
                            << " are this attention's keys and values: "
                               "compressing them as a prefill cache (mark "
                               "them with kvcache.role to make it explicit)";
        PolicyAttr layerPolicy = layerPolicies.empty()
                                     ? policyAttr
                                     : layerPolicies[prefillIndex];
        ++prefillIndex;
        if (failed(compressPrefill(func, att, c, layerPolicy)))
          return failure();
        continue;
      }
      if (failed(maskDecode(func, att, c, lengthsUsed)))
        return failure();
    }
    return success();
  }

  /// The `index`-th argument marked "lengths" for KV heads `h`, or a new
  /// marked argument.
  Value lengthsArgument(func::FuncOp func, unsigned &index, int64_t h) {
    unsigned seen = 0;
    for (unsigned i = 0, e = func.getNumArguments(); i < e; ++i)
      if (roleOf(func.getArgAttrDict(i)) == "lengths" && seen++ == index) {
        ++index;
        return func.getArgument(i);
      }
    ++index;
    MLIRContext *ctx = func.getContext();
    auto type = RankedTensorType::get({h}, IntegerType::get(ctx, 32));
    unsigned at = func.getNumArguments();
    if (failed(func.insertArgument(
            at, type,
            DictionaryAttr::get(ctx, {NamedAttribute(StringAttr::get(ctx, kRole),
                                                     StringAttr::get(ctx, "lengths"))}),
            func.getLoc())))
      return Value();
    return func.getArgument(at);
  }

  /// Replaces the function's results (with roles for the new ones).
  static void setResults(func::FuncOp func, func::ReturnOp ret,
                         ArrayRef<Value> results) {
    ret->setOperands(results);
    func.setType(FunctionType::get(func.getContext(), func.getArgumentTypes(),
                                   ValueRange(results).getTypes()));
  }

  static void markResult(func::FuncOp func, unsigned i, StringRef role) {
    func.setResultAttr(i, kRole, StringAttr::get(func.getContext(), role));
  }

  LogicalResult compressPrefill(func::FuncOp func, AttentionOp att,
                                const Caches &c, PolicyAttr policyAttr) {
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
          att.getMask(), att.getInit(), init, att.getScaleAttr(),
          att.getCausalAttr(), att.getCountBiasAttr());
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

    // Return the compressed caches in the returned layout, and the slot
    // metadata.
    SmallVector<Value> results(ret.getOperands());
    results[c.keysResult] =
        c.keys.backward(b, loc, c.keysAt, compress.getCompressedKeys());
    results[c.valuesResult] =
        c.values.backward(b, loc, c.valuesAt, compress.getCompressedValues());
    unsigned first = results.size();
    results.append({compress.getPositions(), compress.getCounts(),
                    compress.getCompressedScores(), compress.getLengths()});
    setResults(func, ret, results);
    markResult(func, c.keysResult, "keys");
    markResult(func, c.valuesResult, "values");
    markResult(func, first, "positions");
    markResult(func, first + 1, "counts");
    markResult(func, first + 2, "scores");
    markResult(func, first + 3, "lengths");
    return success();
  }

  /// A compressed cache has no slot order a frontend's mask can refer to.
  static LogicalResult refuseMask(AttentionOp att) {
    if (!att.getMask())
      return success();
    return att.emitError()
           << "this decode attention has a mask over the frontend's slot "
              "order, which does not exist in a compressed cache (slots are "
              "merged or evicted): export the decode without an attention "
              "mask, or leave its caches uncompressed";
  }

  /// Decode that attends to concat(cache, new): the new tokens are appended
  /// right after the valid slots (kvcache.append), the attention reads the
  /// valid slots, and the grown cache is returned with its lengths.
  LogicalResult appendDecode(func::FuncOp func, AttentionOp att,
                             const Caches &c, unsigned &lengthsUsed) {
    auto kConcat = c.keys.values[c.keysConcat].getDefiningOp<tensor::ConcatOp>();
    auto vConcat =
        c.values.values[c.valuesConcat].getDefiningOp<tensor::ConcatOp>();
    unsigned kArg = *argOf(func, kConcat.getInputs()[0]);
    unsigned vArg = *argOf(func, vConcat.getInputs()[0]);
    bool marked = roleOf(func.getArgAttrDict(kArg)) == "keys" &&
                  roleOf(func.getArgAttrDict(vArg)) == "values";
    if (failed(refuseMask(att)))
      return failure();
    if (!marked)
      att->emitRemark() << "attends to arguments #" << kArg << " and #"
                        << vArg
                        << " with new tokens concatenated: compressing as a "
                           "decode step over a compressed cache (mark them "
                           "with kvcache.role to make it explicit)";
    int64_t h = cast<RankedTensorType>(att.getKeys().getType()).getDimSize(0);
    Value lengths = lengthsArgument(func, lengthsUsed, h);
    if (!lengths)
      return failure();
    MLIRContext *ctx = func.getContext();
    auto roleDict = [&](StringRef role) {
      return DictionaryAttr::get(ctx, {NamedAttribute(StringAttr::get(ctx, kRole),
                                                      StringAttr::get(ctx, role))});
    };
    func.setArgAttrs(kArg, roleDict("keys"));
    func.setArgAttrs(vArg, roleDict("values"));

    OpBuilder b(att);
    Location loc = att.getLoc();
    auto append = [&](const ViewChain &chain, int64_t at,
                      tensor::ConcatOp concat) {
      Value cache = chain.forward(b, loc, at, concat.getInputs()[0]);
      Value added = chain.forward(b, loc, at, concat.getInputs()[1]);
      auto ct = cast<RankedTensorType>(cache.getType());
      auto at3 = cast<RankedTensorType>(added.getType());
      SmallVector<int64_t> shape(ct.getShape());
      shape[1] = ct.getDimSize(1) + at3.getDimSize(1);
      return AppendOp::create(
          b, loc, RankedTensorType::get(shape, ct.getElementType()),
          lengths.getType(), cache, added, lengths);
    };
    AppendOp keys = append(c.keys, c.keysConcat, kConcat);
    AppendOp values = append(c.values, c.valuesConcat, vConcat);
    att.getKeysMutable().assign(keys.getResult());
    att.getValuesMutable().assign(values.getResult());
    att.getLengthsMutable().assign(keys.getNewLengths());

    // The grown caches wherever the function returns the concatenations.
    auto ret = cast<func::ReturnOp>(func.getBody().back().getTerminator());
    b.setInsertionPoint(ret);
    SmallVector<Value> results(ret.getOperands());
    SmallVector<std::pair<unsigned, StringRef>> roles;
    for (auto [i, value] : llvm::enumerate(results)) {
      if (value == kConcat.getResult()) {
        results[i] = c.keys.backward(b, loc, c.keysConcat, keys.getResult());
        roles.push_back({i, "keys"});
      } else if (value == vConcat.getResult()) {
        results[i] =
            c.values.backward(b, loc, c.valuesConcat, values.getResult());
        roles.push_back({i, "values"});
      }
    }
    if (!roles.empty()) {
      roles.push_back({static_cast<unsigned>(results.size()), "lengths"});
      results.push_back(keys.getNewLengths());
    }
    setResults(func, ret, results);
    for (auto [i, role] : roles)
      markResult(func, i, role);
    return success();
  }

  /// Decode over cache arguments read directly: the attention reads only
  /// their valid slots.
  LogicalResult maskDecode(func::FuncOp func, AttentionOp att, const Caches &c,
                           unsigned &lengthsUsed) {
    std::optional<unsigned> k = c.keysArg, v = c.valuesArg;
    if (att.getLengths())
      return success();
    if (!k || !v) {
      att->emitRemark()
          << "not compressed: its keys and values are neither returned by "
             "the function (a prefill) nor read from its arguments (a decode "
             "step), so there is no cache to compress";
      return success();
    }
    if (roleOf(func.getArgAttrDict(*k)) != "keys" ||
        roleOf(func.getArgAttrDict(*v)) != "values") {
      att->emitRemark() << "reads its keys/values from arguments #" << *k
                        << " and #" << *v
                        << " that are not marked kvcache.role = "
                           "\"keys\"/\"values\": attending to every slot";
      return success();
    }
    if (failed(refuseMask(att)))
      return failure();
    int64_t h = cast<RankedTensorType>(att.getKeys().getType()).getDimSize(0);
    Value lengths = lengthsArgument(func, lengthsUsed, h);
    if (!lengths)
      return failure();
    att.getLengthsMutable().assign(lengths);
    return success();
  }
};

} // namespace
