// Every failure is one clear message on stderr, exit code 1, and no output
// file (outputs are written to temporaries and renamed only on success).

// RUN: rm -rf %t && mkdir -p %t

// Arity.
// RUN: not kvmerge-run %s --function=f --input=4x8xf32=1 --input=4x8xf32=1 2>&1 | FileCheck %s --check-prefix=ARITY
// ARITY: kvmerge-run: error: function 'f' takes 3 inputs, got 2
// RUN: not kvmerge-run %s --function=f --input=4x8xf32=1 --input=4x8xf32=1 2>&1 | count 1

// Shape, rank and element type.
// RUN: not kvmerge-run %s --function=f --input=4x8xf32=1 --input=4x9xf32=1 --input=2xi32=7 2>&1 | FileCheck %s --check-prefix=SHAPE
// SHAPE: kvmerge-run: error: input 1 of 'f' (%arg1) must be tensor<4x8xf32>, got 4x9xf32
// RUN: not kvmerge-run %s --function=f --input=4x8xf32=1 --input=32xf32=1 --input=2xi32=7 2>&1 | FileCheck %s --check-prefix=RANK
// RANK: kvmerge-run: error: input 1 of 'f' (%arg1) must be tensor<4x8xf32>, got 32xf32
// RUN: not kvmerge-run %s --function=f --input=4x8xf32=1 --input=4x8xf32=1 --input=2xi64=7 2>&1 | FileCheck %s --check-prefix=DTYPE
// DTYPE: kvmerge-run: error: input 2 of 'f' (%arg2) must be tensor<2xi32>, got 2xi64
// RUN: not kvmerge-run %s --function=dyn --input=4x3xf32=1 2>&1 | FileCheck %s --check-prefix=DYNSHAPE
// DYNSHAPE: kvmerge-run: error: input 0 of 'dyn' (%arg0) must be tensor<?x4xf32>, got 4x3xf32
// RUN: not kvmerge-run %s --function=scalar --input=1xf32=1 2>&1 | FileCheck %s --check-prefix=SCALAR
// SCALAR: kvmerge-run: error: input 0 of 'scalar' (%arg0) must be a scalar f32 (write f32=VALUE), got 1xf32

// Functions.
// RUN: not kvmerge-run %s --function=nope 2>&1 | FileCheck %s --check-prefix=UNKNOWN
// UNKNOWN: kvmerge-run: error: function 'nope' not found in '{{.*}}errors.mlir' (available: f, dyn, scalar, dynres)
// RUN: not kvmerge-run %s 2>&1 | FileCheck %s --check-prefix=REQUIRED
// REQUIRED: kvmerge-run: error: --function is required: '{{.*}}errors.mlir' has several public functions (f, dyn, scalar, dynres)
// RUN: not kvmerge-run %s --function=priv --input=4xf32=1 2>&1 | FileCheck %s --check-prefix=PRIVATE
// PRIVATE: kvmerge-run: error: function 'priv' cannot be run: it is private; only public functions get a C interface
// RUN: not kvmerge-run %s --function=memref_arg --input=4xf32=1 2>&1 | FileCheck %s --check-prefix=MEMREF
// MEMREF: kvmerge-run: error: function 'memref_arg' cannot be run: argument 0 has type memref<4xf32>; only ranked tensors (no encoding) and scalars of f16, bf16, f32, f64, i8, i32 or i64 are supported
// RUN: not kvmerge-run %s --function=index_result 2>&1 | FileCheck %s --check-prefix=INDEX
// INDEX: kvmerge-run: error: function 'index_result' cannot be run: result 0 has type tensor<2xindex>; only ranked tensors (no encoding) of f16, bf16, f32, f64, i8, i32 or i64 are supported
// RUN: not kvmerge-run %s --function=dynres --input=3xf32=1 2>&1 | FileCheck %s --check-prefix=DYNRES
// DYNRES: kvmerge-run: error: result 0 of 'dynres' has type tensor<?xf32>: results must have static shapes, because the caller allocates every output buffer

// Inline values.
// RUN: not kvmerge-run %s --function=dyn --input=2x4xf32=1,2,3 2>&1 | FileCheck %s --check-prefix=COUNT
// COUNT: kvmerge-run: error: --input 0 ('2x4xf32=1,2,3'): '2x4xf32' has 8 elements but 3 values were given (give all of them, or one value to fill the tensor)
// RUN: not kvmerge-run %s --function=dyn --input=2x4xf32=1,x,3,4,5,6,7,8 2>&1 | FileCheck %s --check-prefix=VALUE
// VALUE: kvmerge-run: error: --input 0 ('2x4xf32=1,x,3,4,5,6,7,8'): invalid f32 value 'x'
// RUN: not kvmerge-run %s --function=dyn --input=2x4xf17=1 2>&1 | FileCheck %s --check-prefix=TYPE
// TYPE: kvmerge-run: error: --input 0 ('2x4xf17=1'): unknown element type 'f17' in '2x4xf17' (expected f16, bf16, f32, f64, i8, i32 or i64, as in 4x8xf32=...)
// RUN: not kvmerge-run %s --function=dyn --input=?x4xf32=1 2>&1 | FileCheck %s --check-prefix=QUESTION
// QUESTION: kvmerge-run: error: --input 0 ('?x4xf32=1'): dynamic dimension '?' in '?x4xf32': give the concrete size of every dimension
// RUN: not kvmerge-run %s --function=f --input=4x8xf32=1 --input=4x8xf32=1 --input=2xi32=1,2147483648 2>&1 | FileCheck %s --check-prefix=RANGE
// RANGE: kvmerge-run: error: --input 2 ('2xi32=1,2147483648'): value 2147483648 is out of range for i32
// RUN: not kvmerge-run %s --function=f --input=4x8xf32=1 --input=4x8xf32=1 --input=2xi32=1.5 2>&1 | FileCheck %s --check-prefix=INTVALUE
// INTVALUE: kvmerge-run: error: --input 2 ('2xi32=1.5'): invalid i32 value '1.5'
// RUN: not kvmerge-run %s --function=dyn --input=99999999999x99999999999xf32=1 2>&1 | FileCheck %s --check-prefix=HUGE
// HUGE: kvmerge-run: error: --input 0 ('99999999999x99999999999xf32=1'): element count overflows 64 bits

