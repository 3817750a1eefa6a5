"""CMSIS-DSP's Helium (MVE) float32 paths as a Cortex-M55 computes them (what the STM32N6 runs for the
st-f32 front end): bit-exact Numba kernels, a C twin in csrc/helium_f32.c, the QEMU oracle in
tests/test_helium_f32.py.

Kernels (allocation-free; the caller owns every buffer; n counts complex values for the cmplx_* kernels):
  rfft_fast_f32(buf, out, tables)       arm_rfft_fast_f32 forward, n_fft = buf.size in 32..4096;
                                        out[n_fft] packed [X0.re, X(N/2).re, X1.re, X1.im, ...]; buf is
                                        overwritten with the complex FFT of the even/odd pairs, as CMSIS does
  cfft_f32(buf, tables)                 arm_cfft_f32 forward with bit reversal, in place, L = buf.size/2 in 16..4096
  cmplx_mag_squared_f32(src, dst, n)    arm_cmplx_mag_squared_f32
  cmplx_mag_f32(src, dst, n)            arm_cmplx_mag_f32 (Newton inverse square root, not sqrtf, see below)
  dot_prod_f32(a, b, n) -> float32      arm_dot_prod_f32
  mult_f32(a, b, dst, n)                arm_mult_f32
  q15_to_float(src_int16, dst, n)       arm_q15_to_float
Tables: prepare_cfft(L) / prepare_rfft(n_fft) return tuples of contiguous arrays generated from cos/sin and
rounded like the C compiler rounds CMSIS-DSP's printed constants (see CFFT_TABLES / RFFT_TABLES).

The device: CMSIS-DSP 1.10 (cmsisdsp sdist) built with the ST application's flags (arm-none-eabi-gcc 12.2,
-mcpu=cortex-m55 -mfloat-abi=hard -Os, gnu11 so -ffp-contract=fast) and run on QEMU mps3-an547. Facts:
- Vector (MVE) float instructions use the standard FPSCR value whatever FPSCR holds (QEMU's MVE model,
  measured with FPSCR.FZ = 0): round to nearest even, flush-to-zero (subnormal inputs read as signed zero; a
  result whose exact value is below 2^-126 in magnitude becomes signed zero, decided before rounding, so
  (1 - 2^-24) * 2^-126 gives 0), default NaN. Scalar VFP instructions use FPSCR, which keeps its reset value
  on our start-up: no flush, IEEE subnormals. The scalar contractions below are gcc 12.2 -Os's (another
  compiler or -Ofast may contract differently).
- VFMA/VFMS and VCMLA are fused (one rounding); VCMUL is a plain product per element. MVE_CMPLX_MULT_FLT_
  Conj_AxB(W, x) = vcmlaq_rot270(vcmulq(W, x), W, x) = (fma(wi, xi, wr*xr), fma(wi, -xr, wr*xi)), i.e.
  conj(W)*x; vcaddq_rot90(a, b) = a + i*b, vcaddq_rot270(a, b) = a - i*b (plain adds).
- arm_cfft_f32 (MVE): lengths 4^k run _arm_radix4_butterfly_f32_mve (DIF radix-4 stages with twiddles
  rearranged per stage and stride, then a twiddle-free last stage over groups of 4); lengths 2*4^k first run
  arm_cfft_radix4by2_f32_mve (sum / conj(W)*difference with twiddleCoef_L) then radix-4 on both halves.
  Outputs land in binary bit-reversed order, undone by arm_bitreversal_32_inpl_mve with the
  armBitRevIndexTable_fixed_L swap pairs (disjoint, so their order does not matter).
- stage_rfft_f32 (MVE): output 0/1 and the last 3 bins are scalar code, which gcc contracts: bins 0/1 =
  0.5*fma(p0, 2, +/-(p1+p1)); tail re = 0.5*fma(twI, t1b, fma(twR, t1a, xAR+xBR)),
  im = 0.5*fma(-twR, t1b, fma(twI, t1a, xAI-xBI)). Bins 1..4*((L-1)>>2) are vector code:
  re = 0.5*((xBR+xAR) + fma(-twI, (-xBI)-xAI, twR*(xBR-xAR))), im = 0.5*(((-xBI)+xAI) + fma(twI, xBR-xAR,
  twR*((-xBI)-xAI))), flushed to zero after every operation.
- arm_cmplx_mag_squared_f32: blocks of 4 complex values fma(im, im, re*re) (vector); tail (n % 4 values)
  fma(re, re, im*im) (scalar, gcc's contraction). arm_cmplx_mag_f32: same sum, then the vector square root
  sum * y with y from the magic constant 0x5f3759df and 3 Newton steps y = (1.5 - (y*y)*(sum*0.5))*y, set to
  0 where y < 0 or unordered (Arm "lt"), so mag(0) = 0 and the result is not correctly rounded (|3+4i| =
  4.9999995); tail: VSQRT of the scalar sum, or 0 when !(sum >= 0).
- arm_dot_prod_f32: 4 lane accumulators, lane j fused-accumulates elements j, j+4, ... (the tail is a
  predicated vfma on lanes < n % 4); result ((l0 + l1) + l2) + l3 in scalar float.
- arm_mult_f32: vector products (tail predicated); arm_q15_to_float: x * 2^-15, exact.
- cmplx_mag*: each block of 4 complex values reads its 8 inputs, then writes its 4 outputs; the tail reads 2
  then writes 1. An overlapping in-place call (e.g. src = buf[2:], dst = buf[1:]) behaves like the device.
NaN results are the Arm default NaN 0x7FC00000 (x86 would give 0xFFC00000), with one exception the scalar
code (FPSCR.DN = 0: NaNs propagate) makes: rfft out[1] = 0.5*fma(p0, 2, -t1b) is 0xFFC00000 when t1b is NaN,
since VFNMS negates its addend before propagating it. Inputs are NaN-free by contract (NaN inputs give NaN
where the device does; their payloads are not modelled).
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir

from emu.frontend import tables as _tables
from emu.frontend.params import OPTIMIZATIONS, FrontendError
from emu.jit import cgutils, intrinsic, njit, types

_ZERO = np.float32(0.0)
_HALF = np.float32(0.5)
_TWO = np.float32(2.0)
_ONE_HALF = np.float32(1.5)
_OFF0 = np.int64(0)     # offset 0 as a typed int64: a literal 0 makes Numba compile the butterflies twice
_TINY = np.float32(2.0 ** -126)          # smallest normal float32; vector ops flush below it
_TINY64 = 2.0 ** -126
_Q15_SCALE = np.float32(2.0 ** -15)
_DEFAULT_NAN = np.uint32(0x7FC00000).view(np.float32)
_NEG_DEFAULT_NAN = np.uint32(0xFFC00000).view(np.float32)
_INVSQRT_MAGIC = np.int32(0x5F3759DF)

CFFT_LENGTHS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
RFFT_LENGTHS = (32, 64, 128, 256, 512, 1024, 2048, 4096)
# prepare_cfft(L): (coef, tw1, tw2, tw3, stage_off, bitrev); prepare_rfft(n_fft, optimization) appends rtw, opt
CFFT_TABLES = ("coef",       # float32 [2L]   twiddleCoef_L (cos, sin of 2*pi*k/L), printed %.9f
               "tw1", "tw2", "tw3",  # float32     rearranged_twiddle_stride{1,2,3}_{L4}_f32, L4 = radix-4 length
               "stage_off",  # int32 [log4 L4] rearranged_twiddle_tab_stride*_arr_{L4}_f32 (float offsets)
               "bitrev")     # int32 [even]   armBitRevIndexTable_fixed_L: swap pairs as byte offsets (8 per complex)
RFFT_TABLES = CFFT_TABLES + ("rtw",    # float32 [n_fft] twiddleCoef_rfft_{n_fft} (sin, cos of 2*pi*k/n_fft)
                              "opt")    # int32 [1]: the build, index into params.OPTIMIZATIONS (Os, Ofast)


# ----------------------------------------------------------------------------------------------------
# one operation as the Cortex-M55 rounds it
# ----------------------------------------------------------------------------------------------------

@intrinsic
def _fmaf(typingctx, a, b, c):
    """a*b + c rounded once to float32 (llvm.fma.f32: the host FMA unit or libm fmaf)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f32, [f32, f32, f32]), "llvm.fma.f32")
        return builder.call(fn, args)
    return sig, codegen


