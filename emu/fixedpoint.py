"""The only home of rounding and requantization primitives (gemmlowp / TFLite / CMSIS-NN semantics).

Two halves:
- prepare side (plain Python, float math allowed): derive (multiplier, shift) pairs from real scales
  exactly as TFLite's QuantizeMultiplier does. Convention: shift > 0 means left shift.
- eval side (@njit, integer only): SRDHM, RDBP and requantize on int32 values with int64 products,
  results wrapped to int32 as an MCU would.

Rounding modes are named, never global: `DOUBLE_ROUNDING` (TFLite/CMSIS-NN default: SRDHM then RDBP)
and `SINGLE_ROUNDING` (CMSIS_NN_USE_SINGLE_ROUNDING / TFLITE_SINGLE_ROUNDING: one rounding step). The
weighted kernels also take `FLOAT32_RNE` (ONNX Runtime / MLAS: float32 per-channel scale, round half to
even; see requantize_float32), which is not a fixed-point rounding and so not in ROUNDING_NAMES.
"""
import math
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from emu.jit import intrinsic, njit, types

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

# Named rounding modes. Kernels take the integer code; results and manifests record the name.
DOUBLE_ROUNDING = 0
SINGLE_ROUNDING = 1
ROUNDING_NAMES = {"double": DOUBLE_ROUNDING, "single": SINGLE_ROUNDING}
# Requantization mode of the weighted kernels' epilogue (conv/depthwise/fully connected): float32 scale per
# output channel instead of (multiplier, shift); the onnxruntime profile's mode.
FLOAT32_RNE = 2


def rounding_code(name):
    """Map a rounding name ('double' | 'single') to the integer code kernels take."""
    try:
        return ROUNDING_NAMES[name]
    except KeyError:
        raise ValueError(f"unknown rounding {name!r}; expected one of {sorted(ROUNDING_NAMES)}") from None


# ----------------------------------------------------------------------------------------------------
# prepare side: float scale -> (int32 multiplier, shift)
# ----------------------------------------------------------------------------------------------------

