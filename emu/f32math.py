"""IEEE binary32 arithmetic of other people's builds, emulated exactly in numpy (float math done once, at
preparation time; never in kernels).

  fma_f32(a, b, c)       round32(a*b + c) with one rounding (vfmadd*ps, fmaf), exact for all finite inputs.
  sleef_powf_u10(x, y)   SLEEF's Sleef_powf*_u10 (FMA builds), torch.pow's vectorised path; x > 0 finite.
  mkl_expf(x)            Intel MKL's vsExp in VML_HA mode, as torch.exp runs on x86-64 builds with MKL (the PyPI
                         wheels); needs MKL's runtime (pip install mkl), called through ctypes.
  libm_powf(x, y)        the C library's powf (torch's scalar loops call std::pow), through ctypes.
Range contract of the SLEEF emulation: results and intermediates stay normal (y*log(x) within +-80); the mel
filter banks are far inside it.
"""
import ctypes
import ctypes.util
import glob
import os
import sys

import numpy as np

from emu.errors import N6Error

F32 = np.float32


def fma_f32(a, b, c):
    """Fused multiply-add of float32 arrays: round_to_float32(a * b + c) with one rounding (vfmadd*ps), exact.
    a*b is exact in float64; s = float64(a*b + c) and its error e (TwoSum) give the exact sum s + e, and rounding
    s to float32 is right unless s lies exactly halfway between two float32 values with e != 0 (then e decides)."""
    a, b, c = (np.asarray(v, np.float32).astype(np.float64) for v in np.broadcast_arrays(a, b, c))
    p = a * b
    with np.errstate(over="ignore", invalid="ignore"):
        s = p + c
        bb = s - p
        e = (p - (s - bb)) + (c - bb)
        r = s.astype(np.float32)
        r64 = r.astype(np.float64)
        other = np.where(s > r64, np.nextafter(r, np.float32(np.inf)), np.nextafter(r, np.float32(-np.inf)))
        o64 = other.astype(np.float64)
        halfway = (s != r64) & ((s - r64) == (o64 - s))
        toward_other = halfway & (e != 0) & ((e > 0) == (o64 > s))
    return np.where(toward_other, other, r).astype(np.float32)


# ---- SLEEF's double-float ("df") helpers, FMA variants (df.h with ENABLE_FMA_SP); pairs are (hi, lo) ----

def _fmapn(x, y, z):     # x*y - z, one rounding
    return fma_f32(x, y, -z)


def _fmanp(x, y, z):     # -x*y + z, one rounding
    return fma_f32(-x, y, z)


def _df_add2_f_f(x, y):
    s = x + y
    v = s - x
    return s, (x - (s - v)) + (y - v)


def _df_add2_df_f(x, y):
    s = x[0] + y
    v = s - x[0]
    t = (x[0] - (s - v)) + (y - v)
    return s, t + x[1]


def _df_add2_df_df(x, y):
    s = x[0] + y[0]
    v = s - x[0]
    t = (x[0] - (s - v)) + (y[0] - v)
    return s, t + (x[1] + y[1])


def _df_add_df_df(x, y):          # |x| >= |y|
    s = x[0] + y[0]
    return s, (((x[0] - s) + y[0]) + x[1]) + y[1]


def _df_add_f_df(x, y):
    s = x + y[0]
    return s, ((x - s) + y[0]) + y[1]


def _df_normalize(t):
    s = t[0] + t[1]
    return s, (t[0] - s) + t[1]


def _df_scale(d, s):
    return d[0] * s, d[1] * s


def _df_div(n, d):
    t = F32(1) / d[0]
    s = n[0] * t
    u = _fmapn(t, n[0], s)
    v = _fmanp(d[1], t, _fmanp(d[0], t, F32(1)))
    return s, fma_f32(s, v, fma_f32(n[1], t, u))


def _df_squ(x):
    s = x[0] * x[0]
    return s, fma_f32(x[0] + x[0], x[1], _fmapn(x[0], x[0], s))


def _df_mul_df_df(x, y):
    s = x[0] * y[0]
    return s, fma_f32(x[0], y[1], fma_f32(x[1], y[0], _fmapn(x[0], y[0], s)))


def _df_mul_df_f(x, y):
    s = x[0] * y
    return s, fma_f32(x[1], y, _fmapn(x[0], y, s))


def _f32(v):
    return np.asarray(v, np.float32)


_L2U, _L2L = F32(0.693145751953125), F32(1.428606765330187045e-06)
_R_LN2 = F32(1.442695040888963407359924681001892137426645954152985934135449406931)
_LN2_DF = (F32(0.69314718246459960938), F32(-1.904654323148236017e-09))


def _poly(s, coeffs):
    u = F32(coeffs[0])
    for c in coeffs[1:]:
        u = fma_f32(u, s, F32(c))
    return u


