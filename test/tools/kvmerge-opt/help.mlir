// kvmerge-opt is mlir-opt plus kvmerge: our passes and upstream's are listed.
// RUN: kvmerge-opt --help | FileCheck %s
// CHECK-DAG: --kvmerge-decompose-compress
// CHECK-DAG: --convert-kvcache-to-loops
// CHECK-DAG: --kvmerge-lower-to-llvm
// CHECK-DAG: --one-shot-bufferize
// CHECK-DAG: --convert-linalg-to-loops
// RUN: kvmerge-opt --show-dialects | FileCheck %s --check-prefix=DIALECTS
// DIALECTS-DAG: kvcache
// DIALECTS-DAG: linalg
// DIALECTS-DAG: nvvm
