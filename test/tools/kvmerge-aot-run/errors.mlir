// kvmerge-aot-run: every misuse is one message and exit code 1; outputs are
// written all or none.
// RUN: rm -rf %t && split-file %s %t
// RUN: kvmerge-aot %t/m.mlir -o %t/libm.so
// RUN: kvmerge-run %t/helpers.mlir --function=mk --output=@%t/x.npy --output=@%t/y.npy
// RUN: kvmerge-aot-run --help | FileCheck %s --check-prefix=HELP
// HELP: usage: kvmerge-aot-run ARTIFACT.so --list

// RUN: not kvmerge-aot-run 2>&1 | FileCheck %s --check-prefix=NOART
// NOART: kvmerge-aot-run: error: no artifact given (see --help)
// RUN: not kvmerge-aot-run %t/none.so --list 2>&1 | FileCheck %s --check-prefix=MISSING
// MISSING: kvmerge-aot-run: error: cannot load '{{.*}}none.so': {{.*}}No such file or directory
// RUN: not kvmerge-aot-run %t/x.npy --list 2>&1 | FileCheck %s --check-prefix=NOTELF
// NOTELF: kvmerge-aot-run: error: cannot load '{{.*}}x.npy': {{.*}}
// A shared object that is not an artifact.
// RUN: not kvmerge-aot-run libm.so.6 --list 2>&1 | FileCheck %s --check-prefix=NOTART
// NOTART: kvmerge-aot-run: error: cannot load 'libm.so.6'
// RUN: not kvmerge-aot-run %t/libm.so --bogus 2>&1 | FileCheck %s --check-prefix=OPT
// OPT: kvmerge-aot-run: error: unknown option '--bogus' (see --help)
// RUN: not kvmerge-aot-run %t/libm.so --repeat=-1 2>&1 | FileCheck %s --check-prefix=REPEAT
// REPEAT: kvmerge-aot-run: error: --repeat must be an integer in [0, 100000], got '-1'

// RUN: not kvmerge-aot-run %t/libm.so --input=@%t/x.npy 2>&1 | FileCheck %s --check-prefix=WHICH
// WHICH: kvmerge-aot-run: error: the artifact has 2 functions: choose one with --function (see --list)
// RUN: not kvmerge-aot-run %t/libm.so --function=nope 2>&1 | FileCheck %s --check-prefix=UNKNOWN
// UNKNOWN: kvmerge-aot-run: error: function 'nope' is not in this artifact (available: twice, both)
// RUN: not kvmerge-aot-run %t/libm.so --function=twice 2>&1 | FileCheck %s --check-prefix=COUNT
// COUNT: kvmerge-aot-run: error: 'twice' takes 1 input(s), got 0: twice(tensor<4xf32>) -> (tensor<4xf32>)
// RUN: not kvmerge-aot-run %t/libm.so --function=twice --input=@%t/y.npy 2>&1 | FileCheck %s --check-prefix=SHAPE
// SHAPE: kvmerge-aot-run: error: input 0 of 'twice' must be tensor<4xf32>, got tensor<2x3xf32>
// RUN: not kvmerge-aot-run %t/libm.so --function=twice --input=@%t/m.mlir 2>&1 | FileCheck %s --check-prefix=NPY
// NPY: kvmerge-aot-run: error: '{{.*}}m.mlir' is not a valid .npy file (bad magic)
// RUN: not kvmerge-aot-run %t/libm.so --function=twice --input=@/dev/zero 2>&1 | FileCheck %s --check-prefix=DEV
// DEV: kvmerge-aot-run: error: '/dev/zero' is not a regular file
// RUN: head -c -4 %t/x.npy > %t/short.npy
// RUN: not kvmerge-aot-run %t/libm.so --function=twice --input=@%t/short.npy 2>&1 | FileCheck %s --check-prefix=SHORT
// SHORT: kvmerge-aot-run: error: '{{.*}}short.npy' is not a valid .npy file (it holds 12 data bytes, its header says 16)
// RUN: not kvmerge-aot-run %t/libm.so --function=twice --input=x.npy 2>&1 | FileCheck %s --check-prefix=AT
// AT: kvmerge-aot-run: error: input 0 must be @FILE.npy, got 'x.npy'

// Outputs: one per result at most, distinct, all or none.
// RUN: not kvmerge-aot-run %t/libm.so --function=both --input=@%t/x.npy --output=@%t/o.npy --output=@%t/o.npy 2>&1 | FileCheck %s --check-prefix=DUP
// DUP: kvmerge-aot-run: error: two results are written to '{{.*}}o.npy'
// RUN: not kvmerge-aot-run %t/libm.so --function=both --input=@%t/x.npy --output=@%t/o1.npy --output=@%t/nodir/o2.npy 2>&1 | FileCheck %s --check-prefix=ALL
// ALL: kvmerge-aot-run: error: cannot write '{{.*}}nodir/o2.npy.tmp-{{[0-9]+}}'
// RUN: not test -e %t/o1.npy
// RUN: not kvmerge-aot-run %t/libm.so --function=twice --input=@%t/x.npy --output=@%t/a.npy --output=@%t/b.npy 2>&1 | FileCheck %s --check-prefix=TOOMANY
// TOOMANY: kvmerge-aot-run: error: 'twice' has 1 result(s), got 2 --output flags

//--- m.mlir
func.func @twice(%x: tensor<4xf32>) -> tensor<4xf32> {
  %y = arith.addf %x, %x : tensor<4xf32>
  return %y : tensor<4xf32>
}
func.func @both(%x: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  %y = arith.addf %x, %x : tensor<4xf32>
  return %x, %y : tensor<4xf32>, tensor<4xf32>
}

//--- helpers.mlir
func.func @mk() -> (tensor<4xf32>, tensor<2x3xf32>) {
  %a = arith.constant dense<1.0> : tensor<4xf32>
  %b = arith.constant dense<2.0> : tensor<2x3xf32>
  return %a, %b : tensor<4xf32>, tensor<2x3xf32>
}
