"""ST column front end (`st-f16`: float16, `st-f32`: float32): PCM int16 patch -> int8 [n_mels, n_frames].

Per frame t (frame start = hop*t in the patch buffer), one column:
  x  = T(q15 * 2^-15) at offset pad_left = (n_fft-win)//2 of an n_fft zero buffer, xw = T(x * W)
  X  = CMSIS-DSP arm_rfft_fast_{f16,f32}(xw), reproduced operation by operation (portable C path below):
       f16: arm_cfft_f16 = radix-4 DIF (cfft length a power of 4) or one radix-2 split + two radix-4
            (`arm_cfft_radix4by2_f16`); f32: arm_cfft_f32 = radix-8 DIF stages (`arm_radix8_butterfly_f32`,
            cfft lengths 64/512/4096), then bit reversal, then the real split `stage_rfft_*`.
       Packed output [X0.re, X(N/2).re, X1.re, X1.im, ...]; unnormalised.
  P  = |X|^2 (DC and Nyquist: square of the real value); magnitude mode M = T(sqrtf(P)) (f16) or
       arm_cmplx_mag_f32 = sqrtf(re*re + im*im) (f32).
  mel[m] = dot(spectrum[start..stop], coefs of filter m); st-f16: 0 if <= 0; st-f32: max(mel, FLT_MIN)
  L  = T(logf(mel)) (ln) or T(10*log10f(mel)) clamped at -top_db (db)
  q  = sat8(cast(round(L * inv_scale + zp))), inv_scale = T(1.0f/scale); cast per neg_inf_cast: "zero" =
       the C cast of the device, (int16) for st-f16 (-inf -> 0) and (int32) for st-f32; "saturate" = clamp
T() rounds to the device type (binary16 RNE for st-f16, identity for st-f32).

Two device builds (FrontendParams.isa):
  "helium" (the STM32N6's Cortex-M55, default): CMSIS-DSP's MVE paths (emu/frontend/helium_f16.py and
    helium_f32.py: arm_q15_to_f16, arm_mult_f16, arm_rfft_fast_f16, arm_cmplx_mag_squared_f16,
    arm_dot_prod_f16 and the f32 ones) around the application's own statements with the target's __fp16
    semantics: float32 expressions rounded to f16 on store, log*inv_scale + zp fused into one vfma.f32.
    optimization "Ofast" regroups the rfft split's sum. Proven on QEMU's Cortex-M55 (tests/test_st_helium.py).
  "scalar" (the portable C build; cores without Helium, or a host): the kernels below, with the precision
    codes of `FrontendParams.f16_intermediates`: PREC_F32 (st-f32), PREC_F16_PER_OP (every f16 operation
    rounded: gcc -fexcess-precision=16), PREC_F16_STATEMENT (each C statement of the CMSIS-DSP source
    evaluated in float32 and rounded to f16 when stored: -fexcess-precision=standard on x86); the
    `accumulation` ("scalar" | "lanes8") and `fma` switches apply to its mel dot products.
Both honour inplace_power: the app stores the Nyquist power over Re X[n_fft/4] before the magnitude call,
so the power at bin n_fft/4 is computed from P_nyquist and Im X[n_fft/4].

Fast path (st-f16 Helium: compute_patch, features_batch, FrontEnd.patch/patches, replay): the same arithmetic on
helium_f16.LANES frames side by side (one frame per SIMD lane, branch-free F16C rounding), all frames of a batch
of patches in blocks spread over Numba's threads, the floor/log/quantization as tables over the f16 mel value;
bit for bit compute_stages, which keeps the one-frame kernels and every stage (tests/test_frontend_fast.py).
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from emu.frontend.f16 import f16_bits_fast, from_f16_bits, round_f16, round_f16_fast, round_f16_from_f64, to_f16_bits
from emu.frontend.params import FrontendError, FrontendParams
from emu.frontend.threads import over_threads
from emu.frontend import helium_f16, helium_f32, tables
from emu.jit import njit, prange

PREC_F32 = 0
PREC_F16_PER_OP = 1
PREC_F16_STATEMENT = 2

ACC_SCALAR = 0
ACC_LANES8 = 1

CAST_ZERO = 0       # st-f16 (int16) cast: Arm VCVT to int32 (saturating, NaN -> 0), low 16 bits, sat8
CAST_SATURATE = 1   # clamp to int8 directly (-inf -> -128, +inf -> 127)
CAST_INT32 = 2      # st-f32 (int32) cast: Arm VCVT to int32 (saturating, NaN -> 0), sat8
CAST_WRAP8 = 3      # (int8_t)(int32_t)x: Arm VCVT to int32 (saturating, NaN -> 0), then the low 8 bits (faults only)

ROUND_HALF_AWAY = 0
ROUND_HALF_EVEN = 1
ROUND_TRUNCATE = 2  # no roundf: the C cast truncates toward zero (faults only: emu/faults.py)

SPEC_POWER = 0
SPEC_MAGNITUDE = 1
LOG_LN = 0
LOG_DB = 1
LOG_LOG10 = 2       # log10f / log2f instead of the app's log (faults only: emu/faults.py log-base)
LOG_LOG2 = 3

_HALF = np.float32(0.5)
_ZERO = np.float32(0.0)
_FLT_MIN = np.float32(np.finfo(np.float32).tiny)
_TEN = np.float32(10.0)
# CMSIS-DSP's radix-8 constant, the float literal 0.70710678118f as the compiler stores it.
_C81 = np.float32(tables.round_like_c("0.70710678118f", np.float32))


# ----------------------------------------------------------------------------------------------------
# rounding helpers: R after one operation, S when a statement stores its value
# ----------------------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _r(x, prec):
    if prec == PREC_F16_PER_OP:
        return round_f16(x)
    return x


@njit(cache=True, inline="always")
def _s(x, prec):
    if prec != PREC_F32:
        return round_f16(x)
    return x


@njit(cache=True)
def _fma_rounded(a, b, c, prec):
    """a*b + c rounded once to the device type (f32 or f16): exact product in float64, TwoSum, round-to-odd."""
    p = np.float64(a) * np.float64(b)
    cc = np.float64(c)
    hi = p + cc
    bb = hi - p
    err = (p - (hi - bb)) + (cc - bb)
    if err != 0.0 and abs(hi) < np.inf:
        bits = np.float64(hi).view(np.uint64)
        step = np.uint64(1) if (err > 0.0) == (hi > 0.0) else np.uint64(0xFFFFFFFFFFFFFFFF)
        if (bits & np.uint64(1)) == np.uint64(0):          # round to odd: move one ulp toward the error
            hi = np.uint64(bits + step).view(np.float64)
    if prec == PREC_F32:
        return np.float32(hi)
    return round_f16_from_f64(hi)


# ----------------------------------------------------------------------------------------------------
# CMSIS-DSP complex FFT, f16 flavour (radix-4 / radix-4-by-2), in place on interleaved float32 values
# ----------------------------------------------------------------------------------------------------

@njit(cache=True)
def _radix4_butterfly(b, fft_len, coef, tw_mod, prec):
    """arm_radix4_butterfly_f16 (portable C path): DIF radix-4 over fft_len complex values at b[0:]."""
    n2 = fft_len
    k = fft_len
    while k > 1:
        n1 = n2
        n2 >>= 2
        ia1 = 0
        j = 0
        while True:
            ia2 = ia1 + ia1
            ia3 = ia2 + ia1
            co1 = coef[ia1 * 2]
            si1 = coef[ia1 * 2 + 1]
            co2 = coef[ia2 * 2]
            si2 = coef[ia2 * 2 + 1]
            co3 = coef[ia3 * 2]
            si3 = coef[ia3 * 2 + 1]
            ia1 = ia1 + tw_mod
            i0 = j
            while True:
                i1 = i0 + n2
                i2 = i1 + n2
                i3 = i2 + n2
                r1 = _s(b[2 * i0] + b[2 * i2], prec)
                r2 = _s(b[2 * i0] - b[2 * i2], prec)
                s1 = _s(b[2 * i0 + 1] + b[2 * i2 + 1], prec)
                s2 = _s(b[2 * i0 + 1] - b[2 * i2 + 1], prec)
                t1 = _s(b[2 * i1] + b[2 * i3], prec)
                b[2 * i0] = _s(r1 + t1, prec)
                r1 = _s(r1 - t1, prec)
                t2 = _s(b[2 * i1 + 1] + b[2 * i3 + 1], prec)
                b[2 * i0 + 1] = _s(s1 + t2, prec)
                s1 = _s(s1 - t2, prec)
                t1 = _s(b[2 * i1 + 1] - b[2 * i3 + 1], prec)
                t2 = _s(b[2 * i1] - b[2 * i3], prec)
                b[2 * i1] = _s(_r(r1 * co2, prec) + _r(s1 * si2, prec), prec)
                b[2 * i1 + 1] = _s(_r(s1 * co2, prec) - _r(r1 * si2, prec), prec)
                r1 = _s(r2 + t1, prec)
                r2 = _s(r2 - t1, prec)
                s1 = _s(s2 - t2, prec)
                s2 = _s(s2 + t2, prec)
                b[2 * i2] = _s(_r(r1 * co1, prec) + _r(s1 * si1, prec), prec)
                b[2 * i2 + 1] = _s(_r(s1 * co1, prec) - _r(r1 * si1, prec), prec)
                b[2 * i3] = _s(_r(r2 * co3, prec) + _r(s2 * si3, prec), prec)
                b[2 * i3 + 1] = _s(_r(s2 * co3, prec) - _r(r2 * si3, prec), prec)
                i0 += n1
                if i0 >= fft_len:
                    break
            j += 1
            if j > n2 - 1:
                break
        tw_mod <<= 2
        k >>= 2


@njit(cache=True)
def _radix4by2(b, fft_len, coef, prec):
    """arm_cfft_radix4by2_f16: one radix-2 DIF split, then radix-4 on both halves (twiddle stride 2)."""
    n2 = fft_len >> 1
    for i in range(n2):
        cos_v = coef[2 * i]
        sin_v = coef[2 * i + 1]
        l = i + n2
        a0 = _s(b[2 * i] + b[2 * l], prec)
        xt = _s(b[2 * i] - b[2 * l], prec)
        yt = _s(b[2 * i + 1] - b[2 * l + 1], prec)
        a1 = _s(b[2 * l + 1] + b[2 * i + 1], prec)
        p0 = _s(xt * cos_v, prec)
        p1 = _s(yt * sin_v, prec)
        p2 = _s(yt * cos_v, prec)
        p3 = _s(xt * sin_v, prec)
        b[2 * i] = a0
        b[2 * i + 1] = a1
        b[2 * l] = _s(p0 + p1, prec)
        b[2 * l + 1] = _s(p2 - p3, prec)
    _radix4_butterfly(b[:fft_len], n2, coef, 2, prec)
    _radix4_butterfly(b[fft_len:], n2, coef, 2, prec)


# ----------------------------------------------------------------------------------------------------
# CMSIS-DSP complex FFT, f32 flavour (radix-8), plain float32
# ----------------------------------------------------------------------------------------------------

@njit(cache=True)
def _radix8_butterfly(b, fft_len, coef, tw_mod):
    """arm_radix8_butterfly_f32: DIF radix-8 stages over fft_len (a power of 8) complex values."""
    c81 = _C81
    n2 = fft_len
    while True:
        n1 = n2
        n2 = n2 >> 3
        i1 = 0
        while True:
            i2 = i1 + n2
            i3 = i2 + n2
            i4 = i3 + n2
            i5 = i4 + n2
            i6 = i5 + n2
            i7 = i6 + n2
            i8 = i7 + n2
            r1 = b[2 * i1] + b[2 * i5]
            r5 = b[2 * i1] - b[2 * i5]
            r2 = b[2 * i2] + b[2 * i6]
            r6 = b[2 * i2] - b[2 * i6]
            r3 = b[2 * i3] + b[2 * i7]
            r7 = b[2 * i3] - b[2 * i7]
            r4 = b[2 * i4] + b[2 * i8]
            r8 = b[2 * i4] - b[2 * i8]
            t1 = r1 - r3
            r1 = r1 + r3
            r3 = r2 - r4
            r2 = r2 + r4
            b[2 * i1] = r1 + r2
            b[2 * i5] = r1 - r2
            r1 = b[2 * i1 + 1] + b[2 * i5 + 1]
            s5 = b[2 * i1 + 1] - b[2 * i5 + 1]
            r2 = b[2 * i2 + 1] + b[2 * i6 + 1]
            s6 = b[2 * i2 + 1] - b[2 * i6 + 1]
            s3 = b[2 * i3 + 1] + b[2 * i7 + 1]
            s7 = b[2 * i3 + 1] - b[2 * i7 + 1]
            r4 = b[2 * i4 + 1] + b[2 * i8 + 1]
            s8 = b[2 * i4 + 1] - b[2 * i8 + 1]
            t2 = r1 - s3
            r1 = r1 + s3
            s3 = r2 - r4
            r2 = r2 + r4
            b[2 * i1 + 1] = r1 + r2
            b[2 * i5 + 1] = r1 - r2
            b[2 * i3] = t1 + s3
            b[2 * i7] = t1 - s3
            b[2 * i3 + 1] = t2 - r3
            b[2 * i7 + 1] = t2 + r3
            r1 = (r6 - r8) * c81
            r6 = (r6 + r8) * c81
            r2 = (s6 - s8) * c81
            s6 = (s6 + s8) * c81
            t1 = r5 - r1
            r5 = r5 + r1
            r8 = r7 - r6
            r7 = r7 + r6
            t2 = s5 - r2
            s5 = s5 + r2
            s8 = s7 - s6
            s7 = s7 + s6
            b[2 * i2] = r5 + s7
            b[2 * i8] = r5 - s7
            b[2 * i6] = t1 + s8
            b[2 * i4] = t1 - s8
            b[2 * i2 + 1] = s5 - r7
            b[2 * i8 + 1] = s5 + r7
            b[2 * i6 + 1] = t2 - r8
            b[2 * i4 + 1] = t2 + r8
            i1 += n1
            if i1 >= fft_len:
                break
        if n2 < 8:
            break
        ia1 = 0
        j = 1
        while True:
            idd = ia1 + tw_mod
            ia1 = idd
            ia2 = ia1 + idd
            ia3 = ia2 + idd
            ia4 = ia3 + idd
            ia5 = ia4 + idd
            ia6 = ia5 + idd
            ia7 = ia6 + idd
            co2 = coef[2 * ia1]
            co3 = coef[2 * ia2]
            co4 = coef[2 * ia3]
            co5 = coef[2 * ia4]
            co6 = coef[2 * ia5]
            co7 = coef[2 * ia6]
            co8 = coef[2 * ia7]
            si2 = coef[2 * ia1 + 1]
            si3 = coef[2 * ia2 + 1]
            si4 = coef[2 * ia3 + 1]
            si5 = coef[2 * ia4 + 1]
            si6 = coef[2 * ia5 + 1]
            si7 = coef[2 * ia6 + 1]
            si8 = coef[2 * ia7 + 1]
            i1 = j
            while True:
                i2 = i1 + n2
                i3 = i2 + n2
                i4 = i3 + n2
                i5 = i4 + n2
                i6 = i5 + n2
                i7 = i6 + n2
                i8 = i7 + n2
                r1 = b[2 * i1] + b[2 * i5]
                r5 = b[2 * i1] - b[2 * i5]
                r2 = b[2 * i2] + b[2 * i6]
                r6 = b[2 * i2] - b[2 * i6]
                r3 = b[2 * i3] + b[2 * i7]
                r7 = b[2 * i3] - b[2 * i7]
                r4 = b[2 * i4] + b[2 * i8]
                r8 = b[2 * i4] - b[2 * i8]
                t1 = r1 - r3
                r1 = r1 + r3
                r3 = r2 - r4
                r2 = r2 + r4
                b[2 * i1] = r1 + r2
                r2 = r1 - r2
                s1 = b[2 * i1 + 1] + b[2 * i5 + 1]
                s5 = b[2 * i1 + 1] - b[2 * i5 + 1]
                s2 = b[2 * i2 + 1] + b[2 * i6 + 1]
                s6 = b[2 * i2 + 1] - b[2 * i6 + 1]
                s3 = b[2 * i3 + 1] + b[2 * i7 + 1]
                s7 = b[2 * i3 + 1] - b[2 * i7 + 1]
                s4 = b[2 * i4 + 1] + b[2 * i8 + 1]
                s8 = b[2 * i4 + 1] - b[2 * i8 + 1]
                t2 = s1 - s3
                s1 = s1 + s3
                s3 = s2 - s4
                s2 = s2 + s4
                r1 = t1 + s3
                t1 = t1 - s3
                b[2 * i1 + 1] = s1 + s2
                s2 = s1 - s2
                s1 = t2 - r3
                t2 = t2 + r3
                b[2 * i5] = co5 * r2 + si5 * s2
                b[2 * i5 + 1] = co5 * s2 - si5 * r2
                b[2 * i3] = co3 * r1 + si3 * s1
                b[2 * i3 + 1] = co3 * s1 - si3 * r1
                b[2 * i7] = co7 * t1 + si7 * t2
                b[2 * i7 + 1] = co7 * t2 - si7 * t1
                r1 = (r6 - r8) * c81
                r6 = (r6 + r8) * c81
                s1 = (s6 - s8) * c81
                s6 = (s6 + s8) * c81
                t1 = r5 - r1
                r5 = r5 + r1
                r8 = r7 - r6
                r7 = r7 + r6
                t2 = s5 - s1
                s5 = s5 + s1
                s8 = s7 - s6
                s7 = s7 + s6
                r1 = r5 + s7
                r5 = r5 - s7
                r6 = t1 + s8
                t1 = t1 - s8
                s1 = s5 - r7
                s5 = s5 + r7
                s6 = t2 - r8
                t2 = t2 + r8
                b[2 * i2] = co2 * r1 + si2 * s1
                b[2 * i2 + 1] = co2 * s1 - si2 * r1
                b[2 * i8] = co8 * r5 + si8 * s5
                b[2 * i8 + 1] = co8 * s5 - si8 * r5
                b[2 * i6] = co6 * r6 + si6 * s6
                b[2 * i6 + 1] = co6 * s6 - si6 * r6
                b[2 * i4] = co4 * t1 + si4 * t2
                b[2 * i4 + 1] = co4 * t2 - si4 * t1
                i1 += n1
                if i1 >= fft_len:
                    break
            j += 1
            if j >= n2:
                break
        tw_mod <<= 3
        if n2 <= 7:
            break


@njit(cache=True)
def _radix8by2(b, fft_len, coef):
    """arm_cfft_radix8by2_f32: radix-2 split with twiddles (vertical symmetry), then radix-8 per half."""
    half = fft_len            # floats in one half (fft_len/2 complex values)
    quarter = fft_len >> 1    # floats in one quarter
    tw = 0
    p1 = 0
    p2 = half
    m1 = quarter
    m2 = half + quarter
    for _ in range(fft_len >> 3):
        t1_0 = b[p1]; t1_1 = b[p1 + 1]; t1_2 = b[p1 + 2]; t1_3 = b[p1 + 3]
        t2_0 = b[p2]; t2_1 = b[p2 + 1]; t2_2 = b[p2 + 2]; t2_3 = b[p2 + 3]
        t3_0 = b[m1]; t3_1 = b[m1 + 1]; t3_2 = b[m1 + 2]; t3_3 = b[m1 + 3]
        t4_0 = b[m2]; t4_1 = b[m2 + 1]; t4_2 = b[m2 + 2]; t4_3 = b[m2 + 3]
        b[p1] = t1_0 + t2_0; b[p1 + 1] = t1_1 + t2_1; b[p1 + 2] = t1_2 + t2_2; b[p1 + 3] = t1_3 + t2_3
        t2_0 = t1_0 - t2_0; t2_1 = t1_1 - t2_1; t2_2 = t1_2 - t2_2; t2_3 = t1_3 - t2_3
        b[m1] = t3_0 + t4_0; b[m1 + 1] = t3_1 + t4_1; b[m1 + 2] = t3_2 + t4_2; b[m1 + 3] = t3_3 + t4_3
        t4_0 = t4_0 - t3_0; t4_1 = t4_1 - t3_1; t4_2 = t4_2 - t3_2; t4_3 = t4_3 - t3_3
        twr = coef[tw]; twi = coef[tw + 1]; tw += 2
        b[p2] = t2_0 * twr + t2_1 * twi
        b[p2 + 1] = t2_1 * twr - t2_0 * twi
        b[m2] = t4_0 * twi - t4_1 * twr
        b[m2 + 1] = t4_1 * twi + t4_0 * twr
        twr = coef[tw]; twi = coef[tw + 1]; tw += 2
        b[p2 + 2] = t2_2 * twr + t2_3 * twi
        b[p2 + 3] = t2_3 * twr - t2_2 * twi
        b[m2 + 2] = t4_2 * twi - t4_3 * twr
        b[m2 + 3] = t4_3 * twi + t4_2 * twr
        p1 += 4; p2 += 4; m1 += 4; m2 += 4
    _radix8_butterfly(b[:fft_len], fft_len >> 1, coef, 2)
    _radix8_butterfly(b[fft_len:], fft_len >> 1, coef, 2)


@njit(cache=True)
def _radix8by4(b, fft_len, coef):
    """arm_cfft_radix8by4_f32: radix-4 split into four quarter columns (top half forward, bottom half
    backward using the twiddle symmetries), then radix-8 per column (twiddle stride 4)."""
    q = fft_len >> 1                  # floats per quarter (fft_len/4 complex values)
    p1, p2, p3, p4 = 0, q, 2 * q, 3 * q
    e1, e2, e3, e4 = q - 1, 2 * q - 1, 3 * q - 1, 4 * q - 1
    tw2, tw3, tw4 = 2, 4, 6
    n_loop = ((fft_len >> 2) - 2) >> 1
    for step in range(n_loop + 2):
        # TOP (first pass and every loop pass) and MIDDLE (last pass): columns 2..4 at p2..p4
        a0 = b[p1] + b[p3]
        s0 = b[p1] - b[p3]
        a1 = b[p1 + 1] + b[p3 + 1]
        s1 = b[p1 + 1] - b[p3 + 1]
        t2_0 = s0 + b[p2 + 1] - b[p4 + 1]
        t2_1 = s1 - b[p2] + b[p4]
        t3_0 = a0 - b[p2] - b[p4]
        t3_1 = a1 - b[p2 + 1] - b[p4 + 1]
        t4_0 = s0 - b[p2 + 1] + b[p4 + 1]
        t4_1 = s1 + b[p2] - b[p4]
        b[p1] = a0 + b[p2] + b[p4]
        b[p1 + 1] = a1 + b[p2 + 1] + b[p4 + 1]
        p1 += 2
        if step == 0:                 # twiddles are ones
            b[p2] = t2_0
            b[p2 + 1] = t2_1
            b[p3] = t3_0
            b[p3 + 1] = t3_1
            b[p4] = t4_0
            b[p4 + 1] = t4_1
            p2 += 2
            p3 += 2
            p4 += 2
            continue
        if step <= n_loop:            # BOTTOM, mirrored from the ends
            a1b = b[e1 - 1] + b[e3 - 1]
            s1b = b[e1 - 1] - b[e3 - 1]
            a0b = b[e1] + b[e3]
            s0b = b[e1] - b[e3]
            t2_2 = b[e2] - b[e4] + s1b
            t2_3 = b[e1] - b[e3] - b[e2 - 1] + b[e4 - 1]
            t3_2 = a1b - b[e2 - 1] - b[e4 - 1]
            t3_3 = a0b - b[e2] - b[e4]
            t4_2 = b[e2] - b[e4] - s1b
            t4_3 = b[e4 - 1] - b[e2 - 1] - s0b
            b[e1] = a0b + b[e2] + b[e4]
            b[e1 - 1] = a1b + b[e2 - 1] + b[e4 - 1]
            e1 -= 2
        twr = coef[tw2]
        twi = coef[tw2 + 1]
        b[p2] = t2_0 * twr + t2_1 * twi
        b[p2 + 1] = t2_1 * twr - t2_0 * twi
        p2 += 2
        if step <= n_loop:
            tw2 += 2
            b[e2] = t2_3 * twi - t2_2 * twr
            b[e2 - 1] = t2_2 * twi + t2_3 * twr
            e2 -= 2
        twr = coef[tw3]
        twi = coef[tw3 + 1]
        b[p3] = t3_0 * twr + t3_1 * twi
        b[p3 + 1] = t3_1 * twr - t3_0 * twi
        p3 += 2
        if step <= n_loop:
            tw3 += 4
            b[e3] = -t3_3 * twr - t3_2 * twi
            b[e3 - 1] = t3_3 * twi - t3_2 * twr
            e3 -= 2
        twr = coef[tw4]
        twi = coef[tw4 + 1]
        b[p4] = t4_0 * twr + t4_1 * twi
        b[p4 + 1] = t4_1 * twr - t4_0 * twi
        p4 += 2
        if step <= n_loop:
            tw4 += 6
            b[e4] = t4_3 * twi - t4_2 * twr
            b[e4 - 1] = t4_2 * twi + t4_3 * twr
            e4 -= 2
    quarter_len = fft_len >> 2
    _radix8_butterfly(b[0:q], quarter_len, coef, 4)
    _radix8_butterfly(b[q:2 * q], quarter_len, coef, 4)
    _radix8_butterfly(b[2 * q:3 * q], quarter_len, coef, 4)
    _radix8_butterfly(b[3 * q:], quarter_len, coef, 4)


@njit(cache=True)
def _bit_reverse(b, src, tmp):
    """arm_bitreversal: reorder the complex values to natural frequency order, b[k] <- b[src[k]]."""
    for k in range(src.size):
        tmp[2 * k] = b[2 * src[k]]
        tmp[2 * k + 1] = b[2 * src[k] + 1]
    for i in range(2 * src.size):
        b[i] = tmp[i]


@njit(cache=True)
def _stage_rfft(p, out, rtw, prec):
    """stage_rfft_f16/_f32: split the N/2-point complex FFT of the even/odd samples into the real FFT."""
    n = p.size >> 1
    xbr = p[0]
    xbi = p[1]
    xar = p[0]
    xai = p[1]
    t1a = _s(xbr + xar, prec)
    t1b = _s(xbi + xai, prec)
    out[0] = _s(_HALF * _r(t1a + t1b, prec), prec)
    out[1] = _s(_HALF * _r(t1a - t1b, prec), prec)
    for i in range(1, n):
        jb = 2 * (n - i)
        xbi = p[jb + 1]
        xbr = p[jb]
        xar = p[2 * i]
        xai = p[2 * i + 1]
        twr = rtw[2 * i]
        twi = rtw[2 * i + 1]
        t1a = _s(xbr - xar, prec)
        t1b = _s(xbi + xai, prec)
        p0 = _s(twr * t1a, prec)
        p1 = _s(twi * t1a, prec)
        p2 = _s(twr * t1b, prec)
        p3 = _s(twi * t1b, prec)
        out[2 * i] = _s(_HALF * _r(_r(_r(xar + xbr, prec) + p0, prec) + p3, prec), prec)
        out[2 * i + 1] = _s(_HALF * _r(_r(_r(xai - xbi, prec) + p1, prec) - p2, prec), prec)


@njit(cache=True)
def _cfft_butterflies(buf, twiddle, algo, prec):
    """The butterfly stages of arm_cfft_{f16,f32} (no bit reversal) on buf.size/2 complex values."""
    half_len = buf.size >> 1
    if algo == 0:
        _radix4_butterfly(buf, half_len, twiddle, 1, prec)
    elif algo == 1:
        _radix4by2(buf, half_len, twiddle, prec)
    elif algo == 2:
        _radix8_butterfly(buf, half_len, twiddle, 1)
    elif algo == 3:
        _radix8by2(buf, half_len, twiddle)
    else:
        _radix8by4(buf, half_len, twiddle)


@njit(cache=True)
def _rfft_fast(buf, out, twiddle, rtwiddle, order, algo, prec, tmp):
    """arm_rfft_fast_{f16,f32} forward: cfft in place on buf (n_fft floats = n_fft/2 complex), packed
    result in out; tmp is n_fft floats of scratch for the reordering."""
    _cfft_butterflies(buf, twiddle, algo, prec)
    _bit_reverse(buf, order, tmp)
    _stage_rfft(buf, out, rtwiddle, prec)


# ----------------------------------------------------------------------------------------------------
# column stages after the FFT
# ----------------------------------------------------------------------------------------------------

@njit(cache=True)
def _dot(spec, a, coefs, base, length, acc_mode, fma, prec, lanes):
    """Mel dot product of spec[a:a+length] with coefs[base:base+length] in the device type.
    scalar: s = s + x*c in order; lanes8: lane j sums elements j, j+8, ... then the Helium fold
    ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)). fma: each step x*c + s rounded once."""
    if acc_mode == ACC_SCALAR:
        s = _ZERO
        for j in range(length):
            x = spec[a + j]
            c = coefs[base + j]
            if fma:
                s = _fma_rounded(x, c, s, prec)
            else:
                s = _s(s + _r(x * c, prec), prec)
        return s
    for k in range(8):
        lanes[k] = _ZERO
    for j in range(length):
        k = j & 7
        x = spec[a + j]
        c = coefs[base + j]
        if fma:
            lanes[k] = _fma_rounded(x, c, lanes[k], prec)
        else:
            lanes[k] = _s(lanes[k] + _r(x * c, prec), prec)
    q0 = _s(lanes[0] + lanes[1], prec)
    q1 = _s(lanes[2] + lanes[3], prec)
    q2 = _s(lanes[4] + lanes[5], prec)
    q3 = _s(lanes[6] + lanes[7], prec)
    return _s(_s(q0 + q1, prec) + _s(q2 + q3, prec), prec)


@njit(cache=True, inline="always")
def _floor(v, prec):
    """The app's floor of a mel energy: float16 `mel <= 0 -> (float16_t)FLT_MIN`, which is 0; float32
    `mel < FLT_MIN -> FLT_MIN`."""
    if prec == PREC_F32:
        return _FLT_MIN if v < _FLT_MIN else v
    return _ZERO if v <= _ZERO else v


@njit(cache=True, inline="always")
def _log(v, log_mode, neg_top_db, prec):
    """The app's log of a mel energy, stored in the device type: logf(v) (ln) or 10.0f * log10f(v) clamped
    below at -top_db (db); v = 0 (an f16 hole) gives -inf."""
    if log_mode == LOG_LN:
        return _s(np.float32(math.log(v)) if v > _ZERO else np.float32(-np.inf), prec)
    if log_mode == LOG_LOG10:
        return _s(np.float32(math.log10(v)) if v > _ZERO else np.float32(-np.inf), prec)
    if log_mode == LOG_LOG2:
        return _s(np.float32(math.log2(v)) if v > _ZERO else np.float32(-np.inf), prec)
    lv = _s(_TEN * np.float32(math.log10(v)) if v > _ZERO else np.float32(-np.inf), prec)
    return neg_top_db if lv < neg_top_db else lv


@njit(cache=True)
def _quantize(v, inv_scale, zp, rounding, cast_mode):
    """int8 feature from a log value: round(v*inv_scale + zp) (roundf or half-even), int cast, sat8; the
    expression as two float32 operations (the portable-C build on a host, no contraction)."""
    return _round_cast(v * inv_scale + zp, rounding, cast_mode)


@njit(cache=True)
def _quantize_fused(v, inv_scale, zp, rounding, cast_mode):
    """The same with v*inv_scale + zp as one fused vfma.f32 (the application's statement compiled for the
    Cortex-M55: gcc contracts the float32 expression of the __fp16 operands)."""
    return _round_cast(_fma_rounded(v, inv_scale, zp, PREC_F32), rounding, cast_mode)


@njit(cache=True)
def _round_cast(y, rounding, cast_mode):
    """float32 -> int8: roundf (half away), rint (half even) or none (ROUND_TRUNCATE: the cast truncates), then
    the cast of cast_mode, then sat8 (CAST_WRAP8: the low 8 bits instead)."""
    if rounding == ROUND_TRUNCATE:
        r = np.float32(np.trunc(y))
    elif rounding == ROUND_HALF_AWAY:
        r = np.float32(np.trunc(y))                   # C roundf: exact halves go away from zero
        frac = y - r
        if frac >= _HALF:
            r = r + np.float32(1.0)
        elif frac <= -_HALF:
            r = r - np.float32(1.0)
    else:
        r = np.float32(np.rint(y))
    if cast_mode == CAST_SATURATE:
        if r != r:
            return np.int8(0)
        if r >= np.float32(127.0):
            return np.int8(127)
        if r <= np.float32(-128.0):
            return np.int8(-128)
        return np.int8(np.int32(r))
    # Arm VCVT.S32.F32: NaN -> 0, saturate to int32; then (int16) keeps the low 16 bits; then sat8
    if r != r:
        i32 = np.int64(0)
    elif r >= np.float32(2147483648.0):
        i32 = np.int64(2147483647)
    elif r < np.float32(-2147483648.0):
        i32 = np.int64(-2147483648)
    else:
        i32 = np.int64(r)
    if cast_mode == CAST_WRAP8:
        low8 = i32 & np.int64(0xFF)
        return np.int8(low8 - np.int64(0x100) if low8 >= np.int64(0x80) else low8)
    if cast_mode == CAST_INT32:
        i16 = i32
    else:
        low = i32 & np.int64(0xFFFF)
        i16 = low - np.int64(0x10000) if low >= np.int64(0x8000) else low
    if i16 > 127:
        return np.int8(127)
    if i16 < -128:
        return np.int8(-128)
    return np.int8(i16)


@njit(cache=True)
def _column_kernel(pcm, n_frames, hop, win, pad_left, window, twiddle, rtwiddle, order, algo,
                   start, stop, offs, coefs, inv_scale, zp, prec, spectrum_mode, log_mode, neg_top_db,
                   acc_mode, fma, rounding, cast_mode, inplace,
                   framed, windowed, fft_out, power, spec, mel, logmel, q, scratch, tmp, lanes):
    """All columns of one patch. Caller owns every output: framed/windowed/fft_out [n_frames, n_fft],
    power/spec [n_frames, n_bins], mel/logmel [n_mels, n_frames] float32, q [n_mels, n_frames] int8,
    scratch, tmp [n_fft] float32, lanes [8] float32. Returns the running device-type sum of all spec bins."""
    n_fft = scratch.size
    n_bins = n_fft // 2 + 1
    n_mels = start.size
    silence = _ZERO
    inv = np.float32(1.0 / 32768.0)
    for t in range(n_frames):
        for n in range(n_fft):
            framed[t, n] = _ZERO
            windowed[t, n] = _ZERO
            scratch[n] = _ZERO
        base = t * hop
        for n in range(win):
            x = _s(np.float32(pcm[base + n]) * inv, prec)
            framed[t, pad_left + n] = x
            xw = _s(x * window[n], prec)
            windowed[t, pad_left + n] = xw
            scratch[pad_left + n] = xw
        _rfft_fast(scratch, fft_out[t], twiddle, rtwiddle, order, algo, prec, tmp)
        X = fft_out[t]
        # power |X|^2 ; packed DC at X[0], Nyquist at X[1]
        power[t, 0] = _s(X[0] * X[0], prec)
        power[t, n_bins - 1] = _s(X[1] * X[1], prec)
        for k in range(1, n_bins - 1):
            re = X[2 * k]
            if inplace and 2 * k == n_bins - 1:
                re = power[t, n_bins - 1]        # the app stored the Nyquist power over Re X[n_fft/4]
            im = X[2 * k + 1]
            power[t, k] = _s(_r(re * re, prec) + _r(im * im, prec), prec)
        for k in range(n_bins):
            if spectrum_mode == SPEC_POWER:
                spec[t, k] = power[t, k]
            elif prec == PREC_F32:
                spec[t, k] = np.float32(math.sqrt(power[t, k]))            # sqrtf(re*re + im*im)
            else:
                spec[t, k] = _s(np.float32(math.sqrt(power[t, k])), prec)  # f16(sqrtf(float(P)))
            silence = _s(silence + spec[t, k], prec)
        for m in range(n_mels):
            a = start[m]
            v = _floor(_dot(spec[t], a, coefs, offs[m], stop[m] - a + 1, acc_mode, fma, prec, lanes), prec)
            mel[m, t] = v
            lv = _log(v, log_mode, neg_top_db, prec)
            logmel[m, t] = lv
            q[m, t] = _quantize(lv, inv_scale, zp, rounding, cast_mode)
    return silence


# ----------------------------------------------------------------------------------------------------
# the column as the Cortex-M55 computes it (isa = "helium"): CMSIS-DSP's MVE functions (helium_f16/_f32)
# around the application's own statements with the target's semantics (__fp16 storage: float32
# expressions, a*b+c fused into one vfma.f32, binary16 RNE on store)
# ----------------------------------------------------------------------------------------------------

@njit(cache=True)
def _helium_frames(pcm, n_frames, hop, win, pad_left, window, tables, is_f16, framed, windowed, fft_out, scratch):
    """Per frame: arm_q15_to_f16 (arm_q15_to_float) into an n_fft zero buffer at pad_left, arm_mult_f16 (_f32)
    by the window in place, arm_rfft_fast_f16 (_f32), all MVE. framed/windowed/fft_out [n_frames, n_fft]
    float32 (holding f16 values for st-f16); tables = helium_f16/_f32.prepare_rfft; scratch [n_fft]."""
    n_fft = scratch.size
    for t in range(n_frames):
        for n in range(n_fft):
            scratch[n] = _ZERO
        src = pcm[t * hop:t * hop + win]
        x = scratch[pad_left:pad_left + win]
        if is_f16:
            helium_f16.q15_to_f16(src, x, win)
        else:
            helium_f32.q15_to_float(src, x, win)
        framed[t, :] = scratch
        if is_f16:
            helium_f16.mult_f16(x, window, x, win)
        else:
            helium_f32.mult_f32(x, window, x, win)
        windowed[t, :] = scratch
        if is_f16:
            helium_f16.rfft_fast_f16(scratch, fft_out[t], tables)
        else:
            helium_f32.rfft_fast_f32(scratch, fft_out[t], tables)


@njit(cache=True)
def _helium_spectrum(X, is_f16, magnitude, inplace, work, out):
    """One frame's power (or f32 magnitude) spectrum [n_fft/2 + 1] into out, from the packed FFT X [n_fft].
    The application stores the DC and Nyquist values (its statements: X0.re^2, X(N/2).re^2, or their sqrtf
    for the f32 magnitude), then calls arm_cmplx_mag_squared (arm_cmplx_mag_f32) on bins 1..N/2-1: in place
    (inplace) it reads element N/2 as Re X[N/4] after the Nyquist store, as the board does. work [n_fft]."""
    half = X.size // 2
    prec = PREC_F16_PER_OP if is_f16 else PREC_F32
    for i in range(X.size):
        work[i] = X[i]
    dc = _s(X[0] * X[0], prec)
    nyq = _s(X[1] * X[1], prec)
    if magnitude:                                           # st-f32 magnitude: arm_cmplx_mag_f32
        dc = np.float32(math.sqrt(dc))
        nyq = np.float32(math.sqrt(nyq))
    dst = work if inplace else out
    dst[0] = dc
    dst[half] = nyq
    if is_f16:
        helium_f16.cmplx_mag_squared_f16(work[2:], dst[1:], half - 1)
    elif magnitude:
        helium_f32.cmplx_mag_f32(work[2:], dst[1:], half - 1)
    else:
        helium_f32.cmplx_mag_squared_f32(work[2:], dst[1:], half - 1)
    if inplace:
        for k in range(half + 1):
            out[k] = work[k]


@njit(cache=True)
def _helium_columns(fft_out, start, stop, offs, coefs, inv_scale, zp, is_f16, spectrum_mode, log_mode,
                    neg_top_db, rounding, cast_mode, inplace, power, spec, mel, logmel, q, work):
    """Everything after the FFT, every frame of a patch: power (in place or not), magnitude, silence sum,
    mel dot products (arm_dot_prod_f16/_f32, MVE), floor, log, fused quantization. power/spec
    [n_frames, n_bins], mel/logmel/q [n_mels, n_frames]; work [n_fft]. Returns the patch's silence sum."""
    n_frames = fft_out.shape[0]
    n_bins = power.shape[1]
    n_mels = start.size
    prec = PREC_F16_PER_OP if is_f16 else PREC_F32
    silence = _ZERO
    for t in range(n_frames):
        X = fft_out[t]
        _helium_spectrum(X, is_f16, False, inplace, work, power[t])
        if spectrum_mode == SPEC_POWER:
            spec[t, :] = power[t]
        elif is_f16:
            for k in range(n_bins):                        # the app: sqrtf of the stored power, f16 on store
                spec[t, k] = round_f16(np.float32(math.sqrt(power[t, k])))
        else:
            _helium_spectrum(X, False, True, inplace, work, spec[t])
        for k in range(n_bins):
            silence = _s(silence + spec[t, k], prec)
        for m in range(n_mels):
            a = start[m]
            length = stop[m] - a + 1
            if is_f16:
                v = helium_f16.dot_prod_f16(spec[t, a:a + length], coefs[offs[m]:offs[m] + length], length)
            else:
                v = helium_f32.dot_prod_f32(spec[t, a:a + length], coefs[offs[m]:offs[m] + length], length)
            v = _floor(v, prec)
            mel[m, t] = v
            lv = _log(v, log_mode, neg_top_db, prec)
            logmel[m, t] = lv
            q[m, t] = _quantize_fused(lv, inv_scale, zp, rounding, cast_mode)
    return silence