def _sleef_logkf(d):
    """SLEEF logkf (double-float log) of positive normal float32 values."""
    d = _f32(d)
    e = (np.frexp(d * F32(1.0 / 0.75))[1] - 1).astype(np.int32)      # vilogb2k: the exponent of d / 0.75
    m = np.ldexp(d, -e).astype(np.float32)
    x = _df_div(_df_add2_f_f(F32(-1), m), _df_add2_f_f(F32(1), m))
    x2 = _df_squ(x)
    t = _poly(x2[0], (0.240320354700088500976562, 0.285112679004669189453125, 0.400007992982864379882812))
    c = (F32(0.66666662693023681640625), F32(3.69183861259614332084311e-09))
    s = _df_mul_df_f(_LN2_DF, e.astype(np.float32))
    s = _df_add_df_df(s, _df_scale(x, F32(2)))
    return _df_add_df_df(s, _df_mul_df_df(_df_mul_df_df(x2, x), _df_add2_df_df(_df_mul_df_f(x2, t), c)))


def _sleef_expkf(d):
    """SLEEF expkf of a double-float argument."""
    u = (d[0] + d[1]) * _R_LN2
    q = np.rint(u).astype(np.int32)
    qf = q.astype(np.float32)
    s = _df_add2_df_f(d, qf * -_L2U)
    s = _df_add2_df_f(s, qf * -_L2L)
    s = _df_normalize(s)
    u = _poly(s[0], (0.00136324646882712841033936, 0.00836596917361021041870117, 0.0416710823774337768554688,
                     0.166665524244308471679688, 0.499999850988388061523438))
    t = _df_add_df_df(s, _df_mul_df_f(_df_squ(s), u))
    t = _df_add_f_df(F32(1), t)
    u = np.ldexp(t[0] + t[1], q).astype(np.float32)
    return np.where(d[0] < F32(-104), F32(0), u).astype(np.float32)


def sleef_powf_u10(x, y):
    """Sleef_powf*_u10 (xpowf, FMA build) for positive finite x and finite y, bit for bit."""
    x, y = np.broadcast_arrays(_f32(x), _f32(y))
    if not (np.all(np.isfinite(x)) and np.all(x > 0) and np.all(np.isfinite(y))):
        raise ValueError("sleef_powf_u10 emulates positive finite bases and finite exponents only")
    r = _sleef_expkf(_df_mul_df_f(_sleef_logkf(x), y))
    r = np.where(np.isnan(r), F32(np.inf), r)
    return np.where((y == 0) | (x == 1), F32(1), r).astype(np.float32)


_LIBM = None


def _libm():
    global _LIBM
    if _LIBM is None:
        lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        lib.powf.restype = ctypes.c_float
        lib.powf.argtypes = [ctypes.c_float, ctypes.c_float]
        _LIBM = lib
    return _LIBM


def libm_powf(x, y):
    """The C library's powf on each pair of float32 values (torch's scalar loop calls std::pow(float, float))."""
    lib = _libm()
    x, y = np.broadcast_arrays(_f32(x), _f32(y))
    return np.array([lib.powf(float(a), float(b)) for a, b in zip(x.ravel(), y.ravel())],
                    np.float32).reshape(x.shape)


_MKL = None
VML_HA, VML_FTZDAZ_OFF, VML_ERRMODE_IGNORE = 0x2, 0x140000, 0x100     # mkl_vml_defines.h


def _mkl():
    """MKL's single dynamic library (libmkl_rt), from the `mkl` wheel's lib folder or the loader's search path."""
    global _MKL
    if _MKL is None:
        names = [n for prefix in dict.fromkeys((sys.prefix, sys.base_prefix))
                 for n in sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*")))]
        found = ctypes.util.find_library("mkl_rt")
        for name in names + ([found] if found else []):
            try:
                lib = ctypes.CDLL(name)
                fn = lib.vmsExp
            except (OSError, AttributeError):
                continue
            fn.restype = None
            fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_longlong]
            _MKL = lib
            break
        else:
            raise N6Error("mel_source \"torchaudio\" with the slaney mel scale needs Intel MKL's runtime (torch's "
                          "exp on x86-64); pip install mkl (or n6emu[torchaudio]), or use \"torchaudio-sleef\" for "
                          "torch builds without MKL")
    return _MKL


def mkl_expf(x):
    """vmsExp(n, x, y, VML_HA | VML_FTZDAZ_OFF | VML_ERRMODE_IGNORE) on float32 values (what torch.exp calls)."""
    src = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(src)
    if src.size:
        _mkl().vmsExp(src.size, src.ctypes.data, out.ctypes.data, VML_HA | VML_FTZDAZ_OFF | VML_ERRMODE_IGNORE)
    return out