@njit(cache=True, inline="always")
def _ftz(x):
    """A vector instruction reading x: subnormal -> signed zero."""
    if abs(x) < _TINY:
        return x * _ZERO
    return x


@njit(cache=True, inline="always")
def _vadd(a, b):
    """VADD.F32 lane (inputs normal or zero): a sum below 2^-126 is exact, so flush on the rounded value."""
    r = a + b
    if abs(r) < _TINY:
        return r * _ZERO
    return r


@njit(cache=True, inline="always")
def _vsub(a, b):
    """VSUB.F32 lane (inputs normal or zero)."""
    r = a - b
    if abs(r) < _TINY:
        return r * _ZERO
    return r


@njit(cache=True)
def _flush_exact_product(a, b, r):
    p = np.float64(a) * np.float64(b)          # exact: 24 + 24 bits
    if abs(p) < _TINY64:
        return r * _ZERO
    return r


@njit(cache=True, inline="always")
def _vmul(a, b):
    """VMUL.F32 / VCMUL lane (inputs normal or zero): flush when the exact product is below 2^-126."""
    r = a * b
    if abs(r) <= _TINY:
        return _flush_exact_product(a, b, r)
    return r


@njit(cache=True)
def _flush_exact_fma(a, b, c, r):
    p = np.float64(a) * np.float64(b)
    cc = np.float64(c)
    s = p + cc                                  # TwoSum: exact = s + err
    bb = s - p
    err = (p - (s - bb)) + (cc - bb)
    if abs(s) < _TINY64 or (abs(s) == _TINY64 and err != 0.0 and (err > 0.0) != (s > 0.0)):
        return r * _ZERO
    return r