# ----------------------------------------------------------------------------------------------------
# st-f16 Helium on many frames at once (the fast path of features_batch): helium_f16's lane-batched kernels
# (LANES frames side by side, one per SIMD lane), the blocks of LANES frames spread over the cores (ranges of
# blocks on Python threads, emu.frontend.threads; blocks are independent and each writes its own frames, so the
# results do not depend on the thread count).
# Same arithmetic as _helium_frames + _helium_columns, bit for bit (tests/test_frontend_fast.py).
# ----------------------------------------------------------------------------------------------------

_Q15_SCALE = np.float32(1.0 / 32768.0)


@njit(cache=True, nogil=True)
def _f16_helium_blocks(b0, b1, patches, hop, win, pad_left, window, tables, start, stop, offs, coefs, spectrum_mode,
                       inplace, log_table, quant_table, feats, logs, spec_all):
    """Blocks b0 <= blk < b1 of the frames of P patches (int16 [P, patch_length]): frame f = p * T + t, block blk
    = frames blk * LANES ... (the last block padded with zero frames). The app's floor, log and quantization of a
    mel energy are functions of its binary16 value: log_table / quant_table [65536] (_mel_tables), indexed by its
    bits. Writes feats int8 / logs float32 [P, n_mels, T] and spec_all float32 [n_blocks * n_bins * LANES] (block
    b's spectrum, lane-interleaved: the silence sums' input) of its blocks only; scratch ~100 KB per call. No GIL:
    threads run disjoint block ranges (emu.frontend.threads)."""
    L = helium_f16.LANES
    n_pat, n_mels, n_t = feats.shape[0], feats.shape[1], feats.shape[2]
    n_fft = tables[6].size
    half = n_fft // 2
    n_bins = half + 1
    n_frames = n_pat * n_t
    plen = patches.shape[1]
    pcm = patches.reshape(n_pat * plen)
    buf = np.zeros(n_fft * L, np.float32)
    X = np.empty(n_fft * L, np.float32)
    t = np.empty(16 * L, np.float32)
    mv = np.empty(L, np.float32)
    for blk in range(b0, b1):
        buf[:] = _ZERO                           # the FFT works in place: zero padding and absent frames again
        for l in range(L):                       # arm_q15_to_f16 then arm_mult_f16 (finite: _r == round_f16)
            f = blk * L + l
            if f < n_frames:
                pt = f // n_t
                src = np.uint64(pt * plen + (f - pt * n_t) * hop)
                dst = np.uint64(pad_left * L + l)
                for n in range(win):             # unsigned indices: no negative-index wraparound in the loop
                    un = np.uint64(n)
                    x = helium_f16._rv(np.float32(pcm[src + un]) * _Q15_SCALE)
                    buf[dst + un * np.uint64(L)] = helium_f16._rv(x * window[un])
        helium_f16.rfft_fast_f16_lanes(buf, X, tables, t)
        spec = spec_all[blk * n_bins * L:(blk + 1) * n_bins * L]
        for l in range(L):                       # the app's DC and Nyquist powers (f16 on store)
            spec[l] = round_f16_fast(X[l] * X[l])
            spec[half * L + l] = round_f16_fast(X[L + l] * X[L + l])
        for k in range(1, half):                 # arm_cmplx_mag_squared_f16: VMUL then VFMA
            ur = np.uint64(2 * k * L)
            ui = np.uint64((2 * k + 1) * L)
            uo = np.uint64(k * L)
            for l in range(L):
                ul = np.uint64(l)
                re = X[ur + ul]
                im = X[ui + ul]
                spec[uo + ul] = helium_f16._fma_v(im, im, helium_f16._rv(re * re))
        if inplace:                              # element N/2 (Re X[N/4]) held the Nyquist power by then
            k = half // 2
            for l in range(L):
                im = X[(2 * k + 1) * L + l]
                nyq = spec[half * L + l]
                spec[k * L + l] = helium_f16._fma_v(im, im, helium_f16._rv(nyq * nyq))
        if spectrum_mode != SPEC_POWER:          # the app: sqrtf of the stored power, f16 on store
            for i in range(n_bins * L):
                spec[i] = round_f16_fast(np.float32(math.sqrt(spec[i])))
        for m in range(n_mels):
            a = start[m]
            helium_f16.dot_prod_f16_lanes(spec, a, coefs, offs[m], stop[m] - a + 1, t, mv)
            for l in range(L):                   # floor, log, quantization: tables over the f16 mel value
                f = blk * L + l
                if f < n_frames:
                    pt = f // n_t
                    tt = f - pt * n_t
                    h = f16_bits_fast(mv[l])
                    logs[pt, m, tt] = log_table[h]
                    feats[pt, m, tt] = quant_table[h]


