# libFuzzer targets (issue 8), included by the top CMakeLists.txt only with -DKVMERGE_FUZZ=ON; see
# scripts/fuzz.sh and docs/reliability.md. Configure with
# -DKVMERGE_SANITIZE=address,undefined,fuzzer-no-link so that our libraries
# carry the coverage instrumentation that guides the fuzzer.
set(KVMERGE_FUZZ_TARGETS kvmerge-fuzz-ir kvmerge-fuzz-npy kvmerge-fuzz-compress)

add_llvm_executable(kvmerge-fuzz-ir ${PROJECT_SOURCE_DIR}/fuzz/fuzz_ir.cpp)
target_link_libraries(kvmerge-fuzz-ir PRIVATE
  KVMergeKVCacheIR KVMergeKVCacheTransforms KVMergeKVCacheToLoops
  KVMergePipelines KVMergeRuntime)
mlir_target_link_libraries(kvmerge-fuzz-ir PRIVATE
  MLIRParser MLIRPass MLIRTransforms MLIRFuncDialect MLIRArithDialect
  MLIRTensorDialect MLIRSCFDialect MLIRMemRefDialect MLIRMathDialect
  MLIRBufferizationDialect)

add_llvm_executable(kvmerge-fuzz-npy ${PROJECT_SOURCE_DIR}/fuzz/fuzz_npy.cpp)
target_link_libraries(kvmerge-fuzz-npy PRIVATE KVMergeRuntime)

add_llvm_executable(kvmerge-fuzz-compress ${PROJECT_SOURCE_DIR}/fuzz/fuzz_compress.cpp)
target_link_libraries(kvmerge-fuzz-compress PRIVATE KVMergeRuntime)

foreach(target ${KVMERGE_FUZZ_TARGETS})
  llvm_update_compile_flags(${target})
  add_dependencies(${target} MLIRKVCacheOpsIncGen MLIRKVCacheAttrsIncGen
    MLIRKVCacheTransformsIncGen KVMergeConversionPassIncGen)
  target_compile_options(${target} PRIVATE -fsanitize=fuzzer)
  target_link_options(${target} PRIVATE -fsanitize=fuzzer)
endforeach()
