"""IEEE binary16 ("f16", ARM `float16_t` / C `_Float16`) emulated in Numba, which has no float16 type.

An f16 value is carried either as its uint16 bit pattern or as a float32 holding exactly that value.
Contract:
- f32 -> f16 rounds to nearest, ties to even (RNE); |x| >= 65520 -> +-inf; below 2^-24 the gradual
  underflow of binary16 applies (2^-25 exactly is a tie and goes to +-0); the sign of zero is kept.
- f16 -> f32 is exact (every binary16 value, subnormals included, is a float32).
- NaN: the sign and the top 10 payload bits are kept and the quiet bit (0x0200) is forced, as x86 F16C
  `vcvtps2ph` and Arm `VCVT` (FPSCR.DN = 0) do; hence f16 -> f32 -> f16 is the identity on every pattern
  except signalling NaNs, which come back quiet. numpy's float16 may differ on NaN payloads only.
- One correctly rounded f16 operation = the float32 operation rounded once more with `round_f16`
  (float32 has 24 >= 2*11+2 bits, so double rounding is innocuous for + - * / sqrt).
- `round_f16_from_f64` rounds a float64 to f16 in one step (on the float64 bits); it is the helper for a
  fused multiply-add, computed exactly enough in float64.
"""
import os

import numpy as np
from llvmlite import ir

from emu.jit import intrinsic, njit, types


@intrinsic
def _as_u32(typingctx, x):
    """Bit pattern of a float32 as uint32 (an LLVM bitcast; numba's scalar .view allocates)."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.uint32(types.float32), codegen


@intrinsic
def _as_f32(typingctx, u):
    """float32 with the given uint32 bit pattern (an LLVM bitcast)."""
    if u != types.uint32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.uint32), codegen


@intrinsic
def as_u64(typingctx, x):
    """Bit pattern of a float64 as uint64 (an LLVM bitcast)."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.uint64(types.float64), codegen


@intrinsic
def as_f64(typingctx, u):
    """float64 with the given uint64 bit pattern (an LLVM bitcast)."""
    if u != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.uint64), codegen


as_f32 = _as_f32


F16_INF_BITS = np.uint16(0x7C00)
F16_QUIET_BIT = 0x0200
F16_MAX = np.float32(65504.0)


@njit(cache=True)
def f32_to_f16_bits(x):
    """float32 value -> binary16 bits, RNE (see module contract for inf/NaN/subnormals)."""
    u = _as_u32(np.float32(x))
    sign = np.uint32((u >> np.uint32(16)) & np.uint32(0x8000))
    a = u & np.uint32(0x7FFFFFFF)
    if a >= np.uint32(0x7F800000):
        if a > np.uint32(0x7F800000):
            return np.uint16(sign | np.uint32(0x7C00) | np.uint32(F16_QUIET_BIT) | ((a >> np.uint32(13)) & np.uint32(0x3FF)))
        return np.uint16(sign | np.uint32(0x7C00))
    if a >= np.uint32(0x477FF000):                     # >= 65520: rounds past 65504 to inf
        return np.uint16(sign | np.uint32(0x7C00))
    if a >= np.uint32(0x38800000):                     # normal binary16 range (>= 2^-14)
        lsb = (a >> np.uint32(13)) & np.uint32(1)
        h = (a - np.uint32(0x38000000) + np.uint32(0xFFF) + lsb) >> np.uint32(13)
        return np.uint16(sign | h)
    if a <= np.uint32(0x33000000):                     # <= 2^-25: zero (2^-25 is a tie to even 0)
        return np.uint16(sign)
    exp = a >> np.uint32(23)                           # 103..112
    mant = (a & np.uint32(0x7FFFFF)) | np.uint32(0x800000)
    shift = np.uint32(126) - exp                       # value / 2^-24 = mant >> shift, 14..23
    q = mant >> shift
    rem = mant - (q << shift)
    half = np.uint32(1) << (shift - np.uint32(1))
    if rem > half or (rem == half and (q & np.uint32(1)) == np.uint32(1)):
        q += np.uint32(1)
    return np.uint16(sign | q)