@njit(cache=True)
def _mel_tables_kernel(values, log_mode, neg_top_db, inv_scale, zp, rounding, cast_mode, log_out, q_out):
    for i in range(values.size):
        v = _floor(values[i], PREC_F16_PER_OP)
        lv = _log(v, log_mode, neg_top_db, PREC_F16_PER_OP)
        log_out[i] = lv
        q_out[i] = _quantize_fused(lv, inv_scale, zp, rounding, cast_mode)


_ALL_F16 = None
_MEL_TABLES = {}


def _mel_tables(state):
    """(log float32 [65536], features int8 [65536]): the Helium column's floor + log + fused quantization of
    the mel energy whose binary16 bits are the index (the column's own helpers on every pattern; cached per
    setting)."""
    global _ALL_F16
    p = state.params
    sw = _switch_codes(state, p)
    key = (sw["log_mode"], float(sw["neg_top_db"]), np.float32(state.inv_scale).tobytes(),
           float(np.float32(p.quant_zero_point)), sw["rounding"], sw["cast_mode"])
    out = _MEL_TABLES.get(key)
    if out is None:
        if _ALL_F16 is None:
            _ALL_F16 = from_f16_bits(np.arange(65536, dtype=np.uint32).astype(np.uint16))
        logs = np.empty(65536, np.float32)
        q = np.empty(65536, np.int8)
        _mel_tables_kernel(_ALL_F16, sw["log_mode"], sw["neg_top_db"], state.inv_scale,
                           np.float32(p.quant_zero_point), sw["rounding"], sw["cast_mode"], logs, q)
        if len(_MEL_TABLES) >= 64:              # bounded: a sweep over many quantizations rebuilds (5 ms each)
            _MEL_TABLES.clear()
        out = _MEL_TABLES[key] = (logs, q)
    return out


