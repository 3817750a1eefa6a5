"""`cmsis-q15` front end: CMSIS-DSP q15 primitives (pure-C build semantics) and the log-mel / MFCC chain.

Written from CMSIS-DSP facts (Source/TransformFunctions, ComplexMathFunctions, FastMathFunctions, v1.10+):

- `mult_q15`: sat16((a*b) >> 15).
- `rfft_q15`: arm_rfft_q15 forward, bit-reversed-corrected output, 2*N int16 values (full spectrum incl.
  conjugates), value = DFT(x)/N, i.e. (log2N+1).(15-log2N) format. The cfft of length L=N/2 is the
  radix-4 butterfly (L = 4^k) or radix-4-by-2 (L = 2*4^k), each stage halving, then the split stage.
  The input buffer is overwritten as the C code does (the wrapper works on a copy unless told not to).
- `cmplx_mag_q15` (2.14): sqrt_q31((re*re + im*im) >> 1) >> 16 (Newton 1/sqrt with a 32-entry LUT).
- `cmplx_mag_squared_q15` (3.13): (re*re + im*im) >> 17 in 64 bits.
- `vlog_q31` (q31 -> q5.26) and `vlog_q15` (q15 -> q4.11): Clay Turner log2, times 1/log2(e).
- mel: q63 dot products (arm_dot_prod_q15), + bias, >> shift, sat31.
- `mfcc_q15`: arm_mfcc_q15 end to end (peak normalisation, window, rfft, magnitude, mel, +MICRO_Q15,
  >>10, undo normalisation, vlog_q31 + (log2N+2+10)*ln2, >>19 to q8.7, q15 DCT).

FFT variants (a named switch, never a global): `"pure-c"` (default; what the cmsisdsp PyPI build and any
build without ARM_MATH_DSP computes) and `"dsp-ext"` (Cortex-M4/M7 ARM_MATH_DSP paths: halving adds
__SHADD16/__SHSUB16/__SHASX/__SHSAX in the radix-4 butterflies, i.e. (a+b)>>1 instead of (a>>1)+(b>>1), and
single-truncation __SMUAD/__SMUSDX multiply-adds in the radix-4-by-2 stage). The split stage and the
other primitives are identical in both builds. `dsp-ext` has no oracle here: it is checked against an
independent naive transcription in the tests, not against a device.

Layout: complex values are interleaved [re0, im0, re1, im1, ...]. All kernels are integer only; every
C integer width is reproduced with explicit wraps (`_wrap16`, `_wrap32`) or saturations (emu.fixedpoint's
`saturate_int16`, `saturate_int32`; __CLZ is its `count_leading_zeros32`).

Patch kernels: with the pure-C FFT, compute_patch / compute_stages run LANES frames side by side (framing,
rfft, magnitude, mel, log, quantization; `_*_lanes`, int16 lanes up to the spectrum), bit for bit the
frame-by-frame kernels, which remain the path of `dsp-ext` (and of `_run_patch(lanes=False)`, the tests'
reference). compute_patches (the batch entry FrontEnd.patches takes) runs the frames of P patches as one run of
LANES-frame blocks, split over threads when there are many.
"""
from dataclasses import dataclass, field, fields
import functools
import math
import threading

import numpy as np
from llvmlite import ir

from emu import fixedpoint
from emu.errors import N6Error as _Error
from emu.frontend.threads import over_threads
from emu.fixedpoint import _ctlz32, count_leading_zeros32, saturate_int16, saturate_int32
from emu.jit import cgutils, intrinsic, njit, types

FFT_VARIANTS = {"pure-c": 0, "dsp-ext": 1}
SUPPORTED_RFFT = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
TABLE_ROUNDINGS = ("truncate", "half-away", "half-even")

MICRO_Q15 = 0x219                 # arm_mfcc_q15: bias added to every mel dot product (q63 units)
SHIFT_MELFILTER_SATURATION_Q15 = 10
LOG2TOLOG_Q15 = 0x02C5C860         # ln(2) in q5.26
LN2_Q4_11 = 1420                   # round(ln(2) * 2^11): our q4.11 exponent step (no CMSIS constant)
REAL_COEF_LEN = 8192              # realCoefAQ15/BQ15 serve every N with modifier 8192/N


# ----------------------------------------------------------------------------------------------------
# prepare side: tables (float math allowed, done once)
# ----------------------------------------------------------------------------------------------------

def fft_variant_code(name):
    """Map an FFT variant name ('pure-c' | 'dsp-ext') to the integer code the kernels take."""
    try:
        return FFT_VARIANTS[name]
    except KeyError:
        raise _Error(f"unknown q15 FFT variant {name!r}; use one of {sorted(FFT_VARIANTS)}") from None


