//===- fuzz_compress.cpp - libFuzzer target: the compiled compress kernel --===//
//
// kvmerge-fuzz-compress: the fuzzer picks a small configuration
//   policy (kvmerger / h2o / streaming / full), element type (f32, f16, bf16,
//   f64), H <= 3, L <= 64 (static or dynamic), D, Dv <= 16, budget or ratio,
//   sink, recent, mode, eps, sigma
// and the values (with NaN, +-Inf, huge values, zero-norm and identical
// keys). The function `kvcache.compress` for that configuration is built as
// MLIR text, compiled once through the KVMergeRuntime API (Runner: parse,
// verify, --kvmerge-lower-to-llvm, JIT) and cached by its text, then run.
//
// Expected failures: the verifier rejecting an inconsistent configuration.
// Bugs (trap): a verified module that fails to lower or run, or a result
// that breaks an invariant of the contract:
//   * 0 <= lengths[h] <= min(B, L); lengths == L (and the cache unchanged)
//     when L <= B or policy = full; lengths == B in budget modes when L > B;
//   * valid slots: positions in [0, L), strictly increasing; counts >= 1,
//     sum(counts) <= L (== L for kvmerger, all 1 for h2o / streaming);
//   * slots past lengths[h]: keys, values, positions, counts, scores all 0;
//   * finite, moderate inputs give finite keys, values and scores.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Runtime/HostTensor.h"
#include "kvmerge/Runtime/Runner.h"

#include "llvm/ADT/APFloat.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace kvmerge::runtime;

namespace {

enum class Policy { KVMerger, H2O, Streaming, Full };

struct Config {
  Policy policy = Policy::KVMerger;
  ElementType type = ElementType::F32;
  int64_t H = 1, L = 1, D = 1, Dv = 1, B = 1;
  bool dynamicL = false, threshold = false;
  std::string policyText, module;
};

const char *typeName(ElementType t) {
  switch (t) {
  case ElementType::F16:
    return "f16";
  case ElementType::BF16:
    return "bf16";
  case ElementType::F64:
    return "f64";
  default:
    return "f32";
  }
}

std::string tensorType(llvm::ArrayRef<int64_t> shape, const char *elt,
                       bool dynamicDim1 = false) {
  std::string s = "tensor<";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i == 1 && dynamicDim1 ? std::string("?") : std::to_string(shape[i])) +
         "x";
  return s + elt + ">";
}

