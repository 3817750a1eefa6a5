"""C twin of the ST column front end (module emu._c_frontend_st, built from csrc/frontend_st.c).

Same contract, tables (an STState from emu.frontend.st.prepare) and outputs as emu.frontend.st; every call
into C checks dtype, contiguity and length first. `available()` tells whether the extension is built.
"""
from __future__ import annotations

import numpy as np

from emu._install import c_twin_missing
from emu.frontend import st
from emu.frontend.params import FrontendError

try:
    from emu._c_frontend_st import ffi as _ffi, lib as _lib
    _IMPORT_ERROR = None
except ImportError as _e:  # not built (optional at install): need() raises the one-line error naming the fix
    _ffi = _lib = None
    _IMPORT_ERROR = _e


def available() -> bool:
    return _lib is not None


def need():
    """Raise the one-line error naming the build step when the C twin extension is absent."""
    if _lib is None:
        raise FrontendError(c_twin_missing("emu._c_frontend_st", _IMPORT_ERROR,
                                           "the Numba front end (the default) needs none"))


def pointer(a, dtype, n, ctype, name, at_least=False):
    """A C pointer to array `a` after checking it: an ndarray of `dtype`, C-contiguous, with exactly n (or at
    least n) elements. The one argument check of every call into emu._c_frontend_st."""
    if not isinstance(a, np.ndarray) or a.dtype != np.dtype(dtype):
        raise FrontendError(f"C twin argument {name} must be a {np.dtype(dtype)} ndarray, got "
                            f"{getattr(a, 'dtype', type(a))}")
    if not a.flags.c_contiguous:
        raise FrontendError(f"C twin argument {name} must be C-contiguous; pass np.ascontiguousarray(...)")
    if a.size < n or (a.size != n and not at_least):
        raise FrontendError(f"C twin argument {name} has {a.size} elements, expected {'at least ' * at_least}{n}")
    return _ffi.cast(ctype + " *", a.ctypes.data)


def view_pointer(a, dtype, n, ctype, name):
    """`pointer` with an at-least length check (views into longer buffers are allowed)."""
    return pointer(a, dtype, n, ctype, name, at_least=True)


def _config(state: st.STState):
    p = state.params
    sw = st._switch_codes(state, p)
    cfg = _ffi.new("st_config *")
    cfg.n_fft, cfg.win, cfg.hop = p.n_fft, p.win_length, p.hop_length
    cfg.n_frames, cfg.n_mels, cfg.pad_left = p.n_frames, p.n_mels, (p.n_fft - p.win_length) // 2
    cfg.algo, cfg.prec = state.algo, state.prec
    cfg.spectrum_mode, cfg.log_mode = sw["spectrum_mode"], sw["log_mode"]
    cfg.acc_mode, cfg.fma = sw["acc_mode"], int(sw["fma"])
    cfg.rounding, cfg.cast_mode = sw["rounding"], sw["cast_mode"]
    cfg.inplace = int(p.inplace_power)
    cfg.inv_scale, cfg.zp, cfg.neg_top_db = float(state.inv_scale), float(p.quant_zero_point), float(sw["neg_top_db"])
    return cfg


def _tables(state):
    p = state.params
    half = p.n_fft // 2
    return (pointer(state.window, np.float32, p.win_length, "float", "window"),
            pointer(state.twiddle, np.float32, 2 * half, "float", "twiddle"),
            pointer(state.rtwiddle, np.float32, 2 * half, "float", "rtwiddle"),
            pointer(state.order, np.int32, half, "int32_t", "order"))


def compute_stages_c(pcm_patch_int16, state: st.STState) -> dict:
    """emu.frontend.st.compute_stages computed by the C twin (same keys, shapes and dtypes)."""
    need()
    p = state.params
    pcm = st.check_patch(pcm_patch_int16, p)
    n_fft, nm = p.n_fft, p.n_mels
    out = st.stage_buffers(p)
    scratch = np.empty(n_fft, np.float32)
    tmp = np.empty(n_fft, np.float32)
    mel = (pointer(state.mel_start, np.int32, nm, "int32_t", "mel_start"),
           pointer(state.mel_stop, np.int32, nm, "int32_t", "mel_stop"),
           pointer(state.mel_offset, np.int32, nm, "int32_t", "mel_offset"),
           pointer(state.mel_coefs, np.float32, state.mel_coefs.size, "float", "mel_coefs"))
    stages = tuple(pointer(a, a.dtype, a.size, "int8_t" if k == "features" else "float", k) for k, a in out.items())
    work = (pointer(scratch, np.float32, n_fft, "float", "scratch"), pointer(tmp, np.float32, n_fft, "float", "tmp"))
    pcm_ptr = pointer(pcm, np.int16, p.patch_length, "int16_t", "pcm")
    if state.helium:
        silence = _lib.st_patch_helium(_config(state), pcm_ptr,
                                       pointer(state.window, np.float32, p.win_length, "float", "window"),
                                       *_helium_tables(state), *mel, *stages, *work)
    else:
        silence = _lib.st_patch(_config(state), pcm_ptr, *_tables(state), *mel, *stages, *work)
    out["silence_sum"] = np.float32(silence)
    return out


