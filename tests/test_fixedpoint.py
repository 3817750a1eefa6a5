"""emu/fixedpoint.py against exact arbitrary-precision oracles (Python ints and Fractions).

The oracles follow the definitions, not the module's code: TFLite QuantizeMultiplier via frexp (written here,
in Fractions); gemmlowp SRDHM / RDBP and TFLite MultiplyByQuantizedMultiplier double and single rounding are
tests/naive.py's (the one naive reference of the kernels and their primitives).
"""
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st
from numba import njit

import naive
from emu import fixedpoint as fx
from emu.kernels.backends import SHIFT_RANGE

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
int32s = st.one_of(st.sampled_from([INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX - 1, INT32_MAX, 1 << 30, -(1 << 30)]),
                   st.integers(INT32_MIN, INT32_MAX))
PROPS = settings(max_examples=200, deadline=None)


# ---- exact oracles ------------------------------------------------------------------------------------

def round_half_away(fr):
    """Nearest integer to a Fraction, ties away from zero."""
    q = math.floor(abs(fr) + Fraction(1, 2))
    return q if fr >= 0 else -q


def oracle_quantize_multiplier(d, single_rounding=False, bits=31, truncate=False):
    """frexp definition: d = q * 2^e, 0.5 <= |q| < 1; M = round_half_away(q * 2^31) (+ fix-ups), exactly.
    bits < 31: q rounded to `bits` fraction bits (truncate: toward zero), returned scaled to 31 bits."""
    if d == 0:
        return 0, 0
    exact = Fraction(d)
    e = abs(exact).numerator.bit_length() - abs(exact).denominator.bit_length()   # within 1 of the answer
    while abs(exact) / Fraction(2) ** e >= 1:
        e += 1
    while abs(exact) / Fraction(2) ** e < Fraction(1, 2):
        e -= 1
    scaled = exact / Fraction(2) ** e * (1 << bits)
    m = math.trunc(scaled) if truncate else round_half_away(scaled)
    if abs(m) == 1 << bits:
        m //= 2
        e += 1
    if e < -31:
        return 0, 0
    if single_rounding and e > 30:
        return ((1 << bits) - 1) << (31 - bits), 30
    return m << (31 - bits), e


def round_f32(fr):
    """A Fraction rounded to the nearest float32 (ties to even; normal range), as a Fraction."""
    e = abs(fr).numerator.bit_length() - abs(fr).denominator.bit_length()
    while abs(fr) >= Fraction(2) ** (e + 1):
        e += 1
    while abs(fr) < Fraction(2) ** e:
        e -= 1
    unit = Fraction(2) ** (e - 23)
    q, r = divmod(fr / unit, 1)
    q += 1 if r > Fraction(1, 2) or (r == Fraction(1, 2) and q % 2) else 0
    return q * unit


# ---- quantize_multiplier -----------------------------------------------------------------------------

scales = st.one_of(
    st.floats(min_value=1e-12, max_value=1e6, allow_nan=False),
    st.floats(min_value=-1e6, max_value=-1e-12),
    st.floats(min_value=5e-324, max_value=1e-300),      # tiny: the e < -31 rule
    st.floats(min_value=1e9, max_value=1e300),          # huge: shifts > 30
    st.integers(0, 2 ** 53).map(lambda k: (k + 0.5) / 2 ** 31 if k < 2 ** 31 else float(k)),
)


@PROPS
@given(scales, st.booleans())
@example(1.0 - 2.0 ** -33, False)          # q * 2^31 rounds up to 2^31: M /= 2, e += 1
@example(-(1.0 - 2.0 ** -33), False)
@example((2 ** 30 + 0.5) / 2 ** 31, False)  # exact tie: away from zero
@example(-(2 ** 30 + 0.5) / 2 ** 31, False)
@example(2.0 ** -32, False)                 # e == -31: kept
@example(2.0 ** -33, False)                 # e == -32: flushed to (0, 0)
@example(2.0 ** 31, True)                   # e == 32 with single rounding: (INT32_MAX, 30)
@example(0.0, False)
def test_quantize_multiplier_matches_frexp_definition(d, single):
    m, e = fx.quantize_multiplier(d, single)
    assert (m, e) == oracle_quantize_multiplier(d, single)
    assert isinstance(m, int) and isinstance(e, int)
    if m and not (single and e == 30 and m == INT32_MAX):
        assert (1 << 30) <= abs(m) < (1 << 31) or abs(m) == 1 << 30
        # M * 2^(e-31) reproduces d to within half a unit of M
        assert abs(Fraction(d) - Fraction(m) * Fraction(2) ** (e - 31)) <= Fraction(2) ** (e - 32)