Config makeConfig(FuzzedDataProvider &fdp) {
  Config c;
  c.policy = static_cast<Policy>(fdp.ConsumeIntegralInRange<int>(0, 3));
  static const ElementType types[] = {ElementType::F32, ElementType::F32,
                                      ElementType::F16, ElementType::BF16,
                                      ElementType::F64};
  c.type = types[fdp.ConsumeIntegralInRange<int>(0, 4)];
  c.H = fdp.ConsumeIntegralInRange<int64_t>(1, 3);
  c.L = fdp.ConsumeIntegralInRange<int64_t>(1, 64);
  static const int64_t dims[] = {1, 2, 3, 4, 8, 16};
  c.D = dims[fdp.ConsumeIntegralInRange<int>(0, 5)];
  c.Dv = fdp.ConsumeBool() ? c.D : dims[fdp.ConsumeIntegralInRange<int>(0, 5)];
  c.dynamicL = fdp.ConsumeIntegralInRange<int>(0, 3) == 0;

  std::string attr;
  const char *names[] = {"kvmerger", "h2o", "streaming", "full"};
  attr = names[static_cast<int>(c.policy)];
  if (c.policy == Policy::Full) {
    c.B = c.L;
  } else {
    bool useRatio = !c.dynamicL && fdp.ConsumeBool();
    if (useRatio) {
      int k = fdp.ConsumeIntegralInRange<int>(1, 16);
      double ratio = k / 16.0;
      c.B = static_cast<int64_t>(std::ceil(ratio * static_cast<double>(c.L)));
      attr += llvm::formatv(", ratio = {0}", ratio).str();
    } else {
      c.B = fdp.ConsumeIntegralInRange<int64_t>(1, c.L + 4);
      attr += llvm::formatv(", slots = {0}", c.B).str();
    }
    if (fdp.ConsumeBool())
      attr += llvm::formatv(", sink = {0}",
                            fdp.ConsumeIntegralInRange<int>(0, 6))
                  .str();
    if (c.policy != Policy::Streaming && fdp.ConsumeBool())
      attr += llvm::formatv(", recent = {0}",
                            fdp.ConsumeIntegralInRange<int>(0, 8))
                  .str();
    if (c.policy == Policy::KVMerger) {
      c.threshold = fdp.ConsumeBool();
      if (c.threshold) {
        static const char *eps[] = {"-1.0", "-0.5", "0.0",  "0.5",
                                    "0.75", "0.9",  "0.99", "1.0"};
        attr += ", mode = threshold, eps = ";
        attr += eps[fdp.ConsumeIntegralInRange<int>(0, 7)];
      }
      static const char *sigmas[] = {"",          ", sigma = paper",
                                     ", sigma = 1.0e-03", ", sigma = 0.1",
                                     ", sigma = 1.0",     ", sigma = 1.0e+06"};
      attr += sigmas[fdp.ConsumeIntegralInRange<int>(0, 5)];
    }
  }
  c.policyText = "#kvcache.policy<" + attr + ">";

  const char *t = typeName(c.type);
  std::string tk = tensorType({c.H, c.L, c.D}, t, c.dynamicL);
  std::string tv = tensorType({c.H, c.L, c.Dv}, t, c.dynamicL);
  std::string ta = tensorType({c.H, c.L}, "f32", c.dynamicL);
  std::string res = tensorType({c.H, c.B, c.D}, t) + ", " +
                    tensorType({c.H, c.B, c.Dv}, t) + ", " +
                    tensorType({c.H, c.B}, "i32") + ", " +
                    tensorType({c.H, c.B}, "i32") + ", " +
                    tensorType({c.H, c.B}, "f32") + ", " +
                    tensorType({c.H}, "i32");
  c.module = "func.func @compress(%k: " + tk + ", %v: " + tv + ", %a: " + ta +
             ") -> (" + res + ") {\n  %r:6 = kvcache.compress %k, %v, %a " +
             "{policy = " + c.policyText + "}\n      : " + tk + ", " + tv +
             ", " + ta + " -> " + res +
             "\n  return %r#0, %r#1, %r#2, %r#3, %r#4, %r#5 : " + res + "\n}\n";
  return c;
}

// One value per byte: specials, then a grid in [-8, 8) step 1/16.
double valueOf(uint8_t b, ElementType type) {
  switch (b) {
  case 0:
    return 0.0;
  case 1:
    return std::nan("");
  case 2:
    return INFINITY;
  case 3:
    return -INFINITY;
  case 4:
    return type == ElementType::F16 ? 60000.0 : 1.0e30;
  case 5:
    return -0.0;
  case 6:
    return 1.0e-30; // subnormal or zero in f16
  default:
    return (static_cast<int>(b) - 128) / 16.0;
  }
}

void store(HostTensor &t, int64_t i, double x) {
  uint8_t *p = t.data();
  switch (t.getElementType()) {
  case ElementType::F32: {
    float f = static_cast<float>(x);
    std::memcpy(p + 4 * i, &f, 4);
    return;
  }
  case ElementType::F64:
    std::memcpy(p + 8 * i, &x, 8);
    return;
  default: {
    llvm::APFloat v(x);
    bool lost;
    v.convert(t.getElementType() == ElementType::F16
                  ? llvm::APFloat::IEEEhalf()
                  : llvm::APFloat::BFloat(),
              llvm::APFloat::rmNearestTiesToEven, &lost);
    uint16_t bits = static_cast<uint16_t>(v.bitcastToAPInt().getZExtValue());
    std::memcpy(p + 2 * i, &bits, 2);
    return;
  }
  }
}

