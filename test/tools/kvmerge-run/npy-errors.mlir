// Malformed or unsupported .npy inputs: one clear error, exit code 1, never
// a crash or an over-read.

// RUN: rm -rf %t && mkdir -p %t

// RUN: not kvmerge-run %s --input=@%t/missing.npy 2>&1 | FileCheck %s --check-prefix=MISSING
// MISSING: kvmerge-run: error: --input 0: cannot read '{{.*}}missing.npy': {{[Nn]}}o such file or directory

// RUN: printf "" > %t/empty.npy
// RUN: not kvmerge-run %s --input=@%t/empty.npy 2>&1 | FileCheck %s --check-prefix=MAGIC
// RUN: printf "hello world, not numpy" > %t/text.npy
// RUN: not kvmerge-run %s --input=@%t/text.npy 2>&1 | FileCheck %s --check-prefix=MAGIC
// MAGIC: kvmerge-run: error: --input 0: {{.*}}.npy: not a .npy file (bad magic; expected \x93NUMPY)

// RUN: printf "\x93NUMPY\x09\x00\x3a\x00{}" > %t/version.npy
// RUN: not kvmerge-run %s --input=@%t/version.npy 2>&1 | FileCheck %s --check-prefix=VERSION
// VERSION: version.npy: unsupported .npy format version 9.0 (supported: 1.0, 2.0, 3.0)

// The file ends inside the header length, or inside the header.
// RUN: printf "\x93NUMPY\x02\x00\x3a" > %t/shortlen.npy
// RUN: not kvmerge-run %s --input=@%t/shortlen.npy 2>&1 | FileCheck %s --check-prefix=SHORTLEN
// SHORTLEN: shortlen.npy: truncated header (file ends inside the header length)
// RUN: printf "\x93NUMPY\x01\x00\x3a\x00{'descr'" > %t/shorthdr.npy
// RUN: not kvmerge-run %s --input=@%t/shorthdr.npy 2>&1 | FileCheck %s --check-prefix=SHORTHDR
// SHORTHDR: shorthdr.npy: truncated header (header length 58 exceeds the 8 bytes left in the file)

// A 4 GiB header length in a tiny file.
// RUN: printf "\x93NUMPY\x02\x00\xff\xff\xff\xff{}" > %t/hugelen.npy
// RUN: not kvmerge-run %s --input=@%t/hugelen.npy 2>&1 | FileCheck %s --check-prefix=HUGELEN
// HUGELEN: hugelen.npy: truncated header (header length 4294967295 exceeds the 2 bytes left in the file)

// Header dict problems.
// RUN: printf "\x93NUMPY\x01\x00\x08\x00{'descr'" > %t/unterminated.npy
// RUN: not kvmerge-run %s --input=@%t/unterminated.npy 2>&1 | FileCheck %s --check-prefix=UNTERM
// UNTERM: unterminated.npy: malformed header (expected ':' at offset 8)
// RUN: printf "\x93NUMPY\x01\x00\x2a\x00{'fortran_order': False, 'shape': (4,), }\n" > %t/nodescr.npy
// RUN: not kvmerge-run %s --input=@%t/nodescr.npy 2>&1 | FileCheck %s --check-prefix=NODESCR
// NODESCR: nodescr.npy: header has no 'descr' key
// RUN: printf "\x93NUMPY\x01\x00\x43\x00{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4,), }\n" > %t/struct.npy
// RUN: not kvmerge-run %s --input=@%t/struct.npy 2>&1 | FileCheck %s --check-prefix=STRUCT
// STRUCT: struct.npy: malformed header (nested value (structured dtypes are not supported) at offset 10)
// RUN: printf "\x93NUMPY\x01\x00\x4d\x00{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }\n" > %t/bigint.npy
// RUN: not kvmerge-run %s --input=@%t/bigint.npy 2>&1 | FileCheck %s --check-prefix=BIGINT
// BIGINT: bigint.npy: malformed header (invalid or out-of-range integer '99999999999999999999' at offset 71)