@njit(cache=True)
def f16_bits_to_f32(h):
    """binary16 bits -> the exact float32 value (NaN payload shifted into the float32 payload)."""
    hv = np.uint32(h)
    sign = (hv & np.uint32(0x8000)) << np.uint32(16)
    e = (hv >> np.uint32(10)) & np.uint32(0x1F)
    m = hv & np.uint32(0x3FF)
    if e == np.uint32(0x1F):
        return _as_f32(np.uint32(sign | np.uint32(0x7F800000) | (m << np.uint32(13))))
    if e == np.uint32(0):
        if m == np.uint32(0):
            return _as_f32(np.uint32(sign))
        mag = np.float32(m) * np.float32(5.9604644775390625e-08)   # m * 2^-24, exact
        return -mag if sign != np.uint32(0) else mag
    return _as_f32(np.uint32(sign | ((e + np.uint32(112)) << np.uint32(23)) | (m << np.uint32(13))))


@njit(cache=True, inline="always")
def _round_f16(x, default_nan):
    """float32 -> float32 holding the nearest binary16 value (RNE), computed on the float32 bits without
    leaving float32: normal range -> round the significand to 11 bits; below 2^-14 -> rint(x * 2^24) * 2^-24
    (the subnormal quantum, exact scalings); >= 65520 -> inf; NaN -> quiet with the payload cut to 10 bits,
    or the default NaN 0x7E00 (float32 0x7FC00000) when default_nan (Arm FPSCR.DN)."""
    u = _as_u32(np.float32(x))
    a = u & np.uint32(0x7FFFFFFF)
    if a >= np.uint32(0x38800000):
        if a < np.uint32(0x477FF000):
            return _as_f32(np.uint32((u + np.uint32(0xFFF) + ((u >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)))
        if a <= np.uint32(0x7F800000):
            return _as_f32(np.uint32((u & np.uint32(0x80000000)) | np.uint32(0x7F800000)))
        if default_nan:
            return _as_f32(np.uint32(0x7FC00000))
        return _as_f32(np.uint32((u | np.uint32(0x00400000)) & np.uint32(0xFFFFE000)))
    return np.float32(np.rint(np.float32(x) * np.float32(16777216.0))) * np.float32(5.9604644775390625e-08)


@njit(cache=True, inline="always")
def round_f16(x):
    """float32 -> float32 holding the nearest binary16 value (RNE) == f16_bits_to_f32(f32_to_f16_bits(x))."""
    return _round_f16(x, False)


@njit(cache=True, inline="always")
def round_f16_dn(x):
    """round_f16 in Arm's default-NaN mode (FPSCR.DN, the MVE standard value): any NaN -> 0x7E00. The check
    sits on the rare overflow/NaN path, so it costs nothing on finite values."""
    return _round_f16(x, True)


@njit(cache=True, inline="always")
def round_f16_from_f64(d):
    """float64 -> float32 holding the nearest binary16 value, rounded once (on the float64 bits: the
    significand cut to 11 bits with RNE; below 2^-14 the subnormal quantum rint(d * 2^24) * 2^-24, exact
    scalings; >= 65520 -> inf; NaN -> a quiet float32 NaN with the sign and top payload bits)."""
    u = as_u64(np.float64(d))
    a = u & np.uint64(0x7FFFFFFFFFFFFFFF)
    if a >= np.uint64(0x3F10000000000000):                    # >= 2^-14: the normal binary16 range
        if a < np.uint64(0x40EFFE0000000000):                 # < 65520
            r = (u + np.uint64(0x1FFFFFFFFFF) + ((u >> np.uint64(42)) & np.uint64(1))) & np.uint64(0xFFFFFC0000000000)
            return np.float32(as_f64(r))
        if a <= np.uint64(0x7FF0000000000000):
            return np.float32(np.inf) if d > 0 else np.float32(-np.inf)
        return round_f16(np.float32(d))
    return np.float32(np.rint(d * 16777216.0) * 5.9604644775390625e-08)


@njit(cache=True)
def _to_bits_kernel(src, out):
    for i in range(src.size):
        out[i] = f32_to_f16_bits(src[i])


@njit(cache=True)
def _round_kernel(src, out):
    for i in range(src.size):
        out[i] = round_f16(src[i])


@njit(cache=True)
def _from_bits_kernel(src, out):
    for i in range(src.size):
        out[i] = f16_bits_to_f32(src[i])


def to_f16_bits(values):
    """Array of float32-representable values -> uint16 binary16 bits (same shape), RNE."""
    src = np.ascontiguousarray(values, dtype=np.float32)
    out = np.empty(src.shape, dtype=np.uint16)
    _to_bits_kernel(src.reshape(-1), out.reshape(-1))
    return out


def from_f16_bits(bits):
    """uint16 binary16 bits -> float32 values (exact), same shape."""
    src = np.asarray(bits)
    if src.dtype != np.uint16:
        raise ValueError(f"f16 bit patterns must be uint16, got {src.dtype}; pass array.view(np.uint16)")
    src = np.ascontiguousarray(src)
    out = np.empty(src.shape, dtype=np.float32)
    _from_bits_kernel(src.reshape(-1), out.reshape(-1))
    return out


def round_to_f16(values):
    """Array -> float32 array of the nearest binary16 values (RNE), same shape."""
    return from_f16_bits(to_f16_bits(values))


# ----------------------------------------------------------------------------------------------------
# fast helpers for vectorised kernels: the same values as round_f16 / round_f16_dn and a fused binary16
# multiply-add, branch-free so that LLVM vectorises the loops that call them
# ----------------------------------------------------------------------------------------------------

def _target_has_f16c():
    """True when Numba compiles for a CPU with F16C (vcvtps2ph / vcvtph2ps): the host's features, or the ones
    NUMBA_CPU_NAME / NUMBA_CPU_FEATURES name. Without it LLVM would lower a half conversion to a library call.
    N6EMU_NO_F16C=1 forces the software helpers (to test them; Numba's cache is keyed by the source and the CPU,
    not by this switch: use it with an empty NUMBA_CACHE_DIR). Read from the environment as numba.core.config
    reads it, so that importing this module does not import Numba."""
    if os.environ.get("N6EMU_NO_F16C"):
        return False
    if not os.environ.get("NUMBA_CPU_NAME"):
        import llvmlite.binding as llb
        return bool(llb.get_host_cpu_features().get("f16c", False))
    return "+f16c" in (os.environ.get("NUMBA_CPU_FEATURES") or "")


HAS_F16C = _target_has_f16c()


@intrinsic
def _f16c_round(typingctx, x):
    """float32 -> binary16 -> float32 (LLVM fptrunc/fpext: vcvtps2ph with MXCSR rounding (RNE) + vcvtph2ps).
    Finite values and infinities: exactly round_f16; NaN: quiet, sign and top payload bits kept."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.fptrunc(args[0], ir.HalfType()), ir.FloatType())
    return types.float32(types.float32), codegen


@intrinsic
def _f16c_bits(typingctx, x):
    """float32 -> binary16 bit pattern (LLVM fptrunc + bitcast: vcvtps2ph), as uint16."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))
    return types.uint16(types.float32), codegen


_DN32 = np.uint32(0x7FC00000)


@njit(cache=True, inline="always")
def _round_sw_dn(x):
    """round_f16_dn with every path computed and selected (no branches)."""
    u = _as_u32(np.float32(x))
    a = u & np.uint32(0x7FFFFFFF)
    normal = _as_f32(np.uint32((u + np.uint32(0xFFF) + ((u >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)))
    inf = _as_f32(np.uint32((u & np.uint32(0x80000000)) | np.uint32(0x7F800000)))
    sub = np.float32(np.rint(np.float32(x) * np.float32(16777216.0))) * np.float32(5.9604644775390625e-08)
    r = normal if a < np.uint32(0x477FF000) else inf
    r = r if a >= np.uint32(0x38800000) else sub
    return r if a <= np.uint32(0x7F800000) else _as_f32(_DN32)


@njit(cache=True, inline="always")
def _round_sw(x):
    """round_f16 with every path computed and selected (no branches)."""
    u = _as_u32(np.float32(x))
    a = u & np.uint32(0x7FFFFFFF)
    normal = _as_f32(np.uint32((u + np.uint32(0xFFF) + ((u >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)))
    inf = _as_f32(np.uint32((u & np.uint32(0x80000000)) | np.uint32(0x7F800000)))
    sub = np.float32(np.rint(np.float32(x) * np.float32(16777216.0))) * np.float32(5.9604644775390625e-08)
    nan = _as_f32(np.uint32((u | np.uint32(0x00400000)) & np.uint32(0xFFFFE000)))
    r = normal if a < np.uint32(0x477FF000) else inf
    r = r if a >= np.uint32(0x38800000) else sub
    return r if a <= np.uint32(0x7F800000) else nan


if HAS_F16C:
    @njit(cache=True, inline="always")
    def round_f16_fast(x):
        """round_f16(x), branch-free (F16C conversion: NaN keeps its sign and top payload bits, quiet)."""
        return _f16c_round(np.float32(x))

    @njit(cache=True, inline="always")
    def round_f16_dn_fast(x):
        """round_f16_dn(x), branch-free (F16C conversion; any NaN -> the default NaN)."""
        y = np.float32(x)
        r = _f16c_round(y)
        return r if y == y else _as_f32(_DN32)
else:
    round_f16_fast = _round_sw
    round_f16_dn_fast = _round_sw_dn

if HAS_F16C:
    @njit(cache=True, inline="always")
    def f16_bits_fast(x):
        """f32_to_f16_bits(x) (F16C where the target has it)."""
        return _f16c_bits(np.float32(x))
else:
    f16_bits_fast = f32_to_f16_bits


@njit(cache=True, inline="always")
def fma_f16_fast(a, b, c):
    """c + a*b rounded once to binary16, any NaN -> the default NaN: the value of emu.frontend.helium_f16._fma
    for binary16 operands a, b, c. a*b is exact in float32 (22 bits); TwoSum gives the exact sum s + err; s is
    moved to round-to-odd (24 bits >= 11 + 2, so rounding it to binary16 is the single rounding of the exact
    sum); infinities and NaN skip the adjustment (err is NaN there)."""
    p = np.float32(a) * np.float32(b)
    cc = np.float32(c)
    s = p + cc
    bb = s - p
    err = (p - (s - bb)) + (cc - bb)
    u = _as_u32(s)
    adjust = (err != np.float32(0.0)) & (abs(s) < np.float32(np.inf)) & ((u & np.uint32(1)) == np.uint32(0))
    step = np.uint32(1) if (err > np.float32(0.0)) == (s > np.float32(0.0)) else np.uint32(0xFFFFFFFF)
    u2 = u + step if adjust else u
    return round_f16_dn_fast(_as_f32(np.uint32(u2)))


@njit(cache=True, inline="always")
def fma_f16_finite_fast(a, b, c):
    """fma_f16_fast for operands whose exact result is finite and below the binary16 overflow threshold's
    neighbourhood in float32 (no infinity or NaN anywhere): the same value without the NaN/infinity guards."""
    p = np.float32(a) * np.float32(b)
    cc = np.float32(c)
    s = p + cc
    bb = s - p
    err = (p - (s - bb)) + (cc - bb)
    u = _as_u32(s)
    adjust = (err != np.float32(0.0)) & ((u & np.uint32(1)) == np.uint32(0))
    step = np.uint32(1) if (err > np.float32(0.0)) == (s > np.float32(0.0)) else np.uint32(0xFFFFFFFF)
    return round_f16_fast(_as_f32(np.uint32(u + step if adjust else u)))
