"""Shared settings for the cffi API-mode builders in csrc/ (one builder per area: csrc/build_<area>.py).

Every C twin is compiled with the same flags so that float code keeps IEEE semantics:
-O2, no fast-math, no FP contraction (no implicit FMA), standard excess precision for _Float16.
"""
import os

import cffi

CSRC = os.path.dirname(os.path.abspath(__file__))
CFLAGS = ["-O2", "-fno-fast-math", "-ffp-contract=off", "-fexcess-precision=standard", "-std=c11"]


def cdef_from_header(header):
    """The declarations of a csrc/ header for cffi: the header itself minus its preprocessor lines, so each
    C API is declared in one place."""
    with open(os.path.join(CSRC, header)) as f:
        return "\n".join(line for line in f if not line.lstrip().startswith("#"))


def make_builder(area, headers, sources):
    """FFI builder for module `emu._c_<area>`: the declarations of `headers` (one name or a list) and the
    `.c` sources in csrc/."""
    headers = [headers] if isinstance(headers, str) else list(headers)
    ffi = cffi.FFI()
    ffi.cdef("\n".join(cdef_from_header(h) for h in headers))
    ffi.set_source(
        f"emu._c_{area}",
        "\n".join(f'#include "{h}"' for h in headers),
        sources=[os.path.relpath(os.path.join(CSRC, s)) for s in sources],   # setuptools wants relative paths
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
    # cffi compiles from inside `tmp`: make the (setuptools-relative) paths absolute for this build only.
    kwds = ffibuilder._assigned_source[3]
    kwds["sources"] = [os.path.abspath(p) for p in kwds["sources"]]
    kwds["include_dirs"] = [os.path.abspath(p) for p in kwds["include_dirs"]]
    so = ffibuilder.compile(tmpdir=tmp, verbose=False)
    dest = os.path.join(os.path.dirname(CSRC), "emu", os.path.basename(so))
    shutil.copy2(so, dest + ".tmp")
    os.replace(dest + ".tmp", dest)
    # a stale build under another suffix (.abi3.so vs .cpython-3xx-...so) would shadow or be shadowed
    import glob
    module = os.path.basename(so).split(".")[0]
    for other in glob.glob(os.path.join(os.path.dirname(dest), module + ".*.so")):
        if other != dest:
            os.remove(other)
    return dest
