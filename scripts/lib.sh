# Shared helpers for the scripts in scripts/ (sourced, not run). The sourcing
# script has already cd'ed to the repository root and set ROOT=$PWD.

# kvmerge_configure BUILD_DIR [CMAKE_ARG...]
# Configures a CMake + Ninja build of kvmerge in BUILD_DIR with Debian's
# clang-22, lld and libMLIR.so and the project's .venv Python, plus the extra
# arguments (e.g. -DKVMERGE_SANITIZE=...). CMake's stdout is discarded.
kvmerge_configure() {
  local build=$1
  shift
  cmake -G Ninja -S . -B "$build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 \
    -DLLVM_USE_LINKER=lld-22 \
    -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
    -DLLVM_EXTERNAL_LIT=/usr/lib/llvm-22/bin/lit \
    -DMLIR_LINK_MLIR_DYLIB=ON \
    "$@" \
    -DPython3_EXECUTABLE="$ROOT/.venv/bin/python" >/dev/null
}
