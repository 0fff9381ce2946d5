// Absurdly nested brackets (which overflow MLIR's recursive parser) are
// refused with one clear error before parsing.
// RUN: %python -c "print('func.func @f() attributes {a = ' + '[' * 5000 + ']' * 5000 + '} { return }')" > %t.mlir
// RUN: not kvmerge-run %t.mlir 2>&1 | FileCheck %s
// CHECK: kvmerge-run: error: cannot parse '{{.*}}.mlir': line 1: brackets nest deeper than 256 levels
// RUN: %python -c "print('func.func @f() attributes {a = ' + '[' * 100 + ']' * 100 + '} { return }')" > %t.ok.mlir
// Ordinary nesting (100 levels) still runs.
// RUN: kvmerge-run %t.ok.mlir
