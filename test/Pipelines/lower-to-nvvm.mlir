// --kvmerge-lower-to-nvvm: host LLVM with gpu.launch_func calls and one
// gpu.binary (PTX text for the requested chip) per kernel; device copies
// around the kernels; dump-ptx writes the PTX files.
// RUN: rm -rf %t
// RUN: kvmerge-opt %kvmerge_src/examples/compress-smollm2.mlir --kvmerge-lower-to-nvvm="chip=sm_90a features=+ptx80 opt-level=3 dump-ptx=%t" > %t.out
// RUN: FileCheck %s < %t.out
// RUN: FileCheck %s --check-prefix=BIN < %t.out
// RUN: cat %t/kvmerge_similarity_0.sm_90a.ptx | FileCheck %s --check-prefix=PTX
// RUN: not grep fma %t/kvmerge_similarity_0.sm_90a.ptx

// CHECK: llvm.func @compress_layer(
// CHECK: llvm.call @mgpuStreamCreate
// CHECK: llvm.call @mgpuMemAlloc
// CHECK: llvm.call @mgpuMemcpy
// CHECK: gpu.launch_func <%{{.*}} : !llvm.ptr> @kvmerge_similarity_0::@kvmerge_similarity
// CHECK: gpu.launch_func <%{{.*}} : !llvm.ptr> @kvmerge_merge_sets_1::@kvmerge_merge_sets
// CHECK: gpu.launch_func <%{{.*}} : !llvm.ptr> @kvmerge_merge_slots_4::@kvmerge_merge_slots
// CHECK: llvm.call @mgpuMemFree
// CHECK: llvm.call @mgpuStreamSynchronize
// CHECK: llvm.func @_mlir_ciface_compress_layer
// CHECK: llvm.func @decode_step(
// CHECK: gpu.launch_func {{.*}} @kvmerge_attention_split_5::@kvmerge_attention_split
// CHECK: gpu.launch_func {{.*}} @kvmerge_attention_combine_6::@kvmerge_attention_combine
// BIN: gpu.binary @kvmerge_similarity_0 {{ *}}[#gpu.object<#nvvm.target<O = 3, chip = "sm_90a", features = "+ptx80">, {{.*}}assembly = "{{.*}}.target sm_90a
// BIN: gpu.binary @kvmerge_attention_combine_6

// PTX: .version 8.0
// PTX: .target sm_90a
// PTX: .visible .entry kvmerge_similarity(
// PTX: .maxntid 256, 1, 1
// PTX: .minnctapersm 4
// The similarity's fixed order survives ptxas: f64 products and sums with
// explicit round-to-nearest (ptxas does not contract .rn operations into
// fma; no fma at all: the `not grep` above), correctly rounded sqrt and
// division.
// PTX: mul.rn.f64
// PTX: add.rn.f64
// PTX: shfl.sync.bfly.b32
// PTX: sqrt.rn.f64
// PTX: div.rn.f64
// PTX: cvt.rn.f32.f64
