"""cffi builder for emu._c_frontend_st, the C twin of the ST column front end (emu/frontend/st.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cffi_common import make_builder  # noqa: E402

# the portable-C column (frontend_st) and the Helium (MVE) CMSIS-DSP paths it can call (helium_f16, helium_f32)
ffibuilder = make_builder("frontend_st", ["helium_f16.h", "helium_f32.h", "frontend_st.h"],
                          ["frontend_st.c", "helium_f16.c", "helium_f32.c"])

if __name__ == "__main__":
    from cffi_common import build_inplace
    print(build_inplace(ffibuilder))