@njit(cache=True, inline="always")
def _vfma(a, b, c):
    """VFMA.F32 / VCMLA lane a*b + c (inputs normal or zero): one rounding, flush on the exact value."""
    r = _fmaf(a, b, c)
    if abs(r) <= _TINY:
        return _flush_exact_fma(a, b, c, r)
    return r


@njit(cache=True, inline="always")
def _canon(x):
    """The Arm default NaN for any NaN."""
    if x != x:
        return _DEFAULT_NAN
    return x


# ----------------------------------------------------------------------------------------------------
# arm_cfft_f32, MVE path
# ----------------------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _conj_mul_store(b, k, wr, wi, xr, xi):
    """b[k] = MVE_CMPLX_MULT_FLT_Conj_AxB(W, x): vcmul #0 then vcmla #270."""
    re = _vmul(wr, xr)
    im = _vmul(wr, xi)
    b[2 * k] = _vfma(wi, xi, re)
    b[2 * k + 1] = _vfma(wi, -xr, im)


@njit(cache=True)
def _radix4_mve(b, off, n, tw1, tw2, tw3, stage_off):
    """_arm_radix4_butterfly_f32_mve on the n (a power of 4) complex values at b[2*off:]."""
    n1 = n
    n2 = n >> 2
    groups = 1
    stage = 0
    k = n >> 2
    while k > 1:
        o = stage_off[stage]
        for g in range(groups):
            base = off + g * n1
            for j in range(n2):
                ia = base + j
                ib = ia + n2
                ic = ib + n2
                idd = ic + n2
                ar = b[2 * ia]
                ai = b[2 * ia + 1]
                br = b[2 * ib]
                bi = b[2 * ib + 1]
                cr = b[2 * ic]
                ci = b[2 * ic + 1]
                dr = b[2 * idd]
                di = b[2 * idd + 1]
                s0r = _vadd(ar, cr)
                s0i = _vadd(ai, ci)
                d0r = _vsub(ar, cr)
                d0i = _vsub(ai, ci)
                s1r = _vadd(br, dr)
                s1i = _vadd(bi, di)
                d1r = _vsub(br, dr)
                d1i = _vsub(bi, di)
                b[2 * ia] = _vadd(s0r, s1r)
                b[2 * ia + 1] = _vadd(s0i, s1i)
                w = o + 2 * j
                _conj_mul_store(b, ib, tw2[w], tw2[w + 1], _vsub(s0r, s1r), _vsub(s0i, s1i))
                _conj_mul_store(b, ic, tw1[w], tw1[w + 1], _vadd(d0r, d1i), _vsub(d0i, d1r))   # d0 - i*d1
                _conj_mul_store(b, idd, tw3[w], tw3[w + 1], _vsub(d0r, d1i), _vadd(d0i, d1r))  # d0 + i*d1
        n1 = n2
        n2 >>= 2
        groups <<= 2
        stage += 1
        k >>= 2
    # last stage: radix-4 without twiddles over groups of 4 consecutive values
    for g in range(n >> 2):
        ia = off + 4 * g
        ar = b[2 * ia]
        ai = b[2 * ia + 1]
        br = b[2 * ia + 2]
        bi = b[2 * ia + 3]
        cr = b[2 * ia + 4]
        ci = b[2 * ia + 5]
        dr = b[2 * ia + 6]
        di = b[2 * ia + 7]
        s0r = _vadd(ar, cr)
        s0i = _vadd(ai, ci)
        d0r = _vsub(ar, cr)
        d0i = _vsub(ai, ci)
        s1r = _vadd(br, dr)
        s1i = _vadd(bi, di)
        d1r = _vsub(br, dr)
        d1i = _vsub(bi, di)
        b[2 * ia] = _vadd(s0r, s1r)
        b[2 * ia + 1] = _vadd(s0i, s1i)
        b[2 * ia + 2] = _vsub(s0r, s1r)
        b[2 * ia + 3] = _vsub(s0i, s1i)
        b[2 * ia + 4] = _vadd(d0r, d1i)
        b[2 * ia + 5] = _vsub(d0i, d1r)
        b[2 * ia + 6] = _vsub(d0r, d1i)
        b[2 * ia + 7] = _vadd(d0i, d1r)


