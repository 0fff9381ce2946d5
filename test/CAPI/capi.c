/*===- capi.c - kvmerge C API test ----------------------------------------===*\
|*                                                                            *|
|* kvmerge-capi-test FILE.mlir: exercises include/kvmerge-c/KVMerge.h from C  *|
|* (and the MLIR C API that libKVMergeCAPI.so exports with it). Prints what   *|
|* test/CAPI/capi.mlir checks with FileCheck; exits non-zero on a failed      *|
|* expectation.                                                               *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#include "kvmerge-c/KVMerge.h"

#include "mlir-c/Diagnostics.h"
#include "mlir-c/IR.h"
#include "mlir-c/Pass.h"
#include "mlir-c/RegisterEverything.h"
#include "mlir-c/Support.h"
#include "mlir-c/Target/LLVMIR.h"

#include "llvm-c/Core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPECT(cond)                                                           \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: expectation failed: %s\n", __FILE__, __LINE__,   \
              #cond);                                                          \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

static void printToStdout(MlirStringRef str, void *userData) {
  (void)userData;
  fwrite(str.data, 1, str.length, stdout);
}

static MlirLogicalResult printDiagnostic(MlirDiagnostic diagnostic,
                                         void *userData) {
  (void)userData;
  printf("diagnostic: ");
  mlirDiagnosticPrint(diagnostic, printToStdout, NULL);
  printf("\n");
  return mlirLogicalResultSuccess();
}

static char *readFile(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    exit(1);
  }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = malloc((size_t)size + 1);
  EXPECT(text && fread(text, 1, (size_t)size, f) == (size_t)size);
  text[size] = 0;
  fclose(f);
  return text;
}

static MlirContext createContext(void) {
  MlirDialectRegistry registry = mlirDialectRegistryCreate();
  mlirRegisterAllDialects(registry);
  kvmergeRegisterAllDialects(registry);
  MlirContext ctx = mlirContextCreateWithRegistry(registry, false);
  mlirDialectRegistryDestroy(registry);
  mlirContextAttachDiagnosticHandler(ctx, printDiagnostic, NULL, NULL);
  return ctx;
}

/* The dialect handle alone, in a context that knows nothing else. */
static void testDialectHandle(void) {
  printf("== dialect handle\n");
  MlirDialectHandle handle = mlirGetDialectHandle__kvcache__();
  MlirStringRef ns = mlirDialectHandleGetNamespace(handle);
  printf("namespace: %.*s\n", (int)ns.length, ns.data);
  MlirContext ctx = mlirContextCreate();
  mlirDialectHandleRegisterDialect(handle, ctx);
  MlirDialect dialect = mlirDialectHandleLoadDialect(handle, ctx);
  EXPECT(!mlirDialectIsNull(dialect));
  MlirStringRef loaded = mlirDialectGetNamespace(dialect);
  printf("loaded: %.*s\n", (int)loaded.length, loaded.data);
  mlirContextDestroy(ctx);
}

static void testParseAndDecompose(const char *source) {
  printf("== parse\n");
  MlirContext ctx = createContext();
  MlirModule module =
      mlirModuleCreateParse(ctx, mlirStringRefCreateFromCString(source));
  EXPECT(!mlirModuleIsNull(module));
  MlirOperation op = mlirModuleGetOperation(module);
  EXPECT(mlirOperationVerify(op));
  mlirOperationPrint(op, printToStdout, NULL);
  printf("\n");

  printf("== decompose\n");
  kvmergeRegisterAllPasses();
  kvmergeRegisterAllPasses(); /* idempotent */
  MlirPassManager pm = mlirPassManagerCreate(ctx);
  MlirOpPassManager opm = mlirPassManagerGetAsOpPassManager(pm);
  MlirLogicalResult parsed = mlirParsePassPipeline(
      opm,
      mlirStringRefCreateFromCString(
          "builtin.module(kvmerge-decompose-compress)"),
      printToStdout, NULL);
  EXPECT(mlirLogicalResultIsSuccess(parsed));
  EXPECT(mlirLogicalResultIsSuccess(mlirPassManagerRunOnOp(pm, op)));
  EXPECT(mlirOperationVerify(op));
  mlirOperationPrint(op, printToStdout, NULL);
  printf("\n");
  mlirPassManagerDestroy(pm);

  printf("== lower to llvm\n");
  EXPECT(mlirLogicalResultIsSuccess(kvmergeLowerToLLVM(module, true)));
  mlirRegisterAllLLVMTranslations(ctx);
  LLVMContextRef llvmCtx = LLVMContextCreate();
  LLVMModuleRef llvmModule = mlirTranslateModuleToLLVMIR(op, llvmCtx);
  EXPECT(llvmModule != NULL);
  for (LLVMValueRef f = LLVMGetFirstFunction(llvmModule); f;
       f = LLVMGetNextFunction(f)) {
    size_t length = 0;
    const char *name = LLVMGetValueName2(f, &length);
    if (!LLVMIsDeclaration(f))
      printf("define %.*s\n", (int)length, name);
  }
  LLVMDisposeModule(llvmModule);
  LLVMContextDispose(llvmCtx);

  mlirModuleDestroy(module);
  mlirContextDestroy(ctx);
}

static void testErrors(void) {
  printf("== errors\n");
  MlirContext ctx = createContext();
  /* A verifier error, reported through the context's diagnostic handler. */
  MlirModule module = mlirModuleCreateParse(
      ctx, mlirStringRefCreateFromCString(
               "func.func @f(%k: tensor<2x16x4xf32>) -> tensor<2x14xf32> {\n"
               "  %s = kvcache.similarity %k : tensor<2x16x4xf32> -> "
               "tensor<2x14xf32>\n"
               "  return %s : tensor<2x14xf32>\n"
               "}\n"));
  EXPECT(mlirModuleIsNull(module));

  /* An unknown pass: mlirParsePassPipeline reports through its callback. */
  kvmergeRegisterAllPasses();
  MlirPassManager pm = mlirPassManagerCreate(ctx);
  MlirLogicalResult parsed = mlirParsePassPipeline(
      mlirPassManagerGetAsOpPassManager(pm),
      mlirStringRefCreateFromCString("builtin.module(kvmerge-no-such-pass)"),
      printToStdout, NULL);
  printf("\n");
  EXPECT(mlirLogicalResultIsFailure(parsed));
  mlirPassManagerDestroy(pm);
  mlirContextDestroy(ctx);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s FILE.mlir\n", argv[0]);
    return 2;
  }
  char *source = readFile(argv[1]);
  testDialectHandle();
  testParseAndDecompose(source);
  testErrors();
  free(source);
  printf("== done\n");
  return 0;
}
