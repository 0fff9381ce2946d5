// Element types f16, bf16, f32, f64, i8, i32, i64. Inline f16/bf16 values
// are parsed as decimal and rounded once, to nearest-even.

// f16: 2049 and 2051 are ties (spacing 2 above 2048): 2048, 2052.
// RUN: kvmerge-run %s --function=id_f16 --input=4xf16=2049,2051,0.1,-65504 | FileCheck %s --check-prefix=F16
// F16: result[0]: 4xf16=2048 2052 0.0999756 -65504

// bf16: 257 and 259 are ties (spacing 2 above 256): 256, 260.
// RUN: kvmerge-run %s --function=id_bf16 --input=4xbf16=257,259,0.1,3e38 | FileCheck %s --check-prefix=BF16
// BF16: result[0]: 4xbf16=256 260 0.100098 3.00406e+38

// RUN: kvmerge-run %s --function=add_f16 --input=4xf16=1,2.5,0.1,65504 --input=4xf16=1,0.25,0.2,100 | FileCheck %s --check-prefix=ADDF16
// ADDF16: result[0]: 4xf16=2 2.75 0.299805 inf

// RUN: kvmerge-run %s --function=add_bf16 --input=4xbf16=1,2.5,0.1,-inf --input=4xbf16=1 | FileCheck %s --check-prefix=ADDBF16
// ADDBF16: result[0]: 4xbf16=2 3.5 1.10156 -inf

// Conversions inside compiled code (truncf rounds to nearest-even too).
// RUN: kvmerge-run %s --function=bf16_to_f32 --input=4xbf16=1,0.1,-3.3,nan | FileCheck %s --check-prefix=EXT
// EXT: result[0]: 4xf32=1 0.100098 -3.29688 nan
// RUN: kvmerge-run %s --function=f32_to_bf16 --input=4xf32=1,0.1,-3.3,1.00390625 | FileCheck %s --check-prefix=TRUNC
// TRUNC: result[0]: 4xbf16=1 0.100098 -3.29688 1

// RUN: kvmerge-run %s --function=mul_i32 --input=4xi32=1,-2,3,2147483647 --input=4xi32=7,8,-9,2 | FileCheck %s --check-prefix=I32
// I32: result[0]: 4xi32=7 -16 -27 -2

// RUN: kvmerge-run %s --function=add_i8 --input=4xi8=127,-128,5,+1 --input=4xi8=1 | FileCheck %s --check-prefix=I8
// I8: result[0]: 4xi8=-128 -127 6 2

// RUN: kvmerge-run %s --function=add_f64 --input=2xf64=0.5,1e300 --input=2xf64=0.25,1e300 | FileCheck %s --check-prefix=F64
// F64: result[0]: 2xf64=0.75 2e+300

func.func @id_f16(%a: tensor<4xf16>) -> tensor<4xf16> {
  return %a : tensor<4xf16>
}

func.func @id_bf16(%a: tensor<4xbf16>) -> tensor<4xbf16> {
  return %a : tensor<4xbf16>
}

func.func @add_f16(%a: tensor<4xf16>, %b: tensor<4xf16>) -> tensor<4xf16> {
  %e = tensor.empty() : tensor<4xf16>
  %0 = linalg.add ins(%a, %b : tensor<4xf16>, tensor<4xf16>)
                  outs(%e : tensor<4xf16>) -> tensor<4xf16>
  return %0 : tensor<4xf16>
}

func.func @add_bf16(%a: tensor<4xbf16>, %b: tensor<4xbf16>) -> tensor<4xbf16> {
  %e = tensor.empty() : tensor<4xbf16>
  %0 = linalg.add ins(%a, %b : tensor<4xbf16>, tensor<4xbf16>)
                  outs(%e : tensor<4xbf16>) -> tensor<4xbf16>
  return %0 : tensor<4xbf16>
}

func.func @bf16_to_f32(%a: tensor<4xbf16>) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %0 = linalg.generic {
      indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>],
      iterator_types = ["parallel"]}
      ins(%a : tensor<4xbf16>) outs(%e : tensor<4xf32>) {
  ^bb0(%x: bf16, %o: f32):
    %y = arith.extf %x : bf16 to f32
    linalg.yield %y : f32
  } -> tensor<4xf32>
  return %0 : tensor<4xf32>
}

func.func @f32_to_bf16(%a: tensor<4xf32>) -> tensor<4xbf16> {
  %e = tensor.empty() : tensor<4xbf16>
  %0 = linalg.generic {
      indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>],
      iterator_types = ["parallel"]}
      ins(%a : tensor<4xf32>) outs(%e : tensor<4xbf16>) {
  ^bb0(%x: f32, %o: bf16):
    %y = arith.truncf %x : f32 to bf16
    linalg.yield %y : bf16
  } -> tensor<4xbf16>
  return %0 : tensor<4xbf16>
}

func.func @mul_i32(%a: tensor<4xi32>, %b: tensor<4xi32>) -> tensor<4xi32> {
  %e = tensor.empty() : tensor<4xi32>
  %0 = linalg.mul ins(%a, %b : tensor<4xi32>, tensor<4xi32>)
                  outs(%e : tensor<4xi32>) -> tensor<4xi32>
  return %0 : tensor<4xi32>
}

func.func @add_i8(%a: tensor<4xi8>, %b: tensor<4xi8>) -> tensor<4xi8> {
  %e = tensor.empty() : tensor<4xi8>
  %0 = linalg.add ins(%a, %b : tensor<4xi8>, tensor<4xi8>)
                  outs(%e : tensor<4xi8>) -> tensor<4xi8>
  return %0 : tensor<4xi8>
}

func.func @add_f64(%a: tensor<2xf64>, %b: tensor<2xf64>) -> tensor<2xf64> {
  %e = tensor.empty() : tensor<2xf64>
  %0 = linalg.add ins(%a, %b : tensor<2xf64>, tensor<2xf64>)
                  outs(%e : tensor<2xf64>) -> tensor<2xf64>
  return %0 : tensor<2xf64>
}