def float_to_q15(values, rounding="truncate"):
    """Float table -> q15 int16 with saturation.

    rounding: 'truncate' = arm_float_to_q15 default build ((q31)(x*32768.0f), toward zero, float32),
    'half-away' = arm_float_to_q15 with ARM_MATH_ROUNDING, 'half-even' = cmsisdsp.datatype.convert
    (numpy round of the float64 value; what CMSIS-DSP's Python mfcc helpers emit).
    """
    if rounding == "half-even":
        scaled = np.round(np.asarray(values, dtype=np.float64) * 32768.0)
    elif rounding in ("truncate", "half-away"):
        scaled32 = np.asarray(values, dtype=np.float32) * np.float32(32768.0)
        if rounding == "half-away":
            scaled32 = scaled32 + np.where(scaled32 > 0, np.float32(0.5), np.float32(-0.5)).astype(np.float32)
        scaled = np.trunc(scaled32.astype(np.float64))
    else:
        raise _Error(f"unknown q15 table rounding {rounding!r}; use one of {list(TABLE_ROUNDINGS)}")
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def _floor_q15_table(values):
    """CMSIS-DSP FFT tables: floor(x * 2^15) saturated (e.g. cos(3pi/4) -> 0xA57D, cos(0) -> 0x7FFF)."""
    scaled = np.floor(np.asarray(values, dtype=np.float64) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def _round_q15_table(values):
    """CMSIS-DSP split-stage tables (realCoefAQ15/BQ15): round(x * 2^15), ties away, saturated."""
    scaled = np.asarray(values, dtype=np.float64) * 32768.0
    rounded = np.where(scaled >= 0, np.floor(scaled + 0.5), -np.floor(-scaled + 0.5))
    return np.clip(rounded, -32768, 32767).astype(np.int16)


@functools.lru_cache(maxsize=None)
def twiddle_q15(cfft_len):
    """twiddleCoef_<L>_q15: 3L/4 interleaved (cos, sin)(2*pi*i/L), q15 by floor (see _floor_q15_table)."""
    i = np.arange(3 * cfft_len // 4, dtype=np.float64)
    ang = 2.0 * np.pi * i / cfft_len
    tw = np.empty(2 * i.size, np.float64)
    tw[0::2] = np.cos(ang)
    tw[1::2] = np.sin(ang)
    out = _floor_q15_table(tw)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=None)
def bitrev_permutation(cfft_len):
    """Complex-index bit reversal of length L (what armBitRevIndexTable_fixed_<L> swaps)."""
    bits = int(cfft_len).bit_length() - 1
    idx = np.arange(cfft_len)
    rev = np.zeros(cfft_len, np.int64)
    for b in range(bits):
        rev |= ((idx >> b) & 1) << (bits - 1 - b)
    rev = rev.astype(np.int32)
    rev.setflags(write=False)
    return rev


@functools.lru_cache(maxsize=None)
def real_coef_q15():
    """realCoefAQ15 / realCoefBQ15 (split-stage twiddles for an 8192-point RFFT), q15 interleaved.

    A[2i] = 0.5*(1 - sin(2 pi i/8192)), A[2i+1] = -0.5*cos(...); B[2i] = 0.5*(1 + sin), B[2i+1] = 0.5*cos.
    """
    i = np.arange(REAL_COEF_LEN // 2, dtype=np.float64)
    ang = 2.0 * np.pi * i / REAL_COEF_LEN
    a = np.empty(REAL_COEF_LEN, np.float64)
    b = np.empty(REAL_COEF_LEN, np.float64)
    a[0::2] = 0.5 * (1.0 - np.sin(ang))
    a[1::2] = 0.5 * (-1.0 * np.cos(ang))
    b[0::2] = 0.5 * (1.0 + np.sin(ang))
    b[1::2] = 0.5 * (1.0 * np.cos(ang))
    qa, qb = _round_q15_table(a), _round_q15_table(b)
    qa.setflags(write=False)
    qb.setflags(write=False)
    return qa, qb


@functools.lru_cache(maxsize=None)
def sqrt_lut_q31():
    """sqrt_initial_lut_q31: round(2^28 / sqrt(0.25 + k/32)), k = 0..31 (1/sqrt start values, q28)."""
    lut = np.array([round(2.0 ** 28 / math.sqrt(0.25 + k / 32.0)) for k in range(32)], dtype=np.int32)
    lut.setflags(write=False)
    return lut


@dataclass(frozen=True)
class RfftQ15:
    """arm_rfft_instance_q15 equivalent (forward, bit reversal on): tables for one real length N."""
    n_fft: int
    twiddle: np.ndarray        # int16 [3L/2], L = N/2
    bitrev: np.ndarray         # int32 [L]
    coef_a: np.ndarray         # int16 [8192]
    coef_b: np.ndarray         # int16 [8192]
    modifier: int              # 8192 / N


@functools.lru_cache(maxsize=None)
def rfft_init_q15(n_fft):
    """arm_rfft_init_q15(N, ifft=0, bitReverse=1) for N in 32..8192 (power of two)."""
    n = int(n_fft)
    if n not in SUPPORTED_RFFT:
        raise _Error(f"q15 RFFT length {n_fft} is not supported; use one of {SUPPORTED_RFFT}")
    a, b = real_coef_q15()
    return RfftQ15(n, twiddle_q15(n // 2), bitrev_permutation(n // 2), a, b, REAL_COEF_LEN // n)


# ----------------------------------------------------------------------------------------------------
# eval side: integer-only Numba kernels (C semantics reproduced with explicit wraps)
# ----------------------------------------------------------------------------------------------------

@njit(cache=True)
def _wrap16(x):
    """int64 -> int16 two's-complement wrap (a C store into q15_t; Numba's narrowing cast truncates)."""
    return np.int64(np.int16(x))


@njit(cache=True)
def _wrap32(x):
    """int64 -> int32 two's-complement wrap (a 32-bit register; Numba's narrowing cast truncates)."""
    return np.int64(np.int32(x))


@njit(cache=True)
def _mul16(a, b):
    """(q15 * q15) >> 16 truncated to q15 (the 32-bit product stored in q15_t)."""
    return _wrap16((np.int64(a) * np.int64(b)) >> 16)


@njit(cache=True)
def _mult_q15_kernel(a, b, out, n):
    """arm_mult_q15: out[i] = sat16((a[i]*b[i]) >> 15). out may alias a."""
    for i in range(n):
        v = (np.int64(a[np.uint64(i)]) * np.int64(b[np.uint64(i)])) >> 15
        out[np.uint64(i)] = min(max(v, np.int64(-32768)), np.int64(32767))     # saturate_int16, written out


@njit(cache=True)
def _radix4_butterfly_q15(x, off, fft_len, coef, tw_mod, dsp):
    """arm_radix4_butterfly_q15 on x[off : off+2*fft_len] in place (fft_len = 4^k >= 16).

    Pure C: inputs >>2 in stage 1, every later stage halves as (a>>1)+(b>>1); dsp != 0: halving adds (a+b)>>1.
    Twiddle products: (c*a + s*b) >> 16 as one 32-bit sum, stored to q15.
    """
    n2 = fft_len >> 2
    ic = 0
    # first stage: inputs down-scaled by 4
    for i0 in range(n2):
        i1 = i0 + n2
        i2 = i1 + n2
        i3 = i2 + n2
        p0 = off + 2 * i0
        p1 = off + 2 * i1
        p2 = off + 2 * i2
        p3 = off + 2 * i3
        t0 = np.int64(x[np.uint64(p0)]) >> 2
        t1 = np.int64(x[np.uint64(p0 + 1)]) >> 2
        s0 = np.int64(x[np.uint64(p2)]) >> 2
        s1 = np.int64(x[np.uint64(p2 + 1)]) >> 2
        r0 = saturate_int16(t0 + s0)
        r1 = saturate_int16(t1 + s1)
        s0 = saturate_int16(t0 - s0)
        s1 = saturate_int16(t1 - s1)
        b0 = np.int64(x[np.uint64(p1)])           # x[p1], x[p3] are read once: the C code re-reads
        b1 = np.int64(x[np.uint64(p1 + 1)])       # them after storing x[p0] / x[p1], which are other cells
        d0 = np.int64(x[np.uint64(p3)])
        d1 = np.int64(x[np.uint64(p3 + 1)])
        t0 = b0 >> 2
        t1 = b1 >> 2
        u0 = d0 >> 2
        u1 = d1 >> 2
        t0 = saturate_int16(t0 + u0)
        t1 = saturate_int16(t1 + u1)
        if dsp:
            x[np.uint64(p0)] = _wrap16((r0 + t0) >> 1)
            x[np.uint64(p0 + 1)] = _wrap16((r1 + t1) >> 1)
        else:
            x[np.uint64(p0)] = _wrap16((r0 >> 1) + (t0 >> 1))
            x[np.uint64(p0 + 1)] = _wrap16((r1 >> 1) + (t1 >> 1))
        r0 = saturate_int16(r0 - t0)
        r1 = saturate_int16(r1 - t1)
        co2 = np.int64(coef[np.uint64(4 * ic)])
        si2 = np.int64(coef[np.uint64(4 * ic + 1)])
        out1 = _wrap16(_wrap32(co2 * r0 + si2 * r1) >> 16)
        out2 = _wrap16(_wrap32(-si2 * r0 + co2 * r1) >> 16)
        t0 = b0 >> 2
        t1 = b1 >> 2
        x[np.uint64(p1)] = out1
        x[np.uint64(p1 + 1)] = out2
        u0 = d0 >> 2
        u1 = d1 >> 2
        t0 = saturate_int16(t0 - u0)
        t1 = saturate_int16(t1 - u1)
        r0 = saturate_int16(s0 - t1)
        r1 = saturate_int16(s1 + t0)
        s0 = saturate_int16(s0 + t1)
        s1 = saturate_int16(s1 - t0)
        co1 = np.int64(coef[np.uint64(2 * ic)])
        si1 = np.int64(coef[np.uint64(2 * ic + 1)])
        x[np.uint64(p2)] = _wrap16(_wrap32(si1 * s1 + co1 * s0) >> 16)
        x[np.uint64(p2 + 1)] = _wrap16(_wrap32(-si1 * s0 + co1 * s1) >> 16)
        co3 = np.int64(coef[np.uint64(6 * ic)])
        si3 = np.int64(coef[np.uint64(6 * ic + 1)])
        x[np.uint64(p3)] = _wrap16(_wrap32(si3 * r1 + co3 * r0) >> 16)
        x[np.uint64(p3 + 1)] = _wrap16(_wrap32(-si3 * r0 + co3 * r1) >> 16)
        ic += tw_mod
    # middle stages
    tw_mod = tw_mod << 2
    k = fft_len >> 2
    while k > 4:
        n1 = n2
        n2 = n2 >> 2
        ic = 0
        for j in range(n2):
            co1 = np.int64(coef[np.uint64(2 * ic)])
            si1 = np.int64(coef[np.uint64(2 * ic + 1)])
            co2 = np.int64(coef[np.uint64(4 * ic)])
            si2 = np.int64(coef[np.uint64(4 * ic + 1)])
            co3 = np.int64(coef[np.uint64(6 * ic)])
            si3 = np.int64(coef[np.uint64(6 * ic + 1)])
            ic += tw_mod
            for i0 in range(j, fft_len, n1):
                p0 = off + 2 * i0
                p1 = p0 + 2 * n2
                p2 = p1 + 2 * n2
                p3 = p2 + 2 * n2
                t0 = np.int64(x[np.uint64(p0)])
                t1 = np.int64(x[np.uint64(p0 + 1)])
                s0 = np.int64(x[np.uint64(p2)])
                s1 = np.int64(x[np.uint64(p2 + 1)])
                r0 = saturate_int16(t0 + s0)
                r1 = saturate_int16(t1 + s1)
                s0 = saturate_int16(t0 - s0)
                s1 = saturate_int16(t1 - s1)
                b0 = np.int64(x[np.uint64(p1)])   # read once (see the first stage)
                b1 = np.int64(x[np.uint64(p1 + 1)])
                d0 = np.int64(x[np.uint64(p3)])
                d1 = np.int64(x[np.uint64(p3 + 1)])
                t0 = saturate_int16(b0 + d0)
                t1 = saturate_int16(b1 + d1)
                if dsp:
                    x[np.uint64(p0)] = _wrap16(((r0 + t0) >> 1) >> 1)
                    x[np.uint64(p0 + 1)] = _wrap16(((r1 + t1) >> 1) >> 1)
                    r0 = (r0 - t0) >> 1
                    r1 = (r1 - t1) >> 1
                else:
                    x[np.uint64(p0)] = _wrap16(((r0 >> 1) + (t0 >> 1)) >> 1)
                    x[np.uint64(p0 + 1)] = _wrap16(((r1 >> 1) + (t1 >> 1)) >> 1)
                    r0 = _wrap16((r0 >> 1) - (t0 >> 1))
                    r1 = _wrap16((r1 >> 1) - (t1 >> 1))
                out1 = _wrap16(_wrap32(co2 * r0 + si2 * r1) >> 16)
                out2 = _wrap16(_wrap32(-si2 * r0 + co2 * r1) >> 16)
                x[np.uint64(p1)] = out1
                x[np.uint64(p1 + 1)] = out2
                t0 = saturate_int16(b0 - d0)
                t1 = saturate_int16(b1 - d1)
                if dsp:
                    r0 = (s0 - t1) >> 1
                    r1 = (s1 + t0) >> 1
                    s0n = (s0 + t1) >> 1
                    s1n = (s1 - t0) >> 1
                else:
                    r0 = _wrap16((s0 >> 1) - (t1 >> 1))
                    r1 = _wrap16((s1 >> 1) + (t0 >> 1))
                    s0n = _wrap16((s0 >> 1) + (t1 >> 1))
                    s1n = _wrap16((s1 >> 1) - (t0 >> 1))
                x[np.uint64(p2)] = _wrap16(_wrap32(co1 * s0n + si1 * s1n) >> 16)
                x[np.uint64(p2 + 1)] = _wrap16(_wrap32(-si1 * s0n + co1 * s1n) >> 16)
                x[np.uint64(p3)] = _wrap16(_wrap32(si3 * r1 + co3 * r0) >> 16)
                x[np.uint64(p3 + 1)] = _wrap16(_wrap32(-si3 * r0 + co3 * r1) >> 16)
        tw_mod = tw_mod << 2
        k = k >> 2
    # last stage: twiddles are all 1
    n1 = n2
    n2 = n2 >> 2
    for i0 in range(0, fft_len - n1 + 1, n1):
        p0 = off + 2 * i0
        p1 = p0 + 2 * n2
        p2 = p1 + 2 * n2
        p3 = p2 + 2 * n2
        a0 = np.int64(x[np.uint64(p0)])
        a1 = np.int64(x[np.uint64(p0 + 1)])
        b0 = np.int64(x[np.uint64(p1)])
        b1 = np.int64(x[np.uint64(p1 + 1)])
        c0 = np.int64(x[np.uint64(p2)])
        c1 = np.int64(x[np.uint64(p2 + 1)])
        d0 = np.int64(x[np.uint64(p3)])
        d1 = np.int64(x[np.uint64(p3 + 1)])
        r0 = saturate_int16(a0 + c0)
        r1 = saturate_int16(a1 + c1)
        s0 = saturate_int16(a0 - c0)
        s1 = saturate_int16(a1 - c1)
        t0 = saturate_int16(b0 + d0)
        t1 = saturate_int16(b1 + d1)
        u0 = saturate_int16(b0 - d0)
        u1 = saturate_int16(b1 - d1)
        if dsp:
            x[np.uint64(p0)] = _wrap16((r0 + t0) >> 1)
            x[np.uint64(p0 + 1)] = _wrap16((r1 + t1) >> 1)
            x[np.uint64(p1)] = _wrap16((r0 - t0) >> 1)
            x[np.uint64(p1 + 1)] = _wrap16((r1 - t1) >> 1)
            x[np.uint64(p2)] = _wrap16((s0 + u1) >> 1)
            x[np.uint64(p2 + 1)] = _wrap16((s1 - u0) >> 1)
            x[np.uint64(p3)] = _wrap16((s0 - u1) >> 1)
            x[np.uint64(p3 + 1)] = _wrap16((s1 + u0) >> 1)
        else:
            x[np.uint64(p0)] = _wrap16((r0 >> 1) + (t0 >> 1))
            x[np.uint64(p0 + 1)] = _wrap16((r1 >> 1) + (t1 >> 1))
            x[np.uint64(p1)] = _wrap16((r0 >> 1) - (t0 >> 1))
            x[np.uint64(p1 + 1)] = _wrap16((r1 >> 1) - (t1 >> 1))
            x[np.uint64(p2)] = _wrap16((s0 >> 1) + (u1 >> 1))
            x[np.uint64(p2 + 1)] = _wrap16((s1 >> 1) - (u0 >> 1))
            x[np.uint64(p3)] = _wrap16((s0 >> 1) - (u1 >> 1))
            x[np.uint64(p3 + 1)] = _wrap16((s1 >> 1) + (u0 >> 1))


@njit(cache=True)
def _radix4by2_q15(x, fft_len, coef, dsp):
    """arm_cfft_radix4by2_q15: one radix-2 stage (inputs >>1, sums >>1), two radix-4 halves, then <<1.

    Pure C twiddle product: int16((xt*c)>>16) + int16((yt*s)>>16) (two truncations); dsp != 0:
    __SMUAD/__SMUSDX, one truncation of the 32-bit sum.
    """
    n2 = fft_len >> 1
    for i in range(n2):
        cos_v = np.int64(coef[np.uint64(2 * i)])
        sin_v = np.int64(coef[np.uint64(2 * i + 1)])
        l = i + n2
        a0 = np.int64(x[np.uint64(2 * i)]) >> 1
        a1 = np.int64(x[np.uint64(2 * i + 1)]) >> 1
        b0 = np.int64(x[np.uint64(2 * l)]) >> 1
        b1 = np.int64(x[np.uint64(2 * l + 1)]) >> 1
        xt = _wrap16(a0 - b0)
        yt = _wrap16(a1 - b1)
        x[np.uint64(2 * i)] = _wrap16((a0 + b0) >> 1)
        x[np.uint64(2 * i + 1)] = _wrap16((b1 + a1) >> 1)
        if dsp:
            x[np.uint64(2 * l)] = _wrap16(_wrap32(cos_v * xt + sin_v * yt) >> 16)
            x[np.uint64(2 * l + 1)] = _wrap16(_wrap32(cos_v * yt - sin_v * xt) >> 16)
        else:
            x[np.uint64(2 * l)] = _wrap16(_mul16(xt, cos_v) + _mul16(yt, sin_v))
            x[np.uint64(2 * l + 1)] = _wrap16(_mul16(yt, cos_v) - _mul16(xt, sin_v))
    _radix4_butterfly_q15(x, 0, n2, coef, 2, dsp)
    _radix4_butterfly_q15(x, fft_len, n2, coef, 2, dsp)
    for i in range(2 * fft_len):
        x[np.uint64(i)] = _wrap16(np.int64(x[np.uint64(i)]) << 1)


@njit(cache=True)
def _cfft_q15(x, fft_len, coef, bitrev, dsp):
    """arm_cfft_q15 forward with bit reversal, in place on x[0 : 2*fft_len]."""
    if fft_len in (16, 64, 256, 1024, 4096):
        _radix4_butterfly_q15(x, 0, fft_len, coef, 1, dsp)
    else:
        _radix4by2_q15(x, fft_len, coef, dsp)
    for i in range(fft_len):
        j = bitrev[np.uint64(i)]
        if i < j:
            re = x[np.uint64(2 * i)]
            im = x[np.uint64(2 * i + 1)]
            x[np.uint64(2 * i)] = x[np.uint64(2 * j)]
            x[np.uint64(2 * i + 1)] = x[np.uint64(2 * j + 1)]
            x[np.uint64(2 * j)] = re
            x[np.uint64(2 * j + 1)] = im


@njit(cache=True)
def _split_rfft_q15(src, half_len, coef_a, coef_b, dst, modifier):
    """arm_split_rfft_q15: cfft of the packed real signal -> full 2N-value spectrum (conjugates mirrored).

    outR = (s1r*Ar - s1i*Ai + s2r*Br + s2i*Bi) >> 16, outI = (s2r*Bi - s2i*Br + s1i*Ar + s1r*Ai) >> 16,
    32-bit sums (wrapping), results stored to q15.
    """
    for i in range(1, half_len):
        s1r = np.int64(src[np.uint64(2 * i)])
        s1i = np.int64(src[np.uint64(2 * i + 1)])
        s2r = np.int64(src[np.uint64(2 * half_len - 2 * i)])
        s2i = np.int64(src[np.uint64(2 * half_len - 2 * i + 1)])
        ar = np.int64(coef_a[np.uint64(2 * i * modifier)])
        ai = np.int64(coef_a[np.uint64(2 * i * modifier + 1)])
        br = np.int64(coef_b[np.uint64(2 * i * modifier)])
        bi = np.int64(coef_b[np.uint64(2 * i * modifier + 1)])
        out_r = _wrap32(s1r * ar)
        out_r = _wrap32(out_r - s1i * ai)
        out_r = _wrap32(out_r + s2r * br)
        out_r = _wrap32(out_r + s2i * bi) >> 16
        out_i = _wrap32(s2r * bi)
        out_i = _wrap32(out_i - s2i * br)
        out_i = _wrap32(out_i + s1i * ar)
        out_i = _wrap32(out_i + s1r * ai)
        dst[np.uint64(2 * i)] = _wrap16(out_r)
        dst[np.uint64(2 * i + 1)] = _wrap16(out_i >> 16)
        dst[np.uint64(4 * half_len - 2 * i)] = _wrap16(out_r)
        dst[np.uint64(4 * half_len - 2 * i + 1)] = _wrap16(-(out_i >> 16))
    s0 = np.int64(src[np.uint64(0)])
    s1 = np.int64(src[np.uint64(1)])
    dst[np.uint64(2 * half_len)] = _wrap16((s0 - s1) >> 1)
    dst[np.uint64(2 * half_len + 1)] = 0
    dst[np.uint64(0)] = _wrap16((s0 + s1) >> 1)
    dst[np.uint64(1)] = 0


@njit(cache=True)
def _rfft_q15_kernel(src, n_fft, twiddle, bitrev, coef_a, coef_b, modifier, dsp, dst):
    """arm_rfft_q15 forward: src (int16[n_fft], overwritten) -> dst (int16[2*n_fft])."""
    half = n_fft >> 1
    _cfft_q15(src, half, twiddle, bitrev, dsp)
    _split_rfft_q15(src, half, coef_a, coef_b, dst, modifier)


@njit(cache=True)
def _sqrt_q31(value, lut):
    """arm_sqrt_q31: Newton iterations on 1/sqrt from a 32-entry q28 LUT; 0 for value <= 0."""
    number = np.int64(value)
    if number <= 0:
        return np.int64(0)
    sign_bits = count_leading_zeros32(number) - 1          # 0..30 for 0 < number < 2^31
    even_shift = sign_bits & ~np.int64(1)   # sign_bits rounded down to even
    number = _wrap32(number << even_shift)
    return _sqrt_q31_newton(number, np.int64(lut[np.uint64((number >> 26) - 8)]), even_shift >> 1)


@njit(cache=True)
def _sqrt_q31_newton(number, var1, half_shift):
    """arm_sqrt_q31 after normalisation: three q28 Newton steps on 1/sqrt from var1, times number, >> half_shift
    (32-bit wraps; number = 0 with var1 = 0 gives 0)."""
    for _ in range(3):
        temp = _wrap32((var1 * var1) >> 28)
        temp = _wrap32((number * temp) >> 31)
        temp = _wrap32(0x30000000 - temp)
        var1 = _wrap32((var1 * temp) >> 29)
    return _wrap32((number * var1) >> 28) >> half_shift


@njit(cache=True)
def _sqrt_q31_kernel(src, dst, n, lut):
    for i in range(n):
        dst[i] = _sqrt_q31(src[i], lut)


@njit(cache=True)
def _cmplx_mag_q15_kernel(src, dst, n, lut, scratch):
    """arm_cmplx_mag_q15 (pure C): sqrt_q31(((u32)re*re + (u32)im*im) >> 1) >> 16, 2.14.

    Two passes through the caller's scratch int64[2n]: [i] = normalised number, [n+i] = LUT start << 8 |
    half shift; then the branch-free Newton steps (_sqrt_q31_newton) over all bins (same integers)."""
    for i in range(n):
        re = np.int64(src[np.uint64(2 * i)])
        im = np.int64(src[np.uint64(2 * i + 1)])
        number = (((re * re) + (im * im)) & 0xFFFFFFFF) >> 1
        start = np.int64(0)                     # number 0 -> var1 0 -> sqrt 0, as arm_sqrt_q31
        if number > 0:
            even_shift = (count_leading_zeros32(number) - 1) & ~np.int64(1)
            number = _wrap32(number << even_shift)
            start = (np.int64(lut[np.uint64((number >> 26) - 8)]) << 8) | (even_shift >> 1)
        scratch[np.uint64(i)] = number
        scratch[np.uint64(n + i)] = start
    for i in range(n):
        packed = scratch[np.uint64(n + i)]
        root = _sqrt_q31_newton(scratch[np.uint64(i)], packed >> 8, packed & 255)
        dst[np.uint64(i)] = _wrap16(root >> 16)


@njit(cache=True)
def _cmplx_mag_squared_q15_kernel(src, dst, n):
    """arm_cmplx_mag_squared_q15 (pure C): (q63(re*re) + im*im) >> 17 stored to q15, 3.13."""
    for i in range(n):
        re = np.int64(src[2 * i])
        im = np.int64(src[2 * i + 1])
        dst[i] = _wrap16((re * re + im * im) >> 17)


@njit(cache=True)
def _log_q31_normalise(value):
    """arm_vlog_q31 input step: (x, c) with c = clz32(value) and x = value normalised to bit 30 (unsigned 32)."""
    src = np.int64(value) & 0xFFFFFFFF
    c = count_leading_zeros32(src)
    if c - 1 < 0:
        x = src >> (1 - c)
    else:
        x = (src << (c - 1)) & 0xFFFFFFFF
    return x, c


@njit(cache=True)
def _log_q31_step(x, y, inc):
    """One Clay Turner iteration, branch free: x = x*x >> 30 (x < 2^31); if bit 31: y += inc, x >>= 1."""
    x = ((x * x) >> 30) & 0xFFFFFFFF
    bit = x >> 31
    return x >> bit, y + (inc & -bit)


@njit(cache=True)
def _log_q31_finish(y, c):
    """arm_vlog_q31 output step: (log2 - c) in q5.26 times 1/log2(e) (q31), 32-bit wraps."""
    tmp = _wrap32(_wrap32(y) - _wrap32(c << 26))
    return _wrap32((tmp * 0x58B90BFB) >> 31)


@njit(cache=True)
def _log_q31_scalar(value):
    """arm_vlog_q31 element: q31 -> q5.26 natural log (Clay Turner log2, 31 iterations)."""
    x, c = _log_q31_normalise(value)
    y = np.int64(0)
    inc = np.int64(1) << 25
    for _ in range(31):
        x, y = _log_q31_step(x, y, inc)
        inc = inc >> 1
    return _log_q31_finish(y, c)


@njit(cache=True)
def _vlog_q31_kernel(src, dst, n):
    """arm_vlog_q31 on src[:n] -> dst[:n] (q5.26); four independent iteration chains interleaved."""
    i = 0
    while i + 4 <= n:
        x0, c0 = _log_q31_normalise(src[i])
        x1, c1 = _log_q31_normalise(src[i + 1])
        x2, c2 = _log_q31_normalise(src[i + 2])
        x3, c3 = _log_q31_normalise(src[i + 3])
        y0 = np.int64(0)
        y1 = np.int64(0)
        y2 = np.int64(0)
        y3 = np.int64(0)
        inc = np.int64(1) << 25
        for _ in range(31):
            x0, y0 = _log_q31_step(x0, y0, inc)
            x1, y1 = _log_q31_step(x1, y1, inc)
            x2, y2 = _log_q31_step(x2, y2, inc)
            x3, y3 = _log_q31_step(x3, y3, inc)
            inc = inc >> 1
        dst[i] = _log_q31_finish(y0, c0)
        dst[i + 1] = _log_q31_finish(y1, c1)
        dst[i + 2] = _log_q31_finish(y2, c2)
        dst[i + 3] = _log_q31_finish(y3, c3)
        i += 4
    while i < n:
        dst[i] = _log_q31_scalar(src[i])
        i += 1


@njit(cache=True)
def _log_q15_scalar(value):
    """arm_vlog_q15 element: q15 -> q4.11 natural log (Clay Turner log2, 15 iterations)."""
    src = np.int64(value) & 0xFFFF
    c = count_leading_zeros32(src) - 16
    if c - 1 < 0:
        x = src >> (1 - c)
    else:
        x = (src << (c - 1)) & 0xFFFF
    y = np.int64(0)
    inc = np.int64(1024)
    for _ in range(15):
        x = ((x * x) >> 14) & 0xFFFF
        if x >= 0x8000:
            y += inc
            x = x >> 1
        inc = inc >> 1
    tmp = _wrap16(_wrap16(y) - (c << 11))
    return _wrap16((tmp * 0x58B9) >> 15)


@njit(cache=True)
def _vlog_q15_kernel(src, dst, n):
    for i in range(n):
        dst[i] = _log_q15_scalar(src[i])


@njit(cache=True)
def _dot_prod_q15(a, a_off, b, b_off, n):
    """arm_dot_prod_q15: exact q63 sum of q15 products (q34.30)."""
    acc = np.int64(0)
    for k in range(n):
        acc += np.int64(a[np.uint64(a_off + k)]) * np.int64(b[np.uint64(b_off + k)])
    return acc


@njit(cache=True)
def _mel_q31(spec, mel_start, mel_len, mel_coefs, bias, shift, out):
    """out[m] = sat31((dot_q63(spec[start_m:], coefs_m) + bias) >> shift), coefficient runs concatenated."""
    pos = 0
    for m in range(mel_start.size):
        acc = _dot_prod_q15(spec, mel_start[m], mel_coefs, pos, mel_len[m])
        pos += mel_len[m]
        out[m] = saturate_int32((acc + bias) >> shift)


@njit(cache=True)
def _mfcc_q15_kernel(src, window, n_fft, twiddle, bitrev, coef_a, coef_b, modifier, dsp, lut,
                     mel_start, mel_len, mel_coefs, dct, n_dct, tmp_spec, tmp_mel, mag_scratch,
                     rec_frame, rec_bins, rec_log, out):
    """arm_mfcc_q15 on src (int16[n_fft], overwritten); out int16[n_dct] in q8.7.

    tmp_spec int16[2*n_fft] (the rfft output), tmp_mel int32[n_mels] (mel after the undo of the
    normalisation), mag_scratch int64[n_fft+2] (see _cmplx_mag_q15_kernel); dct int16[n_dct*n_mels] row-major. Stage records: rec_frame int16[n_fft] (normalised,
    windowed input), rec_bins int16[n_fft/2+1] (2.14 magnitudes), rec_log int32[n_mels] (ln in q5.26
    after the exponent offset, before >>19).
    """
    m = _mfcc_pre(src, window, n_fft)
    for i in range(n_fft):
        rec_frame[np.uint64(i)] = src[np.uint64(i)]
    _rfft_q15_kernel(src, n_fft, twiddle, bitrev, coef_a, coef_b, modifier, dsp, tmp_spec)
    _mfcc_post(tmp_spec, src, m, n_fft, lut, mel_start, mel_len, mel_coefs, dct, n_dct, tmp_mel, mag_scratch,
               rec_bins, rec_log, out)


@njit(cache=True)
def _mfcc_pre(src, window, n_fft):
    """arm_mfcc_q15 up to its rfft, in place on src int16[n_fft]: arm_absmax_q15, the normalisation
    (arm_divide_q15 then arm_scale_q15) unless the peak m is 0 or 32767, arm_mult_q15 by the window. Returns m."""
    # arm_absmax_q15 (|-32768| saturates to 32767)
    m = np.int64(0)
    for i in range(n_fft):
        v = np.int64(src[np.uint64(i)])
        a = v if v > 0 else (32767 if v == -32768 else -v)
        if a > m:
            m = a
    normalised = m != 0 and m != 32767
    if normalised:
        # arm_divide_q15(0x7FFF, m) then arm_scale_q15(src, quotient, shift)
        temp = (np.int64(32767) << 15) // m
        shift = 17 - count_leading_zeros32(temp)
        if shift > 0:
            temp = temp >> shift
        else:
            shift = 0
        k_shift = 15 - shift
        for i in range(n_fft):
            v = (np.int64(src[np.uint64(i)]) * temp) >> k_shift
            src[np.uint64(i)] = min(max(v, np.int64(-32768)), np.int64(32767))
    _mult_q15_kernel(src, window, src, n_fft)
    return m


@njit(cache=True)
def _mfcc_post(tmp_spec, src, m, n_fft, lut, mel_start, mel_len, mel_coefs, dct, n_dct, tmp_mel, mag_scratch,
               rec_bins, rec_log, out):
    """arm_mfcc_q15 after its rfft (tmp_spec int16[2*n_fft]; src int16[n_fft] scratch; m from _mfcc_pre):
    magnitude, mel, undo of the normalisation, vlog, offset, >> 19, DCT into out int16[n_dct]."""
    n_mels = mel_start.size
    normalised = m != 0 and m != 32767
    n_bins = 1 + (n_fft >> 1)
    _cmplx_mag_q15_kernel(tmp_spec, src, n_bins, lut, mag_scratch)
    for i in range(n_bins):
        rec_bins[np.uint64(i)] = src[np.uint64(i)]
    _mel_q31(src, mel_start, mel_len, mel_coefs, MICRO_Q15, SHIFT_MELFILTER_SATURATION_Q15, tmp_mel)
    if normalised:
        # arm_scale_q31(tmp, m << 16, 0): ((q63)in * scale) >> 32, then << 1 with saturation
        scale = m << 16
        for i in range(n_mels):
            v = (np.int64(tmp_mel[np.uint64(i)]) * scale) >> 32
            o = _wrap32(v << 1)
            if v != (o >> 1):
                o = 0x7FFFFFFF ^ (v >> 31)
            tmp_mel[np.uint64(i)] = _wrap32(o)
    fft_shift = 31 - count_leading_zeros32(n_fft)
    log_exponent = _wrap32((fft_shift + 2 + SHIFT_MELFILTER_SATURATION_Q15) * LOG2TOLOG_Q15)
    _vlog_q31_kernel(tmp_mel, rec_log, n_mels)
    for i in range(n_mels):
        v = saturate_int32(np.int64(rec_log[np.uint64(i)]) + log_exponent)    # arm_offset_q31
        rec_log[np.uint64(i)] = v
        v = v >> 19                         # arm_shift_q31(-19)
        src[np.uint64(i)] = _wrap16(v)                 # __SSAT((q15_t)v, 16): the cast wraps first
    # arm_mat_vec_mult_q15: q63 row sums, sat16(sum >> 15)
    for r in range(n_dct):
        acc = np.int64(0)
        for c in range(n_mels):
            acc += np.int64(dct[np.uint64(r * n_mels + c)]) * np.int64(src[np.uint64(c)])
        out[np.uint64(r)] = saturate_int16(acc >> 15)


# ----------------------------------------------------------------------------------------------------
# arm_rfft_q15 (pure C) on LANES frames side by side: element i of frame l at [i * LANES + l] (int16: the q15
# values, so loads and stores are as narrow as the C types and LLVM does the saturating adds as 16-bit ones; the
# products are 32-bit IR intrinsics, _tw / _mulhi16 / _dot4_hi). Each lane loop body is the one-frame kernels'
# arithmetic above on lane l, branch-free, so LLVM vectorises it across frames; every butterfly's rows are copied
# to a scratch t (rows 0-7 in, 8-15 out) so the lane loop's loads and stores are provably apart. Bit for bit the
# one-frame kernels (tests).
# ----------------------------------------------------------------------------------------------------

LANES = 16


@intrinsic
def _copy_rows(typingctx, dst, dst_off, src, src_off, n):
    """dst[dst_off : dst_off + n] = src[src_off : src_off + n] as one llvm.memcpy (arrays of one element type; the
    caller guarantees the ranges are inside and apart)."""
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array) and dst.dtype == src.dtype
            and isinstance(dst.dtype, types.Integer)):
        return None
    sig = types.void(dst, dst_off, src, src_off, n)
    size = dst.dtype.bitwidth // 8

    def codegen(context, builder, signature, args):
        d, do, sv, so, nn = args
        da = context.make_array(signature.args[0])(context, builder, d)
        sa = context.make_array(signature.args[2])(context, builder, sv)
        do = context.cast(builder, do, signature.args[1], types.int64)
        so = context.cast(builder, so, signature.args[3], types.int64)
        nn = context.cast(builder, nn, signature.args[4], types.int64)
        cgutils.raw_memcpy(builder, builder.gep(da.data, [do]), builder.gep(sa.data, [so]), nn, size)
        return context.get_dummy_value()
    return sig, codegen


@njit(cache=True, inline="always")
def _rin(t, row, b, at, n):
    """t[row * LANES : (row + n) * LANES] = b[at : at + n * LANES] (t: a butterfly's scratch rows, so the lane loops
    read and write t at constant row offsets, which LLVM proves apart and vectorises)."""
    _copy_rows(t, row * LANES, b, at, n * LANES)


@njit(cache=True, inline="always")
def _rout(b, at, t, row, n):
    """b[at : at + n * LANES] = t[row * LANES : (row + n) * LANES]."""
    _copy_rows(b, at, t, row * LANES, n * LANES)


@njit(cache=True, inline="always")
def _s16(x):
    """saturate_int16 as two selects."""
    x = np.int64(x)
    x = x if x < 32767 else np.int64(32767)
    return x if x > -32768 else np.int64(-32768)


def _i32_args(context, builder, signature, args):
    """The intrinsics' integer arguments as LLVM i32 values (C's 32-bit registers: the low 32 bits)."""
    i32 = ir.IntType(32)
    return [builder.trunc(context.cast(builder, v, t, types.int64), i32) for v, t in zip(args, signature.args)]


@intrinsic
def _tw(typingctx, c, s, a, b):
    """int16(int32(c*a + s*b) >> 16) as int64: the twiddle product of the pure-C butterflies (16-bit operands),
    written as 32-bit IR (C's wrapping int32 sum; Numba's int64 arithmetic would keep LLVM to 64-bit lanes)."""
    if not all(isinstance(v, types.Integer) for v in (c, s, a, b)):
        return None

    def codegen(context, builder, signature, args):
        c32, s32, a32, b32 = _i32_args(context, builder, signature, args)
        v = builder.ashr(builder.add(builder.mul(c32, a32), builder.mul(s32, b32)), ir.Constant(ir.IntType(32), 16))
        return builder.sext(builder.trunc(v, ir.IntType(16)), ir.IntType(64))
    return types.int64(c, s, a, b), codegen


@intrinsic
def _mulhi16(typingctx, a, b):
    """int16((a*b) >> 16) as int64 for 16-bit operands (_mul16 in 32-bit IR, for the lane kernels)."""
    if not all(isinstance(v, types.Integer) for v in (a, b)):
        return None

    def codegen(context, builder, signature, args):
        a32, b32 = _i32_args(context, builder, signature, args)
        v = builder.ashr(builder.mul(a32, b32), ir.Constant(ir.IntType(32), 16))
        return builder.sext(builder.trunc(v, ir.IntType(16)), ir.IntType(64))
    return types.int64(a, b), codegen


@intrinsic
def _dot4_hi(typingctx, a1, b1, a2, b2, a3, b3, a4, b4):
    """int32(a1*b1 + a2*b2 + a3*b3 + a4*b4) >> 16 as int64: a wrapping 32-bit sum of four products (the order of
    wrapping adds does not change the sum mod 2^32), in 32-bit IR (arm_split_rfft_q15's outR / outI)."""
    if not all(isinstance(v, types.Integer) for v in (a1, b1, a2, b2, a3, b3, a4, b4)):
        return None

    def codegen(context, builder, signature, args):
        v = _i32_args(context, builder, signature, args)
        acc = builder.mul(v[0], v[1])
        for k in (2, 4, 6):
            acc = builder.add(acc, builder.mul(v[k], v[k + 1]))
        return builder.sext(builder.ashr(acc, ir.Constant(ir.IntType(32), 16)), ir.IntType(64))
    return types.int64(a1, b1, a2, b2, a3, b3, a4, b4), codegen


@njit(cache=True)
def _radix4_q15_lanes(x, off, fft_len, coef, tw_mod, t):
    """_radix4_butterfly_q15 (dsp = 0) on LANES frames; off and fft_len in complex values."""
    L = LANES
    n2 = fft_len >> 2
    ic = 0
    for i0 in range(n2):                            # first stage: inputs >> 2
        p0 = 2 * (off + i0) * L
        p1 = p0 + 2 * n2 * L
        p2 = p1 + 2 * n2 * L
        p3 = p2 + 2 * n2 * L
        co1 = np.int64(coef[2 * ic])
        si1 = np.int64(coef[2 * ic + 1])
        co2 = np.int64(coef[4 * ic])
        si2 = np.int64(coef[4 * ic + 1])
        co3 = np.int64(coef[6 * ic])
        si3 = np.int64(coef[6 * ic + 1])
        ic += tw_mod
        _rin(t, 0, x, p0, 2)
        _rin(t, 2, x, p1, 2)
        _rin(t, 4, x, p2, 2)
        _rin(t, 6, x, p3, 2)
        for l in range(L):
            a0 = np.int64(t[l])
            a1 = np.int64(t[L + l])
            b0 = np.int64(t[2 * L + l])
            b1 = np.int64(t[3 * L + l])
            c0 = np.int64(t[4 * L + l])
            c1 = np.int64(t[5 * L + l])
            d0 = np.int64(t[6 * L + l])
            d1 = np.int64(t[7 * L + l])
            r0 = _s16((a0 >> 2) + (c0 >> 2))
            r1 = _s16((a1 >> 2) + (c1 >> 2))
            s0 = _s16((a0 >> 2) - (c0 >> 2))
            s1 = _s16((a1 >> 2) - (c1 >> 2))
            t0 = _s16((b0 >> 2) + (d0 >> 2))
            t1 = _s16((b1 >> 2) + (d1 >> 2))
            t[8 * L + l] = _wrap16((r0 >> 1) + (t0 >> 1))
            t[9 * L + l] = _wrap16((r1 >> 1) + (t1 >> 1))
            r0 = _s16(r0 - t0)
            r1 = _s16(r1 - t1)
            t[10 * L + l] = _tw(co2, si2, r0, r1)
            t[11 * L + l] = _tw(-si2, co2, r0, r1)
            t0 = _s16((b0 >> 2) - (d0 >> 2))
            t1 = _s16((b1 >> 2) - (d1 >> 2))
            r0 = _s16(s0 - t1)
            r1 = _s16(s1 + t0)
            s0 = _s16(s0 + t1)
            s1 = _s16(s1 - t0)
            t[12 * L + l] = _tw(si1, co1, s1, s0)
            t[13 * L + l] = _tw(-si1, co1, s0, s1)
            t[14 * L + l] = _tw(si3, co3, r1, r0)
            t[15 * L + l] = _tw(-si3, co3, r0, r1)
        _rout(x, p0, t, 8, 2)
        _rout(x, p1, t, 10, 2)
        _rout(x, p2, t, 12, 2)
        _rout(x, p3, t, 14, 2)
    tw_mod = tw_mod << 2
    k = fft_len >> 2
    while k > 4:                                    # middle stages: halving adds
        n1 = n2
        n2 = n2 >> 2
        ic = 0
        for j in range(n2):
            co1 = np.int64(coef[2 * ic])
            si1 = np.int64(coef[2 * ic + 1])
            co2 = np.int64(coef[4 * ic])
            si2 = np.int64(coef[4 * ic + 1])
            co3 = np.int64(coef[6 * ic])
            si3 = np.int64(coef[6 * ic + 1])
            ic += tw_mod
            for i0 in range(j, fft_len, n1):
                p0 = 2 * (off + i0) * L
                p1 = p0 + 2 * n2 * L
                p2 = p1 + 2 * n2 * L
                p3 = p2 + 2 * n2 * L
                _rin(t, 0, x, p0, 2)
                _rin(t, 2, x, p1, 2)
                _rin(t, 4, x, p2, 2)
                _rin(t, 6, x, p3, 2)
                for l in range(L):
                    a0 = np.int64(t[l])
                    a1 = np.int64(t[L + l])
                    b0 = np.int64(t[2 * L + l])
                    b1 = np.int64(t[3 * L + l])
                    c0 = np.int64(t[4 * L + l])
                    c1 = np.int64(t[5 * L + l])
                    d0 = np.int64(t[6 * L + l])
                    d1 = np.int64(t[7 * L + l])
                    r0 = _s16(a0 + c0)
                    r1 = _s16(a1 + c1)
                    s0 = _s16(a0 - c0)
                    s1 = _s16(a1 - c1)
                    t0 = _s16(b0 + d0)
                    t1 = _s16(b1 + d1)
                    t[8 * L + l] = _wrap16(((r0 >> 1) + (t0 >> 1)) >> 1)
                    t[9 * L + l] = _wrap16(((r1 >> 1) + (t1 >> 1)) >> 1)
                    r0 = _wrap16((r0 >> 1) - (t0 >> 1))
                    r1 = _wrap16((r1 >> 1) - (t1 >> 1))
                    t[10 * L + l] = _tw(co2, si2, r0, r1)
                    t[11 * L + l] = _tw(-si2, co2, r0, r1)
                    t0 = _s16(b0 - d0)
                    t1 = _s16(b1 - d1)
                    r0 = _wrap16((s0 >> 1) - (t1 >> 1))
                    r1 = _wrap16((s1 >> 1) + (t0 >> 1))
                    s0n = _wrap16((s0 >> 1) + (t1 >> 1))
                    s1n = _wrap16((s1 >> 1) - (t0 >> 1))
                    t[12 * L + l] = _tw(co1, si1, s0n, s1n)
                    t[13 * L + l] = _tw(-si1, co1, s0n, s1n)
                    t[14 * L + l] = _tw(si3, co3, r1, r0)
                    t[15 * L + l] = _tw(-si3, co3, r0, r1)
                _rout(x, p0, t, 8, 2)
                _rout(x, p1, t, 10, 2)
                _rout(x, p2, t, 12, 2)
                _rout(x, p3, t, 14, 2)
        tw_mod = tw_mod << 2
        k = k >> 2
    n1 = n2                                         # last stage: twiddles 1, n2 = n1 / 4 = 1 (the middle stages stop at
    for i0 in range(0, fft_len - n1 + 1, n1):     # k = 4, n1 = 4): 4 consecutive values
        p0 = 2 * (off + i0) * L
        _rin(t, 0, x, p0, 8)
        for l in range(L):
            a0 = np.int64(t[l])
            a1 = np.int64(t[L + l])
            b0 = np.int64(t[2 * L + l])
            b1 = np.int64(t[3 * L + l])
            c0 = np.int64(t[4 * L + l])
            c1 = np.int64(t[5 * L + l])
            d0 = np.int64(t[6 * L + l])
            d1 = np.int64(t[7 * L + l])
            r0 = _s16(a0 + c0)
            r1 = _s16(a1 + c1)
            s0 = _s16(a0 - c0)
            s1 = _s16(a1 - c1)
            t0 = _s16(b0 + d0)
            t1 = _s16(b1 + d1)
            u0 = _s16(b0 - d0)
            u1 = _s16(b1 - d1)
            t[8 * L + l] = _wrap16((r0 >> 1) + (t0 >> 1))
            t[9 * L + l] = _wrap16((r1 >> 1) + (t1 >> 1))
            t[10 * L + l] = _wrap16((r0 >> 1) - (t0 >> 1))
            t[11 * L + l] = _wrap16((r1 >> 1) - (t1 >> 1))
            t[12 * L + l] = _wrap16((s0 >> 1) + (u1 >> 1))
            t[13 * L + l] = _wrap16((s1 >> 1) - (u0 >> 1))
            t[14 * L + l] = _wrap16((s0 >> 1) - (u1 >> 1))
            t[15 * L + l] = _wrap16((s1 >> 1) + (u0 >> 1))
        _rout(x, p0, t, 8, 8)


@njit(cache=True)
def _rfft_q15_lanes(x, n_fft, twiddle, bitrev, coef_a, coef_b, modifier, dst, t):
    """arm_rfft_q15 (pure C) on LANES frames: x int16[n_fft * LANES] (overwritten) -> dst int16[2 * n_fft * LANES]
    (the full 2N-value spectrum of each lane); t int16[16 * LANES] scratch (int32 arrays give the same values)."""
    L = LANES
    fft_len = n_fft >> 1
    if fft_len in (16, 64, 256, 1024, 4096):
        _radix4_q15_lanes(x, 0, fft_len, twiddle, 1, t)
    else:                                           # arm_cfft_radix4by2_q15
        n2 = fft_len >> 1
        for i in range(n2):
            cos_v = np.int64(twiddle[2 * i])
            sin_v = np.int64(twiddle[2 * i + 1])
            pi = 2 * i * L
            pl = 2 * (i + n2) * L
            _rin(t, 0, x, pi, 2)
            _rin(t, 2, x, pl, 2)
            for l in range(L):
                a0 = np.int64(t[l]) >> 1
                a1 = np.int64(t[L + l]) >> 1
                b0 = np.int64(t[2 * L + l]) >> 1
                b1 = np.int64(t[3 * L + l]) >> 1
                xt = _wrap16(a0 - b0)
                yt = _wrap16(a1 - b1)
                t[8 * L + l] = _wrap16((a0 + b0) >> 1)
                t[9 * L + l] = _wrap16((b1 + a1) >> 1)
                t[10 * L + l] = _wrap16(_mulhi16(xt, cos_v) + _mulhi16(yt, sin_v))
                t[11 * L + l] = _wrap16(_mulhi16(yt, cos_v) - _mulhi16(xt, sin_v))
            _rout(x, pi, t, 8, 2)
            _rout(x, pl, t, 10, 2)
        _radix4_q15_lanes(x, 0, n2, twiddle, 2, t)
        _radix4_q15_lanes(x, n2, n2, twiddle, 2, t)
        for i in range(2 * fft_len * L):
            x[i] = _wrap16(np.int64(x[i]) << 1)
    for i in range(fft_len):                        # bit reversal: swap rows
        j = bitrev[i]
        if i < j:
            _rin(t, 0, x, 2 * i * L, 2)
            _rin(t, 2, x, 2 * j * L, 2)
            _rout(x, 2 * i * L, t, 2, 2)
            _rout(x, 2 * j * L, t, 0, 2)
    half = fft_len
    for i in range(1, half):                        # arm_split_rfft_q15
        ar = np.int64(coef_a[2 * i * modifier])
        ai = np.int64(coef_a[2 * i * modifier + 1])
        br = np.int64(coef_b[2 * i * modifier])
        bi = np.int64(coef_b[2 * i * modifier + 1])
        _rin(t, 0, x, 2 * i * L, 2)
        _rin(t, 2, x, 2 * (half - i) * L, 2)
        for l in range(L):                  # outR, outI: wrapping 32-bit sums of the four products, >> 16
            s1r = np.int64(t[l])
            s1i = np.int64(t[L + l])
            s2r = np.int64(t[2 * L + l])
            s2i = np.int64(t[3 * L + l])
            out_r = _dot4_hi(s1r, ar, s1i, -ai, s2r, br, s2i, bi)
            out_i = _dot4_hi(s2r, bi, s2i, -br, s1i, ar, s1r, ai)
            t[8 * L + l] = _wrap16(out_r)
            t[9 * L + l] = _wrap16(out_i)
            t[10 * L + l] = _wrap16(out_r)
            t[11 * L + l] = _wrap16(-out_i)
        _rout(dst, 2 * i * L, t, 8, 2)
        _rout(dst, 2 * (2 * half - i) * L, t, 10, 2)
    for l in range(L):
        s0 = np.int64(x[l])
        s1 = np.int64(x[L + l])
        dst[2 * half * L + l] = _wrap16((s0 - s1) >> 1)
        dst[(2 * half + 1) * L + l] = 0
        dst[l] = _wrap16((s0 + s1) >> 1)
        dst[L + l] = 0


# ----------------------------------------------------------------------------------------------------
# public primitive wrappers: validate, convert, allocate; the kernels loop
# ----------------------------------------------------------------------------------------------------

def _as_int(values, dtype, name):
    arr = np.asarray(values)
    if arr.dtype != dtype:
        if arr.dtype.kind not in "iu":
            raise _Error(f"{name} must be an integer array ({np.dtype(dtype).name}), got {arr.dtype}; convert it first")
        info = np.iinfo(dtype)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise _Error(f"{name} has values outside {np.dtype(dtype).name}; saturate or rescale it first")
    return np.ascontiguousarray(arr.reshape(-1), dtype=dtype)


def mult_q15(a, b):
    """arm_mult_q15: element-wise sat16((a*b) >> 15) of two equal-length q15 vectors."""
    a16 = _as_int(a, np.int16, "a")
    b16 = _as_int(b, np.int16, "b")
    if a16.size != b16.size:
        raise _Error(f"mult_q15 operands differ in length ({a16.size} vs {b16.size}); pass equal lengths")
    out = np.empty_like(a16)
    _mult_q15_kernel(a16, b16, out, a16.size)
    return out


def rfft_q15(x, fft_variant="pure-c", overwrite_input=False):
    """arm_rfft_q15 forward (bit reversal on): int16[N] -> int16[2N] = DFT/N, (log2N+1).(15-log2N).

    With overwrite_input=True and a contiguous int16 input, `x` is overwritten as the C function does.
    """
    dsp = fft_variant_code(fft_variant)
    if overwrite_input:
        if not (isinstance(x, np.ndarray) and x.dtype == np.int16 and x.ndim == 1 and x.flags.c_contiguous):
            raise _Error("rfft_q15(overwrite_input=True) needs a contiguous 1-D int16 array; pass one or copy")
        src = x
    else:
        src = _as_int(x, np.int16, "x").copy()
    tab = rfft_init_q15(src.size)
    dst = np.empty(2 * tab.n_fft, np.int16)
    _rfft_q15_kernel(src, tab.n_fft, tab.twiddle, tab.bitrev, tab.coef_a, tab.coef_b, tab.modifier, dsp, dst)
    return dst


def cmplx_mag_q15(x):
    """arm_cmplx_mag_q15: interleaved q15 complex [2n] -> magnitudes int16[n] in 2.14."""
    src = _as_int(x, np.int16, "x")
    if src.size % 2:
        raise _Error("cmplx_mag_q15 needs interleaved (re, im) pairs: the length must be even")
    dst = np.empty(src.size // 2, np.int16)
    _cmplx_mag_q15_kernel(src, dst, dst.size, sqrt_lut_q31(), np.empty(2 * dst.size, np.int64))
    return dst


def cmplx_mag_squared_q15(x):
    """arm_cmplx_mag_squared_q15: interleaved q15 complex [2n] -> int16[n] in 3.13."""
    src = _as_int(x, np.int16, "x")
    if src.size % 2:
        raise _Error("cmplx_mag_squared_q15 needs interleaved (re, im) pairs: the length must be even")
    dst = np.empty(src.size // 2, np.int16)
    _cmplx_mag_squared_q15_kernel(src, dst, dst.size)
    return dst


def sqrt_q31(values):
    """arm_sqrt_q31 element-wise (0 for inputs <= 0)."""
    src = _as_int(values, np.int32, "values")
    dst = np.empty_like(src)
    _sqrt_q31_kernel(src, dst, src.size, sqrt_lut_q31())
    return dst


def vlog_q31(x):
    """arm_vlog_q31: q31 -> natural log in q5.26 (int32)."""
    src = _as_int(x, np.int32, "x")
    dst = np.empty_like(src)
    _vlog_q31_kernel(src, dst, src.size)
    return dst


def vlog_q15(x):
    """arm_vlog_q15: q15 -> natural log in q4.11 (int16)."""
    src = _as_int(x, np.int16, "x")
    dst = np.empty_like(src)
    _vlog_q15_kernel(src, dst, src.size)
    return dst


def dot_prod_q15(a, b):
    """arm_dot_prod_q15: exact q63 (Python int) dot product of two q15 vectors."""
    a16 = _as_int(a, np.int16, "a")
    b16 = _as_int(b, np.int16, "b")
    if a16.size != b16.size:
        raise _Error(f"dot_prod_q15 operands differ in length ({a16.size} vs {b16.size}); pass equal lengths")
    return int(_dot_prod_q15(a16, 0, b16, 0, a16.size))


@njit(cache=True)
def _quantize_s8(value, multiplier, shift, zero_point, rounding):
    """int8 feature: clamp(requantize(value, M, shift) + zp, -128, 127) (emu.fixedpoint rounding)."""
    q = np.int64(fixedpoint.requantize(np.int32(value), np.int32(multiplier), np.int32(shift), rounding))
    return fixedpoint.saturate(q + zero_point, -128, 127)


@njit(cache=True)
def _logmel_patch_kernel(pcm, n_frames, hop, win_len, pad_left, window, n_fft, twiddle, bitrev, coef_a,
                         coef_b, modifier, dsp, lut, power, mel_start, mel_len, mel_coefs, mel_bias,
                         mel_shift, log_q15, log_offset, q_mult, q_shift, q_zp, q_rounding,
                         buf, mag_scratch, rec_frames, rec_spec, rec_bins, rec_mel, rec_log, features):
    """Log-mel patch: per frame t, buf = zeros(n_fft) with pcm[hop*t : hop*t+win] at pad_left, then
    mult_q15 window, rfft_q15, mag (2.14) or mag^2 (3.13), mel sat31((q63 dot + bias) >> shift),
    vlog_q31 + log_offset (sat32, q5.26, natural log of the float-convention energy) -- or, when
    log_q15, mel sat16(...) and vlog_q15 + log_offset (sat16, q4.11) --, int8 mel-major features[m, t].
    rec_* [n_frames, ...] record every stage; mag_scratch int64[n_fft+2] (see _cmplx_mag_q15_kernel)."""
    n_mels = mel_start.size
    n_bins = 1 + (n_fft >> 1)
    for t in range(n_frames):
        for i in range(n_fft):
            buf[i] = 0
        base = hop * t
        for i in range(win_len):
            buf[pad_left + i] = pcm[base + i]
        _mult_q15_kernel(buf, window, buf, n_fft)
        for i in range(n_fft):
            rec_frames[t, i] = buf[i]
        _rfft_q15_kernel(buf, n_fft, twiddle, bitrev, coef_a, coef_b, modifier, dsp, rec_spec[t])
        if power:
            _cmplx_mag_squared_q15_kernel(rec_spec[t], rec_bins[t], n_bins)
        else:
            _cmplx_mag_q15_kernel(rec_spec[t], rec_bins[t], n_bins, lut, mag_scratch)
        _mel_q31(rec_bins[t], mel_start, mel_len, mel_coefs, mel_bias, mel_shift, rec_mel[t])
        if not log_q15:
            _vlog_q31_kernel(rec_mel[t], rec_log[t], n_mels)
        for m in range(n_mels):
            if log_q15:
                rec_mel[t, m] = saturate_int16(rec_mel[t, m])
                v = saturate_int16(_log_q15_scalar(rec_mel[t, m]) + log_offset)
            else:
                v = saturate_int32(np.int64(rec_log[t, m]) + log_offset)
            rec_log[t, m] = v
            features[m, t] = _quantize_s8(v, q_mult, q_shift, q_zp, q_rounding)


@njit(cache=True)
def _mfcc_patch_kernel(pcm, n_frames, hop, win_len, pad_left, window, n_fft, twiddle, bitrev, coef_a,
                       coef_b, modifier, dsp, lut, mel_start, mel_len, mel_coefs, dct, n_dct,
                       q_mult, q_shift, q_zp, q_rounding, buf, tmp_mel, mag_scratch,
                       rec_frames, rec_spec, rec_bins, rec_log, rec_mfcc, features):
    """MFCC patch: arm_mfcc_q15 on each framed buffer (as in _logmel_patch_kernel), q8.7 rec_mfcc[t, k],
    int8 features[t, k] (frame-major records; compute_stages returns them coefficient-major)."""
    for t in range(n_frames):
        for i in range(n_fft):
            buf[i] = 0
        base = hop * t
        for i in range(win_len):
            buf[pad_left + i] = pcm[base + i]
        _mfcc_q15_kernel(buf, window, n_fft, twiddle, bitrev, coef_a, coef_b, modifier, dsp, lut,
                         mel_start, mel_len, mel_coefs, dct, n_dct, rec_spec[t], tmp_mel, mag_scratch,
                         rec_frames[t], rec_bins[t], rec_log[t], rec_mfcc[t])
        for k in range(n_dct):
            features[t, k] = _quantize_s8(rec_mfcc[t, k], q_mult, q_shift, q_zp, q_rounding)


# ----------------------------------------------------------------------------------------------------
# framing and the stages after the rfft on LANES frames side by side (same layout as _rfft_q15_lanes: value r of
# lane l at [r * LANES + l]), branch free so that LLVM vectorises them across frames. Bit for bit the one-frame
# kernels above (tests/test_q15_fast.py).
# ----------------------------------------------------------------------------------------------------

TAIL_ONE_FRAME = 3     # a last block of at most this many frames runs the stages after the rfft frame by frame
# (the one-frame rfft would be cheaper still, but linking it into the patch kernels doubles their compile time)


# The lane loops below use inline arithmetic only (np.int16 / np.int32 narrowing casts wrap, min / max saturate,
# _ctlz32 is an intrinsic), no inline="always" helpers (they multiply the compile time). Long element-wise passes
# (n_bins * LANES or n_mels * LANES values, one pass per Newton / Clay Turner step set) let LLVM's loop vectoriser
# check once per pass that the arrays are apart; a LANES-long loop between two arrays runs to `acc.size` (LANES,
# unknown to LLVM), else LLVM unrolls it fully and its SLP vectoriser, unable to prove the arrays apart, gives up.
# Row copies are _copy_rows (one memcpy).


@intrinsic
def _mag_norm(typingctx, re, im):
    """_cmplx_mag_q15_kernel's normalisation of one bin in 32-bit IR: number = ((u32)(re*re + im*im)) >> 1 shifted
    left by its even shift (clz - 1 rounded down to even; 0 stays 0), returned as int64 number | (LUT index << 8 |
    half shift) << 32 (LUT index = ((number >> 26) - 8) & 31)."""
    if not all(isinstance(v, types.Integer) for v in (re, im)):
        return None

    def codegen(context, builder, signature, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        r, m = _i32_args(context, builder, signature, args)
        number = builder.lshr(builder.add(builder.mul(r, r), builder.mul(m, m)), ir.Constant(i32, 1))
        clz = builder.ctlz(number, ir.Constant(ir.IntType(1), 0))
        even = builder.and_(builder.sub(clz, ir.Constant(i32, 1)), ir.Constant(i32, ~1))
        number = builder.shl(number, even)
        idx = builder.and_(builder.sub(builder.lshr(number, ir.Constant(i32, 26)), ir.Constant(i32, 8)),
                           ir.Constant(i32, 31))
        sh = builder.or_(builder.shl(idx, ir.Constant(i32, 8)), builder.lshr(even, ir.Constant(i32, 1)))
        return builder.or_(builder.zext(number, i64), builder.shl(builder.zext(sh, i64), ir.Constant(i64, 32)))
    return types.int64(re, im), codegen


@njit(cache=True)
def _mag_q15_lanes(X, b0, b1, lut, power, mag, re_, im_, num, sh):
    """arm_cmplx_mag_q15 (power: arm_cmplx_mag_squared_q15) of bins b0 <= i < b1 of LANES spectra X (int16,
    _rfft_q15_lanes layout) -> mag int32[n_bins * LANES] rows b0..b1-1 (the q15 values; other rows untouched).
    The square root is _cmplx_mag_q15_kernel's: normalise to an even shift (_mag_norm; number 0 stays 0 and gives
    0 whatever the start value), LUT start, three Newton steps of _sqrt_q31_newton. re_, im_: int16[n_bins *
    LANES] scratch (bin rows of X split into re and im rows); num, sh: int32[n_bins * LANES] scratch (normalised
    number; LUT index << 8 | half shift); mag holds the LUT starts between the passes."""
    L = LANES
    for i in range(b0, b1):
        _copy_rows(re_, i * L, X, 2 * i * L, L)
        _copy_rows(im_, i * L, X, (2 * i + 1) * L, L)
    j0 = b0 * L                             # unsigned indices below: a runtime start would otherwise keep
    n = b1 * L - j0                         # Numba's negative-index wraparound in the loops (no vectorising)
    if power:
        for u in range(n):
            j = np.uint64(j0 + u)
            re = np.int64(re_[j])
            im = np.int64(im_[j])
            mag[j] = np.int16((re * re + im * im) >> 17)
        return
    for u in range(n):
        j = np.uint64(j0 + u)
        packed = _mag_norm(re_[j], im_[j])                          # number < 2^31 | (index << 8 | shift) << 32
        num[j] = packed & 0x7FFFFFFF
        sh[j] = packed >> 32
    for u in range(n):
        j = np.uint64(j0 + u)
        mag[j] = lut[np.uint64(sh[j] >> 8)]
    for u in range(n):
        j = np.uint64(j0 + u)
        number = np.int64(num[j])
        var1 = np.int64(mag[j])
        temp = np.int64(np.int32((var1 * var1) >> 28))     # Newton step 1
        temp = np.int64(np.int32((number * temp) >> 31))
        temp = np.int64(np.int32(0x30000000 - temp))
        var1 = np.int64(np.int32((var1 * temp) >> 29))
        temp = np.int64(np.int32((var1 * var1) >> 28))     # step 2
        temp = np.int64(np.int32((number * temp) >> 31))
        temp = np.int64(np.int32(0x30000000 - temp))
        var1 = np.int64(np.int32((var1 * temp) >> 29))
        temp = np.int64(np.int32((var1 * var1) >> 28))     # step 3
        temp = np.int64(np.int32((number * temp) >> 31))
        temp = np.int64(np.int32(0x30000000 - temp))
        var1 = np.int64(np.int32((var1 * temp) >> 29))
        root = np.int64(np.int32((number * var1) >> 28)) >> (np.int64(sh[j]) & 255)
        mag[j] = np.int16(root >> 16)


@njit(cache=True)
def _dot_lanes(v, start, coefs, pos, n, acc):
    """acc[l] = sum_k coefs[pos + k] * v[(start + k) * LANES + l] (exact q63, arm_dot_prod_q15 on each lane)."""
    L = LANES
    nl = acc.size
    for l in range(nl):
        acc[l] = 0
    for k in range(n):
        c = np.int64(coefs[np.uint64(pos + k)])
        row = (start + k) * L
        for l in range(nl):
            acc[l] += np.int64(v[np.uint64(row + l)]) * c


@njit(cache=True)
def _mel_lanes(mag, mel_start, mel_len, mel_coefs, bias, shift, sat16, mel, acc):
    """_mel_q31 of LANES frames: mel[m * LANES + l] = sat31((q63 dot + bias) >> shift), then sat16 when sat16
    (the log_precision q15 mel); acc int64[LANES] scratch."""
    L = LANES
    lo = np.int64(-32768) if sat16 else np.int64(-2147483648)
    hi = np.int64(32767) if sat16 else np.int64(2147483647)
    pos = 0
    for m in range(mel_start.size):
        _dot_lanes(mag, mel_start[m], mel_coefs, pos, mel_len[m], acc)
        pos += mel_len[m]
        for l in range(acc.size):
            mel[np.uint64(m * L + l)] = min(max((acc[l] + bias) >> shift, lo), hi)


@njit(cache=True)
def _vlog_lanes(src, n, q15, offset, dst, xs, ys, cs):
    """arm_vlog_q31 (q15: arm_vlog_q15) of src[:n], then + offset saturated to the log word (sat32, or sat16 for
    q15) into dst[:n]: _log_q31_scalar / _log_q15_scalar with the iteration branch as a mask (q31: value by
    value; q15: one pass over all n values per iteration). xs, ys, cs int32[n] scratch (the q15 path's x, y and
    leading-zero count)."""
    if q15:
        for j in range(n):
            s = np.int64(src[j]) & 0xFFFF
            c = _ctlz32(s) - 16
            x = (s << ((c - 1) & 15)) & 0xFFFF
            xs[j] = (s >> 1) if c == 0 else x
            ys[j] = 0
            cs[j] = c
        inc = np.int64(1024)
        for _ in range(15):
            for j in range(n):
                x = np.int64(xs[j])
                x = ((x * x) >> 14) & 0xFFFF
                bit = x >> 15
                xs[j] = x >> bit
                ys[j] = np.int64(ys[j]) + (inc & -bit)
            inc = inc >> 1
        for j in range(n):
            tmp = np.int64(np.int16(np.int64(np.int16(ys[j])) - (np.int64(cs[j]) << 11)))
            v = np.int64(np.int16((tmp * 0x58B9) >> 15)) + offset
            dst[j] = min(max(v, np.int64(-32768)), np.int64(32767))
        return
    for j in range(n):                                  # one value at a time, x and y in registers: LLVM
        s = np.int64(src[j]) & 0xFFFFFFFF               # unrolls the 31 steps and vectorises over j
        c = _ctlz32(s)
        x = (s << ((c - 1) & 31)) & 0xFFFFFFFF
        x = (s >> 1) if c == 0 else x                   # < 2^31
        y = np.int64(0)
        for _ in range(31):                             # the step's bit shifted in: bit k weighs 2^(30-k) here,
            x = ((x * x) >> 30) & 0xFFFFFFFF            # 2^(25-k) in _log_q31_step (inc = 2^25 >> k, 0 for
            bit = x >> 31                               # k > 25), so y >> 5 is its sum (the dropped tail < 1)
            x = x >> bit
            y = (y << 1) | bit
        tmp = np.int64(np.int32((y >> 5) - (np.int64(c) << 26)))     # _log_q31_finish, then arm_offset_q31
        v = np.int64(np.int32((tmp * 0x58B90BFB) >> 31)) + offset
        dst[j] = min(max(v, np.int64(-2147483648)), np.int64(2147483647))


@njit(cache=True)
def _lane_out(X, l, n, spec):
    """spec[:n] = lane l of X (rows of LANES)."""
    L = LANES
    for i in range(n):
        spec[i] = X[i * L + l]


@njit(cache=True)
def _record_lanes(X, row0, n_rows, blk, nl, rec):
    """rec[blk * LANES + l, r] = X[(row0 + r) * LANES + l] for the block's nl frames (frame-major records)."""
    L = LANES
    for l in range(nl):
        tt = blk * L + l
        for r in range(n_rows):
            rec[tt, r] = X[(row0 + r) * L + l]


def _lane_work(n_fft, n_mels, n_dct=0):
    """Lengths (int32, int16) of the lane kernels' two work arrays (_split_work's parts)."""
    n_bins = n_fft // 2 + 1
    rows = max(n_bins, n_mels)
    return (LANES * (n_bins + 2 * n_mels + 1 + n_dct + 4 * rows),
            LANES * (n_fft + 2 * n_fft + 16 + 2 * n_bins))


@njit(cache=True)
def _split_work(work, work16, n_fft, n_mels, n_dct):
    """The views of the work arrays (rows of LANES): int16 x [n_fft rows], X [2 n_fft], t [16], re, im [n_fft/2 + 1];
    int32 mag [n_fft/2 + 1], mel [n_mels], log [n_mels], scale [1], mfcc [n_dct], then 4 scratch parts of
    max(n_fft/2 + 1, n_mels) rows."""
    L = LANES
    n_bins = n_fft // 2 + 1
    a = n_fft * L
    b = a + 2 * n_fft * L
    c = b + 16 * L
    d = c + n_bins * L
    x, X, t, re_, im_ = work16[:a], work16[a:b], work16[b:c], work16[c:d], work16[d:d + n_bins * L]
    rows = max(n_bins, n_mels) * L
    d = n_bins * L
    e = d + n_mels * L
    f = e + n_mels * L
    g = f + L
    h = g + n_dct * L
    return (x, X, t, re_, im_, work[:d], work[d:e], work[e:f], work[f:g], work[g:h],
            work[h:h + rows], work[h + rows:h + 2 * rows], work[h + 2 * rows:h + 3 * rows],
            work[h + 3 * rows:h + 4 * rows])


@njit(cache=True)
def _frames_to_lanes(pcm, plen, n_t, blk, nl, hop, win_len, pad_left, window, n_fft, normalise, x, tmp, starts, t, sc):
    """The block's frames f = blk * LANES + l (l < nl; frame f is frame f % n_t of patch f // n_t, whose samples
    start at pcm[(f // n_t) * plen]) framed (pcm[hop*t : hop*t + win_len] of the patch at pad_left, zeros
    elsewhere) and windowed (arm_mult_q15: sat16((v * w) >> 15)) into the lanes of x (int16); lanes l >= nl get
    whatever tmp held (int16 values whose results are never read: a short last block frames only its frames).
    normalise: arm_mfcc_q15's peak normalisation first (_mfcc_pre: arm_absmax_q15, arm_divide_q15, arm_scale_q15;
    none when the peak m is 0 or 32767), sc[l] = m << 16 (l < nl) where normalised, else 0. Each frame is windowed contiguously into tmp int16[>= LANES * win_len], then transposed
    into x. starts int64[LANES], t int32[>= 2 * LANES] scratch (frame starts; scale, shift). Unsigned indices
    where an offset is a runtime value: Numba's negative-index wraparound would keep LLVM from vectorising."""
    L = LANES
    for i in range(pad_left * L):
        x[i] = 0
    z0 = (pad_left + win_len) * L
    for u in range(n_fft * L - z0):
        x[np.uint64(z0 + u)] = 0
    for l in range(L):
        f = blk * L + min(l, nl - 1)
        pt = f // n_t
        starts[l] = pt * plen + hop * (f - pt * n_t)
        t[l] = 1                            # scale 1, shift 0: the plain arm_mult_q15 (the same integers)
        t[L + l] = 0
    if normalise:
        for l in range(nl):
            base = np.uint64(starts[l])
            m = np.int64(0)
            for i in range(win_len):            # arm_absmax_q15 over the frame (the zeros around it add nothing)
                v = np.int64(pcm[base + np.uint64(i)])
                a = v if v > 0 else (32767 if v == -32768 else -v)
                m = max(m, a)
            if m != 0 and m != 32767:
                temp = (np.int64(32767) << 15) // m
                shift = 17 - _ctlz32(temp)
                if shift > 0:
                    temp = temp >> shift
                else:
                    shift = 0
                t[l] = temp
                t[L + l] = 15 - shift
                sc[l] = m << 16
            else:
                sc[l] = 0
    wp = np.uint64(pad_left)
    for l in range(nl):                     # arm_scale_q15 (normalise) then arm_mult_q15, frame by frame
        base = np.uint64(starts[l])
        o = np.uint64(l * win_len)
        k = np.int64(t[l])
        sh = np.int64(t[L + l])
        for i in range(win_len):
            ui = np.uint64(i)
            v = (np.int64(pcm[base + ui]) * k) >> sh
            v = min(max(v, np.int64(-32768)), np.int64(32767))
            v = (v * np.int64(window[wp + ui])) >> 15
            tmp[o + ui] = min(max(v, np.int64(-32768)), np.int64(32767))
    for i in range(win_len):                # transpose into the lanes
        at = (pad_left + i) * L
        for l in range(L):
            x[at + l] = tmp[l * win_len + i]


@njit(cache=True)
def _quantize_lanes(src, n, q_mult, q_shift, q_zp, q_rounding, dst):
    """dst[j] = _quantize_s8(src[j], ...) for j < n; single rounding written out (one loop LLVM vectorises)."""
    if q_rounding == 1:                     # requantize_single: int32((v * M + 2^(total-1)) >> total)
        total = np.int64(31) - np.int64(q_shift)
        m = np.int64(q_mult)
        nudge = np.int64(1) << (total - np.int64(1))
        zp = np.int64(q_zp)
        for j in range(n):
            q = np.int64(np.int32((np.int64(src[j]) * m + nudge) >> total)) + zp
            dst[j] = min(max(q, np.int64(-128)), np.int64(127))
    else:
        for j in range(n):
            dst[j] = _quantize_s8(src[j], q_mult, q_shift, q_zp, q_rounding)


@njit(cache=True)
def _bin_range(mel_start, mel_len, n_bins, record):
    """(b0, b1): the spectrum bins the mel runs read (every bin when record: the spectrum record holds them all)."""
    if record:
        return np.int64(0), np.int64(n_bins)
    b0 = np.int64(n_bins)
    b1 = np.int64(0)
    for m in range(mel_start.size):
        if mel_len[m] > 0:
            b0 = min(b0, np.int64(mel_start[m]))
            b1 = max(b1, np.int64(mel_start[m]) + np.int64(mel_len[m]))
    return min(b0, b1), b1


@njit(cache=True, nogil=True)
def _logmel_patch_lanes(pcm, plen, n_t, n_frames, blk0, blk1, hop, win_len, pad_left, window, n_fft, twiddle, bitrev,
                        coef_a, coef_b, modifier, lut, power, mel_start, mel_len, mel_coefs, mel_bias,
                        mel_shift, log_q15, log_offset, q_mult, q_shift, q_zp, q_rounding, record, work, work16,
                        acc, starts, mag_scratch, buf, spec, rec_frames, rec_spec, rec_bins, rec_mel, rec_log,
                        features):
    """_logmel_patch_kernel (pure-C FFT) on LANES frames at a time, over the frames f = p * n_t + t of P patches
    (patch p at pcm[p * plen], n_frames = P * n_t in all), blocks blk0 <= blk < blk1 of LANES consecutive frames:
    _frames_to_lanes, _rfft_q15_lanes, _mag_q15_lanes (the mel runs' bins only, unless record), _mel_lanes,
    _vlog_lanes and _quantize_lanes across the lanes; a last block of at most TAIL_ONE_FRAME frames runs the
    one-frame kernels after the rfft per frame and stores their results into the lanes. features int8 [P, n_mels,
    n_t]. work int32, work16 int16 (_lane_work), acc, starts int64[LANES], mag_scratch int64[n_fft + 2], buf
    int16[n_fft], spec int16[2 * n_fft + n_fft/2 + 1 + n_dct] scratch (a short last block's one-frame kernels); the
    rec_* records (as _logmel_patch_kernel's, rows f) are filled only when record (else they may be empty). Blocks
    are independent: any split gives the same values."""
    L = LANES
    n_mels = mel_start.size
    n_bins = 1 + (n_fft >> 1)
    x, X, t, re_, im_, mag, mel, lg, _sc, _mf, s0, s1, s2, s3 = _split_work(work, work16, n_fft, n_mels,
                                                                            np.int64(0))
    b0, b1 = _bin_range(mel_start, mel_len, n_bins, record)
    no = np.bool_(False)                    # typed, not Literal[bool]: the callees compile once for both kernels
    for blk in range(blk0, blk1):
        nl = min(L, n_frames - blk * L)
        _frames_to_lanes(pcm, plen, n_t, blk, nl, hop, win_len, pad_left, window, n_fft, no, x, X, starts, s0, s1)
        if record:
            _record_lanes(x, 0, n_fft, blk, nl, rec_frames)
        _rfft_q15_lanes(x, n_fft, twiddle, bitrev, coef_a, coef_b, modifier, X, t)
        if nl > TAIL_ONE_FRAME:
            _mag_q15_lanes(X, b0, b1, lut, power, mag, re_, im_, s2, s3)
            _mel_lanes(mag, mel_start, mel_len, mel_coefs, mel_bias, mel_shift, log_q15, mel, acc)
            _vlog_lanes(mel, n_mels * L, log_q15, log_offset, lg, s0, s1, s2)
        else:                               # a short last block: the one-frame kernels after the rfft, into the lanes
            for l in range(nl):
                _lane_out(X, l, 2 * n_fft, spec)
                if power:
                    _cmplx_mag_squared_q15_kernel(spec, buf, n_bins)
                else:
                    _cmplx_mag_q15_kernel(spec, buf, n_bins, lut, mag_scratch)
                for i in range(n_bins):
                    mag[i * L + l] = buf[i]
                _mel_q31(buf, mel_start, mel_len, mel_coefs, mel_bias, mel_shift, s0)
                if not log_q15:
                    _vlog_q31_kernel(s0, s1, n_mels)
                for m in range(n_mels):
                    if log_q15:
                        v = saturate_int16(s0[m])
                        mel[m * L + l] = v
                        lg[m * L + l] = saturate_int16(_log_q15_scalar(v) + log_offset)
                    else:
                        mel[m * L + l] = s0[m]
                        lg[m * L + l] = saturate_int32(np.int64(s1[m]) + log_offset)
        if record:
            _record_lanes(X, 0, 2 * n_fft, blk, nl, rec_spec)
            _record_lanes(mag, 0, n_bins, blk, nl, rec_bins)
            _record_lanes(mel, 0, n_mels, blk, nl, rec_mel)
            _record_lanes(lg, 0, n_mels, blk, nl, rec_log)
        _quantize_lanes(lg, n_mels * L, q_mult, q_shift, q_zp, q_rounding, s3)
        for l in range(nl):
            f = blk * L + l
            pt = f // n_t
            tt = f - pt * n_t
            for m in range(n_mels):
                features[pt, m, tt] = s3[m * L + l]


@njit(cache=True)
def _mfcc_post_lanes(X, b0, b1, lut, mel_start, mel_len, mel_coefs, dct, n_dct, log_exponent, sc, mag, mel, lg, mf,
                     re_, im_, acc, s0, s1, s2, s3):
    """_mfcc_post across the lanes: X (_rfft_q15_lanes layout, int16) -> mag (2.14; bins b0..b1-1, as
    _mag_q15_lanes), lg (q5.26 after the exponent offset), mf (q8.7 MFCCs, rows of LANES); sc int32[LANES] the
    per-lane normalisation scale m << 16 (0: none); mel holds the mel sums, then the q15 log values (>> 19,
    wrapped) the DCT reads. re_, im_ int16 and s0-s3 int32 scratch (as _mag_q15_lanes'; s3 >= 3 rows)."""
    L = LANES
    n_mels = mel_start.size
    t = s3
    no = np.bool_(False)                    # typed arguments (not Literal): the logmel kernel's specialisations
    _mag_q15_lanes(X, b0, b1, lut, no, mag, re_, im_, s2, s3)
    _mel_lanes(mag, mel_start, mel_len, mel_coefs, np.int64(MICRO_Q15), np.int64(SHIFT_MELFILTER_SATURATION_Q15), no,
               mel, acc)
    for r in range(n_mels):                 # arm_scale_q31(tmp, m << 16, 0) where normalised
        _copy_rows(t, 0, mel, r * L, L)
        _copy_rows(t, L, sc, 0, L)
        for l in range(L):
            x = np.int64(t[l])
            scale = np.int64(t[L + l])
            v = (x * scale) >> 32
            o = np.int64(np.int32(v << 1))
            o = (0x7FFFFFFF ^ (v >> 31)) if v != (o >> 1) else o
            t[2 * L + l] = x if scale == 0 else o
        _copy_rows(mel, r * L, t, 2 * L, L)
    _vlog_lanes(mel, n_mels * L, no, log_exponent, lg, s0, s1, s2)
    for r in range(n_mels):                 # arm_shift_q31(-19), stored to q15_t
        _copy_rows(t, 0, lg, r * L, L)
        for l in range(L):
            t[L + l] = np.int16(np.int64(t[l]) >> 19)
        _copy_rows(mel, r * L, t, L, L)
    for r in range(n_dct):                  # arm_mat_vec_mult_q15
        _dot_lanes(mel, 0, dct, r * n_mels, n_mels, acc)
        for l in range(acc.size):
            mf[np.uint64(r * L + l)] = min(max(acc[l] >> 15, np.int64(-32768)), np.int64(32767))


@njit(cache=True, nogil=True)
def _mfcc_patch_lanes(pcm, plen, n_t, n_frames, blk0, blk1, hop, win_len, pad_left, window, n_fft, twiddle, bitrev,
                      coef_a, coef_b, modifier, lut, mel_start, mel_len, mel_coefs, dct, n_dct,
                      q_mult, q_shift, q_zp, q_rounding, record, work, work16, acc, starts, mag_scratch, buf, spec,
                      rec_frames, rec_spec, rec_bins, rec_log, rec_mfcc, features):
    """_mfcc_patch_kernel (pure-C FFT) on LANES frames at a time: _frames_to_lanes (with _mfcc_pre's
    normalisation), _rfft_q15_lanes and _mfcc_post_lanes (a short last block: _mfcc_post per frame after the
    rfft); frames, blocks, scratch and records as _logmel_patch_lanes; features int8 [n_frames, n_dct]
    (frame-major, row f = p * n_t + t)."""
    L = LANES
    n_mels = mel_start.size
    n_bins = 1 + (n_fft >> 1)
    x, X, t, re_, im_, mag, mel, lg, sc, mf, s0, s1, s2, s3 = _split_work(work, work16, n_fft, n_mels, n_dct)
    b0, b1 = _bin_range(mel_start, mel_len, n_bins, record)
    yes = np.bool_(True)                    # typed, not Literal[bool] (see _logmel_patch_lanes)
    fft_shift = 31 - count_leading_zeros32(n_fft)
    log_exponent = _wrap32((fft_shift + 2 + SHIFT_MELFILTER_SATURATION_Q15) * LOG2TOLOG_Q15)
    for blk in range(blk0, blk1):
        nl = min(L, n_frames - blk * L)
        _frames_to_lanes(pcm, plen, n_t, blk, nl, hop, win_len, pad_left, window, n_fft, yes, x, X, starts, s0, sc)
        if record:
            _record_lanes(x, 0, n_fft, blk, nl, rec_frames)
        _rfft_q15_lanes(x, n_fft, twiddle, bitrev, coef_a, coef_b, modifier, X, t)
        if nl > TAIL_ONE_FRAME:
            _mfcc_post_lanes(X, b0, b1, lut, mel_start, mel_len, mel_coefs, dct, n_dct, log_exponent, sc, mag, mel,
                             lg, mf, re_, im_, acc, s0, s1, s2, s3)
        else:                               # a short last block: the one-frame kernels after the rfft, into the lanes
            bins, out = spec[2 * n_fft:2 * n_fft + n_bins], spec[2 * n_fft + n_bins:2 * n_fft + n_bins + n_dct]
            for l in range(nl):
                _lane_out(X, l, 2 * n_fft, spec)
                _mfcc_post(spec[:2 * n_fft], buf, np.int64(sc[l]) >> 16, n_fft, lut, mel_start, mel_len, mel_coefs,
                           dct, n_dct, s0, mag_scratch, bins, s1, out)
                for i in range(n_bins):
                    mag[i * L + l] = bins[i]
                for m in range(n_mels):
                    lg[m * L + l] = s1[m]
                for k in range(n_dct):
                    mf[k * L + l] = out[k]
        if record:
            _record_lanes(X, 0, 2 * n_fft, blk, nl, rec_spec)
            _record_lanes(mag, 0, n_bins, blk, nl, rec_bins)
            _record_lanes(lg, 0, n_mels, blk, nl, rec_log)
            _record_lanes(mf, 0, n_dct, blk, nl, rec_mfcc)
        _quantize_lanes(mf, n_dct * L, q_mult, q_shift, q_zp, q_rounding, s3)
        for l in range(nl):
            for k in range(n_dct):
                features[blk * L + l, k] = s3[k * L + l]


# ----------------------------------------------------------------------------------------------------
# arm_mfcc_q15 (single frame) and the front-end API (prepare -> state -> compute_patch / compute_stages)
# ----------------------------------------------------------------------------------------------------

MODES = ("logmel", "mfcc")
LOG_PRECISIONS = ("q31", "q15")
QUANT_ROUNDINGS = tuple(fixedpoint.ROUNDING_NAMES)


@dataclass(frozen=True)
class MfccQ15Tables:
    """arm_mfcc_instance_q15 tables: window int16[n_fft], mel runs (start int32, length int32, q15 coefs
    concatenated), DCT int16[n_dct * n_mels] row-major."""
    n_fft: int
    window: np.ndarray
    mel_start: np.ndarray
    mel_len: np.ndarray
    mel_coefs: np.ndarray
    dct: np.ndarray
    n_dct: int


def mfcc_tables(n_fft, window, mel_start, mel_len, mel_coefs, dct, n_dct):
    """Validate and freeze q15 MFCC tables (the arguments of arm_mfcc_init_q15)."""
    win = _as_int(window, np.int16, "window")
    start = _as_int(mel_start, np.int32, "mel_start")
    length = _as_int(mel_len, np.int32, "mel_len")
    coefs = _as_int(mel_coefs, np.int16, "mel_coefs")
    dct16 = _as_int(dct, np.int16, "dct")
    rfft_init_q15(n_fft)
    if win.size != n_fft:
        raise _Error(f"MFCC window has {win.size} values for n_fft = {n_fft}; pass an n_fft-long q15 window")
    if start.size != length.size or np.any(length < 0) or int(length.sum()) != coefs.size:
        raise _Error("MFCC mel tables are inconsistent (start/length/coefs sizes); rebuild them with sparse_q15_mel")
    if start.size and (start.min() < 0 or int((start + length).max()) > n_fft // 2 + 1):
        raise _Error(f"MFCC mel runs exceed the {n_fft // 2 + 1} spectrum bins; rebuild the filter bank for n_fft={n_fft}")
    if dct16.size != int(n_dct) * start.size:
        raise _Error(f"DCT table has {dct16.size} values, expected n_dct*n_mels = {int(n_dct) * start.size}")
    return MfccQ15Tables(int(n_fft), win, start, length, coefs, dct16, int(n_dct))


def mfcc_q15(x, tables, fft_variant="pure-c"):
    """arm_mfcc_q15 on one frame int16[n_fft] -> int16[n_dct] MFCCs in q8.7 (x is not modified)."""
    src = _as_int(x, np.int16, "x").copy()
    if src.size != tables.n_fft:
        raise _Error(f"mfcc_q15 frame has {src.size} samples, the tables are for n_fft = {tables.n_fft}")
    tab = rfft_init_q15(tables.n_fft)
    n_mels = tables.mel_start.size
    out = np.empty(tables.n_dct, np.int16)
    _mfcc_q15_kernel(src, tables.window, tab.n_fft, tab.twiddle, tab.bitrev, tab.coef_a, tab.coef_b,
                     tab.modifier, fft_variant_code(fft_variant), sqrt_lut_q31(), tables.mel_start,
                     tables.mel_len, tables.mel_coefs, tables.dct, tables.n_dct,
                     np.empty(2 * tab.n_fft, np.int16), np.empty(n_mels, np.int32),
                     np.empty(tab.n_fft + 2, np.int64), np.empty(tab.n_fft, np.int16), np.empty(tab.n_fft // 2 + 1, np.int16),
                     np.empty(n_mels, np.int32), out)
    return out


def sparse_q15_mel(matrix, rounding="truncate"):
    """Dense float mel matrix [n_mels, n_bins] -> (start int32, length int32, coefs q15) runs from the first
    to the last bin whose *q15* coefficient is non-zero (CMSIS-DSP filterPos/filterLengths/filterCoefs)."""
    q = float_to_q15(np.asarray(matrix, dtype=np.float64), rounding).reshape(np.shape(matrix))
    starts, lengths, runs = [], [], []
    for i, row in enumerate(q):
        nz = np.flatnonzero(row)
        if nz.size == 0:
            raise _Error(f"mel filter {i} is all zero in q15; lower n_mels, raise n_fft or use 'half-even' table rounding")
        starts.append(nz[0])
        lengths.append(nz[-1] - nz[0] + 1)
        runs.append(row[nz[0]:nz[-1] + 1])
    return (np.array(starts, np.int32), np.array(lengths, np.int32),
            np.ascontiguousarray(np.concatenate(runs), dtype=np.int16))


def dct_matrix(n_dct, n_mels):
    """Orthonormal DCT-II rows as CMSIS-DSP's mfcc helper builds them: cos(i*pi*(j+0.5)/n) * sqrt(2/n), float64."""
    s = (np.arange(1, n_mels + 1, dtype=np.float64) - 0.5) / n_mels
    return np.stack([np.cos(i * np.pi * s) * np.sqrt(2.0 / n_mels) for i in range(n_dct)])


@dataclass(frozen=True)
class Q15Params:
    """Profile section `[frontend.q15]` of the cmsis-q15 front end (every arithmetic choice named).

    mode            "logmel" (int8 log-mel [n_mels, n_frames]) | "mfcc" (arm_mfcc_q15 per frame, int8
                    [n_mfcc, n_frames]; the MLPerf Tiny KWS model reads them frame-major)   "logmel"
    fft_variant     "pure-c" (cmsisdsp / no ARM_MATH_DSP) | "dsp-ext" (Cortex-M4/M7 ARM_MATH_DSP butterflies)
                                                                                         "pure-c"
    table_rounding  float -> q15 of window, mel and DCT tables: "truncate" (arm_float_to_q15 default build) |
                    "half-away" (ARM_MATH_ROUNDING) | "half-even" (cmsisdsp.datatype.convert / numpy)
                                                                                         "truncate"
    mel_bias        added to each q63 mel dot product before the shift (arm_mfcc_q15: MICRO_Q15 = 537)   537
    mel_shift       right shift of the q63 mel sums before sat31 (arm_mfcc_q15: 10)     10
    n_mfcc          DCT outputs in mfcc mode                                             10
    log_precision   logmel mode: "q31" (mel sat31, arm_vlog_q31 -> q5.26) | "q15" (mel sat16,
                    arm_vlog_q15 -> q4.11, offset in steps of LN2_Q4_11)                   "q31"
    quant_rounding  int8 quantization of the fixed-point log/MFCC value v (q5.26, q4.11 or q8.7):
                    clamp(requantize(v, M, shift) + zp) with (M, shift) = quantize_multiplier(1/(scale*2^frac))
                    and emu.fixedpoint rounding "single" (one rounding of the exact 64-bit product, ties
                    toward +inf) | "double" (TFLite SRDHM then RDBP; coarse on small q8.7 values)   "single"
    """
    mode: str = "logmel"
    fft_variant: str = "pure-c"
    table_rounding: str = "truncate"
    mel_bias: int = MICRO_Q15
    mel_shift: int = SHIFT_MELFILTER_SATURATION_Q15
    n_mfcc: int = 10
    log_precision: str = "q31"
    quant_rounding: str = "single"

    def __post_init__(self):
        for name, allowed in (("mode", MODES), ("fft_variant", tuple(FFT_VARIANTS)),
                              ("table_rounding", TABLE_ROUNDINGS), ("quant_rounding", QUANT_ROUNDINGS),
                              ("log_precision", LOG_PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise _Error(f"frontend.q15.{name} = {getattr(self, name)!r} is not supported; use one of {', '.join(allowed)}")
        if not 0 <= int(self.mel_shift) <= 62:
            raise _Error(f"frontend.q15.mel_shift = {self.mel_shift} must be in 0..62")
        if not 1 <= int(self.n_mfcc):
            raise _Error(f"frontend.q15.n_mfcc = {self.n_mfcc} must be >= 1")

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise _Error(f"unknown [frontend.q15] key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}")
        return cls(**d)

    def to_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Q15State:
    """Prepared cmsis-q15 front end: the integer tables the MCU holds plus the derived constants."""
    params: object
    q15: Q15Params
    rfft: RfftQ15
    window: np.ndarray          # int16[n_fft], q15 window at pad_left, zeros elsewhere
    pad_left: int
    mel_start: np.ndarray       # int32[n_mels]
    mel_len: np.ndarray         # int32[n_mels]
    mel_coefs: np.ndarray       # int16[sum(len)], q15
    dct: np.ndarray             # int16[n_mfcc * n_mels] (empty in logmel mode)
    log_offset: int             # logmel mode: added after vlog (q5.26, or q4.11 with log_precision q15)
    quant_multiplier: int
    quant_shift: int
    quant_zero_point: int
    lut: np.ndarray = field(repr=False, default_factory=sqrt_lut_q31)


def _q15_section(params, q15):
    if q15 is None:
        q15 = getattr(params, "q15", None)
    if q15 is None:
        return Q15Params()
    if isinstance(q15, Q15Params):
        return q15
    return Q15Params.from_dict(dict(q15))


def prepare(params, q15=None, mel_matrix=None, window=None, dct=None):
    """FrontendParams (profile cmsis-q15) -> Q15State. Float math happens here only.

    mel_matrix (float [n_mels, n_fft/2+1]), window (float [win_length]) and dct (float [n_mfcc, n_mels])
    override the tables derived from params (defaults: params.mel_source, periodic Hann, dct_matrix);
    all are converted to q15 with q15.table_rounding. quant_scale None means scale 1.0, zero-point 0.
    """
    if getattr(params, "profile", "cmsis-q15") != "cmsis-q15":
        raise _Error(f"profile {params.profile!r} is not the q15 front end; set frontend.profile = 'cmsis-q15'")
    q = _q15_section(params, q15)
    n_fft, win_len = int(params.n_fft), int(params.win_length)
    tab = rfft_init_q15(n_fft)
    pad_left = (n_fft - win_len) // 2
    if window is None:
        from emu.frontend import tables
        window = tables.hann_periodic(win_len)
    window = np.asarray(window, dtype=np.float64).reshape(-1)
    if window.size != win_len:
        raise _Error(f"window has {window.size} values but win_length = {win_len}; pass a win_length-long window")
    full_window = np.zeros(n_fft, np.int16)
    full_window[pad_left:pad_left + win_len] = float_to_q15(window, q.table_rounding)
    if mel_matrix is None:
        from emu.frontend import tables
        mel_matrix = tables.mel_matrix(params)
    mel_matrix = np.asarray(mel_matrix, dtype=np.float64)
    if mel_matrix.shape != (int(params.n_mels), n_fft // 2 + 1):
        raise _Error(f"mel matrix shape {mel_matrix.shape} != (n_mels, n_fft/2+1) = ({params.n_mels}, {n_fft // 2 + 1})")
    start, length, coefs = sparse_q15_mel(mel_matrix, q.table_rounding)
    if q.mode == "mfcc":
        if dct is None:
            dct = dct_matrix(q.n_mfcc, int(params.n_mels))
        dct = np.asarray(dct, dtype=np.float64)
        if dct.shape != (q.n_mfcc, int(params.n_mels)):
            raise _Error(f"DCT matrix shape {dct.shape} != (n_mfcc, n_mels) = ({q.n_mfcc}, {params.n_mels})")
        dct16 = float_to_q15(dct.reshape(-1), q.table_rounding)
        frac_bits = 7                                      # MFCC q8.7
        power = False
    else:
        if params.log != "ln":
            raise _Error(f"cmsis-q15 log-mel supports log = 'ln' only (got {params.log!r}); set frontend.log = 'ln'")
        dct16 = np.zeros(0, np.int16)
        frac_bits = 11 if q.log_precision == "q15" else 26  # vlog_q15 q4.11 | vlog_q31 q5.26
        power = params.spectrum == "power"
    log2n = n_fft.bit_length() - 1
    # spectrum value (float convention: DFT of pcm/32768, unnormalised) = bin_int * 2^spec_exp
    spec_exp = (2 * log2n - 13) if power else (log2n + 1 - 15)
    # ln(energy) = vlog(mel_int / 2^B) + ln2 * (B + mel_shift + spec_exp - 15), B = 31 (q31) or 15 (q15);
    # the offset is saturated to the log word (int32 / int16) like arm_offset_q31
    if q.mode == "logmel" and q.log_precision == "q15":
        k = int(q.mel_shift) + spec_exp
        log_offset = int(np.clip(k * LN2_Q4_11, -(1 << 15), (1 << 15) - 1))
    else:
        k = 16 + int(q.mel_shift) + spec_exp
        log_offset = int(np.clip(k * LOG2TOLOG_Q15, -(1 << 31), (1 << 31) - 1))
    scale = 1.0 if params.quant_scale is None else float(params.quant_scale)
    zp = 0 if params.quant_scale is None else int(params.quant_zero_point)
    mult, shift = fixedpoint.quantize_multiplier(1.0 / (scale * float(1 << frac_bits)),
                                                 single_rounding=q.quant_rounding == "single")
    return Q15State(params, q, tab, full_window, pad_left, start, length, coefs, dct16, log_offset,
                    int(mult), int(shift), zp)


def _patch_pcm(state, pcm, params=None):
    """Validate a patch (int16, (n_frames-1)*hop + win samples); params, when given, must be the prepared ones."""
    if params is not None and params != state.params:
        raise _Error("compute_* got params different from the prepared ones; call prepare(params) again")
    p = state.params
    need = (int(p.n_frames) - 1) * int(p.hop_length) + int(p.win_length)
    x = _as_int(pcm, np.int16, "pcm")
    if x.size != need:
        raise _Error(f"patch has {x.size} samples, expected (n_frames-1)*hop + win = {need}; frame the PCM like the app")
    return x


def _stage_buffers(state):
    """The patch kernels' record buffers (both twins fill them), named by canonical stage: frame-major [T, ...]
    except the logmel kernel's int8 'features', which it writes mel-major [n_mels, T]."""
    p, q = state.params, state.q15
    t_frames, n_fft, n_mels = int(p.n_frames), state.rfft.n_fft, state.mel_start.size
    out = {
        "windowed": np.empty((t_frames, n_fft), np.int16),
        "fft": np.empty((t_frames, 2 * n_fft), np.int16),
        "spectrum": np.empty((t_frames, n_fft // 2 + 1), np.int16),
    }
    if q.mode == "mfcc":
        out["log"] = np.empty((t_frames, n_mels), np.int32)
        out["mfcc"] = np.empty((t_frames, q.n_mfcc), np.int16)
        out["features"] = np.empty((t_frames, q.n_mfcc), np.int8)
    else:
        out["mel"] = np.empty((t_frames, n_mels), np.int32)
        out["log"] = np.empty((t_frames, n_mels), np.int32)
        out["features"] = np.empty((n_mels, t_frames), np.int8)
    return out


def _canonical_stages(x, state, rec):
    """compute_stages' dict from the validated patch x and the filled _stage_buffers: 'framed' added (the n_fft
    buffers the kernels frame, an exact copy of the pcm), mel-domain stages made coefficient-major."""
    p = state.params
    win, pad = int(p.win_length), state.pad_left
    rows = int(p.hop_length) * np.arange(int(p.n_frames))[:, None] + np.arange(win)
    framed = np.zeros((int(p.n_frames), state.rfft.n_fft), np.int16)
    framed[:, pad:pad + win] = x[rows]
    out = {"framed": framed}
    for name, a in rec.items():
        frame_rows = name in ("mel", "log", "mfcc") or (name == "features" and state.q15.mode == "mfcc")
        out[name] = np.ascontiguousarray(a.T) if frame_rows else a
    return out


def compute_stages(pcm, state, params=None):
    """Every stage of one patch (int16 pcm of (n_frames-1)*hop + win samples) as a dict of arrays
    (argument order as emu/frontend/st.py: pcm, state, optional params for a consistency check).
    Names and layouts are the canonical ones of emu/frontend/registry.py; T = n_frames:

    framed int16[T, n_fft] (pcm at pad_left, zeros elsewhere), windowed int16[T, n_fft] (mult_q15 by the
    window; mfcc: after arm_mfcc_q15's peak normalisation), fft int16[T, 2*n_fft] (rfft_q15, conjugates
    included), spectrum int16[T, n_fft/2+1] (2.14 magnitude or 3.13 power; mfcc: magnitude);
    logmel: mel int32[n_mels, T] (sat31 sums; sat16 with log_precision q15), log int32[n_mels, T] (ln in
    q5.26, or q4.11), features int8[n_mels, T];
    mfcc: log int32[n_mels, T] (q5.26 after the exponent offset, before >> 19), mfcc int16[n_mfcc, T] (q8.7),
    features int8[n_mfcc, T].
    """
    x = _patch_pcm(state, pcm, params)
    return _canonical_stages(x, state, _run_patch(x, state))


def _run_patch(x, state, lanes=True, record=True):
    """The patch kernel's record buffers (_stage_buffers) for the validated patch x. lanes: the pure-C FFT
    variant runs LANES frames at a time (rfft and the stages after it; the same integers; False: frame by frame,
    the only path of dsp-ext). record False: only 'features' is filled (the lane kernels skip the records)."""
    p, q, tab = state.params, state.q15, state.rfft
    t_frames, n_fft, n_mels = int(p.n_frames), tab.n_fft, state.mel_start.size
    dsp = fft_variant_code(q.fft_variant)
    rounding = fixedpoint.rounding_code(q.quant_rounding)
    if dsp == 0 and lanes:
        rec = _stage_buffers(state) if record else _kernel_args(state)[2]
        feats = np.empty((t_frames, q.n_mfcc) if q.mode == "mfcc" else (1, n_mels, t_frames), np.int8)
        if record:
            rec["features"] = feats if q.mode == "mfcc" else feats[0]
        else:
            rec = dict(rec, features=feats if q.mode == "mfcc" else feats[0])
        _lanes_call(state, x, 1, 0, (t_frames + LANES - 1) // LANES, record, rec, feats)
        return rec
    rec = _stage_buffers(state)
    buf = np.empty(n_fft, np.int16)
    mag_scratch = np.empty(n_fft + 2, np.int64)
    if q.mode == "mfcc":
        _mfcc_patch_kernel(x, t_frames, int(p.hop_length), int(p.win_length), state.pad_left, state.window,
                           n_fft, tab.twiddle, tab.bitrev, tab.coef_a, tab.coef_b, tab.modifier, dsp, state.lut,
                           state.mel_start, state.mel_len, state.mel_coefs, state.dct, q.n_mfcc,
                           state.quant_multiplier, state.quant_shift, state.quant_zero_point, rounding,
                           buf, np.empty(n_mels, np.int32), mag_scratch, rec["windowed"], rec["fft"], rec["spectrum"],
                           rec["log"], rec["mfcc"], rec["features"])
    else:
        _logmel_patch_kernel(x, t_frames, int(p.hop_length), int(p.win_length), state.pad_left, state.window,
                             n_fft, tab.twiddle, tab.bitrev, tab.coef_a, tab.coef_b, tab.modifier, dsp, state.lut,
                             p.spectrum == "power", state.mel_start, state.mel_len, state.mel_coefs,
                             int(q.mel_bias), int(q.mel_shift), q.log_precision == "q15", state.log_offset,
                             state.quant_multiplier,
                             state.quant_shift, state.quant_zero_point, rounding, buf, mag_scratch, rec["windowed"],
                             rec["fft"], rec["spectrum"], rec["mel"], rec["log"], rec["features"])
    return rec


_SCRATCH = threading.local()


def _lane_scratch(n_fft, n_mels, n_dct):
    """The lane kernels' scratch (work int32, work16 int16, acc, starts, mag_scratch int64, buf, spec int16), kept per
    thread and size: fresh work arrays per patch would cost page faults on every call. Their contents never carry
    over (every kernel writes before it reads)."""
    key = (n_fft, n_mels, n_dct)
    cache = getattr(_SCRATCH, "bufs", None)
    if cache is None:
        cache = _SCRATCH.bufs = {}
    bufs = cache.get(key)
    if bufs is None:
        n32, n16 = _lane_work(n_fft, n_mels, n_dct)
        bufs = cache[key] = (np.empty(n32, np.int32), np.empty(n16, np.int16), np.empty(LANES, np.int64),
                             np.empty(LANES, np.int64), np.empty(n_fft + 2, np.int64), np.empty(n_fft, np.int16),
                             np.empty(2 * n_fft + n_fft // 2 + 1 + n_dct, np.int16))
    return bufs


_KERNEL_ARGS = {}


def _kernel_args(state):
    """(kernel, its constant arguments after the block range, _empty_records) of a prepared state, made once per
    state (a patch call then passes them as they are: a few microseconds less per call)."""
    hit = _KERNEL_ARGS.get(id(state))
    if hit is not None and hit[0] is state:
        return hit[1:]
    p, q, tab = state.params, state.q15, state.rfft
    rounding = fixedpoint.rounding_code(q.quant_rounding)
    head = (int(p.hop_length), int(p.win_length), state.pad_left, state.window, tab.n_fft, tab.twiddle, tab.bitrev,
            tab.coef_a, tab.coef_b, tab.modifier, state.lut)
    if q.mode == "mfcc":
        kernel = _mfcc_patch_lanes
        head += (state.mel_start, state.mel_len, state.mel_coefs, state.dct, q.n_mfcc)
    else:
        kernel = _logmel_patch_lanes
        head += (p.spectrum == "power", state.mel_start, state.mel_len, state.mel_coefs, int(q.mel_bias),
                 int(q.mel_shift), q.log_precision == "q15", state.log_offset)
    head += (state.quant_multiplier, state.quant_shift, state.quant_zero_point, rounding)
    if len(_KERNEL_ARGS) >= 64:
        _KERNEL_ARGS.clear()
    _KERNEL_ARGS[id(state)] = (state, kernel, head, _empty_records(state))
    return kernel, head, _KERNEL_ARGS[id(state)][3]


def _lanes_call(state, pcm, n_pat, blk0, blk1, record, rec, features):
    """The lane kernel of state's mode over blocks [blk0, blk1) of the frames of n_pat patches (pcm int16 [n_pat *
    patch_length]) with this thread's scratch; rec: _stage_buffers (record) or _empty_records; features as the
    kernel's. The kernels release the GIL: threads may run disjoint block ranges into one features array."""
    p, q = state.params, state.q15
    n_t = int(p.n_frames)
    kernel, head, _ = _kernel_args(state)
    scratch = _lane_scratch(state.rfft.n_fft, state.mel_start.size, q.n_mfcc if q.mode == "mfcc" else 0)
    recs = ((rec["windowed"], rec["fft"], rec["spectrum"], rec["log"], rec["mfcc"]) if q.mode == "mfcc" else
            (rec["windowed"], rec["fft"], rec["spectrum"], rec["mel"], rec["log"]))
    kernel(pcm, int(p.patch_length), n_t, n_pat * n_t, blk0, blk1, *head, record, *scratch, *recs, features)


def _empty_records(state):
    """_stage_buffers' dict with every record but 'features' empty (same dtypes and ranks: the same compiled kernel)."""
    t_frames, q = int(state.params.n_frames), state.q15
    e16, e32 = np.empty((0, 0), np.int16), np.empty((0, 0), np.int32)
    out = {"windowed": e16, "fft": e16, "spectrum": e16, "log": e32}
    if q.mode == "mfcc":
        out["mfcc"] = e16
        out["features"] = np.empty((t_frames, q.n_mfcc), np.int8)
    else:
        out["mel"] = e32
        out["features"] = np.empty((state.mel_start.size, t_frames), np.int8)
    return out


def compute_patch(pcm, state, params=None):
    """int8 features of one patch, coefficient-major: logmel [n_mels, n_frames], mfcc [n_mfcc, n_frames]."""
    f = _run_patch(_patch_pcm(state, pcm, params), state, record=False)["features"]
    return np.ascontiguousarray(f.T) if state.q15.mode == "mfcc" else f


MIN_BLOCKS_PER_THREAD = 8        # compute_patches: a thread of its own for each run of at least this many blocks


def compute_patches(pcm_patches, state, params=None):
    """compute_patch of P patches at once (int16 [P, patch_length]) -> int8 [P, n_coefs, n_frames], bit for bit:
    the pure-C FFT runs the frames of all patches as one sequence of LANES-frame blocks (no half-empty last block
    per patch), in runs of blocks on Python threads when there are enough blocks (emu.frontend.threads: the
    kernels release the GIL; blocks are independent, so the values do not depend on the thread count); dsp-ext
    runs compute_patch patch by patch."""
    p, q = state.params, state.q15
    if params is not None and params != p:
        raise _Error("compute_patches got params different from the prepared ones; call prepare(params) again")
    a = np.asarray(pcm_patches)
    n_t, plen = int(p.n_frames), int(p.patch_length)
    if a.ndim != 2 or a.shape[1] != plen:
        raise _Error(f"patches must be [P, {plen}] int16 (P patches of (n_frames-1)*hop + win samples), got shape "
                     f"{a.shape}; stack the app's patches")
    a = _as_int(a, np.int16, "pcm_patches")                 # contiguous int16, flat
    n_pat = a.size // plen
    n_coefs = q.n_mfcc if q.mode == "mfcc" else state.mel_start.size
    if n_pat == 0:
        return np.zeros((0, n_coefs, n_t), np.int8)
    if fft_variant_code(q.fft_variant) != 0:
        return np.stack([compute_patch(a[i * plen:(i + 1) * plen], state) for i in range(n_pat)])
    n_frames = n_pat * n_t
    n_blocks = (n_frames + LANES - 1) // LANES
    feats = np.empty((n_frames, n_coefs) if q.mode == "mfcc" else (n_pat, n_coefs, n_t), np.int8)
    empty = _kernel_args(state)[2]
    over_threads(lambda b0, b1: _lanes_call(state, a, n_pat, b0, b1, False, empty, feats), n_blocks,
                 MIN_BLOCKS_PER_THREAD)
    if q.mode == "mfcc":
        return np.ascontiguousarray(feats.reshape(n_pat, n_t, n_coefs).transpose(0, 2, 1))
    return feats
