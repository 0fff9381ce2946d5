//===- KVCacheAttrs.cpp - kvcache attributes ------------------------------===//
//
// Parsing, printing and verification of #kvcache.sigma and #kvcache.policy.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Dialect/KVCache/IR/KVCache.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/TypeSwitch.h"

#include <algorithm>
#include <cmath>

using namespace mlir;
using namespace kvmerge::kvcache;

#include "kvmerge/Dialect/KVCache/IR/KVCacheEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "kvmerge/Dialect/KVCache/IR/KVCacheAttrs.cpp.inc"

void KVCacheDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "kvmerge/Dialect/KVCache/IR/KVCacheAttrs.cpp.inc"
      >();
}

//===----------------------------------------------------------------------===//
// SigmaAttr
//===----------------------------------------------------------------------===//

/// Parses the body of a sigma: `auto`, `paper` or a positive number.
static ParseResult parseSigmaBody(AsmParser &parser, SigmaKind &kind,
                                  double &value) {
  value = 0.0;
  if (succeeded(parser.parseOptionalKeyword("auto"))) {
    kind = SigmaKind::automatic;
    return success();
  }
  if (succeeded(parser.parseOptionalKeyword("paper"))) {
    kind = SigmaKind::paper;
    return success();
  }
  kind = SigmaKind::fixed;
  StringRef other;
  SMLoc loc = parser.getCurrentLocation();
  if (succeeded(parser.parseOptionalKeyword(&other)))
    return parser.emitError(loc, "expected 'auto', 'paper' or a number for "
                                 "sigma, got '")
           << other << "'";
  return parser.parseFloat(value);
}

static void printSigmaBody(AsmPrinter &printer, SigmaAttr sigma) {
  switch (sigma.getKind()) {
  case SigmaKind::automatic:
    printer << "auto";
    return;
  case SigmaKind::paper:
    printer << "paper";
    return;
  case SigmaKind::fixed:
    printer.printFloat(sigma.getValue());
    return;
  }
}

Attribute SigmaAttr::parse(AsmParser &parser, Type) {
  SigmaKind kind;
  double value;
  if (parser.parseLess() || parseSigmaBody(parser, kind, value) ||
      parser.parseGreater())
    return {};
  return SigmaAttr::getChecked(
      [&] { return parser.emitError(parser.getNameLoc()); },
      parser.getContext(), kind, llvm::APFloat(value));
}

void SigmaAttr::print(AsmPrinter &printer) const {
  printer << "<";
  printSigmaBody(printer, *this);
  printer << ">";
}

LogicalResult SigmaAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                SigmaKind kind, llvm::APFloat value) {
  if (kind != SigmaKind::fixed)
    return success();
  double v = value.convertToDouble();
  if (!(v > 0.0) || !std::isfinite(v))
    return emitError() << "sigma must be a finite positive number, got " << formatNumber(v);
  return success();
}

//===----------------------------------------------------------------------===//
// PolicyAttr
//===----------------------------------------------------------------------===//

Attribute PolicyAttr::parse(AsmParser &parser, Type) {
  MLIRContext *ctx = parser.getContext();
  if (parser.parseLess())
    return {};
  StringRef kindName;
  SMLoc kindLoc = parser.getCurrentLocation();
  if (parser.parseKeyword(&kindName))
    return {};
  std::optional<PolicyKind> kind = symbolizePolicyKind(kindName);
  if (!kind) {
    parser.emitError(kindLoc, "unknown policy '")
        << kindName << "', expected one of full, streaming, h2o, kvmerger";
    return {};
  }

  std::optional<llvm::APFloat> ratio;
  std::optional<int64_t> slots, recent, heavy;
  int64_t sink = kDefaultSink;
  MergeMode mode = MergeMode::budget;
  double eps = kDefaultEps;
  SigmaAttr sigma = SigmaAttr::get(ctx, SigmaKind::paper);
  llvm::StringSet<> seen;

  while (succeeded(parser.parseOptionalComma())) {
    StringRef key;
    SMLoc keyLoc = parser.getCurrentLocation();
    if (parser.parseKeyword(&key) || parser.parseEqual())
      return {};
    if (!seen.insert(key).second) {
      parser.emitError(keyLoc, "policy parameter '") << key << "' given twice";
      return {};
    }
    if (key == "ratio") {
      double r;
      if (parser.parseFloat(r))
        return {};
      ratio = llvm::APFloat(r);
    } else if (key == "slots" || key == "sink" || key == "recent" ||
               key == "heavy") {
      int64_t v;
      if (parser.parseInteger(v))
        return {};
      if (key == "slots")
        slots = v;
      else if (key == "sink")
        sink = v;
      else if (key == "heavy")
        heavy = v;
      else
        recent = v;
    } else if (key == "mode") {
      StringRef m;
      SMLoc mLoc = parser.getCurrentLocation();
      if (parser.parseKeyword(&m))
        return {};
      std::optional<MergeMode> parsed = symbolizeMergeMode(m);
      if (!parsed) {
        parser.emitError(mLoc, "unknown mode '")
            << m << "', expected 'budget' or 'threshold'";
        return {};
      }
      mode = *parsed;
    } else if (key == "eps") {
      if (parser.parseFloat(eps))
        return {};
    } else if (key == "sigma") {
      SigmaKind sk;
      double sv;
      SMLoc sLoc = parser.getCurrentLocation();
      if (parseSigmaBody(parser, sk, sv))
        return {};
      sigma = SigmaAttr::getChecked(
          [&] { return parser.emitError(sLoc); }, ctx, sk, llvm::APFloat(sv));
      if (!sigma)
        return {};
    } else {
      parser.emitError(keyLoc, "unknown policy parameter '")
          << key
          << "', expected ratio, slots, sink, recent, heavy, mode, eps or sigma";
      return {};
    }
  }
  if (parser.parseGreater())
    return {};
  return PolicyAttr::getChecked(
      [&] { return parser.emitError(parser.getNameLoc()); }, ctx, *kind, ratio,
      slots, sink, recent, heavy, mode, llvm::APFloat(eps), sigma);
}

