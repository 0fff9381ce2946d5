//===- KVCacheAttrs.td - kvcache attributes ----------------*- tablegen -*-===//
//
// Typed attributes of the kvcache dialect: the compression policy and the
// Gaussian-kernel sigma.
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_DIALECT_KVCACHE_IR_KVCACHEATTRS_TD
#define KVMERGE_DIALECT_KVCACHE_IR_KVCACHEATTRS_TD

include "kvmerge/Dialect/KVCache/IR/KVCacheDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def KVCache_PolicyKind : I32EnumAttr<"PolicyKind",
    "KV-cache compression policy", [
      I32EnumAttrCase<"full", 0>,
      I32EnumAttrCase<"streaming", 1>,
      I32EnumAttrCase<"h2o", 2>,
      I32EnumAttrCase<"kvmerger", 3>
    ]> {
  let cppNamespace = "::kvmerge::kvcache";
  let genSpecializedAttr = 0;
}

def KVCache_MergeMode : I32EnumAttr<"MergeMode",
    "how merging sets are cut", [
      // Cut at the Bm-1 lowest adjacent similarities: exactly Bm sets.
      I32EnumAttrCase<"budget", 0>,
      // Cut where similarity < eps (never more than Bm sets).
      I32EnumAttrCase<"threshold", 1>
    ]> {
  let cppNamespace = "::kvmerge::kvcache";
  let genSpecializedAttr = 0;
}
def KVCache_MergeModeAttr : EnumAttr<KVCache_Dialect, KVCache_MergeMode,
                                     "mode">;

def KVCache_SigmaKind : I32EnumAttr<"SigmaKind",
    "how the Gaussian kernel width is chosen", [
      I32EnumAttrCase<"automatic", 0, "auto">,
      I32EnumAttrCase<"paper", 1>,
      I32EnumAttrCase<"fixed", 2>
    ]> {
  let cppNamespace = "::kvmerge::kvcache";
  let genSpecializedAttr = 0;
}

//===----------------------------------------------------------------------===//
// Attributes
//===----------------------------------------------------------------------===//

class KVCache_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<KVCache_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

def KVCache_SigmaAttr : KVCache_Attr<"Sigma", "sigma"> {
  let summary = "Gaussian kernel width of the weighted merge";
  let description = [{
    `#kvcache.sigma<auto>` (the default of `kvcache.merge`): `sigma^2` is the
    mean squared distance of the set's keys to the pivot.
    `#kvcache.sigma<paper>` (the default of `#kvcache.policy`): the paper's
    two-step definition. `#kvcache.sigma<0.5>`: a fixed positive value.
  }];
  let parameters = (ins EnumParameter<KVCache_SigmaKind>:$kind,
                        APFloatParameter<"fixed value (kind = fixed)">:$value);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let builders = [
    AttrBuilder<(ins "SigmaKind":$kind), [{
      return $_get($_ctxt, kind, ::llvm::APFloat(0.0));
    }]>
  ];
  let extraClassDeclaration = [{
    bool isFixed() const { return getKind() == SigmaKind::fixed; }
  }];
}

def KVCache_PolicyAttr : KVCache_Attr<"Policy", "policy"> {
  let summary = "a complete KV-cache compression policy";
  let description = [{
    Everything `kvcache.compress` needs to know, typed:

    ```
    #kvcache.policy<full>
    #kvcache.policy<streaming, slots = 512, sink = 4>
    #kvcache.policy<h2o, ratio = 0.5>
    #kvcache.policy<kvmerger, ratio = 0.35, sink = 4, recent = 32,
                    heavy = 8, mode = threshold, eps = 0.8, sigma = auto>
    ```

    Exactly one of `ratio` (budget `B = ceil(ratio * L)`) and `slots`
    (budget `B`) is given, except for `full`, which takes neither. `sink`
    defaults to 4, `recent` to `ceil(B / 4)`, `heavy` (kvmerger only: the
    heavy hitters kept out of merging, spec v2) to `floor((Mb - 1) / 2)`
    with `Mb = B - sink - recent`, `mode` to `budget`, `eps` to 0.75 and
    `sigma` to `paper`; defaults are not printed. `heavy = 0, sigma = auto`
    is the spec's version 1. `kvcache.compress` checks `2 * heavy + 1 <= Mb`.
  }];
  let parameters = (ins
    EnumParameter<KVCache_PolicyKind>:$kind,
    OptionalParameter<"std::optional<::llvm::APFloat>">:$ratio,
    OptionalParameter<"std::optional<int64_t>">:$slots,
    "int64_t":$sink,
    OptionalParameter<"std::optional<int64_t>">:$recent,
    OptionalParameter<"std::optional<int64_t>">:$heavy,
    EnumParameter<KVCache_MergeMode>:$mode,
    APFloatParameter<"similarity threshold">:$eps,
    "SigmaAttr":$sigma
  );
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    static constexpr int64_t kDefaultSink = 4;
    static constexpr double kDefaultEps = 0.75;
    /// Largest slots, sink or recent: positions and lengths are i32.
    static constexpr int64_t kMaxSlots = 2147483647;

    /// The budget B for a cache of `length` tokens (`full`: `length`).
    int64_t getBudget(int64_t length) const;
    /// The number of always-kept newest tokens for budget `budget`.
    int64_t getRecentFor(int64_t budget) const;
    /// The number of heavy hitters for budget `budget` (kvmerger; 0 else).
    int64_t getHeavyFor(int64_t budget) const;
    /// The budget if it does not depend on the cache length (`slots`).
    std::optional<int64_t> getStaticBudget() const;
  }];
}

#endif // KVMERGE_DIALECT_KVCACHE_IR_KVCACHEATTRS_TD
