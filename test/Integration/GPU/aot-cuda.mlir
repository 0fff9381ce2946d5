// An ahead-of-time CUDA artifact on the GPU (needs an NVIDIA GPU and driver;
// skipped elsewhere), checked against the CPU artifact of the same module.
// scripts/gpu-check.sh checks every kernel against kvmerge.reference.
// REQUIRES: cuda-device
// RUN: rm -rf %t && mkdir -p %t
// RUN: %python -c "import numpy as np; r=np.random.default_rng(0); np.save('%t/k.npy', r.standard_normal((3,1024,64)).astype(np.float16)); np.save('%t/v.npy', r.standard_normal((3,1024,64)).astype(np.float16)); np.save('%t/a.npy', r.random((3,1024)).astype(np.float32))"
// PTX for sm_80 runs on every later GPU (the driver compiles it at load).
// RUN: kvmerge-aot %kvmerge_src/examples/compress-smollm2.mlir --target=cuda --chip=sm_80 --gpu-format=isa -o %t/libgpu.so
// RUN: kvmerge-aot %kvmerge_src/examples/compress-smollm2.mlir --target=cpu -o %t/libcpu.so
// RUN: kvmerge-aot-run %t/libcpu.so --function=compress_layer --input=@%t/k.npy --input=@%t/v.npy --input=@%t/a.npy --output=@%t/ck.npy --output=@%t/cv.npy --output=@%t/cp.npy --output=@%t/cc.npy --output=@%t/cs.npy --output=@%t/cl.npy
// RUN: kvmerge-aot-run %t/libgpu.so --function=compress_layer --input=@%t/k.npy --input=@%t/v.npy --input=@%t/a.npy --output=@%t/gk.npy --output=@%t/gv.npy --output=@%t/gp.npy --output=@%t/gc.npy --output=@%t/gs.npy --output=@%t/gl.npy --kernel-times | FileCheck %s --check-prefix=TIMES
// TIMES: kvmerge-cuda-kernel-time kvmerge_
// RUN: cmp %t/cp.npy %t/gp.npy
// RUN: cmp %t/cc.npy %t/gc.npy
// RUN: cmp %t/cl.npy %t/gl.npy
// RUN: %python -c "import numpy as np; L=lambda n: np.load('%t/'+n+'.npy').astype(np.float32); np.testing.assert_allclose(L('gk'), L('ck'), rtol=2e-3, atol=2e-3); np.testing.assert_allclose(L('gv'), L('cv'), rtol=2e-3, atol=2e-3); np.testing.assert_allclose(L('gs'), L('cs'), rtol=1e-5, atol=1e-5); print('OK')" | FileCheck %s
// CHECK: OK
