# -*- Python -*-
# lit configuration of the kvmerge test suite (Debian's lit and FileCheck).

import os

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "KVMERGE"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.kvmerge_obj_root, "test")
config.excludes = ["CMakeLists.txt", "README.md", "lit.cfg.py", "lit.site.cfg.py", "python", "data"]

config.substitutions.append(("%PATH%", config.environment["PATH"]))
config.substitutions.append(("%shlibext", ".so"))
config.substitutions.append(("%kvmerge_src", config.kvmerge_src_root))
config.substitutions.append(("%kvmerge_obj", config.kvmerge_obj_root))
config.substitutions.append(("%kvmerge_libs", config.kvmerge_libs_dir))

llvm_config.with_system_environment(["HOME", "INCLUDE", "LIB", "TMP", "TEMP"])
llvm_config.use_default_substitutions()

# The plugin test runs Debian's stock mlir-opt.
config.substitutions.append(
    ("%mlir_opt", os.path.join(config.mlir_tools_dir, "mlir-opt")))

# Executable CPU tests: JIT through Debian's mlir-runner with MLIR's runtime
# print helpers.
config.substitutions.append(
    ("%mlir_runner", os.path.join(config.mlir_tools_dir, "mlir-runner")))
llvm_lib_dir = os.path.join(os.path.dirname(config.mlir_tools_dir), "lib")
config.substitutions.append(
    ("%runner_utils_lib", os.path.join(llvm_lib_dir, "libmlir_runner_utils.so")))
config.substitutions.append(
    ("%c_runner_utils_lib", os.path.join(llvm_lib_dir, "libmlir_c_runner_utils.so")))

# `not`, `count`, `split-file` etc. at the start of a RUN line come from PATH.
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)

tool_dirs = [config.kvmerge_tools_dir, config.llvm_tools_dir]
tools = ["kvmerge-opt", "kvmerge-run", "kvmerge-capi-test", "kvmerge-aot", "kvmerge-aot-run"]
llvm_config.add_tool_substitutions(tools, tool_dirs)

if config.ptxas and os.path.exists(config.ptxas):
    config.available_features.add("ptxas")

# GPU backend (docs/gpu.md): %ptxas assembles emitted PTX; GPU execution
# tests need a working NVIDIA driver and device (`nvidia-smi -L` lists one).
if config.ptxas and os.path.exists(config.ptxas):
    config.substitutions.append(("%ptxas", config.ptxas))
import shutil
import subprocess
_nvidia_smi = shutil.which("nvidia-smi")
if _nvidia_smi:
    try:
        _out = subprocess.run([_nvidia_smi, "-L"], capture_output=True,
                              text=True, timeout=30)
        if _out.returncode == 0 and "GPU" in _out.stdout:
            config.available_features.add("cuda-device")
    except (OSError, subprocess.SubprocessError):
        pass
import sys
config.substitutions.append(("%python", sys.executable))