void PolicyAttr::print(AsmPrinter &printer) const {
  printer << "<" << stringifyPolicyKind(getKind());
  if (getRatio()) {
    printer << ", ratio = ";
    printer.printFloat(*getRatio());
  }
  if (getSlots())
    printer << ", slots = " << *getSlots();
  if (getSink() != kDefaultSink)
    printer << ", sink = " << getSink();
  if (getRecent())
    printer << ", recent = " << *getRecent();
  if (getHeavy())
    printer << ", heavy = " << *getHeavy();
  if (getMode() != MergeMode::budget)
    printer << ", mode = " << stringifyMergeMode(getMode());
  if (getEps().convertToDouble() != kDefaultEps) {
    printer << ", eps = ";
    printer.printFloat(getEps());
  }
  if (getSigma().getKind() != SigmaKind::paper) {
    printer << ", sigma = ";
    printSigmaBody(printer, getSigma());
  }
  printer << ">";
}

LogicalResult PolicyAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                 PolicyKind kind,
                                 std::optional<llvm::APFloat> ratio,
                                 std::optional<int64_t> slots, int64_t sink,
                                 std::optional<int64_t> recent,
                                 std::optional<int64_t> heavy, MergeMode mode,
                                 llvm::APFloat eps, SigmaAttr sigma) {
  if (kind == PolicyKind::full) {
    if (ratio || slots)
      return emitError() << "policy 'full' keeps every token and takes no "
                            "'ratio' or 'slots'";
    return success();
  }
  if (ratio && slots)
    return emitError() << "policy '" << stringifyPolicyKind(kind)
                       << "' takes exactly one of 'ratio' and 'slots', got both";
  if (!ratio && !slots)
    return emitError() << "policy '" << stringifyPolicyKind(kind)
                       << "' needs a budget: give 'ratio' or 'slots'";
  if (ratio) {
    double r = ratio->convertToDouble();
    if (!(r > 0.0 && r <= 1.0))
      return emitError() << "'ratio' must be in (0, 1], got " << formatNumber(r);
  }
  if (slots && *slots < 1)
    return emitError() << "'slots' must be at least 1, got " << *slots;
  // Positions and lengths are i32: no count may exceed INT32_MAX, which also
  // keeps every sum of them (sink + recent + middle) far from overflowing.
  if (slots && *slots > kMaxSlots)
    return emitError() << "'slots' must be at most " << kMaxSlots
                       << " (positions and lengths are i32), got " << *slots;
  if (sink < 0)
    return emitError() << "'sink' must be non-negative, got " << sink;
  if (sink > kMaxSlots)
    return emitError() << "'sink' must be at most " << kMaxSlots
                       << " (positions and lengths are i32), got " << sink;
  if (recent && kind == PolicyKind::streaming)
    return emitError() << "policy 'streaming' keeps the budget minus 'sink' "
                          "newest tokens; 'recent' does not apply";
  if (recent && *recent < 0)
    return emitError() << "'recent' must be non-negative, got " << *recent;
  if (recent && *recent > kMaxSlots)
    return emitError() << "'recent' must be at most " << kMaxSlots
                       << " (positions and lengths are i32), got " << *recent;
  if (heavy && kind != PolicyKind::kvmerger)
    return emitError() << "'heavy' (heavy hitters kept out of merging) is a "
                          "kvmerger parameter; policy '"
                       << stringifyPolicyKind(kind) << "' does not take it";
  if (heavy && *heavy < 0)
    return emitError() << "'heavy' must be non-negative, got " << *heavy;
  double e = eps.convertToDouble();
  if (!(e >= -1.0 && e <= 1.0))
    return emitError() << "'eps' is a cosine similarity and must be in "
                          "[-1, 1], got "
                       << formatNumber(e);
  if (!sigma)
    return emitError() << "'sigma' is missing";
  return success();
}

int64_t PolicyAttr::getRecentFor(int64_t budget) const {
  if (getKind() == PolicyKind::streaming)
    return budget - getSink();
  if (getRecent())
    return *getRecent();
  // ceil(budget / 4) without overflowing for budgets near INT64_MAX.
  return budget / 4 + (budget % 4 != 0);
}

int64_t PolicyAttr::getHeavyFor(int64_t budget) const {
  if (getKind() != PolicyKind::kvmerger)
    return 0;
  if (getHeavy())
    return *getHeavy();
  int64_t middle = budget - getSink() - getRecentFor(budget);
  return middle < 1 ? 0 : (middle - 1) / 2;
}

int64_t PolicyAttr::getBudget(int64_t length) const {
  if (getKind() == PolicyKind::full)
    return length;
  if (getSlots())
    return *getSlots();
  double budget =
      std::ceil(getRatio()->convertToDouble() * static_cast<double>(length));
  // ratio <= 1, so the budget is at most `length`; the double product may
  // round above INT64_MAX, which a cast cannot represent.
  if (!(budget < 0x1p63))
    return length;
  return std::min(static_cast<int64_t>(budget), length);
}

std::optional<int64_t> PolicyAttr::getStaticBudget() const {
  if (getKind() == PolicyKind::full)
    return std::nullopt;
  return getSlots();
}
