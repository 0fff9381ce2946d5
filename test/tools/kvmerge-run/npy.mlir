// .npy round trips: write results with --output=@FILE.npy, read them back
// with --input=@FILE.npy. Files are C-order, little-endian, version 1.0, with
// the header padded to 64 bytes; bf16 is written as '<V2' (ml_dtypes).

// RUN: rm -rf %t && mkdir -p %t

// f32: header, size (128-byte preamble + 24 bytes), and feeding it back.
// RUN: kvmerge-run %s --function=add --input=2x3xf32=1,2,3,4,5,6 --input=2x3xf32=0.5 --output=@%t/sum.npy | count 0
// RUN: FileCheck %s --check-prefix=HEADER --input-file=%t/sum.npy
// HEADER: NUMPY
// HEADER-SAME: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// RUN: wc -c < %t/sum.npy | FileCheck %s --check-prefix=SIZE
// SIZE: 152
// RUN: kvmerge-run %s --function=add --input=@%t/sum.npy --input=@%t/sum.npy | FileCheck %s --check-prefix=SUM
// SUM: result[0]: 2x3xf32=[3 5 7][9 11 13]

// f16, bf16, i32, i8, i64 and rank 0 through files.
// RUN: kvmerge-run %s --function=id_f16 --input=3xf16=0.1,2049,-7 --output=@%t/h.npy
// RUN: FileCheck %s --check-prefix=F16HDR --input-file=%t/h.npy
// F16HDR: {'descr': '<f2', 'fortran_order': False, 'shape': (3,), }
// RUN: kvmerge-run %s --function=id_f16 --input=@%t/h.npy | FileCheck %s --check-prefix=F16
// F16: result[0]: 3xf16=0.0999756 2048 -7

// RUN: kvmerge-run %s --function=id_bf16 --input=3xbf16=0.1,257,-7 --output=@%t/b.npy
// RUN: FileCheck %s --check-prefix=BF16HDR --input-file=%t/b.npy
// BF16HDR: {'descr': '<V2', 'fortran_order': False, 'shape': (3,), }
// RUN: kvmerge-run %s --function=bf16_to_f32 --input=@%t/b.npy | FileCheck %s --check-prefix=BF16
// BF16: result[0]: 3xf32=0.100098 256 -7

// A '<V2' file is only bf16 where bf16 is expected.
// RUN: not kvmerge-run %s --function=id_f16 --input=@%t/b.npy 2>&1 | FileCheck %s --check-prefix=V2ERR
// V2ERR: kvmerge-run: error: --input 0: {{.*}}b.npy: dtype '<V2' is raw 2-byte data (how ml_dtypes saves bfloat16); it is read only as bf16, but f16 is expected

// An f16 file where f32 is expected is a type error, not a conversion.
// RUN: not kvmerge-run %s --function=add --input=@%t/h.npy --input=@%t/h.npy 2>&1 | FileCheck %s --check-prefix=F16ERR
// F16ERR: kvmerge-run: error: input 0 of 'add' (%arg0) must be tensor<2x3xf32>, got 3xf16

// RUN: kvmerge-run %s --function=ints --input=2x2xi32=1,-2,3,2147483647 --input=2xi8=-128,127 --output=@%t/i32.npy --output=@%t/i8.npy --output=@%t/i64.npy
// RUN: FileCheck %s --check-prefix=I32HDR --input-file=%t/i32.npy
// I32HDR: {'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }
// RUN: FileCheck %s --check-prefix=I8HDR --input-file=%t/i8.npy
// I8HDR: {'descr': '|i1', 'fortran_order': False, 'shape': (2,), }
// RUN: FileCheck %s --check-prefix=I64HDR --input-file=%t/i64.npy
// I64HDR: {'descr': '<i8', 'fortran_order': False, 'shape': (), }
// RUN: kvmerge-run %s --function=ints --input=@%t/i32.npy --input=@%t/i8.npy | FileCheck %s --check-prefix=INTS
// INTS: result[0]: 2x2xi32=[1 -2][3 2147483647]
// INTS-NEXT: result[1]: 2xi8=-128 127
// INTS-NEXT: result[2]: i64=2147483648

// --output=- prints that result; results after the last --output print too.
// RUN: kvmerge-run %s --function=ints --input=@%t/i32.npy --input=@%t/i8.npy --output=- --output=@%t/only.npy | FileCheck %s --check-prefix=MIXED
// MIXED: result[0]: 2x2xi32=[1 -2][3 2147483647]
// MIXED-NOT: result[1]
// MIXED: result[2]: i64=2147483648
// RUN: kvmerge-run %s --function=id_i8 --input=@%t/only.npy | FileCheck %s --check-prefix=ONLY
// ONLY: result[0]: 2xi8=-128 127