@PROPS
@given(scales, st.booleans(), st.sampled_from(sorted(fx.DERIVATIONS)))
@example(1.0 - 2.0 ** -17, False, "m16")       # q * 2^15 rounds up to 2^15: M /= 2, e += 1
@example(1.0 - 2.0 ** -17, False, "truncate")  # ...but truncated it stays below
@example((2 ** 14 + 0.5) / 2 ** 15, False, "m16")   # exact tie of the int16 multiplier: away from zero
@example(2.0 ** 31, True, "m16")               # shift clamp with an int16 multiplier: (2^15 - 1) << 16
def test_multiplier_derivations_match_the_frexp_definition(d, single, name):
    der = fx.DERIVATIONS[name]
    got = fx.quantize_multiplier(d, single, der)
    assert got == oracle_quantize_multiplier(d, single, der.bits, der.mantissa == "truncate")
    assert got[0] % (1 << (31 - der.bits)) == 0          # an int16 multiplier keeps 16 low zero bits


def test_derivation_ratios_against_fractions():
    rng = np.random.default_rng(3)
    f32, f64 = fx.DERIVATIONS["float32"], fx.DERIVATIONS["tflite"]
    differ = 0
    for a, b, c in rng.uniform(1e-4, 1e-1, (2000, 3)).astype(np.float32):
        fa, fb, fc = Fraction(float(a)), Fraction(float(b)), Fraction(float(c))
        assert Fraction(f32.ratio_of(a, b, c)) == round_f32(round_f32(fa * fb) / fc)
        assert f64.ratio_of(a, b, c) == float(fa * fb) / float(fc)                 # TFLite conv and FC: in double
        differ += fx.quantize_multiplier(f32.ratio_of(a, b, c)) != fx.quantize_multiplier(f64.ratio_of(a, b, c))
    assert differ > 100        # the float32 ratio changes M in a measurable share of layers


