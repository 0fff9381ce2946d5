//===- KVCacheDialect.td - kvcache dialect definition ------*- tablegen -*-===//
//
// The `kvcache` dialect models the state of an LLM key/value cache and the
// operations of KV-cache compression (KVMerger and its baselines), exactly as
// `shared/spec/kvmerger.md` defines them.
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_DIALECT_KVCACHE_IR_KVCACHEDIALECT_TD
#define KVMERGE_DIALECT_KVCACHE_IR_KVCACHEDIALECT_TD

include "mlir/IR/OpBase.td"

def KVCache_Dialect : Dialect {
  let name = "kvcache";
  let cppNamespace = "::kvmerge::kvcache";
  let summary = "KV-cache state and compression (KVMerger) operations";
  let description = [{
    The `kvcache` dialect describes one layer's key/value cache as ranked
    tensors and the operations that compress it under a memory budget.

    Conventions (see `docs/design.md`):

    * keys `tensor<Hkv x L x D x T>` and values `tensor<Hkv x L x Dv x T>`,
      token 0 is the oldest; every KV head is independent;
    * accumulated attention scores `tensor<Hkv x L x f32>`;
    * a *slot map* `tensor<Hkv x L x i32>` assigns each token the output slot
      it is merged into (`-1`: evicted), with `lengths : tensor<Hkv x i32>`
      the number of used slots per head;
    * a compressed cache has a fixed capacity `B` slots per head; slots at or
      past `lengths[h]` are zero and masked by `kvcache.attention`.

    Value semantics throughout; ops that write a compressed cache or an
    attention output are destination-passing style (`outs(...)`) so that
    one-shot bufferization can write in place.
  }];
  let useDefaultAttributePrinterParser = 1;
  let extraClassDeclaration = [{
    /// Registers the attributes; defined next to their storage classes.
    void registerAttributes();
  }];
  let hasCanonicalizer = 0;
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::tensor::TensorDialect"
  ];
}

class KVCache_Op<string mnemonic, list<Trait> traits = []>
    : Op<KVCache_Dialect, mnemonic, traits>;

#endif // KVMERGE_DIALECT_KVCACHE_IR_KVCACHEDIALECT_TD
