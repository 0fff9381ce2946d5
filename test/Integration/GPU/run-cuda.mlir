// GPU execution (needs an NVIDIA GPU and driver; skipped elsewhere): the
// bundled example compressed and attended on the device, checked against
// the CPU path of the same build. scripts/gpu-check.sh compares every
// kernel with the NumPy reference on random and real data.
// REQUIRES: cuda-device
// RUN: rm -rf %t && mkdir -p %t
// RUN: %python -c "import numpy as np; r=np.random.default_rng(0); k=r.standard_normal((3,1024,64)).astype(np.float16); np.save('%t/k.npy', k); np.save('%t/v.npy', r.standard_normal((3,1024,64)).astype(np.float16)); np.save('%t/a.npy', r.random((3,1024)).astype(np.float32))"
// RUN: kvmerge-run %kvmerge_src/examples/compress-smollm2.mlir --function=compress_layer --input=@%t/k.npy --input=@%t/v.npy --input=@%t/a.npy --device=cpu --output=@%t/ck.npy --output=@%t/cv.npy --output=@%t/cp.npy --output=@%t/cc.npy --output=@%t/cs.npy --output=@%t/cl.npy
// RUN: kvmerge-run %kvmerge_src/examples/compress-smollm2.mlir --function=compress_layer --input=@%t/k.npy --input=@%t/v.npy --input=@%t/a.npy --device=cuda --output=@%t/gk.npy --output=@%t/gv.npy --output=@%t/gp.npy --output=@%t/gc.npy --output=@%t/gs.npy --output=@%t/gl.npy
// RUN: %python -c "import numpy as np; L=lambda n: np.load('%t/'+n+'.npy'); assert (L('cl')==L('gl')).all(); assert (L('cp')==L('gp')).all(); assert (L('cc')==L('gc')).all(); np.testing.assert_allclose(L('gk').astype(np.float32), L('ck').astype(np.float32), rtol=2e-2, atol=2e-2); np.testing.assert_allclose(L('gv').astype(np.float32), L('cv').astype(np.float32), rtol=2e-2, atol=2e-2); np.testing.assert_allclose(L('gs'), L('cs'), rtol=1e-4, atol=1e-4); print('OK')" | FileCheck %s
// CHECK: OK
