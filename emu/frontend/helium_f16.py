"""CMSIS-DSP's Helium (MVE) float16 kernels as the STM32N6's Cortex-M55 computes them, bit for bit.

Contract (measured on ST's own code: the STM32N6 runs CMSIS-DSP's Helium float16 paths): the functions below give exactly the binary16
results of CMSIS-DSP 1.10 built with the application's flags (`-mcpu=cortex-m55 -mfloat-abi=hard -Os`,
__ARM_FEATURE_MVE=3), checked against that build running on QEMU mps3-an547 (tests/test_helium_f16.py):
    arm_rfft_fast_f16 (forward), arm_cfft_f16 (forward, with bit reversal), arm_cmplx_mag_squared_f16,
    arm_cmplx_mag_f16, arm_dot_prod_f16, arm_mult_f16, arm_q15_to_f16.
The -Ofast build (the app's IDE project) differs in one place, the vector body of the rfft split, selected
by prepare_rfft(n_fft, "Ofast"); the other functions compile to the same arithmetic at both levels.
f16 values are carried as float32 arrays holding exact binary16 values (no float16 inside Numba); every
device operation is emulated with float32/float64 arithmetic and rounded once with `round_f16`.

Device arithmetic (read from the compiled code of that build and QEMU's MVE helpers):
- Every vector op is per-lane binary16, round to nearest even. FPSCR.FZ16 is 0 after reset (our startup
  does not touch FPSCR): subnormal f16 inputs and results are kept, not flushed.
- MVE floating-point ops use the "standard FPSCR value": default-NaN mode, so any NaN a vector op
  returns is the default NaN 0x7E00 (float32 0x7FC00000). Scalar VFP ops (the rfft split's first bin and
  its 7-bin tail, the dot product's last add) run with FPSCR.DN = 0: a NaN operand propagates (Arm order:
  op1 then op2; for fused ops the addend, then the multiplicands), after the operand negations that
  VFMS/VFNMS apply, so a -NaN (0xFE00) can come out; invalid operations give 0x7E00. Those NaNs are
  always quiet (they come out of vector ops), so signalling-NaN priority never arises.
- VFMA/VFMS and VCMLA are fused (one rounding): VFMA d += n*m, VFMS d -= n*m.
- MVE_CMPLX_MULT_FLT_Conj_AxB(w, x) = VCMUL #0 then VCMLA #270 (Qn = w, Qm = x) = conj(w)*x:
      re = fma(w.im, x.im, f16(w.re*x.re)),  im = fma(-w.im, x.re, f16(w.re*x.im))
  VCADD #90 (a + i*b): re = a.re - b.im, im = a.im + b.re; VCADD #270 (a - i*b): re = a.re + b.im,
  im = a.im - b.re.
- gcc contracts the scalar C of stage_rfft_f16 (-ffp-contract=fast, native _Float16) into fused ops; the
  emulation follows the compiled instruction sequence, noted at each step.

Kernels never allocate; `prepare_rfft(n_fft, optimization)` / `prepare_cfft(fft_len)` build the device
tables once (twiddles printed and rounded like the C tables of arm_common_tables_f16.c and
arm_mve_tables_f16.c; the bit reversal is the permutation armBitRevIndexTable_fixed_<len> applies).
"""
from __future__ import annotations

import functools

import numpy as np
from llvmlite import ir

from emu.frontend import tables
from emu.frontend.f16 import (as_f32, f16_bits_to_f32, f32_to_f16_bits, fma_f16_fast, fma_f16_finite_fast, round_f16,
                              round_f16_dn, round_f16_dn_fast, round_f16_fast, round_f16_from_f64)
from emu.jit import cgutils, intrinsic, njit, types
from emu.frontend.params import OPTIMIZATIONS, FrontendError

RFFT_SIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)
OPT_OS = 0
OPT_OFAST = 1
CFFT_SIZES = (16, 32, 64, 128, 256, 512, 1024, 2048)

_ZERO = np.float32(0.0)
_HALF = np.float32(0.5)
_ONE_HALF = np.float32(1.5)
_TWO = np.float32(2.0)
_OFF0 = np.int64(0)     # offset 0 as a typed int64: a literal 0 makes Numba compile the butterflies twice
_SCALE_Q15 = np.float32(1.0 / 32768.0)
_INVSQRT_MAGIC = 0x59BA                       # INVSQRT_MAGIC_F16, on the int16 view of the f16 bits
_DEFAULT_NAN = np.uint32(0x7FC00000)          # float32 image of the f16 default NaN 0x7E00


# ----------------------------------------------------------------------------------------------------
# one device operation = one rounding (+ default NaN)
# ----------------------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _r(x):
    """The f16 result of one operation computed in float32: RNE to binary16, any NaN -> default NaN."""
    return round_f16_dn(np.float32(x))


@njit(cache=True, inline="always")
def _fma(a, b, c):
    """c + a*b rounded once to binary16 (VFMA / VCMLA); NaN -> default NaN. For binary16 operands the
    float64 sum below is exact whenever it can matter: a*b is exact (22 bits); with a finite f16 result
    |a*b| <= 2^17 and |c| >= 2^-24 (or 0), so the sum spans at most 53 bits, except when a*b is below
    2^-31 |c|, where c's f16 neighbourhood holds no midpoint within the float64 rounding error."""
    hi = np.float64(a) * np.float64(b) + np.float64(c)
    if not abs(hi) < np.inf:                   # inf or NaN (incl. inf*0, inf-inf)
        return _r(np.float32(hi))
    return round_f16_from_f64(hi)


@njit(cache=True)
def _s2(x, a, b):
    """Scalar VFP binary op (DN = 0) whose float32 result is x = a op b: a NaN operand propagates (op1
    first), else x rounded (an invalid result is the default NaN)."""
    if a != a:
        return a
    if b != b:
        return b
    return _r(x)


