"""Shared settings for the cffi API-mode builders in csrc/ (one builder per area: csrc/build_<area>.py).

Every C twin is compiled with the same flags so that float code keeps IEEE semantics:
-O2, no fast-math, no FP contraction (no implicit FMA), standard excess precision for _Float16.
"""
import os

import cffi

CSRC = os.path.dirname(os.path.abspath(__file__))
CFLAGS = ["-O2", "-fno-fast-math", "-ffp-contract=off", "-fexcess-precision=standard", "-std=c11"]


def make_builder(area, cdef, header, sources):
    """FFI builder for module `emu._c_<area>`: `cdef` declarations, `header` and `.c` sources in csrc/."""
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    ffi.set_source(
        f"emu._c_{area}",
        f'#include "{header}"',
        sources=[os.path.relpath(os.path.join(CSRC, s)) for s in sources],
        include_dirs=[os.path.relpath(CSRC)],
        extra_compile_args=CFLAGS,
        libraries=["m"],
    )
    return ffi


def build_inplace(ffibuilder):
    """Developer helper: compile one builder and drop the .so into emu/ (pip install does this too)."""
    import shutil
    import tempfile

    tmp = tempfile.mkdtemp(prefix="n6emu_cffi_")
    so = ffibuilder.compile(tmpdir=tmp, verbose=False)
    dest = os.path.join(os.path.dirname(CSRC), "emu", os.path.basename(so))
    shutil.copy2(so, dest + ".tmp")
    os.replace(dest + ".tmp", dest)
    return dest