// Shapes whose element or byte count overflows, or negative dimensions.
// RUN: printf "\x93NUMPY\x01\x00\x51\x00{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4), }\n" > %t/overflow.npy
// RUN: not kvmerge-run %s --input=@%t/overflow.npy 2>&1 | FileCheck %s --check-prefix=OVERFLOW
// OVERFLOW: overflow.npy: element count overflows 64 bits in shape (4294967296, 4294967296, 4)
// RUN: printf "\x93NUMPY\x01\x00\x4c\x00{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904,), }\n" > %t/bytes.npy
// RUN: not kvmerge-run %s --input=@%t/bytes.npy 2>&1 | FileCheck %s --check-prefix=BYTES
// BYTES: bytes.npy: byte size overflows in shape (4611686018427387904,)
// RUN: printf "\x93NUMPY\x01\x00\x3b\x00{'descr': '<f4', 'fortran_order': False, 'shape': (-4,), }\n" > %t/negative.npy
// RUN: not kvmerge-run %s --input=@%t/negative.npy 2>&1 | FileCheck %s --check-prefix=NEGATIVE
// NEGATIVE: negative.npy: negative dimension -4 in shape (-4,)

// Data shorter or longer than the shape says.
// RUN: printf "\x93NUMPY\x01\x00\x3a\x00{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }\n\x00\x00\x80\x3f\x00\x00\x80\x3f" > %t/short.npy
// RUN: not kvmerge-run %s --input=@%t/short.npy 2>&1 | FileCheck %s --check-prefix=SHORT
// SHORT: short.npy: truncated data: shape (4,) of f32 needs 16 bytes but only 8 follow the header
// RUN: printf "\x93NUMPY\x01\x00\x3a\x00{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }\n0123456789abcdefXYZ" > %t/long.npy
// RUN: not kvmerge-run %s --input=@%t/long.npy 2>&1 | FileCheck %s --check-prefix=LONG
// LONG: long.npy: data size mismatch: shape (4,) of f32 needs 16 bytes but 19 follow the header

// Unsupported layouts and dtypes.
// RUN: printf "\x93NUMPY\x01\x00\x39\x00{'descr': '<f4', 'fortran_order': True, 'shape': (4,), }\n0123456789abcdef" > %t/fortran.npy
// RUN: not kvmerge-run %s --input=@%t/fortran.npy 2>&1 | FileCheck %s --check-prefix=FORTRAN
// FORTRAN: fortran.npy: fortran_order=True arrays are not supported; save a C-order array (np.ascontiguousarray(arr))
// RUN: printf "\x93NUMPY\x01\x00\x3a\x00{'descr': '<u4', 'fortran_order': False, 'shape': (4,), }\n0123456789abcdef" > %t/u4.npy
// RUN: not kvmerge-run %s --input=@%t/u4.npy 2>&1 | FileCheck %s --check-prefix=U4
// U4: u4.npy: unsupported dtype '<u4' (supported: <f2 <f4 <f8 |i1 <i4 <i8, and <V2 for bfloat16)
// RUN: printf "\x93NUMPY\x01\x00\x3a\x00{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }\n0123456789abcdef" > %t/be.npy
// RUN: not kvmerge-run %s --input=@%t/be.npy 2>&1 | FileCheck %s --check-prefix=BIGENDIAN
// BIGENDIAN: be.npy: big-endian dtype '>f4' is not supported

// The well-formed variant of the files above is accepted.
// RUN: printf "\x93NUMPY\x01\x00\x3a\x00{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }\n\x00\x00\x80\x3f\x00\x00\x00\x40\x00\x00\x40\x40\x00\x00\x80\x40" > %t/good.npy
// RUN: kvmerge-run %s --input=@%t/good.npy | FileCheck %s --check-prefix=GOOD
// GOOD: result[0]: 4xf32=1 2 3 4

func.func @id(%a: tensor<4xf32>) -> tensor<4xf32> {
  return %a : tensor<4xf32>
}
