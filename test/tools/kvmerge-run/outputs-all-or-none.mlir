// Several --output files are committed all or none (issue 16, item 1): a
// run that fails leaves every output path as it was, and a path given twice
// is refused instead of silently dropping a result.

// RUN: rm -rf %t && mkdir -p %t/dir.npy && echo old > %t/out0.npy

// The second output is an existing directory: nothing is replaced.
// RUN: not kvmerge-run %s --input=2xf32=1 --output=@%t/out0.npy --output=@%t/dir.npy --output=@%t/out2.npy 2>&1 | FileCheck %s --check-prefix=DIR
// DIR: kvmerge-run: error: --output 1: '{{.*}}dir.npy' is a directory
// RUN: FileCheck %s --check-prefix=OLD --input-file=%t/out0.npy
// OLD: {{^old$}}
// RUN: not ls %t/out2.npy
// RUN: ls %t | FileCheck %s --check-prefix=LEFT --implicit-check-not=tmp --implicit-check-not=bak
// LEFT: dir.npy
// LEFT-NEXT: out0.npy

// The same file twice (also spelled differently) is an error.
// RUN: not kvmerge-run %s --input=2xf32=1 --output=@%t/out0.npy --output=@%t/./out0.npy 2>&1 | FileCheck %s --check-prefix=DUP
// DUP: kvmerge-run: error: --output 0 and 1 both write '{{.*}}out0.npy': give each result its own file
// RUN: ln -s out0.npy %t/link.npy
// RUN: not kvmerge-run %s --input=2xf32=1 --output=@%t/out0.npy --output=- --output=@%t/link.npy 2>&1 | FileCheck %s --check-prefix=DUP2
// DUP2: kvmerge-run: error: --output 0 and 2 both write '{{.*}}link.npy'
// RUN: FileCheck %s --check-prefix=OLD --input-file=%t/out0.npy

// A successful run replaces existing files and leaves no backups.
// RUN: kvmerge-run %s --input=2xf32=1 --output=@%t/out0.npy --output=@%t/out1.npy --output=@%t/out2.npy | count 0
// RUN: FileCheck %s --check-prefix=NEW --input-file=%t/out0.npy
// NEW: {'descr': '<f4', 'fortran_order': False, 'shape': (2,), }
// RUN: ls %t | FileCheck %s --check-prefix=DONE --implicit-check-not=tmp --implicit-check-not=bak
// DONE: dir.npy
// DONE: out0.npy
// DONE: out1.npy
// DONE: out2.npy

func.func @f(%a: tensor<2xf32>) -> (tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) {
  return %a, %a, %a : tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
}
