"""setuptools glue for `pip install ./python` (metadata is in pyproject.toml).

The native extension is built by the project's CMake (scripts/setup.sh, target `_native`), not
here: this copies the built `_native*.so` from `$KVMERGE_BUILD_DIR/python/kvmerge` or the repo's
`build/python/kvmerge` into the package, and marks the wheel platform-specific when it does.
Without a built extension the package installs pure-Python (reference + kvmerge-run path).
setuptools' own build files go under the CMake build tree (or a temporary directory), never
into the source tree.
"""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def find_native():
    dirs = []
    if os.environ.get("KVMERGE_BUILD_DIR"):
        dirs.append(Path(os.environ["KVMERGE_BUILD_DIR"]) / "python" / "kvmerge")
    dirs.append(REPO / "build" / "python" / "kvmerge")
    for d in dirs:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            if (d / f"_native{suffix}").is_file():
                return d / f"_native{suffix}"
    return None


NATIVE = find_native()


class BuildPyWithNative(build_py):
    def run(self):
        super().run()
        if NATIVE is None:
            self.announce("kvmerge: no built _native extension found; installing without it "
                          "(build the project, or set KVMERGE_BUILD_DIR)", level=3)
            return
        target = Path(self.build_lib) / "kvmerge" / NATIVE.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(NATIVE, target)
        self.announce(f"kvmerge: including {NATIVE}", level=3)


class MaybeBinaryDistribution(Distribution):
    def has_ext_modules(self):
        return NATIVE is not None


build_root = REPO / "build" if (REPO / "build").is_dir() else Path(tempfile.mkdtemp(prefix="kvmerge-pip-"))
build_base = build_root / "python-package"
build_base.mkdir(parents=True, exist_ok=True)

setup(
    cmdclass={"build_py": BuildPyWithNative},
    distclass=MaybeBinaryDistribution,
    options={
        "build": {"build_base": str(build_base)},
        "egg_info": {"egg_base": str(build_base)},
    },
)
