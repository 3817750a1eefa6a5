"""C twin of emu/frontend/helium_f16.py (csrc/helium_f16.c, compiled into emu._c_frontend_st).

Same contract and tables (helium_f16.prepare_rfft / prepare_cfft) as the Numba kernels; every call into C
checks dtype, contiguity and length first. `available()` tells whether the extension is built.
"""
from __future__ import annotations

import numpy as np

from emu.frontend import ctwin_st, helium_f16
from emu.frontend.ctwin_st import _lib, need as _need, view_pointer as _ptr
from emu.frontend.params import FrontendError

available = ctwin_st.available   # one extension, emu._c_frontend_st, holds every front-end twin


def cfft_args(tables, fft_len):
    split, tw1, tw2, tw3, offs, rev = tables[:6]
    is_split = int(split.size != 0)
    radix4_len = fft_len // 2 if is_split else fft_len
    n_stages = max(1, (radix4_len.bit_length() - 1) // 2)
    if rev.size != fft_len:
        raise FrontendError(f"tables are for a {rev.size}-point cfft, not {fft_len}; use helium_f16.prepare_*")
    table_len = 2 * sum(radix4_len >> (2 * (s + 1)) for s in range(n_stages - 1))
    return (is_split,
            _ptr(split, np.float32, fft_len if is_split else 0, "float", "tw_split"),
            _ptr(tw1, np.float32, table_len, "float", "tw1"),
            _ptr(tw2, np.float32, table_len, "float", "tw2"),
            _ptr(tw3, np.float32, table_len, "float", "tw3"),
            _ptr(offs, np.int32, n_stages, "int32_t", "stage_off"),
            _ptr(rev, np.int32, fft_len, "int32_t", "bitrev"))


def rfft_fast_f16_c(buf, out, tables):
    """helium_f16.rfft_fast_f16 by the C twin: buf float32[n_fft] (overwritten), out float32[n_fft];
    tables = helium_f16.prepare_rfft(n_fft, optimization)."""
    _need()
    n = buf.size if isinstance(buf, np.ndarray) else 0
    if n not in helium_f16.RFFT_SIZES:
        raise FrontendError(f"buf has {n} values; n_fft must be one of {helium_f16.RFFT_SIZES}")
    b = _ptr(buf, np.float32, n, "float", "buf")
    o = _ptr(out, np.float32, n, "float", "out")
    if out.size != n:
        raise FrontendError(f"out has {out.size} values, expected {n}")
    if len(tables) != 8:
        raise FrontendError("tables must come from helium_f16.prepare_rfft(n_fft, optimization)")
    args = cfft_args(tables, n // 2)
    tw = _ptr(tables[6], np.float32, n, "float", "tw_rfft")
    opt = int(tables[7][0])
    _lib.helium_rfft_fast_f16(b, o, n, *args, tw, opt)


def cfft_f16_c(buf, tables):
    """helium_f16.cfft_f16 by the C twin: in place on buf float32[2*fft_len]."""
    _need()
    n = buf.size // 2 if isinstance(buf, np.ndarray) else 0
    if n not in helium_f16.CFFT_SIZES or buf.size != 2 * n:
        raise FrontendError(f"buf has {getattr(buf, 'size', 0)} values; expected 2*fft_len, fft_len in {helium_f16.CFFT_SIZES}")
    _lib.helium_cfft_f16(_ptr(buf, np.float32, 2 * n, "float", "buf"), n, *cfft_args(tables, n))


def rfft_packed_c(frame, n_fft=None, optimization="Os"):
    """helium_f16.rfft_packed by the C twin."""
    n = np.asarray(frame).size if n_fft is None else n_fft
    tabs = helium_f16.prepare_rfft(n, optimization)
    buf = helium_f16._f16_array(frame, "frame", n)
    out = np.empty(n, np.float32)
    rfft_fast_f16_c(buf, out, tabs)
    return out


def cmplx_mag_squared_f16_c(src, dst, n):
    """arm_cmplx_mag_squared_f16 by the C twin (src float32[2n], dst float32[n]; may overlap like the device)."""
    _need()
    _lib.helium_cmplx_mag_squared_f16(_ptr(src, np.float32, 2 * n, "float", "src"),
                                      _ptr(dst, np.float32, n, "float", "dst"), n)


def cmplx_mag_f16_c(src, dst, n):
    """arm_cmplx_mag_f16 (Helium Newton) by the C twin."""
    _need()
    _lib.helium_cmplx_mag_f16(_ptr(src, np.float32, 2 * n, "float", "src"), _ptr(dst, np.float32, n, "float", "dst"), n)


def dot_prod_f16_c(a, b, n):
    """arm_dot_prod_f16 by the C twin -> np.float32."""
    _need()
    return np.float32(_lib.helium_dot_prod_f16(_ptr(a, np.float32, n, "float", "a"), _ptr(b, np.float32, n, "float", "b"), n))


def mult_f16_c(a, b, dst, n):
    """arm_mult_f16 by the C twin."""
    _need()
    _lib.helium_mult_f16(_ptr(a, np.float32, n, "float", "a"), _ptr(b, np.float32, n, "float", "b"),
                         _ptr(dst, np.float32, n, "float", "dst"), n)


def q15_to_f16_c(src, dst, n):
    """arm_q15_to_f16 by the C twin (src int16[n], dst float32[n])."""
    _need()
    _lib.helium_q15_to_f16(_ptr(src, np.int16, n, "int16_t", "src"), _ptr(dst, np.float32, n, "float", "dst"), n)
