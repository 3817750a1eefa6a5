"""C twin of emu/frontend/cmsis_q15.py (module emu._c_frontend_q15 built from csrc/frontend_q15.c).

Same public API and results as the Numba implementation: rfft_q15, cmplx_mag_q15, cmplx_mag_squared_q15,
vlog_q31, vlog_q15, mult_q15, mfcc_q15, compute_stages, compute_patch. Every call into C first checks
dtype, C-contiguity and length of each buffer (`_buf`); tables come from the same prepared state.
"""
import numpy as np

from emu._install import c_twin_missing
from emu import fixedpoint
from emu.frontend import cmsis_q15 as q15

_Error = q15._Error

try:
    from emu._c_frontend_q15 import ffi, lib
    _IMPORT_ERROR = None
except ImportError as _e:  # pragma: no cover - depends on the build (optional at install)
    ffi = lib = None
    _IMPORT_ERROR = _e


def available():
    """True when the compiled module emu._c_frontend_q15 is importable."""
    return lib is not None


def need():
    """Raise the one-line error naming the build step when the C twin extension is absent."""
    _lib()


def _lib():
    if lib is None:
        raise _Error(c_twin_missing("emu._c_frontend_q15", _IMPORT_ERROR,
                                    "the Numba front end (the default) needs none"))
    return lib


_CTYPES = {np.dtype(np.int16): "int16_t *", np.dtype(np.int32): "int32_t *", np.dtype(np.int8): "int8_t *"}


def _buf(arr, dtype, size, name):
    """Pointer to a C-contiguous array of exactly `dtype` and `size` elements (checked before the C call)."""
    if not isinstance(arr, np.ndarray) or arr.dtype != np.dtype(dtype):
        raise _Error(f"C twin argument {name} must be a numpy {np.dtype(dtype).name} array")
    if not arr.flags.c_contiguous:
        raise _Error(f"C twin argument {name} must be C-contiguous; pass np.ascontiguousarray(...)")
    if arr.size != size:
        raise _Error(f"C twin argument {name} has {arr.size} elements, expected {size}")
    return ffi.cast(_CTYPES[np.dtype(dtype)], arr.ctypes.data)


