"""C twin of emu.frontend.helium_f32 (CMSIS-DSP Helium f32 paths; csrc/helium_f32.c in emu._c_frontend_st).

Same kernels, argument order and tables (the tuples of helium_f32.prepare_cfft / prepare_rfft) as the Numba
module; every call into C checks dtype, contiguity and length first. `available()` tells whether the
extension is built.
"""
from __future__ import annotations

import numpy as np

from emu.frontend import ctwin_st, helium_f32
from emu.frontend.ctwin_st import _ffi, _lib, need as _need, view_pointer as _ptr
from emu.frontend.params import FrontendError

available = ctwin_st.available   # one extension, emu._c_frontend_st, holds every front-end twin


def fft_struct(tables, fft_len, need_rtw):
    if len(tables) < (7 if need_rtw else 6):
        raise FrontendError("tables must come from helium_f32.prepare_rfft (rfft) or prepare_cfft (cfft)")
    coef, tw1, tw2, tw3, stage_off, bitrev = tables[:6]
    if coef.size != 2 * fft_len:
        raise FrontendError(f"tables are for {coef.size // 2} complex values, the buffer holds {fft_len}")
    n4 = fft_len if (fft_len & 0x55555555) != 0 else fft_len >> 1
    n_stages = n4.bit_length() // 2          # log4(n4) offsets, the last one for the twiddle-free stage
    t = _ffi.new("helium_f32_fft *")
    t.fft_len = fft_len
    t.coef = _ptr(coef, np.float32, 2 * fft_len, "float", "coef")
    tw_len = tw1.size
    if tw_len < 2 * (n4 // 4) or stage_off.size != n_stages or int(stage_off.max()) >= max(tw_len, 1):
        raise FrontendError("rearranged twiddle tables do not match the FFT length; prepare them again")
    t.tw1 = _ptr(tw1, np.float32, tw_len, "float", "tw1")
    t.tw2 = _ptr(tw2, np.float32, tw_len, "float", "tw2")
    t.tw3 = _ptr(tw3, np.float32, tw_len, "float", "tw3")
    t.stage_off = _ptr(stage_off, np.int32, n_stages, "int32_t", "stage_off")
    if bitrev.size % 2 or (bitrev.size and int(bitrev.max()) > 8 * (fft_len - 1)):
        raise FrontendError("bit reversal table does not match the FFT length; prepare it again")
    t.bitrev = _ptr(bitrev, np.int32, bitrev.size, "int32_t", "bitrev")
    t.bitrev_len = bitrev.size
    t.rtw = _ptr(tables[6], np.float32, 2 * fft_len, "float", "rtw") if need_rtw else _ffi.NULL
    return t


def rfft_fast_f32(buf, out, tables):
    """helium_f32.rfft_fast_f32 in C: buf float32[n_fft] (overwritten), out float32[n_fft] packed."""
    _need()
    n = buf.size
    t = fft_struct(tables, n // 2, True)
    if len(tables) != 8 or tables[7].shape != (1,) or int(tables[7][0]) not in (0, 1):
        raise FrontendError("tables must come from helium_f32.prepare_rfft (with the build's opt entry)")
    _lib.helium_rfft_fast_f32(t, _ptr(buf, np.float32, n, "float", "buf"), _ptr(out, np.float32, n, "float", "out"),
                              int(tables[7][0]))


def cfft_f32(buf, tables):
    """helium_f32.cfft_f32 in C: buf float32[2L] interleaved complex, in place."""
    _need()
    t = fft_struct(tables, buf.size // 2, False)
    _lib.helium_cfft_f32(t, _ptr(buf, np.float32, buf.size, "float", "buf"))


def cmplx_mag_squared_f32(src, dst, n):
    """helium_f32.cmplx_mag_squared_f32 in C (src and dst may overlap)."""
    _need()
    _lib.helium_cmplx_mag_squared_f32(_ptr(src, np.float32, 2 * n, "float", "src"),
                                      _ptr(dst, np.float32, n, "float", "dst"), n)


def cmplx_mag_f32(src, dst, n):
    """helium_f32.cmplx_mag_f32 in C (src and dst may overlap)."""
    _need()
    _lib.helium_cmplx_mag_f32(_ptr(src, np.float32, 2 * n, "float", "src"),
                              _ptr(dst, np.float32, n, "float", "dst"), n)


def dot_prod_f32(a, b, n):
    """helium_f32.dot_prod_f32 in C."""
    _need()
    return np.float32(_lib.helium_dot_prod_f32(_ptr(a, np.float32, n, "float", "a"),
                                               _ptr(b, np.float32, n, "float", "b"), n))


def mult_f32(a, b, dst, n):
    """helium_f32.mult_f32 in C."""
    _need()
    _lib.helium_mult_f32(_ptr(a, np.float32, n, "float", "a"), _ptr(b, np.float32, n, "float", "b"),
                         _ptr(dst, np.float32, n, "float", "dst"), n)


def q15_to_float(src, dst, n):
    """helium_f32.q15_to_float in C."""
    _need()
    _lib.helium_q15_to_float(_ptr(src, np.int16, n, "int16_t", "src"), _ptr(dst, np.float32, n, "float", "dst"), n)


def rfft(frame, tables=None):
    """helium_f32.rfft by the C twin: arm_rfft_fast_f32 of a copy of one frame, packed output."""
    buf = np.array(frame, dtype=np.float32, copy=True).reshape(-1)
    if tables is None:
        tables = helium_f32.prepare_rfft(buf.size)
    out = np.empty_like(buf)
    rfft_fast_f32(buf, out, tables)
    return out