// RUN: not kvmerge-run %s --function=scalar --input=f32=1,2 2>&1 | FileCheck %s --check-prefix=SCALARCOUNT
// SCALARCOUNT: kvmerge-run: error: --input 0 ('f32=1,2'): 'f32' has 1 element but 2 values were given

// RUN: not kvmerge-run %s --function=scalar --input=f32=1 --opt-level=4 2>&1 | FileCheck %s --check-prefix=OPT
// OPT: kvmerge-run: error: optimization level 4 is not 0-3

// Outputs.
// RUN: not kvmerge-run %s --function=dyn --input=2x4xf32=1 --output=%t/x.npy 2>&1 | FileCheck %s --check-prefix=OUTFLAG
// OUTFLAG: kvmerge-run: error: --output '{{.*}}x.npy' must be @FILE.npy or -
// RUN: not kvmerge-run %s --function=dyn --input=2x4xf32=1 --output=@%t/a.npy --output=@%t/b.npy 2>&1 | FileCheck %s --check-prefix=OUTCOUNT
// OUTCOUNT: kvmerge-run: error: function 'dyn' has 1 result, got 2 --output flags
// A failure before running leaves no file.
// RUN: not kvmerge-run %s --function=f --input=4x8xf32=1 --input=4x9xf32=1 --input=2xi32=7 --output=@%t/early.npy --output=@%t/early2.npy
// RUN: not test -e %t/early.npy
// A failure to write the second output leaves no first output either.
// RUN: not kvmerge-run %s --function=f --input=4x8xf32=1 --input=4x8xf32=1 --input=2xi32=7 --output=@%t/first.npy --output=@%t/no/such/dir/second.npy 2>&1 | FileCheck %s --check-prefix=NODIR
// NODIR: kvmerge-run: error: cannot write '{{.*}}second.npy': {{.*}}
// RUN: not test -e %t/first.npy
// RUN: ls %t | count 0
// ...and the same command writes both once the directory exists.
// RUN: mkdir -p %t/no/such/dir
// RUN: kvmerge-run %s --function=f --input=4x8xf32=1 --input=4x8xf32=1 --input=2xi32=7 --output=@%t/first.npy --output=@%t/no/such/dir/second.npy
// RUN: test -e %t/first.npy && test -e %t/no/such/dir/second.npy

// Devices.
// (--device=cuda without a driver: test/Integration/GPU/no-driver.mlir.)
// RUN: not kvmerge-run %s --function=dyn --input=2x4xf32=1 --device=tpu 2>&1 | FileCheck %s --check-prefix=DEVICE
// DEVICE: kvmerge-run: error: unknown device 'tpu' (available: cpu, cuda)

// Files: a missing module, MLIR syntax errors (MLIR's own diagnostics).
// RUN: not kvmerge-run %t/missing.mlir 2>&1 | FileCheck %s --check-prefix=NOFILE
// NOFILE: kvmerge-run: error: cannot read '{{.*}}missing.mlir': {{[Nn]}}o such file or directory
// RUN: echo "func.func @f(%%a: tensor<4xf32>) -> tensor<4xf32> { return %%b : tensor<4xf32> }" > %t/bad.mlir
// RUN: not kvmerge-run %t/bad.mlir --input=4xf32=1 2>&1 | FileCheck %s --check-prefix=PARSE
// PARSE: kvmerge-run: error: {{.*}}bad.mlir:1:{{[0-9]+}}: error: use of undeclared SSA value name
// PARSE-NEXT: func.func

func.func @f(%a: tensor<4x8xf32>, %b: tensor<4x8xf32>, %c: tensor<2xi32>)
    -> (tensor<4x8xf32>, tensor<2xi32>) {
  return %a, %c : tensor<4x8xf32>, tensor<2xi32>
}

func.func @dyn(%a: tensor<?x4xf32>) -> tensor<4xf32> {
  %s = tensor.extract_slice %a[0, 0] [1, 4] [1, 1]
      : tensor<?x4xf32> to tensor<4xf32>
  return %s : tensor<4xf32>
}

func.func @scalar(%a: f32) -> tensor<f32> {
  %t = tensor.from_elements %a : tensor<f32>
  return %t : tensor<f32>
}

func.func @dynres(%a: tensor<?xf32>) -> tensor<?xf32> {
  return %a : tensor<?xf32>
}

func.func private @priv(%a: tensor<4xf32>) -> tensor<4xf32> {
  return %a : tensor<4xf32>
}

func.func @memref_arg(%a: memref<4xf32>) {
  return
}

func.func @index_result() -> tensor<2xindex> {
  %c = arith.constant dense<[1, 2]> : tensor<2xindex>
  return %c : tensor<2xindex>
}

