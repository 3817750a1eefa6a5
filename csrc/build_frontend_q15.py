"""cffi builder for emu._c_frontend_q15, the C twin of emu/frontend/cmsis_q15.py (csrc/frontend_q15.c)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cffi_common import make_builder  # noqa: E402

ffibuilder = make_builder("frontend_q15", "frontend_q15.h", ["frontend_q15.c"])

if __name__ == "__main__":
    from cffi_common import build_inplace
    print(build_inplace(ffibuilder))
