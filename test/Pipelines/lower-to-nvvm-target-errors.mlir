// Chips and features the LLVM NVPTX target does not know, and a PTX version
// below the chip's minimum, are one clear error before lowering (issue 16:
// code generation for an unknown chip aborted with `LLVM ERROR: Cannot
// select`, a too-old PTX version was a fatal error).
// RUN: not kvmerge-opt %s --kvmerge-lower-to-nvvm="chip=sm_999" 2>&1 | FileCheck %s --check-prefix=CHIP
// RUN: not kvmerge-opt %s --kvmerge-lower-to-nvvm="chip=sm_xx" 2>&1 | FileCheck %s --check-prefix=CHIP2
// RUN: not kvmerge-opt %s --kvmerge-lower-to-nvvm="chip=sm_90a features=+ptx999" 2>&1 | FileCheck %s --check-prefix=FEATURE
// RUN: not kvmerge-opt %s --kvmerge-lower-to-nvvm="chip=sm_90a features=ptx80" 2>&1 | FileCheck %s --check-prefix=SIGN
// RUN: not kvmerge-opt %s --kvmerge-lower-to-nvvm="chip=sm_100" 2>&1 | FileCheck %s --check-prefix=PTX
// RUN: kvmerge-opt %s --kvmerge-lower-to-nvvm="chip=sm_100 features=+ptx86" | FileCheck %s --check-prefix=OK
// RUN: kvmerge-opt %s --kvmerge-lower-to-nvvm="chip=sm_80 features=+ptx70" | FileCheck %s --check-prefix=OK

// CHIP: error: kvmerge-lower-to-nvvm: unknown chip 'sm_999' (chip=...; the LLVM NVPTX target knows {{.*}}sm_80, {{.*}}sm_90a)
// CHIP-NOT: see current operation
// CHIP-NOT: LLVM ERROR
// CHIP2: error: kvmerge-lower-to-nvvm: unknown chip 'sm_xx'
// FEATURE: error: kvmerge-lower-to-nvvm: unknown feature 'ptx999' (features=...; e.g. +ptx80, +ptx86)
// SIGN: error: kvmerge-lower-to-nvvm: feature 'ptx80' must start with '+' or '-'
// PTX: error: kvmerge-lower-to-nvvm: chip 'sm_100' needs PTX 8.6 or newer, but features='+ptx80' asks for PTX 8.0 (give +ptx86)
// PTX-NOT: LLVM ERROR
// OK: gpu.binary

func.func @f(%k: tensor<1x16x8xf32>) -> tensor<1x15xf32> {
  %s = kvcache.similarity %k : tensor<1x16x8xf32> -> tensor<1x15xf32>
  return %s : tensor<1x15xf32>
}