@njit(cache=True)
def _cfft_mve(b, fft_len, coef, tw1, tw2, tw3, stage_off, bitrev):
    """arm_cfft_f32 forward + arm_bitreversal_32_inpl_mve on fft_len complex values (inputs flushed here)."""
    for i in range(2 * fft_len):
        b[i] = _ftz(b[i])
    if (fft_len & 0x55555555) != 0:            # 4^k: radix-4 only
        _radix4_mve(b, _OFF0, fft_len, tw1, tw2, tw3, stage_off)
    else:                                      # 2*4^k: arm_cfft_radix4by2_f32_mve
        n2 = fft_len >> 1
        for j in range(n2):
            l = j + n2
            ar = b[2 * j]
            ai = b[2 * j + 1]
            cr = b[2 * l]
            ci = b[2 * l + 1]
            b[2 * j] = _vadd(ar, cr)
            b[2 * j + 1] = _vadd(ai, ci)
            _conj_mul_store(b, l, coef[2 * j], coef[2 * j + 1], _vsub(ar, cr), _vsub(ai, ci))
        _radix4_mve(b, _OFF0, n2, tw1, tw2, tw3, stage_off)
        _radix4_mve(b, n2, n2, tw1, tw2, tw3, stage_off)
    for i in range(0, bitrev.size, 2):
        p = bitrev[i] >> 2                     # byte offset of a complex value -> float index
        q = bitrev[i + 1] >> 2
        t0 = b[p]
        t1 = b[p + 1]
        b[p] = b[q]
        b[p + 1] = b[q + 1]
        b[q] = t0
        b[q + 1] = t1
    for i in range(2 * fft_len):
        b[i] = _canon(b[i])


@njit(cache=True)
def cfft_f32(buf, tables):
    """arm_cfft_f32(S, buf, ifft=0, bitrev=1), MVE path: buf float32[2L] interleaved complex, in place;
    tables = prepare_cfft(L) (or prepare_rfft(2L))."""
    _cfft_mve(buf, buf.size >> 1, tables[0], tables[1], tables[2], tables[3], tables[4], tables[5])