def round_half_away(x):
    """C's round()/std::round on a double: ties away from zero (Python's round() is half-even)."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


@dataclass(frozen=True)
class Derivation:
    """How a converter turns real scales into (M, shift): the ratio's arithmetic and M's width and rounding.
    ratio "float64": s_in*s_w/s_out in double from the float32 scales (TFLite; its FC multiplies s_in*s_w in float32
    first), "float32": every step in float32; bits: fraction bits of M (31: an int32 multiplier, 15: an int16 one as
    in TOSA RESCALE scale32=false; stored shifted to 31 bits so one kernel evaluates both); mantissa: how M is
    rounded, "half-away" (TFLite's std::round) or "truncate" (toward zero)."""
    name: str
    ratio: str = "float64"
    bits: int = 31
    mantissa: str = "half-away"

    def __post_init__(self):
        if self.ratio not in ("float64", "float32") or self.mantissa not in ("half-away", "truncate") \
                or not 1 <= self.bits <= 31:
            raise ValueError(f"derivation {self.name!r}: ratio float64|float32, bits 1..31, mantissa "
                             f"half-away|truncate; got {self.ratio!r}, {self.bits!r}, {self.mantissa!r}")

    def ratio_of(self, a, b, c):
        """a*b/c of float32 scales in this derivation's arithmetic."""
        a, b, c = np.float32(a), np.float32(b), np.float32(c)
        if self.ratio == "float32":
            return float(np.float32(np.float32(a * b) / c))
        return float(a) * float(b) / float(c)


# The multiplier derivations fit tries ([model].rounding "<requantizer>/<derivation>").
DERIVATIONS = {d.name: d for d in (
    Derivation("tflite"),                          # TFLite QuantizeMultiplier (the default everywhere)
    Derivation("float32", ratio="float32"),        # a converter computing the ratio in float32
    Derivation("truncate", mantissa="truncate"),   # M truncated instead of rounded
    Derivation("m16", bits=15),                    # an int16 multiplier (TOSA scale32=false)
)}
TFLITE_DERIVATION = DERIVATIONS["tflite"]


def quantize_multiplier(real_multiplier, single_rounding=False, derivation=TFLITE_DERIVATION):
    """TFLite QuantizeMultiplier: real = M * 2^(shift-31), M in [2^30, 2^31) (or 0). shift > 0 = left.

    q, e = frexp(d); M = round_half_away(q * 2^31); if M == 2^31: M /= 2, e += 1; if e < -31: M = e = 0.
    With single rounding TFLite also clamps shift > 30 to (2^31-1, 30). Another `derivation` rounds q to its own
    fraction bits (round half away or truncate) and returns M shifted back to 31 bits.
    """
    d = float(real_multiplier)
    if d == 0.0:
        return 0, 0
    if not math.isfinite(d):
        raise ValueError(f"cannot quantize a non-finite multiplier {d!r}")
    bits = derivation.bits
    q, e = math.frexp(d)
    m = round_half_away(q * (1 << bits)) if derivation.mantissa == "half-away" else int(q * (1 << bits))
    if abs(m) == (1 << bits):
        m //= 2
        e += 1
    if e < -31:
        return 0, 0
    if single_rounding and e > 30:
        return ((1 << bits) - 1) << (31 - bits), 30
    return int(m) << (31 - bits), int(e)


def quantize_multiplier_greater_than_one(real_multiplier):
    """TFLite QuantizeMultiplierGreaterThanOne: requires real > 1; returns (M, left_shift >= 0)."""
    d = float(real_multiplier)
    if not d > 1.0:
        raise ValueError(f"multiplier must be > 1, got {d!r}")
    m, shift = quantize_multiplier(d)
    if shift < 0:
        raise ValueError(f"multiplier {d!r} gave a negative shift {shift}")
    return m, shift


def quantize_multiplier_smaller_than_one(real_multiplier):
    """TFLite QuantizeMultiplierSmallerThanOneExp: requires 0 < real < 1; returns (M, shift <= 0)."""
    d = float(real_multiplier)
    if not 0.0 < d < 1.0:
        raise ValueError(f"multiplier must be in (0, 1), got {d!r}")
    m, shift = quantize_multiplier(d)
    if shift > 0:
        raise ValueError(f"multiplier {d!r} gave a positive shift {shift}")
    return m, shift


def per_channel_multipliers(input_scale, weight_scales, output_scale, single_rounding=False,
                            derivation=TFLITE_DERIVATION):
    """Conv/depthwise (TFLite PopulateConvolutionQuantizationParams): d = double(s_in)*double(s_w[c])/double(s_out)
    (or the derivation's own arithmetic). Returns int32 arrays (multipliers, shifts).
    """
    ws = np.asarray(weight_scales, dtype=np.float32).reshape(-1)
    mults = np.empty(ws.size, np.int32)
    shifts = np.empty(ws.size, np.int32)
    for c in range(ws.size):
        real = derivation.ratio_of(input_scale, ws[c], output_scale)
        mults[c], shifts[c] = quantize_multiplier(real, single_rounding, derivation)
    return mults, shifts


def per_tensor_fc_multiplier(input_scale, weight_scale, output_scale, single_rounding=False,
                             derivation=TFLITE_DERIVATION):
    """Per-tensor fully connected (GetQuantizedConvolutionMultipler as tflite-micro computes it today):
    double(s_in) * double(s_w) / double(s_out). (TFLite before 2023 rounded the product s_in*s_w to float32 first;
    tests/test_tflite_oracle.py shows the installed tflite-micro does not.)"""
    real = derivation.ratio_of(input_scale, weight_scale, output_scale)
    return quantize_multiplier(real, single_rounding, derivation)


# ----------------------------------------------------------------------------------------------------
# eval side: integer-only, Numba
# ----------------------------------------------------------------------------------------------------

@njit(cache=True)
def wrap_int32(x):
    """Two's-complement wrap of an int64 to int32 (what a 32-bit MCU register keeps)."""
    return np.int32(((np.int64(x) + 2147483648) & 0xFFFFFFFF) - 2147483648)


@njit(cache=True)
def srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul: int32 x int32 -> int32, (a*b + 2^30) >> 31 (ties to +inf),
    saturating the single overflow case a == b == INT32_MIN to INT32_MAX."""
    a64 = np.int64(a)
    b64 = np.int64(b)
    if a64 == -2147483648 and b64 == -2147483648:
        return np.int32(2147483647)
    return np.int32((a64 * b64 + np.int64(1073741824)) >> np.int64(31))


@njit(cache=True)
def rdbp(x, exponent):
    """gemmlowp RoundingDivideByPOT: int32 x >> exponent (0..31), ties away from zero."""
    x64 = np.int64(x)
    e = np.int64(exponent)
    mask = (np.int64(1) << e) - np.int64(1)
    remainder = x64 & mask
    threshold = (mask >> np.int64(1)) + (np.int64(1) if x64 < 0 else np.int64(0))
    return np.int32((x64 >> e) + (np.int64(1) if remainder > threshold else np.int64(0)))


@njit(cache=True)
def requantize_double(acc, multiplier, shift):
    """TFLite MultiplyByQuantizedMultiplier: RDBP(SRDHM(int32(acc << max(shift,0)), M), max(-shift,0)).
    The left shift is an int32 multiply that wraps like the MCU."""
    s = np.int64(shift)
    left = s if s > 0 else np.int64(0)
    right = -s if s < 0 else np.int64(0)
    return rdbp(srdhm(wrap_int32(np.int64(acc) << left), multiplier), right)


@njit(cache=True)
def requantize_single(acc, multiplier, shift):
    """Single rounding (TFLITE_SINGLE_ROUNDING / CMSIS_NN_USE_SINGLE_ROUNDING):
    (int64(acc) * M + 2^(30-shift)) >> (31-shift), wrapped to int32."""
    total = np.int64(31) - np.int64(shift)
    prod = np.int64(acc) * np.int64(multiplier)
    return wrap_int32((prod + (np.int64(1) << (total - np.int64(1)))) >> total)


@njit(cache=True)
def requantize(acc, multiplier, shift, rounding):
    """Requantize an int32 accumulator with the named rounding code (DOUBLE_ROUNDING | SINGLE_ROUNDING)."""
    if rounding == 1:
        return requantize_single(acc, multiplier, shift)
    return requantize_double(acc, multiplier, shift)


@njit(cache=True)
def requantize_float32(acc, scale, output_offset, act_min, act_max):
    """MLAS requantization (MlasRequantizeOutput, x86 order), all float32, no float64 anywhere:
    v = float32(int32 acc) * float32 scale; v = min(max(v, float32(act_min - output_offset)),
    float32(act_max - output_offset)); result = int32(rint(v)) + output_offset (rint: round half to even).
    Returns the int32 output value, already inside [act_min, act_max]."""
    v = np.float32(acc) * np.float32(scale)
    lo = np.float32(act_min - output_offset)
    hi = np.float32(act_max - output_offset)
    if v < lo:
        v = lo
    if v > hi:
        v = hi
    return np.int32(np.int32(np.rint(v)) + np.int32(output_offset))


# ---- precomputed epilogue: the per-channel pieces of requantize_double/single, derived once at bind time ----
# qp = prepare_requantize(mult, shift, rounding): int64 [QP_ROWS, C], one row per piece, contiguous over channels.
QP_MULT, QP_LEFT, QP_RIGHT, QP_NUDGE_POS, QP_NUDGE_NEG = range(5)
QP_ROWS = 5


# How the one shift of SINGLE_ROUNDING rounds the 64-bit product p = acc * M by 2^right (nudges added before >>):
# "half-up" (TFLite/CMSIS-NN single rounding: +2^(right-1) for every p), "half-away" (ties away from zero),
# "floor" (a bare arithmetic shift), "toward-zero" (truncating division), "tosa-double" (TOSA RESCALE double_round:
# half-up, plus 2^30 for p >= 0 / minus 2^30 for p < 0 when right > 31, mimicking double rounding in one shift).
# Another accelerator's rounding is a new entry here, never new kernel code.
SINGLE_TIES = ("half-up", "half-away", "floor", "toward-zero", "tosa-double")


def prepare_requantize(mult, shift, rounding, tie="half-up"):
    """Per-channel pieces of the fixed-point requantizer (int32 arrays mult/shift of C values, rounding
    DOUBLE_ROUNDING or SINGLE_ROUNDING) -> int64 qp [QP_ROWS, C] for requantize_prepared:
    double: M, left = max(shift, 0), right = max(-shift, 0), nudge for v >= 0 = 2^(right-1) and for v < 0 =
    2^(right-1) - 1 (both 0 when right == 0): RDBP(v, right) == (v + nudge(v)) >> right on int32 v.
    single: M, left 0, right = 31 - shift, nudges for p >= 0 / p < 0 by `tie` (SINGLE_TIES): half-up 2^(30-shift)
    both; half-away 2^(30-shift) / 2^(30-shift) - 1; floor 0 / 0; toward-zero 0 / 2^(31-shift) - 1;
    tosa-double 2^(30-shift) +/- 2^30 when right > 31, else as half-up.
    Shifts must lie in backends.SHIFT_RANGE (double -62..62, single -31..30)."""
    mult = np.ascontiguousarray(mult, dtype=np.int32).reshape(-1)
    shift = np.ascontiguousarray(shift, dtype=np.int32).reshape(-1)
    if mult.shape != shift.shape:
        raise ValueError(f"mult has {mult.size} values and shift {shift.size}; pass one of each per channel")
    if rounding not in (DOUBLE_ROUNDING, SINGLE_ROUNDING):
        raise ValueError(f"rounding {rounding!r} has no fixed-point epilogue; pass DOUBLE_ROUNDING or SINGLE_ROUNDING")
    if tie not in SINGLE_TIES or (tie != "half-up" and rounding != SINGLE_ROUNDING):
        raise ValueError(f"tie {tie!r} is not a rounding of the single-rounding shift; use one of {SINGLE_TIES} "
                         f"with SINGLE_ROUNDING")
    qp = np.empty((QP_ROWS, mult.size), np.int64)
    _fill_requantize_pieces(mult, shift, rounding, qp)
    if tie != "half-up":
        half = qp[QP_NUDGE_POS].copy()
        tosa = np.where(qp[QP_RIGHT] > 31, np.int64(1) << 30, 0)
        qp[QP_NUDGE_POS] = {"half-away": half, "floor": 0, "toward-zero": 0, "tosa-double": half + tosa}[tie]
        qp[QP_NUDGE_NEG] = {"half-away": half - 1, "floor": 0, "toward-zero": 2 * half - 1,
                            "tosa-double": half - tosa}[tie]
    return qp


@njit(cache=True)
def _fill_requantize_pieces(mult, shift, rounding, qp):
    """prepare_requantize's loop (integer only)."""
    for c in range(mult.shape[0]):
        s = np.int64(shift[c])
        qp[QP_MULT, c] = np.int64(mult[c])
        if rounding == 1:
            qp[QP_LEFT, c] = 0
            qp[QP_RIGHT, c] = np.int64(31) - s
            qp[QP_NUDGE_POS, c] = np.int64(1) << (np.int64(30) - s)
            qp[QP_NUDGE_NEG, c] = np.int64(1) << (np.int64(30) - s)
        else:
            right = -s if s < 0 else np.int64(0)
            qp[QP_LEFT, c] = s if s > 0 else np.int64(0)
            qp[QP_RIGHT, c] = right
            half = (np.int64(1) << (right - np.int64(1))) if right > 0 else np.int64(0)
            qp[QP_NUDGE_POS, c] = half
            qp[QP_NUDGE_NEG, c] = half - np.int64(1) if right > 0 else np.int64(0)


@njit(cache=True, inline="always")
def requantize_pieces(acc, m, left, right, nudge_pos, nudge_neg, rounding):
    """requantize(acc, mult, shift, rounding) from one channel's prepare_requantize pieces (int64), without branches
    on the data: double: x = int32(acc << left) (wraps), v = min((x*M + 2^30) >> 31, INT32_MAX) (SRDHM: only
    x == M == INT32_MIN exceeds), (v + nudge(v)) >> right; single: p = acc*M,
    int32((p + (nudge_neg if p < 0 else nudge_pos)) >> right)."""
    m32 = np.int64(np.int32(m))     # M is an int32 (qp stores it widened): tells LLVM to use a 32x32->64 multiply
    if rounding == 1:
        p = np.int64(acc) * m32
        return np.int32((p + (nudge_neg if p < 0 else nudge_pos)) >> right)
    x = np.int64(np.int32(np.int64(acc) << left))
    v = min((x * m32 + np.int64(1073741824)) >> np.int64(31), np.int64(2147483647))
    return np.int32((v + (nudge_neg if v < 0 else nudge_pos)) >> right)


@njit(cache=True, inline="always")
def requantize_prepared(acc, qp, c, rounding):
    """requantize(acc, mult[c], shift[c], rounding) from qp = prepare_requantize(mult, shift, rounding)."""
    cc = np.uint64(c)
    return requantize_pieces(acc, qp[QP_MULT, cc], qp[QP_LEFT, cc], qp[QP_RIGHT, cc], qp[QP_NUDGE_POS, cc],
                             qp[QP_NUDGE_NEG, cc], rounding)


@njit(cache=True, inline="always")
def requantize_channel(acc, qp, scale, c, output_offset, act_min, act_max, rounding):
    """The weighted kernels' epilogue for accumulator `acc` of channel c -> int32 output value in [act_min, act_max].
    scale None (DOUBLE_ROUNDING / SINGLE_ROUNDING): clamp(requantize_prepared(acc, qp, c, rounding) + output_offset)
    with qp = prepare_requantize(mult, shift, rounding) (== requantize(acc, mult[c], shift[c], rounding));
    scale a float32 array (FLOAT32_RNE): requantize_float32(acc, scale[c], ...), qp unused.
    `scale is None` is decided by type when Numba compiles the caller (inlined here), so each mode gets its own
    machine code without a run-time branch."""
    if scale is not None:
        return requantize_float32(acc, scale[np.uint64(c)], output_offset, act_min, act_max)
    v = np.int64(requantize_prepared(acc, qp, c, rounding)) + np.int64(output_offset)
    return np.int32(max(min(v, np.int64(act_max)), np.int64(act_min)))


@njit(cache=True, inline="always")
def requantize_row(acc, qp, scale, output_offset, act_min, act_max, rounding, out, out_start):
    """requantize_channel of every acc[c] (one output pixel's channels) into int8 out[out_start + c]; the fixed-point
    loop reads qp's rows as 1-D arrays (contiguous over c: LLVM vectorizes it)."""
    if scale is not None:
        for c in range(acc.shape[0]):
            out[np.uint64(out_start + c)] = np.int8(requantize_float32(acc[np.uint64(c)], scale[np.uint64(c)],
                                                                       output_offset, act_min, act_max))
    else:
        m, left, right, nudge_pos, nudge_neg = qp[QP_MULT], qp[QP_LEFT], qp[QP_RIGHT], qp[QP_NUDGE_POS], qp[QP_NUDGE_NEG]
        off = np.int64(output_offset)
        lo = np.int64(act_min)
        hi = np.int64(act_max)
        for c in range(acc.shape[0]):
            cc = np.uint64(c)
            v = np.int64(requantize_pieces(acc[cc], m[cc], left[cc], right[cc], nudge_pos[cc], nudge_neg[cc],
                                           rounding)) + off
            out[np.uint64(out_start + c)] = np.int8(max(min(v, hi), lo))


@njit(cache=True)
def saturate(x, lo, hi):
    """Clamp an integer to [lo, hi] (the activation range)."""
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


@njit(cache=True)
def saturate_int16(x):
    """Arm __SSAT(x, 16): an integer clamped to [-2^15, 2^15 - 1], as int64."""
    return saturate(np.int64(x), np.int64(-32768), np.int64(32767))


@njit(cache=True)
def saturate_int32(x):
    """Arm __SSAT(x, 32) / CMSIS-DSP clip_q63_to_q31: an integer clamped to [-2^31, 2^31 - 1], as int64."""
    return saturate(np.int64(x), np.int64(-2147483648), np.int64(2147483647))


# ----------------------------------------------------------------------------------------------------
# gemmlowp fixed-point transcendental helpers (softmax_s8; TFLM / CMSIS-NN int8 softmax)
# ----------------------------------------------------------------------------------------------------

@njit(cache=True)
def saturating_shift_left(x, exponent):
    """gemmlowp SaturatingRoundingMultiplyByPOT with exponent 1..30: int32 x * 2^exponent, saturated to int32."""
    limit = np.int64(1) << np.int64(31 - exponent)
    x64 = np.int64(x)
    if x64 >= limit:
        return np.int32(2147483647)
    if x64 < -limit:
        return np.int32(-2147483648)
    return np.int32(x64 << np.int64(exponent))


@njit(cache=True)
def rounding_half_sum(a, b):
    """gemmlowp RoundingHalfSum on int32: (a + b + sign(a+b)) / 2 with C truncating division (ties away from 0)."""
    s = np.int64(a) + np.int64(b)
    if s >= 0:
        return np.int32((s + np.int64(1)) // np.int64(2))
    return np.int32(-((-s + np.int64(1)) // np.int64(2)))


@njit(cache=True)
def exp_on_interval_between_negative_one_quarter_and_0_excl(a):
    """exp(a) for a in [-1/4, 0), Q0.31 in and out: gemmlowp's 4th-order Taylor expansion around -1/8."""
    constant_term = np.int32(1895147668)      # exp(-1/8) in Q0.31
    constant_1_over_3 = np.int32(715827883)   # 1/3 in Q0.31
    x = wrap_int32(np.int64(a) + np.int64(1 << 28))   # a + 1/8
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rdbp(x4, 2)
    poly = rdbp(wrap_int32(np.int64(srdhm(wrap_int32(np.int64(x4_over_4) + np.int64(x3)), constant_1_over_3))
                           + np.int64(x2)), 1)
    return wrap_int32(np.int64(constant_term) + np.int64(srdhm(constant_term, wrap_int32(np.int64(x) + np.int64(poly)))))


# exp(-2^k) in Q0.31 for k = -2..4: the barrel-shifter factors of gemmlowp exp_on_negative_values.
_EXP_BARREL = (1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242)


@njit(cache=True)
def exp_on_negative_values(a):
    """gemmlowp exp_on_negative_values for a Q5.26 input a <= 0 (softmax's 5 integer bits) -> Q0.31; exp(0) = INT32_MAX."""
    one_quarter = np.int64(1) << np.int64(24)
    a64 = np.int64(a)
    a_mod_quarter_minus_one_quarter = (a64 & (one_quarter - np.int64(1))) - one_quarter
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        saturating_shift_left(np.int32(a_mod_quarter_minus_one_quarter), 5))
    remainder = wrap_int32(a_mod_quarter_minus_one_quarter - a64)
    for i in range(7):
        if (np.int64(remainder) >> np.int64(24 + i)) & np.int64(1):
            result = srdhm(result, np.int32(_EXP_BARREL[i]))
    if a64 == 0:
        return np.int32(2147483647)
    return result


@njit(cache=True)
def one_over_one_plus_x_for_x_in_0_1(a):
    """gemmlowp one_over_one_plus_x_for_x_in_0_1: Q0.31 a in [0, 1) -> Q0.31 1/(1+a); Newton-Raphson in Q2.29, 3 steps."""
    half_denominator = rounding_half_sum(a, np.int32(2147483647))
    constant_48_over_17 = np.int64(1515870810)       # Q2.29
    constant_neg_32_over_17 = np.int32(-1010580540)  # Q2.29
    one_q2 = np.int64(1 << 29)
    x = wrap_int32(constant_48_over_17 + np.int64(srdhm(half_denominator, constant_neg_32_over_17)))
    for _ in range(3):
        one_minus_half_denominator_times_x = wrap_int32(one_q2 - np.int64(srdhm(half_denominator, x)))
        x = wrap_int32(np.int64(x) + np.int64(saturating_shift_left(srdhm(x, one_minus_half_denominator_times_x), 2)))
    return saturating_shift_left(x, 1)


@intrinsic
def _ctlz32(typingctx, x):
    """LLVM ctlz on the low 32 bits of an int64 (defined for 0: 32), returned as int64."""
    if x != types.int64:
        return None

    def codegen(context, builder, signature, args):
        low = builder.trunc(args[0], ir.IntType(32))
        count = builder.ctlz(low, ir.Constant(ir.IntType(1), 0))
        return builder.zext(count, ir.IntType(64))
    return types.int64(types.int64), codegen


@njit(cache=True)
def count_leading_zeros32(x):
    """Arm __CLZ: leading zero bits of the low 32 bits of x (32 for 0), as int64."""
    return _ctlz32(np.int64(x))
