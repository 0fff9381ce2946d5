//===- Passes.h - kvmerge conversion passes ---------------------*- C++ -*-===//

#ifndef KVMERGE_CONVERSION_PASSES_H
#define KVMERGE_CONVERSION_PASSES_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace kvmerge {

#define GEN_PASS_DECL
#include "kvmerge/Conversion/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "kvmerge/Conversion/Passes.h.inc"

} // namespace kvmerge

#endif // KVMERGE_CONVERSION_PASSES_H