@njit(cache=True)
def _stage_rfft_mve(p, out, rtw, ofast):
    """stage_rfft_f32, MVE path: p = the L-point complex FFT of the even/odd pairs -> packed real FFT.
    ofast: the -Ofast build, whose vector body adds (xB + res) + xA instead of (xB + xA) + res (gcc's
    arm_mve.h writes vaddq as a C `+`, which -fassociative-math regroups; everything else is the same)."""
    n = p.size >> 1                            # complex length L
    k = n - 1
    p0 = p[0]
    t1b0 = p[1] + p[1]
    out[0] = _HALF * _fmaf(p0, _TWO, t1b0)      # scalar: gcc fuses t1a = p0 + p0 into the add
    out[1] = _HALF * _fmaf(p0, _TWO, -t1b0)
    nvec = 4 * (k >> 2)
    for i in range(1, nvec + 1):               # vector blocks of 4 bins, lane by lane
        jb = n - i
        xar = p[2 * i]
        xai = p[2 * i + 1]
        xbr = p[2 * jb]
        xbi = -p[2 * jb + 1]                   # vneg: the conjugate
        twr = rtw[2 * i]
        twi = rtw[2 * i + 1]
        t2r = _vsub(xbr, xar)
        t2i = _vsub(xbi, xai)
        rr = _vfma(-twi, t2i, _vmul(t2r, twr))
        ri = _vfma(twi, t2r, _vmul(t2i, twr))
        if ofast:
            out[2 * i] = _vmul(_vadd(_vadd(xbr, rr), xar), _HALF)
            out[2 * i + 1] = _vmul(_vadd(_vadd(xbi, ri), xai), _HALF)
        else:
            out[2 * i] = _vmul(_vadd(_vadd(xbr, xar), rr), _HALF)
            out[2 * i + 1] = _vmul(_vadd(_vadd(xbi, xai), ri), _HALF)
    for i in range(nvec + 1, n):               # scalar tail (k & 3 bins), contracted by gcc
        jb = n - i
        xar = p[2 * i]
        xai = p[2 * i + 1]
        xbr = p[2 * jb]
        xbi = p[2 * jb + 1]
        twr = rtw[2 * i]
        twi = rtw[2 * i + 1]
        t1a = xbr - xar
        t1b = xbi + xai
        re = _fmaf(twi, t1b, _fmaf(twr, t1a, xbr + xar))
        im = _fmaf(-twr, t1b, _fmaf(twi, t1a, xai - xbi))
        out[2 * i] = re * _HALF
        out[2 * i + 1] = im * _HALF
    for i in range(out.size):
        out[i] = _canon(out[i])
    if t1b0 != t1b0:                           # VFNMS negates its NaN addend; scalar code propagates it
        out[1] = _NEG_DEFAULT_NAN


@njit(cache=True)
def rfft_fast_f32(buf, out, tables):
    """arm_rfft_fast_f32(S, buf, out, 0), MVE path: buf float32[n_fft] (overwritten with the complex FFT),
    out float32[n_fft] packed; tables = prepare_rfft(n_fft, optimization)."""
    _cfft_mve(buf, buf.size >> 1, tables[0], tables[1], tables[2], tables[3], tables[4], tables[5])
    _stage_rfft_mve(buf, out, tables[6], tables[7][0] == 1)


# ----------------------------------------------------------------------------------------------------
# complex magnitude, dot product, multiply, q15 conversion (MVE paths)
# ----------------------------------------------------------------------------------------------------

