/*===- kvmerge-c/KVMerge.h - C API of kvmerge ---------------------*- C -*-===*\
|*                                                                            *|
|* The C API of kvmerge, in the style of MLIR's own C API (mlir-c/): register *|
|* the kvcache dialect, the kvmerge passes and pipelines, and run the CPU     *|
|* lowering on an MlirModule. The library (libKVMergeCAPI.so) also exports    *|
|* the MLIR C API it is used with (mlir-c/IR.h, Pass.h, RegisterEverything.h, *|
|* Target/LLVMIR.h), because Debian's libMLIR.so does not contain it; link    *|
|* only this library (it brings libMLIR.so), never the static libMLIRCAPI*.a. *|
|*                                                                            *|
|*   MlirDialectRegistry registry = mlirDialectRegistryCreate();              *|
|*   mlirRegisterAllDialects(registry);          // upstream dialects         *|
|*   kvmergeRegisterAllDialects(registry);       // + kvcache                 *|
|*   MlirContext ctx = mlirContextCreateWithRegistry(registry, false);        *|
|*   kvmergeRegisterAllPasses();                 // kvmerge-* passes          *|
|*   ... mlirParsePassPipeline(..., "builtin.module(kvmerge-decompose-...)")  *|
|*   kvmergeLowerToLLVM(module, true);           // --kvmerge-lower-to-llvm   *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#ifndef KVMERGE_C_KVMERGE_H
#define KVMERGE_C_KVMERGE_H

#include "mlir-c/IR.h"
#include "mlir-c/Pass.h"
#include "mlir-c/Support.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* `mlirGetDialectHandle__kvcache__()`: the kvcache dialect's handle, for
 * mlirDialectHandleInsertDialect / mlirDialectHandleLoadDialect /
 * mlirDialectHandleRegisterDialect. */
MLIR_DECLARE_CAPI_DIALECT_REGISTRATION(KVCache, kvcache);

/* Inserts every dialect kvmerge defines (today: kvcache) into `registry`.
 * Upstream dialects come from mlirRegisterAllDialects. */
MLIR_CAPI_EXPORTED void kvmergeRegisterAllDialects(MlirDialectRegistry registry);

/* Registers every kvmerge pass (kvmerge-decompose-compress,
 * convert-kvcache-to-loops) and named pipeline (kvmerge-lower-to-llvm) with
 * MLIR's global registries, so that mlirParsePassPipeline and
 * mlirOpPassManagerAddPipeline know them. Idempotent and thread-safe. */
MLIR_CAPI_EXPORTED void kvmergeRegisterAllPasses(void);

/* Appends the CPU lowering pipeline (what --kvmerge-lower-to-llvm runs) to a
 * pass manager nested on builtin.module. With `emitCInterface`, public
 * functions get `_mlir_ciface_` wrappers that take memref descriptors. */
MLIR_CAPI_EXPORTED void kvmergeBuildLowerToLLVMPipeline(MlirOpPassManager pm,
                                                        bool emitCInterface);

/* Lowers `module` in place to the LLVM dialect (kvcache + tensor code ->
 * loops -> bufferized -> LLVM). Diagnostics go to the context's diagnostic
 * handlers (mlirContextAttachDiagnosticHandler). The result can be
 * translated with mlirTranslateModuleToLLVMIR. */
MLIR_CAPI_EXPORTED MlirLogicalResult kvmergeLowerToLLVM(MlirModule module,
                                                       bool emitCInterface);

#ifdef __cplusplus
}
#endif

#endif /* KVMERGE_C_KVMERGE_H */