// Fills `t`; returns whether every stored value is finite and moderate.
bool fill(HostTensor &t, FuzzedDataProvider &fdp, int style, int64_t rowLen) {
  bool moderate = true;
  int64_t n = t.getNumElements();
  std::vector<double> row;
  for (int64_t i = 0; i < n; ++i) {
    double x;
    if (style == 1 && i >= rowLen && (i / rowLen) % 4 != 0)
      x = getElementAsDouble(t, i - rowLen); // runs of identical rows
    else
      x = valueOf(fdp.ConsumeIntegral<uint8_t>(), t.getElementType());
    store(t, i, x);
    double back = getElementAsDouble(t, i);
    if (!std::isfinite(back) || std::fabs(back) > 1.0e3)
      moderate = false;
  }
  return moderate;
}

struct Compiled {
  std::unique_ptr<Runner> runner; // null: rejected by the verifier
};

llvm::StringMap<Compiled> &cache() {
  static auto *c = new llvm::StringMap<Compiled>();
  return *c;
}

// The inputs of the current run, printed when an invariant breaks.
std::vector<const HostTensor *> currentInputs;

[[noreturn]] void fail(const Config &c, const std::string &what) {
  llvm::errs() << "kvmerge-fuzz-compress: invariant broken: " << what
               << "\nmodule:\n"
               << c.module << "\n";
  for (const HostTensor *t : currentInputs)
    llvm::errs() << "input: " << formatTensor(*t, 4096) << "\n";
  __builtin_trap();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  Config c = makeConfig(fdp);

  llvm::StringMap<Compiled> &compiled = cache();
  if (compiled.size() > 48)
    compiled.clear(); // bound the JIT memory
  auto [it, inserted] = compiled.try_emplace(c.module);
  if (inserted) {
    llvm::Expected<std::unique_ptr<Runner>> runner =
        Runner::loadSource(c.module, "fuzz.mlir");
    if (runner) {
      it->second.runner = std::move(*runner);
      if (llvm::Error err = it->second.runner->compile())
        fail(c, "verified module failed to compile: " +
                    llvm::toString(std::move(err)));
    } else {
      llvm::consumeError(runner.takeError()); // verifier said no: fine
    }
  }
  Runner *runner = it->second.runner.get();
  if (!runner)
    return 0;

  llvm::Expected<HostTensor> k = HostTensor::allocate(c.type, {c.H, c.L, c.D});
  llvm::Expected<HostTensor> v =
      HostTensor::allocate(c.type, {c.H, c.L, c.Dv});
  llvm::Expected<HostTensor> a =
      HostTensor::allocate(ElementType::F32, {c.H, c.L});
  if (!k || !v || !a)
    fail(c, "cannot allocate inputs");
  int style = fdp.ConsumeIntegralInRange<int>(0, 1);
  bool moderate = fill(*k, fdp, style, c.D);
  moderate &= fill(*v, fdp, style, c.Dv);
  moderate &= fill(*a, fdp, 0, 1);

  currentInputs = {&*k, &*v, &*a};
  ConstTensorView inputs[] = {*k, *v, *a};
  llvm::Expected<std::vector<HostTensor>> results =
      runner->run("compress", inputs);
  if (!results)
    fail(c, "run failed: " + llvm::toString(results.takeError()));
  const std::vector<HostTensor> &r = *results;
  if (r.size() != 6)
    fail(c, "expected 6 results");
  const HostTensor &ok = r[0], &ov = r[1], &pos = r[2], &cnt = r[3],
                   &sc = r[4], &len = r[5];
  auto at = [](const HostTensor &t, int64_t i) {
    return getElementAsDouble(t, i);
  };

  const int64_t H = c.H, L = c.L, B = c.B, D = c.D, Dv = c.Dv;
  bool fits = c.policy == Policy::Full || L <= B;
  bool budgetMode = !c.threshold;
  for (int64_t h = 0; h < H; ++h) {
    int64_t n = static_cast<int64_t>(at(len, h));
    std::string where = llvm::formatv("head {0}, lengths = {1}", h, n).str();
    if (n < 0 || n > B || n > L)
      fail(c, where + ": lengths out of [0, min(B, L)]");
    if (fits && n != L)
      fail(c, where + ": a cache that fits must keep all L tokens");
    if (!fits && budgetMode && n != B)
      fail(c, where + ": budget mode with L > B must fill all B slots");
    int64_t sum = 0, prev = -1;
    for (int64_t s = 0; s < n; ++s) {
      int64_t p = static_cast<int64_t>(at(pos, h * B + s));
      int64_t m = static_cast<int64_t>(at(cnt, h * B + s));
      if (p < 0 || p >= L)
        fail(c, where + llvm::formatv(": position {0} of slot {1} out of range",
                                      p, s)
                            .str());
      if (p <= prev)
        fail(c, where + llvm::formatv(": positions not increasing at slot {0}",
                                      s)
                            .str());
      prev = p;
      if (m < 1)
        fail(c, where + llvm::formatv(": count {0} of slot {1}", m, s).str());
      if (c.policy != Policy::KVMerger && m != 1)
        fail(c, where + ": h2o/streaming/full slots are single tokens");
      sum += m;
    }
    if (sum > L)
      fail(c, where + llvm::formatv(": counts sum to {0} > L", sum).str());
    if (c.policy == Policy::KVMerger && sum != L)
      fail(c, where + llvm::formatv(": kvmerger counts sum to {0} != L = {1}",
                                    sum, L)
                          .str());
    for (int64_t s = n; s < B; ++s) {
      bool zero = at(pos, h * B + s) == 0 && at(cnt, h * B + s) == 0 &&
                  at(sc, h * B + s) == 0;
      for (int64_t d = 0; d < D; ++d)
        zero &= at(ok, (h * B + s) * D + d) == 0;
      for (int64_t d = 0; d < Dv; ++d)
        zero &= at(ov, (h * B + s) * Dv + d) == 0;
      if (!zero)
        fail(c, where + llvm::formatv(": slot {0} past lengths is not zero", s)
                            .str());
    }
    if (fits) {
      // Returned unchanged (bitwise; NaN payloads included).
      size_t w = getElementByteWidth(c.type);
      for (int64_t t = 0; t < L; ++t) {
        if (at(pos, h * B + t) != t)
          fail(c, where + ": identity positions");
        if (std::memcmp(ok.data() + ((h * B + t) * D) * w,
                        k->data() + ((h * L + t) * D) * w, D * w) ||
            std::memcmp(ov.data() + ((h * B + t) * Dv) * w,
                        v->data() + ((h * L + t) * Dv) * w, Dv * w) ||
            std::memcmp(sc.data() + (h * B + t) * 4, a->data() + (h * L + t) * 4,
                        4))
          fail(c, where + llvm::formatv(": token {0} not returned unchanged", t)
                              .str());
      }
    }
    if (moderate) {
      for (int64_t s = 0; s < n; ++s) {
        bool finite = std::isfinite(at(sc, h * B + s));
        for (int64_t d = 0; d < D; ++d)
          finite &= std::isfinite(at(ok, (h * B + s) * D + d));
        for (int64_t d = 0; d < Dv; ++d)
          finite &= std::isfinite(at(ov, (h * B + s) * Dv + d));
        if (!finite)
          fail(c, where + llvm::formatv(": non-finite output in slot {0} from "
                                        "finite inputs",
                                        s)
                              .str());
      }
    }
  }
  return 0;
}
