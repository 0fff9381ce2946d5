// Inputs that never end, and counts that would run for ever, are refused
// (issue 16, items 10 and 11; minor: a NUL in an .npy header).

// RUN: rm -rf %t && mkdir -p %t

// --benchmark-repetitions is bounded.
// RUN: not kvmerge-run %s --input=2xf32=1 --benchmark-repetitions=4294967295 2>&1 | FileCheck %s --check-prefix=REPS
// REPS: kvmerge-run: error: --benchmark-repetitions=4294967295 is too many (at most 1000000)

// A device as .npy input: read only as far as the header allows.
// RUN: not kvmerge-run %s --input=@/dev/zero 2>&1 | FileCheck %s --check-prefix=ZERO
// ZERO: kvmerge-run: error: --input 0: /dev/zero: not a .npy file (bad magic; expected \x93NUMPY)
// A device as the module.
// RUN: not kvmerge-run /dev/zero 2>&1 | FileCheck %s --check-prefix=MODULE
// MODULE: kvmerge-run: error: cannot read '/dev/zero': a device, not a regular file

// Streams (stdin, pipes) are read up to what the header declares, plus one
// byte: a valid array followed by endless zeros is a size error.
// RUN: kvmerge-run %s --input=2xf32=1,2 --output=@%t/a.npy
// RUN: kvmerge-run %s --input=@- < %t/a.npy | FileCheck %s --check-prefix=STDIN
// STDIN: result[0]: 2xf32=1 2
// RUN: sh -c 'cat %t/a.npy /dev/zero 2>/dev/null || true' | not kvmerge-run %s --input=@- 2>&1 | FileCheck %s --check-prefix=ENDLESS
// ENDLESS: kvmerge-run: error: --input 0: <stdin>: data size mismatch: shape (2,) of f32 needs 8 bytes but more follow the header
// RUN: head -c 100 %t/a.npy | not kvmerge-run %s --input=@- 2>&1 | FileCheck %s --check-prefix=SHORT
// SHORT: <stdin>: truncated header (header length 118 exceeds the 90 bytes left in the file)
// RUN: not kvmerge-run %s --input=@%t 2>&1 | FileCheck %s --check-prefix=DIR
// DIR: kvmerge-run: error: --input 0: cannot read '{{.*}}': {{[Ii]}}s a directory

// A NUL (or any non-printable byte) in the header is reported, not printed.
// RUN: %python -c "import sys; sys.stdout.buffer.write(b'\x93NUMPY\x01\x00\x0a\x00{\'de\x00cr\': ')" > %t/nul.npy
// RUN: not kvmerge-run %s --input=@%t/nul.npy 2>&1 | FileCheck %s --check-prefix=NUL
// NUL: nul.npy: malformed header (byte 0x00 at offset 4 is not printable ASCII)

func.func @f(%a: tensor<2xf32>) -> tensor<2xf32> {
  return %a : tensor<2xf32>
}

// Minor: emit-c-interface=0 names the option instead of a missing symbol.
// RUN: not kvmerge-run %s --input=2xf32=1 --pipeline-options=emit-c-interface=0 2>&1 | FileCheck %s --check-prefix=CIFACE
// CIFACE: kvmerge-run: error: pipeline option emit-c-interface=0 cannot be run: the runner calls the _mlir_ciface_ wrappers
