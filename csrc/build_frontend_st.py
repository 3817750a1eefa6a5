"""cffi builder for emu._c_frontend_st, the C twin of the ST column front end (emu/frontend/st.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cffi_common import make_builder  # noqa: E402

ffibuilder = make_builder("frontend_st", "frontend_st.h", ["frontend_st.c"])

if __name__ == "__main__":
    from cffi_common import build_inplace
    print(build_inplace(ffibuilder))