// Hand-made files: version 2.0 (4-byte header length), version 3.0 with
// '|V2' bf16, Python 2 style '4L' dimensions, no padding.
// RUN: printf "\x93NUMPY\x02\x00\x3a\x00\x00\x00{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }\n\x07\x00\x00\x00\xf9\xff\xff\xff" > %t/v2.npy
// RUN: kvmerge-run %s --function=id_i32 --input=@%t/v2.npy | FileCheck %s --check-prefix=V2
// V2: result[0]: 2xi32=7 -7
// RUN: printf "\x93NUMPY\x03\x00\x3a\x00\x00\x00{'descr': '|V2', 'fortran_order': False, 'shape': (2,), }\n\x80\x3f\x00\xc0" > %t/v3.npy
// RUN: kvmerge-run %s --function=bf16_to_f32_2 --input=@%t/v3.npy | FileCheck %s --check-prefix=V3
// V3: result[0]: 2xf32=1 -2
// RUN: printf "\x93NUMPY\x01\x00\x3b\x00{'descr': '<i4', 'fortran_order': False, 'shape': (2L,), }\n\x01\x00\x00\x00\x02\x00\x00\x00" > %t/long.npy
// RUN: kvmerge-run %s --function=id_i32 --input=@%t/long.npy | FileCheck %s --check-prefix=LONG
// LONG: result[0]: 2xi32=1 2

func.func @add(%a: tensor<2x3xf32>, %b: tensor<2x3xf32>) -> tensor<2x3xf32> {
  %e = tensor.empty() : tensor<2x3xf32>
  %0 = linalg.add ins(%a, %b : tensor<2x3xf32>, tensor<2x3xf32>)
                  outs(%e : tensor<2x3xf32>) -> tensor<2x3xf32>
  return %0 : tensor<2x3xf32>
}

func.func @id_f16(%a: tensor<3xf16>) -> tensor<3xf16> {
  return %a : tensor<3xf16>
}

func.func @id_bf16(%a: tensor<3xbf16>) -> tensor<3xbf16> {
  return %a : tensor<3xbf16>
}

func.func @id_i32(%a: tensor<2xi32>) -> tensor<2xi32> {
  return %a : tensor<2xi32>
}

func.func @id_i8(%a: tensor<2xi8>) -> tensor<2xi8> {
  return %a : tensor<2xi8>
}

func.func @bf16_to_f32(%a: tensor<3xbf16>) -> tensor<3xf32> {
  %e = tensor.empty() : tensor<3xf32>
  %0 = linalg.generic {
      indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>],
      iterator_types = ["parallel"]}
      ins(%a : tensor<3xbf16>) outs(%e : tensor<3xf32>) {
  ^bb0(%x: bf16, %o: f32):
    %y = arith.extf %x : bf16 to f32
    linalg.yield %y : f32
  } -> tensor<3xf32>
  return %0 : tensor<3xf32>
}

func.func @bf16_to_f32_2(%a: tensor<?xbf16>) -> tensor<2xf32> {
  %s = tensor.extract_slice %a[0] [2] [1] : tensor<?xbf16> to tensor<2xbf16>
  %e = tensor.empty() : tensor<2xf32>
  %0 = linalg.generic {
      indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>],
      iterator_types = ["parallel"]}
      ins(%s : tensor<2xbf16>) outs(%e : tensor<2xf32>) {
  ^bb0(%x: bf16, %o: f32):
    %y = arith.extf %x : bf16 to f32
    linalg.yield %y : f32
  } -> tensor<2xf32>
  return %0 : tensor<2xf32>
}

// Returns both inputs and the (i64) sum of the i32 input's extremes.
func.func @ints(%a: tensor<2x2xi32>, %b: tensor<2xi8>)
    -> (tensor<2x2xi32>, tensor<2xi8>, tensor<i64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %x = tensor.extract %a[%c1, %c1] : tensor<2x2xi32>
  %y = tensor.extract %a[%c0, %c0] : tensor<2x2xi32>
  %x64 = arith.extsi %x : i32 to i64
  %y64 = arith.extsi %y : i32 to i64
  %s = arith.addi %x64, %y64 : i64
  %t = tensor.from_elements %s : tensor<i64>
  return %a, %b, %t : tensor<2x2xi32>, tensor<2xi8>, tensor<i64>
}