def test_quantize_multiplier_fixups_explicit():
    assert fx.quantize_multiplier(1.0 - 2.0 ** -33) == (1 << 30, 1)
    assert fx.quantize_multiplier(2.0 ** -32) == (1 << 30, -31)
    assert fx.quantize_multiplier(2.0 ** -33) == (0, 0)
    assert fx.quantize_multiplier(0.5) == (1 << 30, 0)
    assert fx.quantize_multiplier((2 ** 30 + 0.5) / 2 ** 31) == (2 ** 30 + 1, 0)
    with pytest.raises(ValueError, match="non-finite"):
        fx.quantize_multiplier(float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        fx.quantize_multiplier(float("inf"))


@PROPS
@given(st.floats(min_value=1.0, max_value=2.0 ** 31, exclude_min=True))
def test_quantize_multiplier_greater_than_one(d):
    m, shift = fx.quantize_multiplier_greater_than_one(d)
    assert (m, shift) == oracle_quantize_multiplier(d)
    assert shift >= 0


@pytest.mark.parametrize("d", [1.0, 0.5, 0.0, -3.0])
def test_quantize_multiplier_greater_than_one_rejects(d):
    with pytest.raises(ValueError, match="must be > 1"):
        fx.quantize_multiplier_greater_than_one(d)


def test_softmax_prepare_example_from_design():
    """DESIGN 3.1: s_in 0.14469251 -> mult 1242899197, shift 24, diff_min -124, with
    real = min(beta * s_in * 2^26, 2^31 - 1) and diff_min = -floor(31 * 2^26 / 2^shift)."""
    real = min(1.0 * 0.14469251 * 2 ** 26, 2.0 ** 31 - 1)
    mult, shift = fx.quantize_multiplier_greater_than_one(real)
    diff_min = -math.floor(Fraction(31 * 2 ** 26, 2 ** shift))
    assert (mult, shift, diff_min) == (1242899197, 24, -124)
    # the same decimal rounded to float32 first (as a .tflite stores it) gives a multiple of 2^7
    assert fx.quantize_multiplier_greater_than_one(float(np.float32(0.14469251)) * 2 ** 26) == (1242899200, 24)


# ---- SRDHM / RDBP ------------------------------------------------------------------------------------

@PROPS
@given(int32s, int32s)
@example(INT32_MIN, INT32_MIN)
@example(INT32_MIN, INT32_MAX)
@example(1, 1 << 30)        # exact tie +0.5 -> 1
@example(-1, 1 << 30)       # exact tie -0.5 -> 0 (toward +inf)
@example(3, 1 << 30)        # 1.5 -> 2
@example(-3, 1 << 30)       # -1.5 -> -1
def test_srdhm(a, b):
    assert int(fx.srdhm(a, b)) == naive.srdhm(a, b)


@PROPS
@given(st.integers(-(1 << 20), 1 << 20), st.integers(0, 30))
def test_srdhm_exact_ties(k, p):
    """a*b = (2k+1) * 2^30 exactly: the result is k+1 (ties toward +inf) for either sign."""
    a = (2 * k + 1) * (1 << p)
    b = 1 << (30 - p)
    if INT32_MIN <= a <= INT32_MAX and b <= INT32_MAX:
        assert int(fx.srdhm(a, b)) == k + 1


@PROPS
@given(int32s, st.integers(0, 31))
@example(-3, 1)   # -1.5 -> -2
@example(3, 1)    # 1.5 -> 2
@example(-1, 1)   # -0.5 -> -1
@example(INT32_MIN, 31)
@example(INT32_MAX, 31)
def test_rdbp(x, e):
    assert int(fx.rdbp(x, e)) == naive.rdbp(x, e)


@PROPS
@given(st.integers(-(1 << 10), 1 << 10), st.integers(1, 20))
def test_rdbp_ties_away_from_zero(k, e):
    x = (2 * k + 1) << (e - 1)                 # exactly (k + 1/2) * 2^e
    expected = k + 1 if k >= 0 else k          # away from zero
    assert int(fx.rdbp(x, e)) == expected


# ---- requantize -------------------------------------------------------------------------------------------

accs = st.one_of(st.sampled_from([INT32_MIN, INT32_MAX, 0, -1, 1]), st.integers(-(1 << 20), 1 << 20), int32s)
mults = st.one_of(st.sampled_from([0, 1 << 30, INT32_MAX, INT32_MIN]), st.integers(1 << 30, INT32_MAX), int32s)


@PROPS
@given(accs, mults, st.integers(-31, 30))
@example(INT32_MAX, INT32_MAX, 30)    # left shift wraps
@example(INT32_MIN, INT32_MIN, 0)     # SRDHM saturation
@example(3, 1 << 30, 31 - 31)
@example(1 << 24, 1 << 30, 8)         # (1<<24) << 8 = 2^32 wraps to 0
def test_requantize_double(acc, m, s):
    want = naive.requantize(acc, m, s, fx.DOUBLE_ROUNDING)
    assert int(fx.requantize_double(acc, m, s)) == want
    assert int(fx.requantize(acc, m, s, fx.DOUBLE_ROUNDING)) == want


@PROPS
@given(accs, mults, st.integers(-31, 30))
@example(INT32_MIN, INT32_MIN, 30)
@example(INT32_MAX, INT32_MAX, -31)
@example(1, 1 << 30, 0)               # 0.5 -> 1 (ties toward +inf)
@example(-1, 1 << 30, 0)              # -0.5 -> 0
def test_requantize_single(acc, m, s):
    want = naive.requantize(acc, m, s, fx.SINGLE_ROUNDING)
    assert int(fx.requantize_single(acc, m, s)) == want
    assert int(fx.requantize(acc, m, s, fx.SINGLE_ROUNDING)) == want


# ---- precomputed epilogue (prepare_requantize + requantize_prepared / requantize_row) ------------------------

@njit
def _prepared_all(accs, qp, rounding, out):
    """requantize_prepared of every acc against every channel of qp: out[c, i]."""
    for c in range(qp.shape[1]):
        for i in range(accs.shape[0]):
            out[c, i] = fx.requantize_prepared(accs[i], qp, c, rounding)


@njit
def _reference_all(accs, mult, shift, rounding, out):
    for c in range(mult.shape[0]):
        for i in range(accs.shape[0]):
            out[c, i] = fx.requantize(accs[i], mult[c], shift[c], rounding)


# accumulators: the int32 extremes, ties of every right shift (+-2^k, +-(2^k +- 1), +-3*2^(k-1)), random int32
_EDGE_ACCS = np.unique(np.array(
    [INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX - 1, INT32_MAX]
    + [v for k in range(31) for b in (1 << k, 3 << k >> 1) for v in (b, b - 1, b + 1, -b, -b - 1, -b + 1)
       if INT32_MIN <= v <= INT32_MAX], np.int64)).astype(np.int32)
_EDGE_MULTS = [0, 1, -1, 1 << 30, (1 << 30) + 1, INT32_MAX, INT32_MIN, INT32_MIN + 1, 1518500250, -1518500250]


@pytest.mark.parametrize("rounding", [fx.DOUBLE_ROUNDING, fx.SINGLE_ROUNDING])
def test_prepared_requantize_every_shift(rounding):
    """Every valid shift (double -62..62, single -31..30) x edge and random multipliers x edge and random int32
    accumulators: requantize_prepared == requantize (requantize_double / requantize_single) exactly."""
    lo, hi = SHIFT_RANGE[rounding]
    rng = np.random.default_rng(rounding)
    accs = np.concatenate([_EDGE_ACCS, rng.integers(INT32_MIN, INT32_MAX + 1, 3000).astype(np.int32)])
    shifts = np.repeat(np.arange(lo, hi + 1, dtype=np.int32), len(_EDGE_MULTS) + 4)
    mults = np.concatenate([np.array(_EDGE_MULTS + list(rng.integers(INT32_MIN, INT32_MAX + 1, 4)), np.int64)
                            for _ in range(hi - lo + 1)]).astype(np.int32)
    qp = fx.prepare_requantize(mults, shifts, rounding)
    got = np.empty((mults.size, accs.size), np.int32)
    want = np.empty_like(got)
    _prepared_all(accs, qp, rounding, got)
    _reference_all(accs, mults, shifts, rounding, want)
    bad = np.argwhere(got != want)
    assert bad.size == 0, (f"{len(bad)} mismatches, first: acc {accs[bad[0][1]]} mult {mults[bad[0][0]]} "
                           f"shift {shifts[bad[0][0]]}: {got[tuple(bad[0])]} != {want[tuple(bad[0])]}")


@PROPS
@given(accs, mults, st.integers(-62, 62), st.booleans())
@example(INT32_MIN, INT32_MIN, 0, False)      # SRDHM saturation
@example(INT32_MIN, INT32_MIN, 32, False)     # left shift wraps to 0
@example(INT32_MIN, INT32_MAX, -32, False)    # RDBP tie beyond 31 bits
@example(INT32_MIN, INT32_MIN, 30, True)
def test_prepared_requantize_matches_oracle(acc, m, s, single):
    """requantize_prepared against tests/naive.py's requantize (and requantize_double / requantize_single)."""
    rounding = fx.SINGLE_ROUNDING if single else fx.DOUBLE_ROUNDING
    if single:
        s = max(-31, min(30, s))
    qp = fx.prepare_requantize(np.array([m], np.int32), np.array([s], np.int32), rounding)
    if single:
        want = naive.requantize(acc, m, s, fx.SINGLE_ROUNDING)
        assert int(fx.requantize_single(acc, m, s)) == want
    else:
        want = naive.requantize(acc, m, s, fx.DOUBLE_ROUNDING)
        assert int(fx.requantize_double(acc, m, s)) == want
    assert int(fx.requantize_prepared(np.int32(acc), qp, 0, rounding)) == want


@njit
def _row(acc, qp, output_offset, act_min, act_max, rounding, out):
    fx.requantize_row(acc, qp, None, output_offset, act_min, act_max, rounding, out, 3)


@PROPS
@given(st.lists(accs, min_size=1, max_size=40), st.integers(-62, 62), st.integers(-128, 127),
       st.integers(-128, 127), st.integers(-128, 127), st.booleans(), st.integers(0, 2 ** 32 - 1))
def test_requantize_row_equals_clamped_requantize(acc_list, s0, off, a, b, single, seed):
    """The kernels' epilogue row: clamp(requantize(acc, mult[c], shift[c]) + output_offset) into out[3 + c]."""
    rounding = fx.SINGLE_ROUNDING if single else fx.DOUBLE_ROUNDING
    rng = np.random.default_rng(seed)
    acc = np.array(acc_list, np.int32)
    mult = rng.integers(INT32_MIN, INT32_MAX + 1, acc.size).astype(np.int32)
    lo_s, hi_s = SHIFT_RANGE[rounding]
    shift = np.clip(rng.integers(-62, 63, acc.size) + s0, lo_s, hi_s).astype(np.int32)
    act_min, act_max = min(a, b), max(a, b)
    out = np.full(acc.size + 5, 77, np.int8)
    _row(acc, fx.prepare_requantize(mult, shift, rounding), off, act_min, act_max, rounding, out)
    want = [min(max(naive.requantize(int(x), int(m), int(s), rounding), act_min - off), act_max - off) + off
            for x, m, s in zip(acc, mult, shift)]
    assert out[3:3 + acc.size].tolist() == want
    assert out[:3].tolist() == [77] * 3 and out[3 + acc.size:].tolist() == [77] * 2


def test_prepare_requantize_rejects():
    with pytest.raises(ValueError, match="one of each"):
        fx.prepare_requantize(np.zeros(2, np.int32), np.zeros(3, np.int32), fx.DOUBLE_ROUNDING)
    with pytest.raises(ValueError, match="no fixed-point epilogue"):
        fx.prepare_requantize(np.zeros(2, np.int32), np.zeros(2, np.int32), fx.FLOAT32_RNE)


def test_rounding_modes_on_ties():
    """DESIGN 3.2 table: acc * 0.5 for acc = -5,-3,...,5 under TFLM gives -2,-1,0,1,2,3 (the SRDHM tie goes to
    +inf when the shift is 0); at 0.25 (a right shift) double rounding's RDBP ties go away from zero, single's up."""
    m, s = fx.quantize_multiplier(0.5)
    assert [int(fx.requantize_double(a, m, s)) for a in range(-5, 6, 2)] == [-2, -1, 0, 1, 2, 3]
    assert [int(fx.requantize_single(a, m, s)) for a in range(-5, 6, 2)] == [-2, -1, 0, 1, 2, 3]
    m, s = fx.quantize_multiplier(0.25)
    assert [int(fx.requantize_double(a, m, s)) for a in (-6, -2, 2, 6)] == [-2, -1, 1, 2]
    assert [int(fx.requantize_single(a, m, s)) for a in (-6, -2, 2, 6)] == [-1, 0, 1, 2]


def test_rounding_code_names():
    assert fx.rounding_code("double") == fx.DOUBLE_ROUNDING == 0
    assert fx.rounding_code("single") == fx.SINGLE_ROUNDING == 1
    with pytest.raises(ValueError, match="unknown rounding"):
        fx.rounding_code("nearest")


@PROPS
@given(st.integers(-(1 << 40), 1 << 40), st.integers(-128, 127), st.integers(-128, 127))
def test_wrap_and_saturate(x, lo, hi):
    assert int(fx.wrap_int32(x)) == naive.wrap32(x)
    lo, hi = min(lo, hi), max(lo, hi)
    assert int(fx.saturate(x, lo, hi)) == min(max(x, lo), hi)


# ---- gemmlowp transcendental helpers (softmax) ----------------------------------------------------------

@PROPS
@given(int32s, st.integers(1, 30))
def test_saturating_shift_left(x, e):
    assert int(fx.saturating_shift_left(x, e)) == min(max(x * (1 << e), INT32_MIN), INT32_MAX)


@PROPS
@given(int32s, int32s)
def test_rounding_half_sum(a, b):
    assert int(fx.rounding_half_sum(a, b)) == round_half_away(Fraction(a + b, 2))


@PROPS
@given(st.integers(INT32_MIN, INT32_MAX))
@example(0)
@example(-1)
@example(INT32_MIN)
def test_count_leading_zeros32(x):
    assert fx.count_leading_zeros32(x) == 32 - (x % (1 << 32)).bit_length()


@PROPS
@given(st.one_of(st.integers(-(31 << 26), 0), st.integers(INT32_MIN, 0)))
@example(0)
@example(-(1 << 26))
@example(INT32_MIN)
def test_exp_on_negative_values(a):
    """Q5.26 -> Q0.31; equals gemmlowp's routine (tests/naive.py transliteration) and exp() within 2^-22 abs."""
    import naive
    got = int(fx.exp_on_negative_values(a))
    assert got == naive.exp_on_negative_values(a)
    assert 0 <= got <= INT32_MAX
    assert abs(got - math.exp(a / 2 ** 26) * 2 ** 31) <= 2 ** 9


@PROPS
@given(st.integers(0, INT32_MAX))
@example(0)
@example(INT32_MAX)
def test_one_over_one_plus_x(a):
    """Q0.31 -> Q0.31 of 1/(1+x); equals gemmlowp's routine and 1/(1+x) within 2^-27 abs."""
    import naive
    got = int(fx.one_over_one_plus_x_for_x_in_0_1(a))
    assert got == naive.one_over_one_plus_x_for_x_in_0_1(a)
    assert abs(got - 2 ** 31 / (1 + a / 2 ** 31)) <= 2 ** 4