@njit(cache=True)
def _sfma(c, n, m):
    """Scalar VFMA family (DN = 0): c + n*m fused, with the instruction's negations already applied to the
    operands; NaN priority addend, n, m, except (inf * 0) + qNaN -> default NaN."""
    if c != c:
        if (abs(n) == np.inf and m == _ZERO) or (n == _ZERO and abs(m) == np.inf):
            return as_f32(_DEFAULT_NAN)
        return c
    if n != n:
        return n
    if m != m:
        return m
    return _fma(n, m, c)


@njit(cache=True, inline="always")
def _cmul_conj(wr, wi, xr, xi):
    """MVE_CMPLX_MULT_FLT_Conj_AxB(w, x): VCMUL #0 then VCMLA #270 (fused)."""
    re = _fma(wi, xi, _r(wr * xr))
    im = _fma(-wi, xr, _r(wr * xi))
    return re, im


# ----------------------------------------------------------------------------------------------------
# arm_cfft_f16 (MVE): radix-4 DIF for 4^k, one radix-2 split + two radix-4 for 2*4^k, bit reversal
# ----------------------------------------------------------------------------------------------------

@njit(cache=True)
def _radix4(b, off, fft_len, tw1, tw2, tw3, stage_off):
    """_arm_radix4_butterfly_f16_mve on complex values b[2*off : 2*(off+fft_len)], in place. Outputs of
    each butterfly (A, B, C, D) = (A+B+C+D, W2*(A-B+C-D), W1*(A-iB-C+iD), W3*(A+iB-C-iD)) with conj
    twiddles; the last stage has no twiddles and works on 4 consecutive values."""
    n1 = fft_len
    n2 = fft_len >> 2
    groups = 1
    stage = 0
    k = fft_len >> 2
    while k > 1:
        o = stage_off[stage]
        for g in range(groups):
            base = off + g * n1
            for t in range(n2):
                ia = 2 * (base + t)
                ib = ia + 2 * n2
                ic = ib + 2 * n2
                idd = ic + 2 * n2
                ar = b[ia]
                ai = b[ia + 1]
                br = b[ib]
                bi = b[ib + 1]
                cr = b[ic]
                ci = b[ic + 1]
                dr = b[idd]
                di = b[idd + 1]
                s0r = _r(ar + cr)
                s0i = _r(ai + ci)
                d0r = _r(ar - cr)
                d0i = _r(ai - ci)
                s1r = _r(br + dr)
                s1i = _r(bi + di)
                d1r = _r(br - dr)
                d1i = _r(bi - di)
                b[ia] = _r(s0r + s1r)
                b[ia + 1] = _r(s0i + s1i)
                w = o + 2 * t
                re, im = _cmul_conj(tw2[w], tw2[w + 1], _r(s0r - s1r), _r(s0i - s1i))
                b[ib] = re
                b[ib + 1] = im
                re, im = _cmul_conj(tw1[w], tw1[w + 1], _r(d0r + d1i), _r(d0i - d1r))   # d0 - i*d1
                b[ic] = re
                b[ic + 1] = im
                re, im = _cmul_conj(tw3[w], tw3[w + 1], _r(d0r - d1i), _r(d0i + d1r))   # d0 + i*d1
                b[idd] = re
                b[idd + 1] = im
        n1 = n2
        n2 >>= 2
        groups <<= 2
        stage += 1
        k >>= 2
    for g in range(fft_len >> 2):                   # last stage: gather/scatter of 4 consecutive values
        ia = 2 * (off + 4 * g)
        ar = b[ia]
        ai = b[ia + 1]
        br = b[ia + 2]
        bi = b[ia + 3]
        cr = b[ia + 4]
        ci = b[ia + 5]
        dr = b[ia + 6]
        di = b[ia + 7]
        s0r = _r(ar + cr)
        s0i = _r(ai + ci)
        d0r = _r(ar - cr)
        d0i = _r(ai - ci)
        s1r = _r(br + dr)
        s1i = _r(bi + di)
        d1r = _r(br - dr)
        d1i = _r(bi - di)
        b[ia] = _r(s0r + s1r)
        b[ia + 1] = _r(s0i + s1i)
        b[ia + 2] = _r(s0r - s1r)
        b[ia + 3] = _r(s0i - s1i)
        b[ia + 4] = _r(d0r + d1i)
        b[ia + 5] = _r(d0i - d1r)
        b[ia + 6] = _r(d0r - d1i)
        b[ia + 7] = _r(d0i + d1r)


@njit(cache=True)
def cfft_f16(buf, tables):
    """arm_cfft_f16 forward with bit reversal, in place on buf float32[2*fft_len] (interleaved re, im);
    tables = prepare_cfft(fft_len) (or the first six entries of prepare_rfft)."""
    tw_split, tw1, tw2, tw3, stage_off, bitrev = tables[0], tables[1], tables[2], tables[3], tables[4], tables[5]
    fft_len = bitrev.size
    if tw_split.size == 0:
        _radix4(buf, _OFF0, fft_len, tw1, tw2, tw3, stage_off)
    else:
        n2 = fft_len >> 1
        for i in range(n2):                         # arm_cfft_radix4by2_f16_mve
            i0 = 2 * i
            i1 = 2 * (i + n2)
            xr = buf[i0]
            xi = buf[i0 + 1]
            yr = buf[i1]
            yi = buf[i1 + 1]
            re, im = _cmul_conj(tw_split[i0], tw_split[i0 + 1], _r(xr - yr), _r(xi - yi))
            buf[i0] = _r(xr + yr)
            buf[i0 + 1] = _r(xi + yi)
            buf[i1] = re
            buf[i1 + 1] = im
        _radix4(buf, _OFF0, n2, tw1, tw2, tw3, stage_off)
        _radix4(buf, n2, n2, tw1, tw2, tw3, stage_off)
    for i in range(fft_len):                        # arm_bitreversal_16_inpl_mve: swaps of complex values
        j = bitrev[i]
        if j > i:
            t0 = buf[2 * i]
            t1 = buf[2 * i + 1]
            buf[2 * i] = buf[2 * j]
            buf[2 * i + 1] = buf[2 * j + 1]
            buf[2 * j] = t0
            buf[2 * j + 1] = t1


