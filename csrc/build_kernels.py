"""cffi API-mode builder for emu._c_kernels: the C twins of the int8 network kernels (csrc/kernels_s8.c).

The cdef is the public header itself (cffi_common.cdef_from_header), so declarations live in one place.
"""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

from cffi_common import make_builder  # noqa: E402


ffibuilder = make_builder("kernels", "kernels_s8.h", ["kernels_s8.c"])

if __name__ == "__main__":
    from cffi_common import build_inplace

    print(build_inplace(ffibuilder))