BLOCKS_PER_THREAD = 4        # features_batch: fewer blocks per thread than this are not worth a thread


@njit(cache=True, parallel=True)
def _f16_silence(spec_all, n_pat, n_t, n_bins, out):
    """The app's silence sum of each patch: the running f16 sum of every spectrum bin, frames then bins (a
    sequential chain per patch: LANES patches side by side, groups of patches over the cores)."""
    L = helium_f16.LANES
    if n_pat < 4:                                # a few patches: one scalar chain each (shorter latency)
        for pt in range(n_pat):
            acc = _ZERO
            for tt in range(n_t):
                f = pt * n_t + tt
                blk = f // L
                at = blk * n_bins * L + (f - blk * L)
                for k in range(n_bins):
                    acc = round_f16_fast(acc + spec_all[at + k * L])
            out[pt] = acc
        return
    for g in prange((n_pat + L - 1) // L):
        s = np.zeros(L, np.float32)
        pos = np.empty(L, np.int64)
        for tt in range(n_t):
            for l in range(L):
                pt = min(g * L + l, n_pat - 1)
                f = pt * n_t + tt
                blk = f // L
                pos[l] = blk * n_bins * L + (f - blk * L)
            for k in range(n_bins):
                for l in range(L):
                    s[l] = round_f16_fast(s[l] + spec_all[pos[l] + k * L])
        for l in range(L):
            if g * L + l < n_pat:
                out[g * L + l] = s[l]


# ----------------------------------------------------------------------------------------------------
# prepare: the MCU's State (device-typed tables)
# ----------------------------------------------------------------------------------------------------

def _c_table_value(x, dtype):
    """A CMSIS-DSP table entry: printed %.9f with an `f` suffix, stored as float32 or (float16_t)."""
    return tables.round_like_c(["%.9ff" % v for v in x], np.float32).astype(dtype)


def _device(values, profile):
    """float64 table values -> float32 array of the device type (f16 via the float literal, like C)."""
    v32 = np.asarray(values, dtype=np.float64).astype(np.float32)
    if profile == "st-f16":
        return v32.astype(np.float16).astype(np.float32)
    return v32


def _fft_output_order(twiddle, algo, cfft_len):
    """Where each frequency lands after the butterflies (the permutation CMSIS-DSP's bit-reversal table
    undoes): digit reversal in base 4 or 8 with the stage structure of `algo`. Found from the transform
    of a unit impulse at sample 1, whose bin k has the distinct phase -2*pi*k/N."""
    buf = np.zeros(2 * cfft_len, dtype=np.float32)
    buf[2] = np.float32(1.0)
    _cfft_butterflies(buf, twiddle, algo, PREC_F32)
    phase = np.angle(buf[0::2].astype(np.float64) + 1j * buf[1::2].astype(np.float64))
    freq = np.rint(-phase * cfft_len / (2 * np.pi)).astype(np.int64) % cfft_len
    if not np.array_equal(np.sort(freq), np.arange(cfft_len)):
        raise FrontendError(f"internal: FFT output order for length {cfft_len} is not a permutation")
    src = np.empty(cfft_len, dtype=np.int32)
    src[freq] = np.arange(cfft_len, dtype=np.int32)
    return src


def cfft_algorithm(profile, cfft_len):
    """Which CMSIS-DSP complex FFT runs: 0 radix-4, 1 radix-4-by-2 (f16 lengths 4^k, 2*4^k);
    2 radix-8, 3 radix-8-by-2, 4 radix-8-by-4 (f32 lengths 8^k, 2*8^k, 4*8^k)."""
    log2 = cfft_len.bit_length() - 1
    if profile == "st-f16":
        return 0 if log2 % 2 == 0 else 1
    return (2, 3, 4)[log2 % 3]


@dataclasses.dataclass(frozen=True)
class STState:
    """Device-typed tables of the ST column front end (float32 arrays holding f16 values for st-f16)."""
    params: FrontendParams
    window: np.ndarray        # [win_length]
    twiddle: np.ndarray       # cfft twiddles [cos0, sin0, cos1, sin1, ...] for n_fft/2 points
    rtwiddle: np.ndarray      # rfft split twiddles [sin, cos] pairs, n_fft/2 pairs
    algo: int
    mel_start: np.ndarray     # int32 [n_mels], first non-zero bin
    mel_stop: np.ndarray      # int32 [n_mels], last non-zero bin (inclusive)
    mel_offset: np.ndarray    # int32 [n_mels], offset of each run in mel_coefs
    mel_coefs: np.ndarray     # float32 concatenated runs
    inv_scale: np.float32     # f16(1.0f/scale) or 1.0f/scale (NaN when no quantization scale was given)
    prec: int
    helium_tables: tuple = None   # isa = "helium": the MVE rfft's tables (helium_f16/_f32.prepare_rfft)

    @functools.cached_property
    def order(self) -> np.ndarray:
        """int32 [n_fft/2]: frequency k is read from butterfly output order[k] (the portable build's bit reversal;
        found by running the butterflies, so computed when first asked for: the Helium column never needs it, and
        a first run then does not compile the portable FFT)."""
        return _fft_output_order(self.twiddle, self.algo, self.params.n_fft // 2)

    @property
    def helium(self) -> bool:
        """True when the column runs CMSIS-DSP's Helium (MVE) build (params.isa == "helium")."""
        return self.helium_tables is not None

    def f16_bits(self, name):
        """A table as the uint16 binary16 bit patterns the MCU stores (st-f16 only)."""
        if self.params.profile != "st-f16":
            raise FrontendError(f"{self.params.profile} tables are float32; f16 bits exist for st-f16 only")
        return to_f16_bits(getattr(self, name))


def prepare(params: FrontendParams, mel_matrix=None, window=None) -> STState:
    """All float table math once: window, twiddles, bit reversal, sparse mel, inverse scale, rounded to
    the device type. `mel_matrix` [n_mels, n_bins] / `window` [win_length] override the generated tables
    (values are rounded to the device type as stored; pass tables.load_mel_c/load_window_c output)."""
    p = params
    if p.profile not in ("st-f16", "st-f32"):
        raise FrontendError(f"profile {p.profile!r} is not an ST column profile; use st-f16 or st-f32")
    dev = np.float16 if p.profile == "st-f16" else np.float32
    cfft_len = p.n_fft // 2
    algo = cfft_algorithm(p.profile, cfft_len)
    i = np.arange(cfft_len, dtype=np.float64)
    tw = np.empty(2 * cfft_len)
    tw[0::2] = np.cos(2 * np.pi * i / cfft_len)
    tw[1::2] = np.sin(2 * np.pi * i / cfft_len)
    rtw = np.empty(2 * cfft_len)
    rtw[0::2] = np.sin(2 * np.pi * i / p.n_fft)
    rtw[1::2] = np.cos(2 * np.pi * i / p.n_fft)
    twiddle = np.ascontiguousarray(_c_table_value(tw, dev).astype(np.float32))
    rtwiddle = np.ascontiguousarray(_c_table_value(rtw, dev).astype(np.float32))

    if window is None:
        win = _device(tables.hann_periodic(p.win_length), p.profile)
    else:
        win = np.asarray(window)
        if win.shape != (p.win_length,):
            raise FrontendError(f"window table has shape {win.shape}, expected ({p.win_length},); regenerate it")
        win = win.astype(np.float32).astype(dev).astype(np.float32)

    m = tables.mel_matrix(p) if mel_matrix is None else np.asarray(mel_matrix)
    if m.shape != (p.n_mels, p.n_bins):
        raise FrontendError(f"mel matrix has shape {m.shape}, expected ({p.n_mels}, {p.n_bins}); "
                            f"match n_mels and n_fft//2+1")
    m_dev = m.astype(np.float32).astype(dev).astype(np.float32)
    start, stop, coefs = tables.sparse_mel(m_dev)
    lengths = stop - start + 1
    offs = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)

    inv = inverse_scale(p)
    if p.profile == "st-f32":
        prec = PREC_F32
    else:
        prec = PREC_F16_PER_OP if p.f16_intermediates == "per-op" else PREC_F16_STATEMENT
    helium_tables = None
    if p.isa == "helium":
        helium_tables = (helium_f16 if p.profile == "st-f16" else helium_f32).prepare_rfft(p.n_fft, p.optimization)
    return STState(helium_tables=helium_tables, params=p, window=np.ascontiguousarray(win, dtype=np.float32), twiddle=twiddle,
                   rtwiddle=rtwiddle, algo=algo,
                   mel_start=start.astype(np.int32), mel_stop=stop.astype(np.int32), mel_offset=offs,
                   mel_coefs=np.ascontiguousarray(coefs, dtype=np.float32), inv_scale=np.float32(inv), prec=prec)


def inverse_scale(params: FrontendParams) -> np.float32:
    """The app's stored 1/scale: T(1.0f / scale), T = float16 or float32 (inv_scale_dtype); NaN without a scale."""
    if params.quant_scale is None:
        return np.float32(np.nan)
    inv = np.float32(1.0) / np.float32(params.quant_scale)
    if params.inv_scale_dtype == "f16":
        inv = np.float32(np.float16(inv))
    return inv


QUANTIZATION_FIELDS = ("quant_scale", "quant_zero_point", "inv_scale_dtype", "quant_rounding", "neg_inf_cast")


def requantized(state: STState, params: FrontendParams) -> STState:
    """The state for `params` that differ from state.params only in QUANTIZATION_FIELDS (the app's quantization):
    the tables are shared, the stored 1/scale is recomputed (device chains made by with_ and emu.diagnose)."""
    a = dataclasses.replace(params, **{k: getattr(state.params, k) for k in QUANTIZATION_FIELDS})
    if a != state.params:
        raise FrontendError("internal: requantized() takes parameters that differ in the quantization only")
    return dataclasses.replace(state, params=params, inv_scale=inverse_scale(params))


def _switch_codes(state, params):
    p = params
    return dict(
        spectrum_mode=SPEC_POWER if p.spectrum == "power" else SPEC_MAGNITUDE,
        log_mode=LOG_LN if p.log == "ln" else LOG_DB,
        neg_top_db=np.float32(-float(p.top_db)) if p.profile == "st-f32" else np.float32(np.float16(-float(p.top_db))),
        acc_mode=ACC_SCALAR if p.accumulation == "scalar" else ACC_LANES8,
        fma=bool(p.fma),
        rounding=ROUND_HALF_AWAY if p.quant_rounding == "half-away" else ROUND_HALF_EVEN,
        cast_mode=(CAST_SATURATE if p.neg_inf_cast == "saturate" else
                   CAST_ZERO if p.profile == "st-f16" else CAST_INT32),
    )


def check_patch(pcm_patch, params):
    """Validate a PCM patch: int16, 1-D, exactly params.patch_length samples. Returns a contiguous view."""
    a = np.asarray(pcm_patch)
    if a.dtype != np.int16:
        raise FrontendError(f"PCM patch must be int16 (q15), got {a.dtype}; convert with np.int16 after scaling")
    if a.ndim != 1 or a.size != params.patch_length:
        raise FrontendError(f"PCM patch has shape {a.shape}, expected ({params.patch_length},) = "
                            f"(win-hop) + n_frames*hop samples")
    return np.ascontiguousarray(a)


def stage_buffers(params: FrontendParams) -> dict:
    """The column's stage outputs, allocated for both twins (layouts: compute_stages) in the order the kernels
    take them: framed, windowed, fft, power, spectrum, mel, log, features."""
    p = params
    out = {name: np.empty((p.n_frames, p.n_fft), np.float32) for name in ("framed", "windowed", "fft")}
    out["power"] = np.empty((p.n_frames, p.n_bins), np.float32)
    out["spectrum"] = np.empty((p.n_frames, p.n_bins), np.float32)
    out["mel"] = np.empty((p.n_mels, p.n_frames), np.float32)
    out["log"] = np.empty((p.n_mels, p.n_frames), np.float32)
    out["features"] = np.empty((p.n_mels, p.n_frames), np.int8)
    return out


def compute_stages(pcm_patch_int16, state: STState, params: FrontendParams = None) -> dict:
    """Every stage of one patch under the canonical names of emu/frontend/registry.py. Frame-major float32
    [n_frames, n_fft]: 'framed', 'windowed', 'fft' (packed CMSIS layout); [n_frames, n_bins]: 'power',
    'spectrum' (power or magnitude); mel-major [n_mels, n_frames]: 'mel' (after the floor), 'log', 'features'
    (int8); 'silence_sum' (float32, running device-type sum of every spectrum bin of the patch, frames then bins)."""
    p = state.params if params is None else params
    if params is not None and params != state.params:
        raise FrontendError("params differ from the ones the state was prepared with; call prepare(params) again")
    pcm = check_patch(pcm_patch_int16, p)
    n_fft, n_frames = p.n_fft, p.n_frames
    out = stage_buffers(p)
    sw = _switch_codes(state, p)
    zp = np.float32(p.quant_zero_point)
    if state.helium:
        _helium_frames(pcm, n_frames, p.hop_length, p.win_length, (n_fft - p.win_length) // 2, state.window,
                       state.helium_tables, p.profile == "st-f16", out["framed"], out["windowed"], out["fft"],
                       np.empty(n_fft, np.float32))
        silence = _helium_columns(
            out["fft"], state.mel_start, state.mel_stop, state.mel_offset, state.mel_coefs, state.inv_scale, zp,
            p.profile == "st-f16", sw["spectrum_mode"], sw["log_mode"], sw["neg_top_db"], sw["rounding"],
            sw["cast_mode"], p.inplace_power, out["power"], out["spectrum"], out["mel"], out["log"], out["features"],
            np.empty(n_fft, np.float32))
        out["silence_sum"] = np.float32(silence)
        return out
    silence = _column_kernel(
        pcm, n_frames, p.hop_length, p.win_length, (n_fft - p.win_length) // 2, state.window, state.twiddle,
        state.rtwiddle, state.order, state.algo, state.mel_start, state.mel_stop, state.mel_offset,
        state.mel_coefs, state.inv_scale, zp, state.prec, sw["spectrum_mode"], sw["log_mode"],
        sw["neg_top_db"], sw["acc_mode"], sw["fma"], sw["rounding"], sw["cast_mode"], p.inplace_power,
        out["framed"], out["windowed"], out["fft"], out["power"], out["spectrum"], out["mel"], out["log"],
        out["features"], np.empty(n_fft, np.float32), np.empty(n_fft, np.float32), np.empty(8, np.float32))
    out["silence_sum"] = np.float32(silence)
    return out


def compute_patch(pcm_patch_int16, state: STState, params: FrontendParams = None) -> np.ndarray:
    """int8 features [n_mels, n_frames] (mel-major, the device input buffer order) of one PCM patch."""
    p = state.params if params is None else params
    if p.quant_scale is None:
        raise FrontendError("frontend.quant_scale is not set; give the model's input scale to get int8 features")
    if params is not None and params != state.params:
        raise FrontendError("params differ from the ones the state was prepared with; call prepare(params) again")
    if fast_path(state):
        return features_batch(check_patch(pcm_patch_int16, p)[None], state)[0][0]
    return compute_stages(pcm_patch_int16, state, params)["features"]


def fast_path(state: STState) -> bool:
    """True when features_batch runs the lane-batched kernels (st-f16, Helium build); other builds loop over
    compute_stages."""
    return state.helium and state.params.profile == "st-f16"


def features_batch(patches, state: STState):
    """(features int8 [P, n_mels, n_frames], log float32 [P, n_mels, n_frames], silence sums float32 [P]) of P
    patches (int16 [P, patch_length]): compute_stages' 'features', 'log' and 'silence_sum' of each patch, bit
    for bit. st-f16 Helium: all frames of all patches in lane-batched blocks spread over Numba's threads (the
    values do not depend on the thread count); other builds: compute_stages patch by patch."""
    p = state.params
    a = np.asarray(patches)
    if a.dtype != np.int16 or a.ndim != 2 or a.shape[1] != p.patch_length:
        raise FrontendError(f"patches must be int16 [P, {p.patch_length}], got {a.dtype} {a.shape}")
    n_pat = a.shape[0]
    feats = np.empty((n_pat, p.n_mels, p.n_frames), np.int8)
    logs = np.empty((n_pat, p.n_mels, p.n_frames), np.float32)
    silence = np.empty(n_pat, np.float32)
    if n_pat == 0:
        return feats, logs, silence
    if not fast_path(state):
        for i in range(n_pat):
            out = compute_stages(a[i], state)
            feats[i], logs[i], silence[i] = out["features"], out["log"], out["silence_sum"]
        return feats, logs, silence
    a = np.ascontiguousarray(a)
    sw = _switch_codes(state, p)
    L = helium_f16.LANES
    n_blocks = (n_pat * p.n_frames + L - 1) // L
    spec_all = np.empty(n_blocks * p.n_bins * L, np.float32)
    log_table, quant_table = _mel_tables(state)
    args = (a, p.hop_length, p.win_length, (p.n_fft - p.win_length) // 2, state.window, state.helium_tables,
            state.mel_start, state.mel_stop, state.mel_offset, state.mel_coefs, sw["spectrum_mode"], p.inplace_power,
            log_table, quant_table, feats, logs, spec_all)
    over_threads(lambda b0, b1: _f16_helium_blocks(b0, b1, *args), n_blocks, BLOCKS_PER_THREAD)
    _f16_silence(spec_all, n_pat, p.n_frames, p.n_bins, silence)
    return feats, logs, silence


def rfft_packed(frame, state: STState) -> np.ndarray:
    """arm_rfft_fast of one n_fft float32 buffer (values already in the device type), packed output."""
    buf = np.array(frame, dtype=np.float32, copy=True).reshape(-1)
    if buf.size != state.params.n_fft:
        raise FrontendError(f"frame has {buf.size} samples, expected n_fft = {state.params.n_fft}")
    out = np.empty_like(buf)
    if state.helium:
        rfft = helium_f16.rfft_fast_f16 if state.params.profile == "st-f16" else helium_f32.rfft_fast_f32
        rfft(buf, out, state.helium_tables)
        return out
    _rfft_fast(buf, out, state.twiddle, state.rtwiddle, state.order, state.algo, state.prec, np.empty_like(buf))
    return out


def mel_dot(spectrum_column, state: STState) -> np.ndarray:
    """The mel dot products of one spectrum column [n_bins] (device type, before the floor)."""
    p = state.params
    col = np.ascontiguousarray(spectrum_column, dtype=np.float32)
    if col.shape != (p.n_bins,):
        raise FrontendError(f"spectrum column has shape {col.shape}, expected ({p.n_bins},)")
    if state.helium:
        dot = helium_f16.dot_prod_f16 if p.profile == "st-f16" else helium_f32.dot_prod_f32
        out = np.empty(p.n_mels, np.float32)
        for m in range(p.n_mels):
            a, o, n = int(state.mel_start[m]), int(state.mel_offset[m]), int(state.mel_stop[m] - state.mel_start[m] + 1)
            out[m] = dot(col[a:a + n], state.mel_coefs[o:o + n], n)
        return out
    sw = _switch_codes(state, p)
    lanes = np.empty(8, np.float32)
    return np.array([_dot(col, state.mel_start[m], state.mel_coefs, state.mel_offset[m],
                          state.mel_stop[m] - state.mel_start[m] + 1, sw["acc_mode"], sw["fma"], state.prec, lanes)
                     for m in range(p.n_mels)], dtype=np.float32)


# ----------------------------------------------------------------------------------------------------
# the app's log and quantization on whole stages: the hook emu/faults.py uses to describe a firmware that
# deviates between the front end's stages (same helpers as the columns, so one home for the arithmetic)
# ----------------------------------------------------------------------------------------------------

LOG_MODES = {"ln": LOG_LN, "db": LOG_DB, "log10": LOG_LOG10, "log2": LOG_LOG2}
ROUNDINGS = {"half-away": ROUND_HALF_AWAY, "half-even": ROUND_HALF_EVEN, "truncate": ROUND_TRUNCATE}


def _stage_prec(params):
    return PREC_F32 if params.profile == "st-f32" else PREC_F16_PER_OP


@njit(cache=True)
def _log_stage(mel, eps, log_mode, neg_top_db, prec, out):
    for i in range(mel.size):
        out[i] = _log(mel[i] + eps, log_mode, neg_top_db, prec)


@njit(cache=True)
def _quantize_stage(values, inv_scale, zp, rounding, cast_mode, fused, out):
    for i in range(values.size):
        if fused:
            out[i] = _quantize_fused(values[i], inv_scale, zp, rounding, cast_mode)
        else:
            out[i] = _quantize(values[i], inv_scale, zp, rounding, cast_mode)


def app_log(mel, params: FrontendParams, eps=0.0, log=None) -> np.ndarray:
    """The app's log of a 'mel' stage (energies after the floor), stored in the device type: the column's own
    `_log` on every value. eps > 0: logf(mel + eps) with the sum in float32 (a float16_t operand of a float
    expression is promoted); `log` ("ln" | "db" | "log10" | "log2", None = params.log) picks the function
    (log10/log2: log10f/log2f stored in the device type). Returns float32 of mel's shape."""
    p = params
    if p.profile not in ("st-f16", "st-f32"):
        raise FrontendError(f"the app's float log exists for st-f16/st-f32 only, not {p.profile}")
    m = np.ascontiguousarray(mel, np.float32)
    out = np.empty(m.size, np.float32)
    neg_top_db = np.float32(-float(p.top_db)) if p.profile == "st-f32" else np.float32(np.float16(-float(p.top_db)))
    _log_stage(m.reshape(-1), np.float32(eps), LOG_MODES[p.log if log is None else log], neg_top_db,
               _stage_prec(p), out)
    return out.reshape(m.shape)


def app_quantize(values, state: STState, rounding=None, cast=None, inv_scale=None, zero_point=None) -> np.ndarray:
    """The app's int8 quantization of float log values, exactly as the configured column does it (Helium build:
    one fused vfma.f32; scalar: two float32 operations), on a whole array. Overrides (None = the state's):
    rounding "half-away" | "half-even" | "truncate" (no roundf: the cast truncates), cast one of the CAST_*
    codes (CAST_WRAP8 = (int8_t)(int32_t)x), inv_scale (float32) and zero_point. Returns int8 of values' shape."""
    p = state.params
    sw = _switch_codes(state, p)
    v = np.ascontiguousarray(values, np.float32)
    out = np.empty(v.size, np.int8)
    inv = state.inv_scale if inv_scale is None else np.float32(inv_scale)
    zp = np.float32(p.quant_zero_point if zero_point is None else zero_point)
    _quantize_stage(v.reshape(-1), np.float32(inv), zp, sw["rounding"] if rounding is None else ROUNDINGS[rounding],
                    sw["cast_mode"] if cast is None else int(cast), state.helium, out)
    return out.reshape(v.shape)