@njit(cache=True)
def _stage_rfft(p, out, tw, ofast):
    """stage_rfft_f16 (MVE build): split of the fft_len-point complex FFT p into the packed real FFT out.
    ofast: the -Ofast build, whose vector body adds in another order ((xB + res) + xA instead of
    (xB + xA) + res); the ends and the tail are the same instructions in both builds."""
    fft_len = p.size >> 1
    # first bin, scalar: gcc turns t1a = xAR + xAR into 2*xAR fused with t1b (VFMA, VFNMS)
    t1b = _s2(p[1] + p[1], p[1], p[1])
    s0 = _sfma(t1b, p[0], _TWO)                    # t1b + 2*xAR
    s1 = _sfma(-t1b, p[0], _TWO)                   # VFNMS: -t1b + 2*xAR
    out[0] = _s2(s0 * _HALF, s0, _HALF)
    out[1] = _s2(s1 * _HALF, s1, _HALF)
    k = fft_len - 1
    blocks = k >> 3
    for m in range(1, 1 + 8 * blocks):             # vector part, 8 bins per block (lanes independent)
        a = 2 * m
        bb = 2 * (fft_len - m)
        xar = p[a]
        xai = p[a + 1]
        xbr = p[bb]
        nxbi = -p[bb + 1]                          # VNEG
        twr = tw[a]
        twi = tw[a + 1]
        t2r = _r(xbr - xar)
        t2i = _r(nxbi - xai)
        rr = _fma(-twi, t2i, _r(t2r * twr))        # VMUL, VFMS
        ri = _fma(twi, t2r, _r(t2i * twr))         # VMUL, VFMA
        if ofast:
            out[a] = _r(_r(_r(xbr + rr) + xar) * _HALF)
            out[a + 1] = _r(_r(_r(nxbi + ri) + xai) * _HALF)
        else:
            out[a] = _r(_r(_r(xbr + xar) + rr) * _HALF)
            out[a + 1] = _r(_r(_r(nxbi + xai) + ri) * _HALF)
    for m in range(1 + 8 * blocks, fft_len):       # scalar tail (k & 7 bins), contracted by gcc
        a = 2 * m
        bb = 2 * (fft_len - m)
        xar = p[a]
        xai = p[a + 1]
        xbr = p[bb]
        xbi = p[bb + 1]
        twr = tw[a]
        twi = tw[a + 1]
        t1a = _s2(xbr - xar, xbr, xar)
        t1b = _s2(xbi + xai, xbi, xai)
        re = _sfma(_s2(xbr + xar, xbr, xar), twr, t1a)
        im = _sfma(_s2(xai - xbi, xai, xbi), twi, t1a)
        re = _sfma(re, twi, t1b)
        im = _sfma(im, -twr, t1b)                  # VFMS negates the multiplicand twR
        out[a] = _s2(re * _HALF, re, _HALF)
        out[a + 1] = _s2(im * _HALF, im, _HALF)


@njit(cache=True)
def rfft_fast_f16(buf, out, tables):
    """arm_rfft_fast_f16 forward: buf float32[n_fft] f16 values (overwritten, as CMSIS does) -> out
    float32[n_fft] packed [X0.re, X(N/2).re, X1.re, X1.im, ...]; tables = prepare_rfft(n_fft, optimization)."""
    cfft_f16(buf, tables)
    _stage_rfft(buf, out, tables[6], tables[7][0] == OPT_OFAST)


# ----------------------------------------------------------------------------------------------------
# complex magnitude, dot product, multiply, q15 conversion
# ----------------------------------------------------------------------------------------------------

@njit(cache=True)
def _msq(src, j, cnt):
    """Lane j of a block: re*re + im*im as VMUL then VFMA (0 for lanes past the count)."""
    if j >= cnt:
        return _ZERO
    re = src[2 * j]
    im = src[2 * j + 1]
    return _fma(im, im, _r(re * re))


@njit(cache=True)
def cmplx_mag_squared_f16(src, dst, n):
    """arm_cmplx_mag_squared_f16: dst[k] = re^2 + im^2 of src[2k], src[2k+1], k < n. Blocks of 8: the
    block's inputs are read before its outputs are written, so overlapping src/dst behave like the device."""
    for base in range(0, n, 8):
        cnt = min(8, n - base)
        s = src[2 * base:]
        v = (_msq(s, 0, cnt), _msq(s, 1, cnt), _msq(s, 2, cnt), _msq(s, 3, cnt),
             _msq(s, 4, cnt), _msq(s, 5, cnt), _msq(s, 6, cnt), _msq(s, 7, cnt))
        for j in range(cnt):
            dst[base + j] = v[j]


@njit(cache=True)
def _newton(x, half):
    """INVSQRT_NEWTON_MVE_F16: x * (1.5 - x*x*half), each product/difference rounded."""
    return _r(_r(_ONE_HALF - _r(_r(x * x) * half)) * x)


