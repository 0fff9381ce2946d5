// RUN: kvmerge-run --help | FileCheck %s
// CHECK: USAGE: kvmerge-run [options] <input .mlir file>
// CHECK-DAG: --function=<name>
// CHECK-DAG: --input=<value>
// CHECK-DAG: --output=<@file.npy|->
// CHECK-DAG: --device=<string>
// CHECK-DAG: --benchmark-repetitions=<N>
// CHECK-DAG: --opt-level=<uint>
// CHECK-DAG: --print-max-elements=<long>
// Only kvmerge-run's own options (and --help/--version) are listed.
// RUN: kvmerge-run --help | FileCheck %s --check-prefix=HIDDEN
// HIDDEN-NOT: --mlir-
// HIDDEN-NOT: --x86-
