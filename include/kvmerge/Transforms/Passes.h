//===- Passes.h - kvmerge transforms of upstream IR -------------*- C++ -*-===//

#ifndef KVMERGE_TRANSFORMS_PASSES_H
#define KVMERGE_TRANSFORMS_PASSES_H

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Pass/Pass.h"

namespace kvmerge {

#define GEN_PASS_DECL
#include "kvmerge/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "kvmerge/Transforms/Passes.h.inc"

} // namespace kvmerge

#endif // KVMERGE_TRANSFORMS_PASSES_H