@njit(cache=True)
def cmplx_mag_squared_f32(src, dst, n):
    """dst[k] = |src[2k] + i src[2k+1]|^2 for k < n (arm_cmplx_mag_squared_f32, MVE order; overlap allowed)."""
    nb = n >> 2
    for blk in range(nb):
        s = 8 * blk
        r0 = _ftz(src[s]); i0 = _ftz(src[s + 1]); r1 = _ftz(src[s + 2]); i1 = _ftz(src[s + 3])  # noqa: E702
        r2 = _ftz(src[s + 4]); i2 = _ftz(src[s + 5]); r3 = _ftz(src[s + 6]); i3 = _ftz(src[s + 7])  # noqa: E702
        d = 4 * blk
        dst[d] = _canon(_vfma(i0, i0, _vmul(r0, r0)))
        dst[d + 1] = _canon(_vfma(i1, i1, _vmul(r1, r1)))
        dst[d + 2] = _canon(_vfma(i2, i2, _vmul(r2, r2)))
        dst[d + 3] = _canon(_vfma(i3, i3, _vmul(r3, r3)))
    for k in range(4 * nb, n):
        re = src[2 * k]
        im = src[2 * k + 1]
        dst[k] = _canon(_fmaf(re, re, im * im))


@njit(cache=True)
def _f32_to_i32_bits(x):
    return np.float32(x).view(np.int32)


@njit(cache=True)
def _u32_bits_to_f32(x):
    return np.uint32(x).view(np.float32)


@njit(cache=True)
def _mag_lane(re, im):
    """One lane of the vector arm_cmplx_mag_f32 (inputs flushed)."""
    s = _vfma(im, im, _vmul(re, re))
    start = (np.int64(_INVSQRT_MAGIC) - (np.int64(_f32_to_i32_bits(s)) >> 1)) & np.int64(0xFFFFFFFF)
    y = _ftz(_u32_bits_to_f32(np.uint32(start)))            # int32 arithmetic on the bits (wraps)
    half = _vmul(s, _HALF)
    for _ in range(3):
        y = _vmul(_vsub(_ONE_HALF, _vmul(_vmul(y, y), half)), y)
    if not (y >= _ZERO):                      # vcmpltq: less than, or unordered
        y = _ZERO
    return _canon(_vmul(s, y))


@njit(cache=True)
def cmplx_mag_f32(src, dst, n):
    """dst[k] = |src[2k] + i src[2k+1]| for k < n (arm_cmplx_mag_f32, MVE: Newton rsqrt in blocks of 4,
    VSQRT in the tail; overlap allowed)."""
    nb = n >> 2
    for blk in range(nb):
        s = 8 * blk
        r0 = _ftz(src[s]); i0 = _ftz(src[s + 1]); r1 = _ftz(src[s + 2]); i1 = _ftz(src[s + 3])  # noqa: E702
        r2 = _ftz(src[s + 4]); i2 = _ftz(src[s + 5]); r3 = _ftz(src[s + 6]); i3 = _ftz(src[s + 7])  # noqa: E702
        d = 4 * blk
        dst[d] = _mag_lane(r0, i0)
        dst[d + 1] = _mag_lane(r1, i1)
        dst[d + 2] = _mag_lane(r2, i2)
        dst[d + 3] = _mag_lane(r3, i3)
    for k in range(4 * nb, n):
        re = src[2 * k]
        im = src[2 * k + 1]
        s = _fmaf(re, re, im * im)
        if s >= _ZERO:
            dst[k] = _canon(np.float32(math.sqrt(s)))   # correctly rounded either way (53 >= 2*24 + 2)
        else:
            dst[k] = _ZERO


@njit(cache=True)
def dot_prod_f32(a, b, n):
    """sum of a[k]*b[k], k < n (arm_dot_prod_f32, MVE: 4 fused lanes, then ((l0+l1)+l2)+l3 in scalar)."""
    l0 = _ZERO
    l1 = _ZERO
    l2 = _ZERO
    l3 = _ZERO
    nb = n >> 2
    for blk in range(nb):
        k = 4 * blk
        l0 = _vfma(_ftz(a[k]), _ftz(b[k]), l0)
        l1 = _vfma(_ftz(a[k + 1]), _ftz(b[k + 1]), l1)
        l2 = _vfma(_ftz(a[k + 2]), _ftz(b[k + 2]), l2)
        l3 = _vfma(_ftz(a[k + 3]), _ftz(b[k + 3]), l3)
    k = 4 * nb
    rem = n - k
    if rem > 0:
        l0 = _vfma(_ftz(a[k]), _ftz(b[k]), l0)
    if rem > 1:
        l1 = _vfma(_ftz(a[k + 1]), _ftz(b[k + 1]), l1)
    if rem > 2:
        l2 = _vfma(_ftz(a[k + 2]), _ftz(b[k + 2]), l2)
    return _canon(((l0 + l1) + l2) + l3)