@njit(cache=True)
def _mag_lane(src, j, cnt, iterations):
    """Lane j of arm_cmplx_mag_f16: sum * invsqrt(sum), invsqrt from the int16 magic start value and
    `iterations` Newton steps (3 in full blocks, 2 in the tail), invsqrt < 0 or NaN -> 0."""
    if j >= cnt:
        return _ZERO
    re = src[2 * j]
    im = src[2 * j + 1]
    s = _fma(im, im, _r(re * re))
    bits = np.int32(f32_to_f16_bits(s))
    if bits >= 0x8000:
        bits -= 0x10000                            # int16 view
    start = (_INVSQRT_MAGIC - (bits >> 1)) & 0xFFFF   # VSHR.S16 #1, VSUB.I16 (wraps)
    x = f16_bits_to_f32(np.uint16(start))
    half = _r(s * _HALF)
    for _ in range(iterations):
        x = _newton(x, half)
    if not x >= _ZERO:                             # VCMP lt: less than or unordered (NaN -> 0 too)
        x = _ZERO
    return _r(s * x)


@njit(cache=True)
def cmplx_mag_f16(src, dst, n):
    """arm_cmplx_mag_f16 (MVE): dst[k] = |src[2k] + i src[2k+1]| via the f16 inverse-square-root Newton
    iteration (3 steps per full block of 8, 2 in the tail block); an invsqrt that is negative or NaN
    (VCMP LT is true when unordered) becomes 0; blocks read before they write."""
    full = n >> 3
    for base in range(0, n, 8):
        cnt = min(8, n - base)
        it = 3 if base < 8 * full else 2
        s = src[2 * base:]
        v = (_mag_lane(s, 0, cnt, it), _mag_lane(s, 1, cnt, it), _mag_lane(s, 2, cnt, it),
             _mag_lane(s, 3, cnt, it), _mag_lane(s, 4, cnt, it), _mag_lane(s, 5, cnt, it),
             _mag_lane(s, 6, cnt, it), _mag_lane(s, 7, cnt, it))
        for j in range(cnt):
            dst[base + j] = v[j]


@njit(cache=True)
def dot_prod_f16(a, b, n):
    """arm_dot_prod_f16: 8 lane accumulators (+0), acc[j] = fma(a[8i+j], b[8i+j], acc[j]) over full blocks
    then the predicated tail, then ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)). Returns the f16 value (float32)."""
    l0 = l1 = l2 = l3 = l4 = l5 = l6 = l7 = _ZERO
    full = n >> 3
    for blk in range(full):
        o = 8 * blk
        l0 = _fma(a[o], b[o], l0)
        l1 = _fma(a[o + 1], b[o + 1], l1)
        l2 = _fma(a[o + 2], b[o + 2], l2)
        l3 = _fma(a[o + 3], b[o + 3], l3)
        l4 = _fma(a[o + 4], b[o + 4], l4)
        l5 = _fma(a[o + 5], b[o + 5], l5)
        l6 = _fma(a[o + 6], b[o + 6], l6)
        l7 = _fma(a[o + 7], b[o + 7], l7)
    cnt = n & 7
    o = 8 * full
    if cnt > 0:
        l0 = _fma(a[o], b[o], l0)
    if cnt > 1:
        l1 = _fma(a[o + 1], b[o + 1], l1)
    if cnt > 2:
        l2 = _fma(a[o + 2], b[o + 2], l2)
    if cnt > 3:
        l3 = _fma(a[o + 3], b[o + 3], l3)
    if cnt > 4:
        l4 = _fma(a[o + 4], b[o + 4], l4)
    if cnt > 5:
        l5 = _fma(a[o + 5], b[o + 5], l5)
    if cnt > 6:
        l6 = _fma(a[o + 6], b[o + 6], l6)
    lo = _r(_r(l0 + l1) + _r(l2 + l3))             # VREV32.16 + VADD, VREV64.32 + VADD
    hi = _r(_r(l4 + l5) + _r(l6 + l7))
    return _s2(lo + hi, lo, hi)                    # scalar VADD.F16 of lanes 0 and 4


@njit(cache=True)
def _mul_lane(a, b, j, cnt):
    if j >= cnt:
        return _ZERO
    return _r(a[j] * b[j])


@njit(cache=True)
def mult_f16(a, b, dst, n):
    """arm_mult_f16: dst[k] = f16(a[k]*b[k]); blocks of 8 read before they write (overlap-safe)."""
    for base in range(0, n, 8):
        cnt = min(8, n - base)
        x = a[base:]
        y = b[base:]
        v = (_mul_lane(x, y, 0, cnt), _mul_lane(x, y, 1, cnt), _mul_lane(x, y, 2, cnt), _mul_lane(x, y, 3, cnt),
             _mul_lane(x, y, 4, cnt), _mul_lane(x, y, 5, cnt), _mul_lane(x, y, 6, cnt), _mul_lane(x, y, 7, cnt))
        for j in range(cnt):
            dst[base + j] = v[j]


@njit(cache=True)
def q15_to_f16(src, dst, n):
    """arm_q15_to_f16: VCVT.F16.S16 #15, dst[k] = f16(src[k] / 32768) (RNE; 1 -> subnormal 2^-15)."""
    for k in range(n):
        dst[k] = round_f16(np.float32(src[k]) * _SCALE_Q15)


# ----------------------------------------------------------------------------------------------------
# prepare: the device tables
# ----------------------------------------------------------------------------------------------------

def _common_table(values):
    """arm_common_tables_f16.c entries: `(float16_t)%.9ff` of the float64 value (float literal, then f16)."""
    texts = ["%.9ff" % v for v in values]
    return tables.round_like_c(texts, np.float32).astype(np.float16).astype(np.float32)


def _mve_table(values):
    """arm_mve_tables_f16.c entries: the float64 value rounded to f16, printed `(float16_t)%.13ff`."""
    texts = ["%.13ff" % float(v) for v in np.asarray(values, np.float64).astype(np.float16)]
    return tables.round_like_c(texts, np.float32).astype(np.float16).astype(np.float32)


def _cos_sin(angles):
    out = np.empty(2 * angles.size)
    out[0::2] = np.cos(angles)
    out[1::2] = np.sin(angles)
    return out