def _helium_tables(state):
    """(st_helium_f16 *, helium_f32_fft *, ofast32) for st_patch_helium: the state's MVE rfft tables checked and
    passed as pointers; the other profile's entry is NULL. Keep `state` alive during the call."""
    from emu.frontend import ctwin_helium, ctwin_helium_f32
    tabs, n_fft = state.helium_tables, state.params.n_fft
    if state.params.profile == "st-f32":
        return _ffi.NULL, ctwin_helium_f32.fft_struct(tabs, n_fft // 2, True), int(tabs[7][0])
    split, tw_split, tw1, tw2, tw3, stage_off, bitrev = ctwin_helium.cfft_args(tabs, n_fft // 2)
    t = _ffi.new("st_helium_f16 *")
    t.split, t.tw_split, t.tw1, t.tw2, t.tw3, t.stage_off, t.bitrev = split, tw_split, tw1, tw2, tw3, stage_off, bitrev
    t.tw_rfft = pointer(tabs[6], np.float32, n_fft, "float", "tw_rfft")
    t.ofast = int(tabs[7][0])
    return t, _ffi.NULL, 0


def compute_patch_c(pcm_patch_int16, state: st.STState) -> np.ndarray:
    """int8 features [n_mels, n_frames] from the C twin."""
    if state.params.quant_scale is None:
        raise FrontendError("frontend.quant_scale is not set; give the model's input scale to get int8 features")
    return compute_stages_c(pcm_patch_int16, state)["features"]


def rfft_packed_c(frame, state: st.STState) -> np.ndarray:
    """arm_rfft_fast of one n_fft frame (device-type values) by the C twin, packed output."""
    need()
    n = state.params.n_fft
    buf = np.array(frame, dtype=np.float32, copy=True).reshape(-1)
    out = np.empty(n, np.float32)
    tmp = np.empty(n, np.float32)
    _lib.st_rfft(_config(state), pointer(buf, np.float32, n, "float", "frame"), pointer(out, np.float32, n, "float", "out"),
                 *_tables(state)[1:], pointer(tmp, np.float32, n, "float", "tmp"))
    return out


def mel_dot_c(spectrum_column, state: st.STState) -> np.ndarray:
    """Mel dot products of one spectrum column [n_bins] by the C twin (before the floor)."""
    need()
    p = state.params
    col = np.ascontiguousarray(spectrum_column, dtype=np.float32)
    pointer(col, np.float32, p.n_bins, "float", "spectrum_column")
    pointer(state.mel_coefs, np.float32, state.mel_coefs.size, "float", "mel_coefs")
    cfg = _config(state)
    base_s = _ffi.cast("float *", col.ctypes.data)
    base_c = _ffi.cast("float *", state.mel_coefs.ctypes.data)
    out = np.empty(p.n_mels, np.float32)
    for m in range(p.n_mels):
        a, b, o = int(state.mel_start[m]), int(state.mel_stop[m]), int(state.mel_offset[m])
        if not (0 <= a <= b < p.n_bins and o + b - a + 1 <= state.mel_coefs.size):
            raise FrontendError(f"mel filter {m} indices {a}..{b} do not fit the tables; prepare the state again")
        out[m] = _lib.st_dot(cfg, base_s + a, base_c + o, b - a + 1)
    return out


def quantize_c(values, state: st.STState) -> np.ndarray:
    """int8 quantization of float32 log values by the C twin (rounding/cast switches of the state)."""
    need()
    v = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    cfg = _config(state)
    return np.array([_lib.st_quantize(cfg, float(x)) for x in v], dtype=np.int8)