@njit(cache=True)
def mult_f32(a, b, dst, n):
    """dst[k] = a[k]*b[k], k < n (arm_mult_f32, MVE: vector products, flush to zero)."""
    for k in range(n):
        dst[k] = _canon(_vmul(_ftz(a[k]), _ftz(b[k])))


@njit(cache=True)
def q15_to_float(src, dst, n):
    """dst[k] = src[k] / 32768 exactly, k < n (arm_q15_to_float)."""
    for k in range(n):
        dst[k] = np.float32(src[k]) * _Q15_SCALE


# ----------------------------------------------------------------------------------------------------
# prepare: the tables the MCU holds, from cos/sin, rounded like the C compiler rounds the printed constants
# ----------------------------------------------------------------------------------------------------

def _c_floats(values, fmt):
    """Printed C float constants (`fmt` % value + 'f') as the compiler stores them."""
    return _tables.round_like_c([(fmt % v) + "f" for v in values], np.float32)


def _radix4_length(fft_len):
    return fft_len if (fft_len & 0x55555555) != 0 else fft_len >> 1


def rearranged_twiddles(n4):
    """arm_mve_tables.c for the radix-4 length n4: (stride1, stride2, stride3, stage offsets). Stage s of
    length m = n4/4^s holds (cos, sin) of 2*pi*j*stride/m, j < m/4, printed %.20f from float32."""
    out = []
    offsets = []
    for stride in (1, 2, 3):
        vals = []
        offs = []
        m = n4
        while m // 4 > 1:
            offs.append(len(vals))
            j = np.arange(m // 4, dtype=np.float64)
            ang = 2.0 * np.pi * j * stride / m
            pair = np.empty(2 * j.size)
            pair[0::2] = np.cos(ang)
            pair[1::2] = np.sin(ang)
            vals.extend(pair.astype(np.float32).tolist())
            m //= 4
        offs.append(0)                          # the last (twiddle-free) stage
        out.append(np.ascontiguousarray(_c_floats(vals, "%.20f"), dtype=np.float32))
        offsets.append(offs)
    if not offsets[0] == offsets[1] == offsets[2]:
        raise FrontendError("internal: rearranged twiddle offsets differ between strides")
    return out[0], out[1], out[2], np.array(offsets[0], dtype=np.int32)


def bitrev_fixed(fft_len):
    """armBitRevIndexTable_fixed_L: for k < bitrev(k) the pair (8k, 8*bitrev(k)) (byte offsets)."""
    bits = fft_len.bit_length() - 1
    pairs = []
    for k in range(fft_len):
        r = int(format(k, f"0{bits}b")[::-1], 2) if bits else 0
        if k < r:
            pairs.extend((8 * k, 8 * r))
    tab = np.array(pairs, dtype=np.int32)
    # arm_bitreversal_32_inpl_mve swaps 2 pairs per group of 4 entries, 8 entries per loop, then one more
    # group when the length is 4 mod 8: it must cover the table exactly
    if tab.size % 4 != 0:
        raise FrontendError(f"internal: bit reversal table of length {tab.size} is not whole groups of 4")
    return tab


def prepare_cfft(fft_len):
    """Tables of arm_cfft_f32 (MVE) for fft_len complex values: see CFFT_TABLES."""
    if fft_len not in CFFT_LENGTHS:
        raise FrontendError(f"arm_cfft_f32 length {fft_len} is not supported; use one of {CFFT_LENGTHS}")
    k = np.arange(fft_len, dtype=np.float64)
    coef = np.empty(2 * fft_len)
    coef[0::2] = np.cos(2.0 * np.pi * k / fft_len)
    coef[1::2] = np.sin(2.0 * np.pi * k / fft_len)
    tw1, tw2, tw3, offs = rearranged_twiddles(_radix4_length(fft_len))
    return (np.ascontiguousarray(_c_floats(coef, "%.9f"), dtype=np.float32), tw1, tw2, tw3, offs,
            bitrev_fixed(fft_len))


def prepare_rfft(n_fft, optimization="Os"):
    """Tables of arm_rfft_fast_f32 (MVE) for n_fft real samples: see RFFT_TABLES. optimization: the CMSIS-DSP
    build, "Os" (the application's Makefile) or "Ofast" (its IDE project; only the split's sum order differs)."""
    if n_fft not in RFFT_LENGTHS:
        raise FrontendError(f"arm_rfft_fast_f32 length {n_fft} is not supported; use one of {RFFT_LENGTHS}")
    if optimization not in OPTIMIZATIONS:
        raise FrontendError(f"optimization {optimization!r} is not one of {OPTIMIZATIONS}")
    k = np.arange(n_fft // 2, dtype=np.float64)
    rtw = np.empty(n_fft)
    rtw[0::2] = np.sin(2.0 * np.pi * k / n_fft)
    rtw[1::2] = np.cos(2.0 * np.pi * k / n_fft)
    out = prepare_cfft(n_fft // 2) + (np.ascontiguousarray(_c_floats(rtw, "%.9f"), dtype=np.float32),
                                      np.array([OPTIMIZATIONS.index(optimization)], np.int32))
    for a in out:
        a.setflags(write=False)           # read-only device tables (one Numba type with helium_f16's)
    return out


# ----------------------------------------------------------------------------------------------------
# validating wrappers (allocate; for tests and tools)
# ----------------------------------------------------------------------------------------------------

def _f32_vector(x, name, size=None):
    a = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    if size is not None and a.size != size:
        raise FrontendError(f"{name} has {a.size} values, expected {size}")
    return a


def rfft(frame, tables=None):
    """arm_rfft_fast_f32 of one float32 frame (a copy; the frame is left untouched), packed output."""
    buf = np.array(frame, dtype=np.float32, copy=True).reshape(-1)
    if tables is None:
        tables = prepare_rfft(buf.size)
    if tables[6].size != buf.size:
        raise FrontendError(f"frame has {buf.size} samples, the tables are for n_fft = {tables[6].size}")
    out = np.empty_like(buf)
    rfft_fast_f32(buf, out, tables)
    return out


def cfft(x, tables=None):
    """arm_cfft_f32 forward (bit-reversed back to natural order) of interleaved complex float32 values."""
    buf = np.array(x, dtype=np.float32, copy=True).reshape(-1)
    if tables is None:
        tables = prepare_cfft(buf.size // 2)
    if tables[0].size != buf.size:
        raise FrontendError(f"input has {buf.size // 2} complex values, the tables are for {tables[0].size // 2}")
    cfft_f32(buf, tables)
    return buf


def mag_squared(x):
    """arm_cmplx_mag_squared_f32 of interleaved complex values."""
    src = _f32_vector(x, "input")
    dst = np.empty(src.size // 2, np.float32)
    cmplx_mag_squared_f32(src, dst, dst.size)
    return dst


def mag(x):
    """arm_cmplx_mag_f32 of interleaved complex values."""
    src = _f32_vector(x, "input")
    dst = np.empty(src.size // 2, np.float32)
    cmplx_mag_f32(src, dst, dst.size)
    return dst


def dot(a, b):
    """arm_dot_prod_f32."""
    a = _f32_vector(a, "a")
    b = _f32_vector(b, "b", a.size)
    return dot_prod_f32(a, b, a.size)


def mult(a, b):
    """arm_mult_f32."""
    a = _f32_vector(a, "a")
    b = _f32_vector(b, "b", a.size)
    dst = np.empty(a.size, np.float32)
    mult_f32(a, b, dst, a.size)
    return dst


def q15_to_f32(x):
    """arm_q15_to_float."""
    src = np.asarray(x)
    if src.dtype != np.int16:
        raise FrontendError(f"q15 input must be int16, got {src.dtype}")
    src = np.ascontiguousarray(src).reshape(-1)
    dst = np.empty(src.size, np.float32)
    q15_to_float(src, dst, src.size)
    return dst
