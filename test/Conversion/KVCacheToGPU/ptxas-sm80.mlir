// Every kernel the GPU pipeline emits assembles with ptxas for sm_80 with
// no spills and no stack frame (no local memory). Register counts are
// recorded in docs/gpu.md.
// REQUIRES: ptxas
// RUN: rm -rf %t && mkdir -p %t
// RUN: kvmerge-opt %kvmerge_src/test/Integration/GPU/kernels.mlir --kvmerge-lower-to-nvvm="chip=sm_80 dump-ptx=%t/k" -o /dev/null
// RUN: kvmerge-opt %kvmerge_src/examples/compress-smollm2.mlir --kvmerge-lower-to-nvvm="chip=sm_80 dump-ptx=%t/e" -o /dev/null
// RUN: %python %kvmerge_src/scripts/ptxas-report.py --ptxas %ptxas --arch sm_80 %t/k > %t/k.txt
// RUN: %python %kvmerge_src/scripts/ptxas-report.py --ptxas %ptxas --arch sm_80 %t/e > %t/e.txt
// RUN: FileCheck %s --check-prefix=NAMES < %t/k.txt
// RUN: FileCheck %s --check-prefix=K < %t/k.txt
// RUN: FileCheck %s --check-prefix=E < %t/e.txt
// RUN: FileCheck %s --check-prefix=NOSPILL < %t/k.txt
// RUN: FileCheck %s --check-prefix=NOSPILL < %t/e.txt

// NAMES-DAG: kernel=kvmerge_similarity arch=sm_80
// NAMES-DAG: kernel=kvmerge_merge_sets arch=sm_80
// NAMES-DAG: kernel=kvmerge_select_sets arch=sm_80
// NAMES-DAG: kernel=kvmerge_merge_init arch=sm_80
// NAMES-DAG: kernel=kvmerge_merge_ranges arch=sm_80
// NAMES-DAG: kernel=kvmerge_merge_slots arch=sm_80
// NAMES-DAG: kernel=kvmerge_attention_split arch=sm_80
// NAMES-DAG: kernel=kvmerge_attention_combine arch=sm_80
// K-COUNT-13: kernel=kvmerge_{{[a-z_]+}} arch=sm_80 registers={{[0-9]+}} stack=0 spill_stores=0 spill_loads=0
// E-COUNT-7: kernel=kvmerge_{{[a-z_]+}} arch=sm_80 registers={{[0-9]+}} stack=0 spill_stores=0 spill_loads=0
// NOSPILL-NOT: stack={{[1-9]}}
// NOSPILL-NOT: spill_stores={{[1-9]}}
// NOSPILL-NOT: spill_loads={{[1-9]}}