def rearranged_twiddles(fft_len):
    """The radix-4 MVE tables of a 4^k-point cfft: (stride1, stride2, stride3, stage offsets). Stage s
    (quarter length n2 = fft_len/4^(s+1), while n2 > 1) holds cos, sin of 2*pi*m*t/(4*n2), t < n2, for
    stride m; offsets (in f16 elements) have one entry per stage plus a final 0."""
    strides = [[], [], []]
    offsets = []
    pos = 0
    n2 = fft_len >> 2
    while n2 > 1:
        offsets.append(pos)
        t = np.arange(n2, dtype=np.float64)
        for m in (1, 2, 3):
            strides[m - 1].append(_cos_sin(2 * np.pi * m * t / (4 * n2)))
        pos += 2 * n2
        n2 >>= 2
    offsets.append(0)
    return tuple(_mve_table(np.concatenate(s)) for s in strides) + (np.array(offsets, np.int32),)


def split_twiddles(fft_len):
    """twiddleCoefF16_<fft_len> entries used by the radix-4-by-2 split: cos, sin of 2*pi*i/fft_len, i < fft_len/2."""
    return _common_table(_cos_sin(2 * np.pi * np.arange(fft_len // 2, dtype=np.float64) / fft_len))


def rfft_twiddles(n_fft):
    """twiddleCoefF16_rfft_<n_fft>: sin, cos of 2*pi*i/n_fft, i < n_fft/2."""
    i = np.arange(n_fft // 2, dtype=np.float64)
    out = np.empty(n_fft)
    out[0::2] = np.sin(2 * np.pi * i / n_fft)
    out[1::2] = np.cos(2 * np.pi * i / n_fft)
    return _common_table(out)


def bit_reversal(fft_len):
    """Where frequency k sits after the MVE butterflies: bit reversal of k over log2(fft_len) bits (the
    radix-4 stages emit (0, 2, 1, 3) order, the radix-2 split puts even bins first). int32 [fft_len]."""
    bits = fft_len.bit_length() - 1
    k = np.arange(fft_len)
    rev = np.zeros(fft_len, np.int64)
    for b in range(bits):
        rev |= ((k >> b) & 1) << (bits - 1 - b)
    return rev.astype(np.int32)


@functools.lru_cache(maxsize=None)
def _cfft_tables(fft_len):
    log2 = fft_len.bit_length() - 1
    radix4_len = fft_len if log2 % 2 == 0 else fft_len // 2
    tw1, tw2, tw3, offs = rearranged_twiddles(radix4_len)
    split = np.zeros(0, np.float32) if radix4_len == fft_len else split_twiddles(fft_len)
    out = (split, tw1, tw2, tw3, offs, bit_reversal(fft_len))
    for a in out:
        a.setflags(write=False)
    return out


def prepare_cfft(fft_len):
    """Device tables of arm_cfft_f16 (MVE) for fft_len complex points: (split twiddles float32 [fft_len]
    or empty for 4^k lengths, rearranged stride1/2/3 float32, stage offsets int32, bit reversal int32)."""
    if fft_len not in CFFT_SIZES:
        raise FrontendError(f"cfft length {fft_len} is not supported by CMSIS-DSP f16; use one of {CFFT_SIZES}")
    return _cfft_tables(fft_len)


@functools.lru_cache(maxsize=None)
def _rfft_tables(n_fft, optimization):
    tw = rfft_twiddles(n_fft)
    opt = np.array([OPTIMIZATIONS.index(optimization)], np.int32)
    for a in (tw, opt):
        a.setflags(write=False)
    return _cfft_tables(n_fft // 2) + (tw, opt)


def prepare_rfft(n_fft, optimization="Os"):
    """Device tables of arm_rfft_fast_f16 (MVE) for n_fft real points: prepare_cfft(n_fft/2) + (rfft
    twiddles float32 [n_fft], build int32 [1] (OPT_OS / OPT_OFAST)). Read-only contiguous arrays, cached.
    optimization: the CMSIS-DSP build, "Os" (the application's Makefile) or "Ofast" (its IDE project); only
    the rfft split differs between them (the cfft and the other functions compile to the same arithmetic)."""
    if n_fft not in RFFT_SIZES:
        raise FrontendError(f"n_fft {n_fft} is not supported by arm_rfft_fast_f16; use one of {RFFT_SIZES}")
    if optimization not in OPTIMIZATIONS:
        raise FrontendError(f"optimization {optimization!r} is not one of {OPTIMIZATIONS}")
    return _rfft_tables(n_fft, optimization)


# ----------------------------------------------------------------------------------------------------
# thin Python wrappers (validate, copy, allocate)
# ----------------------------------------------------------------------------------------------------

def _f16_array(x, name, size=None):
    a = np.array(x, dtype=np.float32, copy=True).reshape(-1)
    if size is not None and a.size != size:
        raise FrontendError(f"{name} has {a.size} values, expected {size}")
    if not np.array_equal(a.astype(np.float16).astype(np.float32), a, equal_nan=True):
        raise FrontendError(f"{name} holds values that are not binary16; round them first (f16.round_to_f16)")
    return a


def rfft_packed(frame, n_fft=None, optimization="Os"):
    """arm_rfft_fast_f16 (Helium) of one frame of f16 values (float16 or float32 holding f16) -> float32
    [n_fft] packed output. The frame is copied (the device overwrites its input)."""
    n = np.asarray(frame).size if n_fft is None else n_fft
    tabs = prepare_rfft(n, optimization)
    buf = _f16_array(frame, "frame", n)
    out = np.empty(n, np.float32)
    rfft_fast_f16(buf, out, tabs)
    return out


def cfft(values, fft_len=None):
    """arm_cfft_f16 (Helium) forward with bit reversal of interleaved f16 complex values -> float32 [2*fft_len]."""
    n = np.asarray(values).size // 2 if fft_len is None else fft_len
    buf = _f16_array(values, "values", 2 * n)
    cfft_f16(buf, prepare_cfft(n))
    return buf


def cmplx_mag_squared(values):
    """arm_cmplx_mag_squared_f16 of interleaved f16 complex values -> float32 [n]."""
    src = _f16_array(values, "values")
    dst = np.empty(src.size // 2, np.float32)
    cmplx_mag_squared_f16(src, dst, dst.size)
    return dst


def cmplx_mag(values):
    """arm_cmplx_mag_f16 (Helium Newton inverse square root) -> float32 [n]."""
    src = _f16_array(values, "values")
    dst = np.empty(src.size // 2, np.float32)
    cmplx_mag_f16(src, dst, dst.size)
    return dst


def dot_prod(a, b):
    """arm_dot_prod_f16 of two f16 vectors of equal length -> np.float32 (an f16 value)."""
    x = _f16_array(a, "a")
    y = _f16_array(b, "b", x.size)
    return np.float32(dot_prod_f16(x, y, x.size))


def mult(a, b):
    """arm_mult_f16 -> float32 [n]."""
    x = _f16_array(a, "a")
    y = _f16_array(b, "b", x.size)
    dst = np.empty(x.size, np.float32)
    mult_f16(x, y, dst, x.size)
    return dst


def q15_to_f16_array(q15):
    """arm_q15_to_f16 of an int16 array -> float32 [n] holding f16 values."""
    src = np.asarray(q15)
    if src.dtype != np.int16:
        raise FrontendError(f"q15 input must be int16, got {src.dtype}")
    src = np.ascontiguousarray(src).reshape(-1)
    dst = np.empty(src.size, np.float32)
    q15_to_f16(src, dst, src.size)
    return dst


# ----------------------------------------------------------------------------------------------------
# the same kernels on LANES frames side by side (lane-batched): every array holds LANES independent frames,
# element i of frame l at [i * LANES + l]. Each loop body is the one-frame kernel's arithmetic on lane l,
# branch-free, so LLVM vectorises the innermost lane loop (one frame per SIMD lane); the results are the
# one-frame kernels' bit for bit (tests/test_frontend_fast.py).
# ----------------------------------------------------------------------------------------------------

LANES = 16
_rv = round_f16_dn_fast       # _r, branch-free (F16C where the target has it)
_fma_v = fma_f16_fast         # _fma for binary16 operands, branch-free
# The FFT lanes kernels take frames of binary16 values with |x| <= 1 (q15 samples times a window): every value
# of the transform is then finite and below n_fft (far from the binary16 overflow at 65520), so no operation
# can give a NaN and the default-NaN handling of _r/_fma is dead code: they use these helpers, which drop it.
_rf = round_f16_fast
_fmaf = fma_f16_finite_fast


@njit(cache=True, inline="always")
def _s2_v(x, a, b):
    """_s2 without branches: NaN operand a, else NaN operand b, else _rv(x)."""
    r = _rv(x)
    r = b if b != b else r
    return a if a != a else r


@intrinsic
def _copy_f32(typingctx, dst, dst_off, src, src_off, n):
    """dst[dst_off : dst_off + n] = src[src_off : src_off + n] for float32 (or int32) arrays that do not overlap there, as one
    llvm.memcpy (constant n after inlining: a few vector moves). The caller guarantees the ranges are inside."""
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array) and dst.dtype == src.dtype
            and dst.dtype in (types.float32, types.int32)):
        return None                                 # any 4-byte element type the lane kernels use
    sig = types.void(dst, dst_off, src, src_off, n)

    def codegen(context, builder, signature, args):
        d, do, sv, so, nn = args
        da = context.make_array(signature.args[0])(context, builder, d)
        sa = context.make_array(signature.args[2])(context, builder, sv)
        i64 = ir.IntType(64)
        do = context.cast(builder, do, signature.args[1], types.int64)
        so = context.cast(builder, so, signature.args[3], types.int64)
        nn = context.cast(builder, nn, signature.args[4], types.int64)
        cgutils.raw_memcpy(builder, builder.gep(da.data, [do]), builder.gep(sa.data, [so]), nn, 4)
        return context.get_dummy_value()
    return sig, codegen


@njit(cache=True, inline="always")
def _rows_in(t, row, b, at, n):
    """t[row * LANES : (row + n) * LANES] = b[at : at + n * LANES] (t is the butterflies' scratch: the lane loops
    then read and write t at constant row offsets, which LLVM proves apart and vectorises)."""
    _copy_f32(t, row * LANES, b, at, n * LANES)


@njit(cache=True, inline="always")
def _rows_out(b, at, t, row, n):
    _copy_f32(b, at, t, row * LANES, n * LANES)


@njit(cache=True)
def _radix4_lanes(b, off, fft_len, tw1, tw2, tw3, stage_off, t):
    """_radix4 on LANES frames: complex value c of frame l at b[(2c) * LANES + l], b[(2c + 1) * LANES + l].
    t float32[16 * LANES] scratch: each butterfly's rows are copied in (rows 0-7), computed into rows 8-15 and
    copied back, so the lane loop's loads and stores are provably apart (constant row offsets) and vectorise."""
    L = LANES
    n1 = fft_len
    n2 = fft_len >> 2
    groups = 1
    stage = 0
    k = fft_len >> 2
    while k > 1:
        o = stage_off[stage]
        for g in range(groups):
            base = off + g * n1
            for q in range(n2):
                ia = 2 * (base + q) * L
                ib = ia + 2 * n2 * L
                ic = ib + 2 * n2 * L
                idd = ic + 2 * n2 * L
                w = o + 2 * q
                w1r = tw1[w]
                w1i = tw1[w + 1]
                w2r = tw2[w]
                w2i = tw2[w + 1]
                w3r = tw3[w]
                w3i = tw3[w + 1]
                _rows_in(t, 0, b, ia, 2)
                _rows_in(t, 2, b, ib, 2)
                _rows_in(t, 4, b, ic, 2)
                _rows_in(t, 6, b, idd, 2)
                for l in range(L):
                    ar = t[l]
                    ai = t[L + l]
                    br = t[2 * L + l]
                    bi = t[3 * L + l]
                    cr = t[4 * L + l]
                    ci = t[5 * L + l]
                    dr = t[6 * L + l]
                    di = t[7 * L + l]
                    s0r = _rf(ar + cr)
                    s0i = _rf(ai + ci)
                    d0r = _rf(ar - cr)
                    d0i = _rf(ai - ci)
                    s1r = _rf(br + dr)
                    s1i = _rf(bi + di)
                    d1r = _rf(br - dr)
                    d1i = _rf(bi - di)
                    t[8 * L + l] = _rf(s0r + s1r)
                    t[9 * L + l] = _rf(s0i + s1i)
                    xr = _rf(s0r - s1r)
                    xi = _rf(s0i - s1i)
                    t[10 * L + l] = _fmaf(w2i, xi, _rf(w2r * xr))
                    t[11 * L + l] = _fmaf(-w2i, xr, _rf(w2r * xi))
                    xr = _rf(d0r + d1i)
                    xi = _rf(d0i - d1r)
                    t[12 * L + l] = _fmaf(w1i, xi, _rf(w1r * xr))
                    t[13 * L + l] = _fmaf(-w1i, xr, _rf(w1r * xi))
                    xr = _rf(d0r - d1i)
                    xi = _rf(d0i + d1r)
                    t[14 * L + l] = _fmaf(w3i, xi, _rf(w3r * xr))
                    t[15 * L + l] = _fmaf(-w3i, xr, _rf(w3r * xi))
                _rows_out(b, ia, t, 8, 2)
                _rows_out(b, ib, t, 10, 2)
                _rows_out(b, ic, t, 12, 2)
                _rows_out(b, idd, t, 14, 2)
        n1 = n2
        n2 >>= 2
        groups <<= 2
        stage += 1
        k >>= 2
    for g in range(fft_len >> 2):                   # last stage: 4 consecutive values (constant offsets)
        ia = 2 * (off + 4 * g) * L
        _rows_in(t, 0, b, ia, 8)
        for l in range(L):
            ar = t[l]
            ai = t[L + l]
            br = t[2 * L + l]
            bi = t[3 * L + l]
            cr = t[4 * L + l]
            ci = t[5 * L + l]
            dr = t[6 * L + l]
            di = t[7 * L + l]
            s0r = _rf(ar + cr)
            s0i = _rf(ai + ci)
            d0r = _rf(ar - cr)
            d0i = _rf(ai - ci)
            s1r = _rf(br + dr)
            s1i = _rf(bi + di)
            d1r = _rf(br - dr)
            d1i = _rf(bi - di)
            t[8 * L + l] = _rf(s0r + s1r)
            t[9 * L + l] = _rf(s0i + s1i)
            t[10 * L + l] = _rf(s0r - s1r)
            t[11 * L + l] = _rf(s0i - s1i)
            t[12 * L + l] = _rf(d0r + d1i)
            t[13 * L + l] = _rf(d0i - d1r)
            t[14 * L + l] = _rf(d0r - d1i)
            t[15 * L + l] = _rf(d0i + d1r)
        _rows_out(b, ia, t, 8, 8)


@njit(cache=True)
def cfft_f16_lanes(buf, tables, t):
    """cfft_f16 on LANES frames at once: buf float32[2 * fft_len * LANES], lane-interleaved (module section
    doc); t float32[16 * LANES] scratch; the bit reversal swaps whole rows."""
    L = LANES
    tw_split, tw1, tw2, tw3, stage_off, bitrev = tables[0], tables[1], tables[2], tables[3], tables[4], tables[5]
    fft_len = bitrev.size
    if tw_split.size == 0:
        _radix4_lanes(buf, _OFF0, fft_len, tw1, tw2, tw3, stage_off, t)
    else:
        n2 = fft_len >> 1
        for i in range(n2):
            i0 = 2 * i * L
            i1 = 2 * (i + n2) * L
            wr = tw_split[2 * i]
            wi = tw_split[2 * i + 1]
            _rows_in(t, 0, buf, i0, 2)
            _rows_in(t, 2, buf, i1, 2)
            for l in range(L):
                xr = t[l]
                xi = t[L + l]
                yr = t[2 * L + l]
                yi = t[3 * L + l]
                dr = _rf(xr - yr)
                di = _rf(xi - yi)
                t[8 * L + l] = _rf(xr + yr)
                t[9 * L + l] = _rf(xi + yi)
                t[10 * L + l] = _fmaf(wi, di, _rf(wr * dr))
                t[11 * L + l] = _fmaf(-wi, dr, _rf(wr * di))
            _rows_out(buf, i0, t, 8, 2)
            _rows_out(buf, i1, t, 10, 2)
        _radix4_lanes(buf, _OFF0, n2, tw1, tw2, tw3, stage_off, t)
        _radix4_lanes(buf, n2, n2, tw1, tw2, tw3, stage_off, t)
    for i in range(fft_len):
        j = bitrev[i]
        if j > i:
            _rows_in(t, 0, buf, 2 * i * L, 2)
            _rows_in(t, 2, buf, 2 * j * L, 2)
            _rows_out(buf, 2 * i * L, t, 2, 2)
            _rows_out(buf, 2 * j * L, t, 0, 2)


@njit(cache=True)
def _stage_rfft_lanes(p, out, tw, ofast, t):
    """_stage_rfft on LANES frames (lane-interleaved p and out; t float32[16 * LANES] scratch)."""
    L = LANES
    fft_len = p.size // (2 * L)
    for l in range(L):                              # first bin: scalar VFP (NaN propagation), per lane
        p0 = p[l]
        p1 = p[L + l]
        t1b = _s2(p1 + p1, p1, p1)
        s0 = _sfma(t1b, p0, _TWO)
        s1 = _sfma(-t1b, p0, _TWO)
        out[l] = _s2(s0 * _HALF, s0, _HALF)
        out[L + l] = _s2(s1 * _HALF, s1, _HALF)
    k = fft_len - 1
    blocks = k >> 3
    for m in range(1, 1 + 8 * blocks):
        a = 2 * m * L
        bb = 2 * (fft_len - m) * L
        twr = tw[2 * m]
        twi = tw[2 * m + 1]
        _rows_in(t, 0, p, a, 2)
        _rows_in(t, 2, p, bb, 2)
        for l in range(L):
            xar = t[l]
            xai = t[L + l]
            xbr = t[2 * L + l]
            nxbi = -t[3 * L + l]
            t2r = _rf(xbr - xar)
            t2i = _rf(nxbi - xai)
            rr = _fmaf(-twi, t2i, _rf(t2r * twr))
            ri = _fmaf(twi, t2r, _rf(t2i * twr))
            if ofast:
                t[8 * L + l] = _rf(_rf(_rf(xbr + rr) + xar) * _HALF)
                t[9 * L + l] = _rf(_rf(_rf(nxbi + ri) + xai) * _HALF)
            else:
                t[8 * L + l] = _rf(_rf(_rf(xbr + xar) + rr) * _HALF)
                t[9 * L + l] = _rf(_rf(_rf(nxbi + xai) + ri) * _HALF)
        _rows_out(out, a, t, 8, 2)
    for m in range(1 + 8 * blocks, fft_len):
        a = 2 * m * L
        bb = 2 * (fft_len - m) * L
        twr = tw[2 * m]
        twi = tw[2 * m + 1]
        for l in range(L):
            xar = p[a + l]
            xai = p[a + L + l]
            xbr = p[bb + l]
            xbi = p[bb + L + l]
            t1a = _s2(xbr - xar, xbr, xar)
            t1b = _s2(xbi + xai, xbi, xai)
            re = _sfma(_s2(xbr + xar, xbr, xar), twr, t1a)
            im = _sfma(_s2(xai - xbi, xai, xbi), twi, t1a)
            re = _sfma(re, twi, t1b)
            im = _sfma(im, -twr, t1b)
            out[a + l] = _s2(re * _HALF, re, _HALF)
            out[a + L + l] = _s2(im * _HALF, im, _HALF)


@njit(cache=True)
def rfft_fast_f16_lanes(buf, out, tables, t):
    """rfft_fast_f16 on LANES frames: buf float32[n_fft * LANES] (overwritten) -> out [n_fft * LANES], both
    lane-interleaved (element i of frame l at i * LANES + l); t float32[16 * LANES] scratch. Input: binary16
    values with |x| <= 1 (see _rf above); for those, bit for bit rfft_fast_f16 of each frame."""
    cfft_f16_lanes(buf, tables, t)
    _stage_rfft_lanes(buf, out, tables[6], tables[7][0] == OPT_OFAST, t)


@njit(cache=True)
def dot_prod_f16_lanes(x, a, coefs, base, n, t, out):
    """dot_prod_f16 of x[a : a + n] (lane-interleaved rows, LANES frames) with coefs[base : base + n] (shared by
    the lanes) -> out[l] for every lane l. t float32[16 * LANES] scratch: rows 0-7 a block of x, rows 8-15 the
    8 accumulators of every lane."""
    L = LANES
    for i in range(8 * L):
        t[8 * L + i] = _ZERO
    full = n >> 3
    for blk in range(full):
        o = 8 * blk
        _rows_in(t, 0, x, (a + o) * L, 8)
        c0 = coefs[base + o]
        c1 = coefs[base + o + 1]
        c2 = coefs[base + o + 2]
        c3 = coefs[base + o + 3]
        c4 = coefs[base + o + 4]
        c5 = coefs[base + o + 5]
        c6 = coefs[base + o + 6]
        c7 = coefs[base + o + 7]
        for l in range(L):
            t[8 * L + l] = _fma_v(t[l], c0, t[8 * L + l])
            t[9 * L + l] = _fma_v(t[L + l], c1, t[9 * L + l])
            t[10 * L + l] = _fma_v(t[2 * L + l], c2, t[10 * L + l])
            t[11 * L + l] = _fma_v(t[3 * L + l], c3, t[11 * L + l])
            t[12 * L + l] = _fma_v(t[4 * L + l], c4, t[12 * L + l])
            t[13 * L + l] = _fma_v(t[5 * L + l], c5, t[13 * L + l])
            t[14 * L + l] = _fma_v(t[6 * L + l], c6, t[14 * L + l])
            t[15 * L + l] = _fma_v(t[7 * L + l], c7, t[15 * L + l])
    cnt = n & 7
    if cnt > 0:                                     # the predicated tail: lanes j >= cnt keep their sums
        o = 8 * full
        _rows_in(t, 0, x, (a + o) * L, cnt)
        for j in range(cnt):
            c = coefs[base + o + j]
            for l in range(L):
                t[(8 + j) * L + l] = _fma_v(t[j * L + l], c, t[(8 + j) * L + l])
    for l in range(L):
        lo = _rv(_rv(t[8 * L + l] + t[9 * L + l]) + _rv(t[10 * L + l] + t[11 * L + l]))
        hi = _rv(_rv(t[12 * L + l] + t[13 * L + l]) + _rv(t[14 * L + l] + t[15 * L + l]))
        out[l] = _s2_v(lo + hi, lo, hi)