def _tab_ptrs(tab):
    half = tab.n_fft // 2
    return (_buf(tab.twiddle, np.int16, 3 * half // 2, "twiddle"), _buf(tab.bitrev, np.int32, half, "bitrev"),
            _buf(tab.coef_a, np.int16, q15.REAL_COEF_LEN, "coef_a"),
            _buf(tab.coef_b, np.int16, q15.REAL_COEF_LEN, "coef_b"))


def mult_q15(a, b):
    c = _lib()
    a16 = q15._as_int(a, np.int16, "a")
    b16 = q15._as_int(b, np.int16, "b")
    if a16.size != b16.size:
        raise _Error(f"mult_q15 operands differ in length ({a16.size} vs {b16.size}); pass equal lengths")
    out = np.empty_like(a16)
    c.n6q15_mult(_buf(a16, np.int16, a16.size, "a"), _buf(b16, np.int16, a16.size, "b"),
                 _buf(out, np.int16, a16.size, "out"), a16.size)
    return out


def rfft_q15(x, fft_variant="pure-c"):
    """arm_rfft_q15 forward (see cmsis_q15.rfft_q15); works on a copy of x."""
    c = _lib()
    src = q15._as_int(x, np.int16, "x").copy()
    tab = q15.rfft_init_q15(src.size)
    dst = np.empty(2 * tab.n_fft, np.int16)
    c.n6q15_rfft(_buf(src, np.int16, tab.n_fft, "x"), tab.n_fft, *_tab_ptrs(tab), tab.modifier,
                 q15.fft_variant_code(fft_variant), _buf(dst, np.int16, 2 * tab.n_fft, "dst"))
    return dst


def cmplx_mag_q15(x):
    c = _lib()
    src = q15._as_int(x, np.int16, "x")
    if src.size % 2:
        raise _Error("cmplx_mag_q15 needs interleaved (re, im) pairs: the length must be even")
    n = src.size // 2
    dst = np.empty(n, np.int16)
    c.n6q15_cmplx_mag(_buf(src, np.int16, 2 * n, "x"), _buf(dst, np.int16, n, "dst"), n,
                      _buf(q15.sqrt_lut_q31(), np.int32, 32, "lut"))
    return dst


def cmplx_mag_squared_q15(x):
    c = _lib()
    src = q15._as_int(x, np.int16, "x")
    if src.size % 2:
        raise _Error("cmplx_mag_squared_q15 needs interleaved (re, im) pairs: the length must be even")
    n = src.size // 2
    dst = np.empty(n, np.int16)
    c.n6q15_cmplx_mag_squared(_buf(src, np.int16, 2 * n, "x"), _buf(dst, np.int16, n, "dst"), n)
    return dst


def vlog_q31(x):
    c = _lib()
    src = q15._as_int(x, np.int32, "x")
    dst = np.empty_like(src)
    c.n6q15_vlog_q31(_buf(src, np.int32, src.size, "x"), _buf(dst, np.int32, src.size, "dst"), src.size)
    return dst


def vlog_q15(x):
    c = _lib()
    src = q15._as_int(x, np.int16, "x")
    dst = np.empty_like(src)
    c.n6q15_vlog_q15(_buf(src, np.int16, src.size, "x"), _buf(dst, np.int16, src.size, "dst"), src.size)
    return dst


def _mel_ptrs(start, length, coefs):
    n = start.size
    return (_buf(start, np.int32, n, "mel_start"), _buf(length, np.int32, n, "mel_len"),
            _buf(coefs, np.int16, int(length.sum()), "mel_coefs"), n)


def mfcc_q15(x, tables, fft_variant="pure-c"):
    """arm_mfcc_q15 on one frame (see cmsis_q15.mfcc_q15)."""
    c = _lib()
    src = q15._as_int(x, np.int16, "x").copy()
    n_fft = tables.n_fft
    if src.size != n_fft:
        raise _Error(f"mfcc_q15 frame has {src.size} samples, the tables are for n_fft = {n_fft}")
    tab = q15.rfft_init_q15(n_fft)
    n_mels = tables.mel_start.size
    out = np.empty(tables.n_dct, np.int16)
    spec = np.empty(2 * n_fft, np.int16)
    mel = np.empty(n_mels, np.int32)
    rframe = np.empty(n_fft, np.int16)
    rbins = np.empty(n_fft // 2 + 1, np.int16)
    rlog = np.empty(n_mels, np.int32)
    c.n6q15_mfcc(_buf(src, np.int16, n_fft, "x"), _buf(tables.window, np.int16, n_fft, "window"), n_fft,
                 *_tab_ptrs(tab), tab.modifier, q15.fft_variant_code(fft_variant),
                 _buf(q15.sqrt_lut_q31(), np.int32, 32, "lut"),
                 *_mel_ptrs(tables.mel_start, tables.mel_len, tables.mel_coefs),
                 _buf(tables.dct, np.int16, tables.n_dct * n_mels, "dct"), tables.n_dct,
                 _buf(spec, np.int16, 2 * n_fft, "tmp_spec"), _buf(mel, np.int32, n_mels, "tmp_mel"),
                 _buf(rframe, np.int16, n_fft, "rec_frame"), _buf(rbins, np.int16, n_fft // 2 + 1, "rec_bins"),
                 _buf(rlog, np.int32, n_mels, "rec_log"), _buf(out, np.int16, tables.n_dct, "out"))
    return out


def compute_stages(pcm, state, params=None):
    """Same stages and layouts as cmsis_q15.compute_stages, computed by the C twin."""
    c = _lib()
    x = q15._patch_pcm(state, pcm, params)
    p, q, tab = state.params, state.q15, state.rfft
    t_frames, n_fft, n_mels = int(p.n_frames), tab.n_fft, state.mel_start.size
    n_bins = n_fft // 2 + 1
    dsp = q15.fft_variant_code(q.fft_variant)
    rounding = fixedpoint.rounding_code(q.quant_rounding)
    rec = q15._stage_buffers(state)
    buf = np.empty(n_fft, np.int16)
    common = (_buf(x, np.int16, x.size, "pcm"), t_frames, int(p.hop_length), int(p.win_length), state.pad_left,
              _buf(state.window, np.int16, n_fft, "window"), n_fft, *_tab_ptrs(tab), tab.modifier, dsp,
              _buf(state.lut, np.int32, 32, "lut"))
    recs = (_buf(rec["windowed"], np.int16, t_frames * n_fft, "windowed"),
            _buf(rec["fft"], np.int16, t_frames * 2 * n_fft, "fft"),
            _buf(rec["spectrum"], np.int16, t_frames * n_bins, "spectrum"))
    if q.mode == "mfcc":
        c.n6q15_mfcc_patch(*common, *_mel_ptrs(state.mel_start, state.mel_len, state.mel_coefs),
                           _buf(state.dct, np.int16, q.n_mfcc * n_mels, "dct"), q.n_mfcc,
                           state.quant_multiplier, state.quant_shift, state.quant_zero_point, rounding,
                           _buf(buf, np.int16, n_fft, "buf"), _buf(np.empty(n_mels, np.int32), np.int32, n_mels, "tmp_mel"),
                           *recs, _buf(rec["log"], np.int32, t_frames * n_mels, "log"),
                           _buf(rec["mfcc"], np.int16, t_frames * q.n_mfcc, "mfcc"),
                           _buf(rec["features"], np.int8, t_frames * q.n_mfcc, "features"))
    else:
        c.n6q15_logmel_patch(*common, int(p.spectrum == "power"),
                             *_mel_ptrs(state.mel_start, state.mel_len, state.mel_coefs),
                             int(q.mel_bias), int(q.mel_shift), int(q.log_precision == "q15"),
                             state.log_offset, state.quant_multiplier,
                             state.quant_shift, state.quant_zero_point, rounding,
                             _buf(buf, np.int16, n_fft, "buf"), *recs,
                             _buf(rec["mel"], np.int32, t_frames * n_mels, "mel"),
                             _buf(rec["log"], np.int32, t_frames * n_mels, "log"),
                             _buf(rec["features"], np.int8, t_frames * n_mels, "features"))
    return q15._canonical_stages(x, state, rec)


def compute_patch(pcm, state, params=None):
    """int8 features of one patch (C twin of cmsis_q15.compute_patch)."""
    return compute_stages(pcm, state, params)["features"]
