// Affine expressions with tens of thousands of operators recurse once per
// operator in MLIR's parser; bracket counting cannot bound that, so the tools
// parse on a large stack (issue 16: these segfaulted on the default 8 MiB).
// RUN: %python -c "print('#m = affine_map<(d0) -> (' + '- ' * 20000 + 'd0)>\nfunc.func @f() attributes {m = #m} { return }')" > %t.minus.mlir
// RUN: %python -c "print('#m = affine_map<(d0) -> (d0' + ' + d0' * 100000 + ')>\nfunc.func @f() attributes {m = #m} { return }')" > %t.plus.mlir
// RUN: kvmerge-opt %t.minus.mlir | FileCheck %s --check-prefix=MINUS
// RUN: kvmerge-opt %t.plus.mlir | FileCheck %s --check-prefix=PLUS
// RUN: kvmerge-run %t.minus.mlir | count 0
// RUN: kvmerge-run %t.plus.mlir | count 0
// MINUS: #map = affine_map<(d0) -> (d0)>
// PLUS: #map = affine_map<(d0) -> (d0 * 100001)>
