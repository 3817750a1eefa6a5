"""cffi API-mode builder for emu._c_kernels: the C twins of the int8 network kernels (csrc/kernels_s8.c).

The cdef is the public header itself with its preprocessor lines removed, so declarations live in one place.
"""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

from cffi_common import make_builder  # noqa: E402


def _cdef_from_header(path):
    with open(path) as f:
        return "\n".join(line for line in f if not line.lstrip().startswith("#"))


ffibuilder = make_builder("kernels", _cdef_from_header(os.path.join(_here, "kernels_s8.h")),
                          "kernels_s8.h", ["kernels_s8.c"])

if __name__ == "__main__":
    from cffi_common import build_inplace

    print(build_inplace(ffibuilder))
