/*===- kvmerge-c/AOT.h - C ABI of kvmerge's ahead-of-time artifacts -*- C -*-===*\
|*                                                                            *|
|* `kvmerge-aot in.mlir --target=cuda --chip=sm_90a -o libfoo.so` (or         *|
|* --target=cpu) compiles every public function of a module into a shared     *|
|* object that needs neither LLVM nor MLIR at run time (docs/aot.md). Its     *|
|* only exported symbols are the functions below (plus `_mlir_ciface_NAME`,   *|
|* the raw memref-descriptor entry points). A CUDA artifact opens             *|
|* libcuda.so.1 itself, with dlopen; nothing links against CUDA.              *|
|*                                                                            *|
|*   void *lib = dlopen("libfoo.so", RTLD_NOW | RTLD_LOCAL);                  *|
|*   ... kvmerge_aot_lookup("compress") -> its inputs and results             *|
|*   kvmerge_aot_tensor in[3] = {...}, out[6] = {...};   // caller allocates  *|
|*   if (kvmerge_aot_call("compress", in, 3, out, 6) != KVMERGE_AOT_OK)       *|
|*     fprintf(stderr, "%s\n", kvmerge_aot_last_error());                     *|
|*                                                                            *|
|* Buffers are dense, C-ordered (row-major) host memory; inputs are never     *|
|* written; outputs have exactly the result's static shape and are           *|
|* overwritten. A CUDA artifact copies inputs to the device and results back  *|
|* inside each call (the kernels' temporaries never leave the device).        *|
|*                                                                            *|
|* Threads: a CPU artifact may be called from several threads at once; a     *|
|* CUDA artifact serializes its calls (the driver errors of a call are        *|
|* collected process-wide).                                                   *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#ifndef KVMERGE_C_AOT_H
#define KVMERGE_C_AOT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this ABI; kvmerge_aot_abi_version() of an artifact. */
#define KVMERGE_AOT_ABI_VERSION 1

/* A dynamic dimension in kvmerge_aot_value.shape. */
#define KVMERGE_AOT_DYNAMIC (-1)

/* Status codes. */
#define KVMERGE_AOT_OK 0
/* Bad arguments: unknown function, wrong count, dtype, rank or shape,
 * missing data. Nothing was run. */
#define KVMERGE_AOT_INVALID_ARGUMENT 1
/* The device is unavailable (no driver, no GPU, kernels that do not load on
 * this GPU) or failed during the call; outputs are then undefined. */
#define KVMERGE_AOT_DEVICE_ERROR 2
/* The artifact is malformed (its manifest does not parse). */
#define KVMERGE_AOT_BAD_ARTIFACT 3

/* Element types. */
typedef enum kvmerge_aot_dtype {
  KVMERGE_AOT_F16 = 1,
  KVMERGE_AOT_BF16 = 2, /* raw 2-byte bfloat16 (.npy '<V2', ml_dtypes) */
  KVMERGE_AOT_F32 = 3,
  KVMERGE_AOT_F64 = 4,
  KVMERGE_AOT_I8 = 5,
  KVMERGE_AOT_I32 = 6,
  KVMERGE_AOT_I64 = 7
} kvmerge_aot_dtype;

/* One argument or result of a compiled function. */
typedef struct kvmerge_aot_value {
  const char *type;     /* MLIR spelling: "tensor<3x700x64xf16>", "f32" */
  int32_t dtype;        /* kvmerge_aot_dtype */
  int32_t is_tensor;    /* 0: a scalar argument, passed by value */
  int32_t rank;         /* 0 for scalars */
  const int64_t *shape; /* rank sizes; KVMERGE_AOT_DYNAMIC where dynamic */
} kvmerge_aot_value;

/* A compiled function: its inputs in order, then its results (every result
 * has a static shape: the caller allocates it). */
typedef struct kvmerge_aot_function {
  const char *name;
  int32_t num_inputs;
  int32_t num_results;
  const kvmerge_aot_value *inputs;
  const kvmerge_aot_value *results;
} kvmerge_aot_function;

/* A caller's buffer. For a scalar input, rank is 0 and data points to the
 * value. */
typedef struct kvmerge_aot_tensor {
  void *data;
  int32_t dtype;
  int32_t rank;
  const int64_t *shape;
} kvmerge_aot_tensor;

/* KVMERGE_AOT_ABI_VERSION of the kvmerge that built the artifact. */
int32_t kvmerge_aot_abi_version(void);

/* What the artifact was built for: "cpu <mcpu>" or
 * "cuda <chip> <format>" (format: isa = PTX, bin = cubin, fatbin = cubin +
 * PTX), e.g. "cuda sm_90a fatbin". */
const char *kvmerge_aot_target(void);

/* The compiled functions, in module order. NULL (and an error) when the
 * artifact is malformed or `index` is out of range. */
int32_t kvmerge_aot_num_functions(void);
const kvmerge_aot_function *kvmerge_aot_function_at(int32_t index);
/* NULL (and kvmerge_aot_last_error() naming the available ones) if the
 * artifact has no function `name`. */
const kvmerge_aot_function *kvmerge_aot_lookup(const char *name);

/* Opens the device (CUDA: the driver, device 0, the artifact's kernels).
 * Idempotent; kvmerge_aot_call calls it. KVMERGE_AOT_OK on a CPU artifact.
 * Without a driver: KVMERGE_AOT_DEVICE_ERROR and an error such as
 *   cannot load the CUDA driver (libcuda.so.1): ...; this artifact (target
 *   cuda sm_90a fatbin) needs an NVIDIA GPU with its driver */
int32_t kvmerge_aot_initialize(void);

/* "NVIDIA H200 (sm_90)" after a successful initialize of a CUDA artifact;
 * "cpu" for a CPU artifact; "" otherwise. */
const char *kvmerge_aot_device(void);

/* Runs `name` once: inputs in order, one output buffer per result.
 * Returns a status code; on failure kvmerge_aot_last_error() says why. */
int32_t kvmerge_aot_call(const char *name, const kvmerge_aot_tensor *inputs,
                         int32_t num_inputs,
                         const kvmerge_aot_tensor *outputs,
                         int32_t num_outputs);

/* The message of the last failure on this thread ("" if none). Valid until
 * the thread's next kvmerge_aot_* call. */
const char *kvmerge_aot_last_error(void);

/* CUDA artifacts: time every kernel launch with CUDA events (each launch is
 * then synchronous). kvmerge_aot_kernel_times() returns one line per kernel
 * since the last reset,
 *   kvmerge-cuda-kernel-time NAME calls=N total_ms=T mean_us=M
 * valid until the thread's next kvmerge_aot_* call ("" on a CPU artifact). */
void kvmerge_aot_set_kernel_timing(int32_t enabled);
const char *kvmerge_aot_kernel_times(void);
void kvmerge_aot_reset_kernel_times(void);

#ifdef __cplusplus
}
#endif

#endif /* KVMERGE_C_AOT_H */
