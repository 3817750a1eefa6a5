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


def _builder():
    """make_builder records source paths relative to the current directory: call it from the build's cwd."""
    return make_builder("kernels", _cdef_from_header(os.path.join(_here, "kernels_s8.h")),
                        "kernels_s8.h", ["kernels_s8.c"])


ffibuilder = _builder()

if __name__ == "__main__":
    # Developer build in place: compile from the repository root so the relative source paths resolve
    # (writes emu/_c_kernels.*.so; generated .c/.o files are git-ignored).
    os.chdir(os.path.dirname(_here))
    print(_builder().compile(tmpdir=".", verbose=False))
