"""C twins of the int8 network kernels (emu.kernels.ctwin -> emu._c_kernels) are bit-exact.

Oracles, each compared with np.array_equal (no tolerance):
- `naive`: tests/naive.py, the one obvious reference of every kernel and fixed-point primitive;
- `numba`: the Numba kernels emu/kernels/*.py;
- the CMSIS-NN conformance vectors in ../shared/conformance/cmsis-nn (skipped when absent).
Hypothesis draws random shapes and parameters including extreme zero points, saturation, full-range
biases (int32 wrap-around), large shifts and both roundings.
Every test needs the built extension (the `c_kernels` fixture of conftest.py: skipped only without a C compiler).
"""
import importlib

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import naive
from emu import cheader
from emu import fixedpoint as fp
from emu.kernels import ctwin  # noqa: E402  (the project's own module: an import failure must fail)

pytestmark = pytest.mark.usefixtures("c_kernels")

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
ORACLES = ["numba", "naive"]
# op name -> Numba module under emu.kernels (layout suggested by DESIGN.md §2)
NUMBA_MODULES = {
    "conv_s8": "conv", "depthwise_conv_s8": "depthwise", "fully_connected_s8": "fully_connected",
    "avgpool_s8": "pooling", "maxpool_s8": "pooling", "softmax_s8": "softmax",
    "add_s8": "elementwise", "mul_s8": "elementwise", "pad_s8": "layout", "transpose_s8": "layout",
}
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def oracle(op, which):
    """The implementation of `op` from oracle `which` (a missing module or function is a failure)."""
    if which == "naive":
        return getattr(naive, op)
    return getattr(importlib.import_module(f"emu.kernels.{NUMBA_MODULES[op]}"), op)


def assert_same(got, want, what):
    """Exact equality; the message names the count and the first mismatching coordinates."""
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    bad = np.argwhere(got != want)
    if bad.size:
        first = [tuple(int(i) for i in b) for b in bad[:5]]
        vals = [(int(got[b]), int(want[b])) for b in first]
        pytest.fail(f"{what}: {len(bad)}/{got.size} differ; first at {first} (c, oracle) = {vals}")


def run_both(op, which, args, out_shape):
    """Run the C twin and the oracle on the same arguments (fresh outputs), compare exactly."""
    ref = oracle(op, which)
    got = np.full(out_shape, 77, np.int8)
    want = np.full(out_shape, -77, np.int8)
    getattr(ctwin, op)(*args, got)
    ref(*args, want)
    assert_same(got, want, f"{op} C vs {which}")
    return got


# ----------------------------------------------------------------------------------------------------
# hypothesis strategies
# ----------------------------------------------------------------------------------------------------

zero_point_offsets = st.one_of(st.sampled_from([-128, -127, 0, 127, 128]), st.integers(-128, 128))
multipliers = st.one_of(st.sampled_from([0, 1 << 30, INT32_MAX]), st.integers(1 << 30, INT32_MAX),
                        st.integers(0, INT32_MAX))
roundings = st.sampled_from([0, 1])


@st.composite
def activation(draw):
    lo = draw(st.one_of(st.just(-128), st.integers(-128, 127)))
    hi = draw(st.one_of(st.just(127), st.integers(lo, 127)))
    return lo, hi


@st.composite
def int8_array(draw, shape, extreme=True):
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["uniform", "extremes", "constant"])) if extreme else "uniform"
    if kind == "uniform":
        return rng.integers(-128, 128, shape, dtype=np.int8)
    if kind == "extremes":
        return rng.choice(np.array([-128, -127, 0, 127], np.int8), shape)
    return np.full(shape, draw(st.sampled_from([-128, 0, 127])), np.int8)


@st.composite
def quant_per_channel(draw, cout, rounding):
    """bias (full int32 range sometimes: wrap-around), mult, shift arrays for `cout` channels."""
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    bias_span = draw(st.sampled_from([0, 1 << 10, 1 << 20, 1 << 31]))
    bias = rng.integers(-bias_span, bias_span, cout, dtype=np.int64).astype(np.int32) if bias_span else \
        np.zeros(cout, np.int32)
    mult = np.array([draw(multipliers) for _ in range(cout)], np.int32)
    lo, hi = (-31, 31) if rounding == 0 else (-31, 30)
    shift_lo = draw(st.integers(lo, hi))
    shift = rng.integers(shift_lo, min(shift_lo + 12, hi) + 1, cout).astype(np.int32)
    return bias, mult, shift


@st.composite
def conv_geometry(draw, max_k=4):
    kh, kw = draw(st.integers(1, max_k)), draw(st.integers(1, max_k))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    pt, pl = draw(st.integers(0, (kh - 1) * dh)), draw(st.integers(0, (kw - 1) * dw))
    pb, pr = draw(st.integers(0, (kh - 1) * dh)), draw(st.integers(0, (kw - 1) * dw))
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (w + pl + pr - (kw - 1) * dw - 1) // sw + 1
    assume(oh >= 1 and ow >= 1)
    return dict(kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw, h=h, w=w, pt=pt, pl=pl, oh=oh, ow=ow)


# ----------------------------------------------------------------------------------------------------
# fixed-point primitives: C == Python-int definition (tests/naive.py) == emu.fixedpoint (Numba)
# ----------------------------------------------------------------------------------------------------

int32s = st.one_of(st.sampled_from([INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX - 1, INT32_MAX]),
                   st.integers(INT32_MIN, INT32_MAX))


@SETTINGS
@given(a=int32s, b=int32s, e=st.integers(0, 31))
def test_srdhm_rdbp_match_definition_and_fixedpoint(a, b, e):
    assert ctwin.srdhm(a, b) == naive.srdhm(a, b) == int(fp.srdhm(a, b))
    assert ctwin.rdbp(a, e) == naive.rdbp(a, e) == int(fp.rdbp(a, e))


def test_rdbp_ties_and_srdhm_saturation_edges():
    # ties away from zero, not half-even: 5/2 -> 3, -5/2 -> -3, 3/2 -> 2, -3/2 -> -2
    assert [ctwin.rdbp(v, 1) for v in (5, -5, 3, -3, 1, -1)] == [3, -3, 2, -2, 1, -1]
    assert ctwin.srdhm(INT32_MIN, INT32_MIN) == INT32_MAX
    # acc * 0.5 for -5..5 (DESIGN: TFLM gives -2,-1,0,1,2,3 with ties toward +inf in SRDHM)
    assert [ctwin.requantize(v, 1 << 30, 0, 0) for v in range(-5, 6)] == [-2, -2, -1, -1, 0, 0, 1, 1, 2, 2, 3]


@SETTINGS
@given(acc=int32s, mult=st.one_of(int32s, multipliers), shift=st.integers(-31, 31), rounding=roundings)
def test_requantize_matches_definition_and_fixedpoint(acc, mult, shift, rounding):
    assume(rounding == 0 or shift <= 30)
    want = naive.requantize(acc, mult, shift, rounding)
    assert ctwin.requantize(acc, mult, shift, rounding) == want == int(fp.requantize(acc, mult, shift, rounding))


@SETTINGS
@given(a=st.one_of(st.sampled_from([INT32_MIN, -(1 << 24), -1, 0]), st.integers(-(32 << 26), 0),
                  st.integers(INT32_MIN, 0)))
def test_exp_on_negative_values(a):
    got = ctwin.exp_on_negative_values(a)
    assert got == naive.exp_on_negative_values(a)
    assert abs(got / 2 ** 31 - np.exp(a / 2 ** 26)) < 1e-6           # sanity: it is exp in Q0.31
    assert got == int(fp.exp_on_negative_values(a))


def test_exp_and_reciprocal_dense_grid():
    # softmax feeds exp with Q5.26 values mostly in [-32, 0]; exp(-1) etc. constants only matter near 0
    rng = np.random.default_rng(7)
    grid = np.concatenate([-np.arange(0, 1 << 31, 1 << 19), -rng.integers(0, 1 << 28, 3000)])
    for a in grid.tolist():
        got = ctwin.exp_on_negative_values(a)
        assert got == naive.exp_on_negative_values(a), a
        assert got == int(fp.exp_on_negative_values(a)), a
    for a in np.concatenate([np.arange(0, 1 << 31, 1 << 20), rng.integers(0, 1 << 31, 2000)]).tolist():
        got = ctwin.one_over_one_plus_x_for_x_in_0_1(a)
        assert got == naive.one_over_one_plus_x_for_x_in_0_1(a), a
        assert got == int(fp.one_over_one_plus_x_for_x_in_0_1(a)), a


@SETTINGS
@given(a=st.one_of(st.sampled_from([0, 1, INT32_MAX]), st.integers(0, INT32_MAX)))
def test_one_over_one_plus_x(a):
    got = ctwin.one_over_one_plus_x_for_x_in_0_1(a)
    assert got == naive.one_over_one_plus_x_for_x_in_0_1(a)
    assert abs(got / 2 ** 31 - 1.0 / (1.0 + a / 2 ** 31)) < 1e-6
    assert got == int(fp.one_over_one_plus_x_for_x_in_0_1(a))


# ----------------------------------------------------------------------------------------------------
# kernels: C == oracle on random cases
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ORACLES)
@SETTINGS
@given(data=st.data())
def test_conv_s8(which, data):
    _case_conv_s8(which, data)


def _case_conv_s8(which, data):
    g = data.draw(conv_geometry())
    n = data.draw(st.integers(1, 2))
    groups = data.draw(st.sampled_from([1, 1, 2, 3]))
    cin_g = data.draw(st.integers(1, 4))
    cout = groups * data.draw(st.integers(1, 3))
    rounding = data.draw(roundings)
    inp = data.draw(int8_array((n, g["h"], g["w"], groups * cin_g)))
    filt = data.draw(int8_array((cout, g["kh"], g["kw"], cin_g)))
    bias, mult, shift = data.draw(quant_per_channel(cout, rounding))
    lo, hi = data.draw(activation())
    args = (inp, filt, bias, mult, shift, data.draw(zero_point_offsets), data.draw(zero_point_offsets),
            g["sh"], g["sw"], g["pt"], g["pl"], g["dh"], g["dw"], lo, hi, rounding)
    run_both("conv_s8", which, args, (n, g["oh"], g["ow"], cout))


@pytest.mark.parametrize("which", ORACLES)
@SETTINGS
@given(data=st.data())
def test_depthwise_conv_s8(which, data):
    _case_depthwise_conv_s8(which, data)


def _case_depthwise_conv_s8(which, data):
    g = data.draw(conv_geometry())
    n = data.draw(st.integers(1, 2))
    cin = data.draw(st.integers(1, 5))
    ch_mult = data.draw(st.integers(1, 3))
    rounding = data.draw(roundings)
    inp = data.draw(int8_array((n, g["h"], g["w"], cin)))
    filt = data.draw(int8_array((1, g["kh"], g["kw"], cin * ch_mult)))
    bias, mult, shift = data.draw(quant_per_channel(cin * ch_mult, rounding))
    lo, hi = data.draw(activation())
    args = (inp, filt, bias, mult, shift, ch_mult, data.draw(zero_point_offsets), data.draw(zero_point_offsets),
            g["sh"], g["sw"], g["pt"], g["pl"], g["dh"], g["dw"], lo, hi, rounding)
    run_both("depthwise_conv_s8", which, args, (n, g["oh"], g["ow"], cin * ch_mult))


@pytest.mark.parametrize("which", ORACLES)
@SETTINGS
@given(data=st.data())
def test_fully_connected_s8(which, data):
    _case_fully_connected_s8(which, data)


def _case_fully_connected_s8(which, data):
    n, k, out_ch = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 40)), data.draw(st.integers(1, 12))
    rounding = data.draw(roundings)
    inp = data.draw(int8_array((n, k)))
    filt = data.draw(int8_array((out_ch, k)))
    bias, mult, shift = data.draw(quant_per_channel(out_ch, rounding))
    if data.draw(st.booleans()):                  # per-tensor: one value everywhere
        mult[:] = mult[0]
        shift[:] = shift[0]
    lo, hi = data.draw(activation())
    args = (inp, filt, bias, mult, shift, data.draw(zero_point_offsets), data.draw(zero_point_offsets),
            data.draw(zero_point_offsets), lo, hi, rounding)
    run_both("fully_connected_s8", which, args, (n, out_ch))


@st.composite
def pool_case(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    pt, pl = draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))
    pb, pr = draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    assume(oh >= 1 and ow >= 1)
    # every window must hold at least one real tap (TFLM divides by the tap count)
    assume(all(oy * sh - pt + kh > 0 and oy * sh - pt < h for oy in range(oh)))
    assume(all(ox * sw - pl + kw > 0 and ox * sw - pl < w for ox in range(ow)))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 5))
    inp = draw(int8_array((n, h, w, c)))
    lo, hi = draw(activation())
    return (inp, kh, kw, sh, sw, pt, pl, lo, hi), (n, oh, ow, c)


@pytest.mark.parametrize("op", ["avgpool_s8", "maxpool_s8"])
@pytest.mark.parametrize("which", ORACLES)
@SETTINGS
@given(case=pool_case())
def test_pool_s8(op, which, case):
    args, out_shape = case
    run_both(op, which, args, out_shape)


@pytest.mark.parametrize("which", ORACLES)
@pytest.mark.parametrize("act_min", [-128, -100])
def test_maxpool_all_padding_window_gives_int8_min_then_clamp(which, act_min):
    inp = np.arange(-60, 60, dtype=np.int8).reshape(2, 3, 4, 5)
    # kernel 1x1 with padding 2: the first two rows/columns of windows hold no real tap
    run_both("maxpool_s8", which, (inp, 1, 1, 1, 1, 2, 2, act_min, 127), (2, 5, 6, 5))


def test_avgpool_rounds_half_away_from_zero():
    # windows of 2 taps: sums 3 -> 2, -3 -> -2, 1 -> 1, -1 -> -1 (C truncating division, not floor)
    inp = np.array([1, 2, -1, -2, 0, 1, 0, -1], np.int8).reshape(1, 1, 8, 1)
    out = np.zeros((1, 1, 4, 1), np.int8)
    ctwin.avgpool_s8(inp, 1, 2, 1, 2, 0, 0, -128, 127, out)
    assert out.ravel().tolist() == [2, -2, 1, -1]


@st.composite
def softmax_case(draw):
    rows, row_size = draw(st.integers(1, 4)), draw(st.integers(1, 40))
    inp = draw(int8_array((rows, row_size)))
    # TFLM prepare: real = min(beta*s_in*2^26, 2^31-1) -> (mult, shift >= 0); diff_min = -floor(31*2^26/2^shift)
    real = draw(st.floats(1.01, float(2 ** 31 - 1)))
    mult, shift = fp.quantize_multiplier_greater_than_one(real)
    assume(shift <= 31)
    diff_min = -((31 * (1 << 26)) >> shift) if draw(st.booleans()) else draw(st.integers(-256, 0))
    return (inp, mult, shift, diff_min), inp.shape


@pytest.mark.parametrize("which", ORACLES)
@SETTINGS
@given(case=softmax_case())
def test_softmax_s8(which, case):
    args, out_shape = case
    run_both("softmax_s8", which, args, out_shape)


@pytest.mark.parametrize("which", ORACLES)
@pytest.mark.parametrize("row_size", [1, 255, 4096, 5000])
def test_softmax_s8_long_rows(which, row_size):
    # 4096 equal entries sum to 2^31 in Q12.19: the int32 sum of exps wraps (TFLM reads it as uint32)
    rng = np.random.default_rng(row_size)
    inp = np.stack([np.full(row_size, 5, np.int8), rng.integers(-128, 128, row_size, dtype=np.int8),
                    np.where(np.arange(row_size) % 7 == 0, 127, -128).astype(np.int8)])
    run_both("softmax_s8", which, (inp, 1242899197, 24, -124), inp.shape)


@pytest.mark.parametrize("which", ORACLES)
@SETTINGS
@given(data=st.data())
def test_add_s8(which, data):
    _case_add_s8(which, data)


def _case_add_s8(which, data):
    size = data.draw(st.integers(1, 64))
    in1, in2 = data.draw(int8_array((size,))), data.draw(int8_array((size,)))
    mults = st.one_of(st.integers(1 << 30, INT32_MAX), st.sampled_from([1 << 30, INT32_MAX]))
    lo, hi = data.draw(activation())
    args = (in1, in2, data.draw(zero_point_offsets), data.draw(mults), data.draw(st.integers(-31, 0)),
            data.draw(zero_point_offsets), data.draw(mults), data.draw(st.integers(-31, 0)),
            data.draw(st.sampled_from([20, 0, 7, 22])), data.draw(mults), data.draw(st.integers(-31, 4)),
            data.draw(zero_point_offsets), lo, hi)
    run_both("add_s8", which, args, (size,))


@pytest.mark.parametrize("which", ORACLES)
@SETTINGS
@given(data=st.data())
def test_mul_s8(which, data):
    _case_mul_s8(which, data)


def _case_mul_s8(which, data):
    size = data.draw(st.integers(1, 64))
    in1, in2 = data.draw(int8_array((size,))), data.draw(int8_array((size,)))
    rounding = data.draw(roundings)
    lo, hi = data.draw(activation())
    args = (in1, in2, data.draw(zero_point_offsets), data.draw(zero_point_offsets), data.draw(multipliers),
            data.draw(st.integers(-31, 30)), data.draw(zero_point_offsets), lo, hi, rounding)
    run_both("mul_s8", which, args, (size,))


@pytest.mark.parametrize("which", ORACLES)
@SETTINGS
@given(data=st.data())
def test_pad_s8(which, data):
    shape = tuple(data.draw(st.integers(1, 4)) for _ in range(4))
    before = np.array([data.draw(st.integers(0, 3)) for _ in range(4)], np.int32)
    after = [data.draw(st.integers(0, 3)) for _ in range(4)]
    inp = data.draw(int8_array(shape, extreme=False))
    out_shape = tuple(s + int(b) + a for s, b, a in zip(shape, before, after))
    run_both("pad_s8", which, (inp, before, data.draw(st.integers(-128, 127))), out_shape)


@pytest.mark.parametrize("which", ORACLES)
@SETTINGS
@given(data=st.data())
def test_transpose_s8(which, data):
    shape = tuple(data.draw(st.integers(1, 5)) for _ in range(4))
    perm = np.array(data.draw(st.permutations([0, 1, 2, 3])), np.int32)
    inp = data.draw(int8_array(shape, extreme=False))
    run_both("transpose_s8", which, (inp, perm), tuple(shape[p] for p in perm))


# long sweeps of the same properties (--run-slow)

_DATA_CASES = {"conv_s8": _case_conv_s8, "depthwise_conv_s8": _case_depthwise_conv_s8,
               "fully_connected_s8": _case_fully_connected_s8, "add_s8": _case_add_s8, "mul_s8": _case_mul_s8}


@pytest.mark.slow
@pytest.mark.parametrize("op", sorted(_DATA_CASES))
@pytest.mark.parametrize("which", ORACLES)
@SLOW_SETTINGS
@given(data=st.data())
def test_data_driven_sweep(op, which, data):
    _DATA_CASES[op](which, data)


@pytest.mark.slow
@pytest.mark.parametrize("op", ["avgpool_s8", "maxpool_s8"])
@pytest.mark.parametrize("which", ORACLES)
@SLOW_SETTINGS
@given(case=pool_case())
def test_pool_s8_sweep(op, which, case):
    run_both(op, which, *case)


@pytest.mark.slow
@pytest.mark.parametrize("which", ORACLES)
@SLOW_SETTINGS
@given(case=softmax_case())
def test_softmax_s8_sweep(which, case):
    run_both("softmax_s8", which, *case)


# ----------------------------------------------------------------------------------------------------
# argument checking: every call into C is guarded
# ----------------------------------------------------------------------------------------------------

def _fc_args():
    return [np.zeros((2, 3), np.int8), np.zeros((4, 3), np.int8), np.zeros(4, np.int32), np.zeros(4, np.int32),
            np.zeros(4, np.int32), 0, 0, 0, -128, 127, 0, np.zeros((2, 4), np.int8)]


@pytest.mark.parametrize("index, bad, message", [
    (0, np.zeros((2, 3), np.int16), "dtype int8"),
    (0, np.zeros((3, 2), np.int8).T, "C-contiguous"),
    (1, np.zeros((4, 2), np.int8), "filt has shape"),
    (2, np.zeros(5, np.int32), "bias has shape"),
    (3, np.zeros(4, np.int64), "dtype int32"),
    (4, np.full(4, 63, np.int32), "shift"),
    (8, -129, "act_min"),
    (10, 2, "rounding"),
    (11, np.zeros((2, 5), np.int8), "out has shape"),
    (11, np.zeros((2, 4), np.int8)[::-1], "C-contiguous"),
])
def test_fully_connected_rejects_bad_arguments(index, bad, message):
    args = _fc_args()
    args[index] = bad
    with pytest.raises(ValueError, match=message):
        ctwin.fully_connected_s8(*args)


def test_conv_and_transpose_reject_inconsistent_shapes():
    inp = np.zeros((1, 4, 4, 6), np.int8)
    out = np.zeros((1, 4, 4, 4), np.int8)
    q = np.zeros(4, np.int32)
    with pytest.raises(ValueError, match="not a multiple"):
        ctwin.conv_s8(inp, np.zeros((4, 1, 1, 4), np.int8), q, q, q, 0, 0, 1, 1, 0, 0, 1, 1, -128, 127, 0, out)
    with pytest.raises(ValueError, match="not divisible"):
        ctwin.conv_s8(inp, np.zeros((4, 1, 1, 2), np.int8), q, q, q, 0, 0, 1, 1, 0, 0, 1, 1, -128, 127, 0, out)
    with pytest.raises(ValueError, match="stride_h"):
        ctwin.conv_s8(inp, np.zeros((4, 1, 1, 3), np.int8), q, q, q, 0, 0, 0, 1, 0, 0, 1, 1, -128, 127, 0, out)
    with pytest.raises(ValueError, match="overlaps"):
        ctwin.transpose_s8(inp, np.arange(4, dtype=np.int32), inp)
    with pytest.raises(ValueError, match="permutation"):
        ctwin.transpose_s8(inp, np.array([0, 1, 1, 3], np.int32), np.zeros_like(inp))
    with pytest.raises(ValueError, match="entirely in the padding"):
        ctwin.avgpool_s8(inp, 2, 2, 1, 1, 0, 0, -128, 127, np.zeros((1, 6, 6, 6), np.int8))


# ----------------------------------------------------------------------------------------------------
# CMSIS-NN conformance vectors (generated by TFLite reference kernels)
# ----------------------------------------------------------------------------------------------------

class Case:
    """One conformance folder: #defines (prefix stripped) and typed arrays per header file (emu.cheader parses)."""

    def __init__(self, folder):
        self.name = folder.name
        self.defines, self.arrays = {}, {}
        prefix, aprefix = folder.name.upper() + "_", folder.name + "_"
        for f in sorted(folder.glob("*.h")):
            defines, arrays = cheader.read_header(f)
            for key, value in defines.items():
                self.defines[key[len(prefix):] if key.startswith(prefix) else key] = value
            for name, values in arrays.items():
                if values is not None:
                    key = name[len(aprefix):] if name.startswith(aprefix) else name
                    self.arrays[(f.name, key)] = values

    def d(self, key, default=None):
        if key not in self.defines:
            if default is None:
                raise KeyError(f"{self.name}: #define {key} missing")
            return default
        return self.defines[key]

    def a(self, filename, key):
        return self.arrays[(filename, key)]

    def only(self, key):
        """The array named `key` when exactly one header defines it."""
        found = [v for (_, k), v in self.arrays.items() if k == key]
        if len(found) != 1:
            raise KeyError(f"{self.name}: {len(found)} arrays named {key}")
        return found[0]


def _case(conformance_dir, name):
    folder = conformance_dir / name
    if not folder.is_dir():
        pytest.fail(f"{folder} is missing: the conformance data in ../shared is incomplete")
    return Case(folder)


CONV_CASES = ["basic", "conv_1_x_n_1", "conv_1_x_n_2", "conv_1_x_n_3", "conv_1_x_n_4", "conv_1_x_n_5",
              "conv_1_x_n_6_generic", "conv_1_x_n_7", "conv_2", "conv_2x2_dilation", "conv_2x2_dilation_5x5_input",
              "conv_3", "conv_3x2_dilation", "conv_3x3_dilation_5x5_input", "conv_dilation_golden",
              "conv_out_activation", "kernel1x1", "kernel1x1_stride_x", "kernel1x1_stride_x_y",
              "kernel1x1_stride_x_y_1"]
DEPTHWISE_CASES = ["depthwise_2", "depthwise_dilation", "depthwise_eq_in_out_ch", "depthwise_kernel_3x3",
                   "depthwise_kernel_3x3_null_bias", "depthwise_mult_batches", "depthwise_null_bias_0",
                   "depthwise_null_bias_1", "depthwise_out_activation"]
FC_CASES = ["fully_connected", "fully_connected_mve_0", "fully_connected_null_bias_0",
            "fully_connected_out_activation", "fc_per_ch"]
POOL_CASES = [f"avgpooling{s}" for s in ["", "_1", "_2", "_3", "_4"]] + \
             [f"maxpooling{s}" for s in ["", "_1", "_2", "_3", "_4", "_5", "_6"]]
TRANSPOSE_CASES = ["transpose_3dim", "transpose_3dim2", "transpose_chwn", "transpose_default", "transpose_matrix",
                   "transpose_nchw", "transpose_ncwh", "transpose_nwhc", "transpose_wchn"]


@pytest.mark.parametrize("name", CONV_CASES)
def test_conformance_conv(conformance_dir, name):
    c = _case(conformance_dir, name)
    n, h, w, cin = c.d("INPUT_BATCHES"), c.d("INPUT_H"), c.d("INPUT_W"), c.d("IN_CH")
    cout, kh, kw = c.d("OUT_CH"), c.d("FILTER_Y"), c.d("FILTER_X")
    weights = c.a("weights_data.h", "weights")
    cin_g = weights.size // (cout * kh * kw)
    want = c.a("output_ref_data.h", "output_ref").reshape(n, c.d("OUTPUT_H"), c.d("OUTPUT_W"), cout)
    got = np.zeros_like(want)
    ctwin.conv_s8(c.a("input_data.h", "input").reshape(n, h, w, cin), weights.reshape(cout, kh, kw, cin_g),
                  c.a("biases_data.h", "biases"), c.a("output_mult_data.h", "output_mult"),
                  c.a("output_shift_data.h", "output_shift"), c.d("INPUT_OFFSET"), c.d("OUTPUT_OFFSET"),
                  c.d("STRIDE_Y"), c.d("STRIDE_X"), c.d("PAD_Y"), c.d("PAD_X"), c.d("DILATION_Y"), c.d("DILATION_X"),
                  c.d("OUT_ACTIVATION_MIN"), c.d("OUT_ACTIVATION_MAX"), 0, got)
    assert_same(got, want, f"{name} (NHWC)")


@pytest.mark.parametrize("name", DEPTHWISE_CASES)
def test_conformance_depthwise(conformance_dir, name):
    c = _case(conformance_dir, name)
    n, h, w, cin = c.d("INPUT_BATCHES"), c.d("INPUT_H"), c.d("INPUT_W"), c.d("IN_CH")
    cout, kh, kw = c.d("OUT_CH"), c.d("FILTER_Y"), c.d("FILTER_X")
    want = c.a("output_ref_data.h", "output_ref").reshape(n, c.d("OUTPUT_H"), c.d("OUTPUT_W"), cout)
    got = np.zeros_like(want)
    ctwin.depthwise_conv_s8(c.a("input_data.h", "input").reshape(n, h, w, cin),
                            c.a("weights_data.h", "weights").reshape(1, kh, kw, cout),
                            c.a("biases_data.h", "biases"), c.a("output_mult_data.h", "output_mult"),
                            c.a("output_shift_data.h", "output_shift"), c.d("CH_MULT"), c.d("INPUT_OFFSET"),
                            c.d("OUTPUT_OFFSET"), c.d("STRIDE_Y"), c.d("STRIDE_X"), c.d("PAD_Y"), c.d("PAD_X"),
                            c.d("DILATION_Y"), c.d("DILATION_X"), c.d("OUT_ACTIVATION_MIN"),
                            c.d("OUT_ACTIVATION_MAX"), 0, got)
    assert_same(got, want, f"{name} (NHWC)")


@pytest.mark.parametrize("name", FC_CASES)
def test_conformance_fully_connected(conformance_dir, name):
    c = _case(conformance_dir, name)
    n, k, out_ch = c.d("INPUT_BATCHES"), c.d("ACCUMULATION_DEPTH"), c.d("OUT_CH")
    if c.d("PER_CHANNEL_QUANT", "false") == "true":      # fc_per_ch: newer file names, per-channel arrays
        files = dict(inp=("input.h", "input"), w=("weights.h", "weights"), b=("bias.h", "bias"),
                     out=("output.h", "output"))
        mult, shift = c.a("output_multiplier.h", "output_multiplier"), c.a("output_shift.h", "output_shift")
    else:                                                  # per-tensor: the *_data.h files match config_data.h
        files = dict(inp=("input_data.h", "input"), w=("weights_data.h", "weights"),
                     b=("biases_data.h", "biases"), out=("output_ref_data.h", "output_ref"))
        mult = np.full(out_ch, c.d("OUTPUT_MULTIPLIER"), np.int32)
        shift = np.full(out_ch, c.d("OUTPUT_SHIFT"), np.int32)
    want = c.a(*files["out"]).reshape(n, out_ch)
    got = np.zeros_like(want)
    ctwin.fully_connected_s8(c.a(*files["inp"]).reshape(n, k), c.a(*files["w"]).reshape(out_ch, k),
                             c.a(*files["b"]), mult, shift, c.d("INPUT_OFFSET"), c.d("FILTER_OFFSET", 0),
                             c.d("OUTPUT_OFFSET"), c.d("OUT_ACTIVATION_MIN"), c.d("OUT_ACTIVATION_MAX"), 0, got)
    assert_same(got, want, f"{name} (batch, out)")


@pytest.mark.parametrize("name", POOL_CASES)
def test_conformance_pooling(conformance_dir, name):
    c = _case(conformance_dir, name)
    n, h, w, ch = c.d("BATCH_SIZE"), c.d("INPUT_H"), c.d("INPUT_W"), c.d("INPUT_C")
    want = c.a("output.h", "output").reshape(n, c.d("OUTPUT_H"), c.d("OUTPUT_W"), c.d("OUTPUT_C"))
    got = np.zeros_like(want)
    op = ctwin.avgpool_s8 if name.startswith("avg") else ctwin.maxpool_s8
    op(c.a("input_tensor.h", "input_tensor").reshape(n, h, w, ch), c.d("FILTER_H"), c.d("FILTER_W"),
       c.d("STRIDE_H"), c.d("STRIDE_W"), c.d("PADDING_H"), c.d("PADDING_W"), c.d("ACTIVATION_MIN"),
       c.d("ACTIVATION_MAX"), got)
    assert_same(got, want, f"{name} (NHWC)")


def test_conformance_softmax(conformance_dir):
    c = _case(conformance_dir, "softmax")
    rows, row_size = c.d("NUM_ROWS"), c.d("ROW_SIZE")
    want = c.a("output_ref_data.h", "output_ref").reshape(rows, row_size)
    got = np.zeros_like(want)
    ctwin.softmax_s8(c.a("input_data.h", "input").reshape(rows, row_size), c.d("INPUT_MULT"),
                     c.d("INPUT_LEFT_SHIFT"), c.d("DIFF_MIN"), got)
    assert_same(got, want, "softmax (row, col)")


def test_conformance_add(conformance_dir):
    c = _case(conformance_dir, "add")
    want = c.a("output_ref_data.h", "output_ref")
    got = np.zeros_like(want)
    ctwin.add_s8(c.a("input1_data.h", "input1"), c.a("input2_data.h", "input2"), c.d("INPUT1_OFFSET"),
                 c.d("INPUT1_MULT"), c.d("INPUT1_SHIFT"), c.d("INPUT2_OFFSET"), c.d("INPUT2_MULT"),
                 c.d("INPUT2_SHIFT"), c.d("LEFT_SHIFT"), c.d("OUTPUT_MULT"), c.d("OUTPUT_SHIFT"),
                 c.d("OUTPUT_OFFSET"), c.d("OUT_ACTIVATION_MIN"), c.d("OUT_ACTIVATION_MAX"), got)
    assert_same(got, want, "add (index)")


def test_conformance_mul(conformance_dir):
    c = _case(conformance_dir, "mul")
    want = c.a("output_ref_data.h", "output_ref")
    got = np.zeros_like(want)
    ctwin.mul_s8(c.a("input1_data.h", "input1"), c.a("input2_data.h", "input2"), c.d("INPUT1_OFFSET"),
                 c.d("INPUT2_OFFSET"), c.d("OUTPUT_MULT"), c.d("OUTPUT_SHIFT"), c.d("OUTPUT_OFFSET"),
                 c.d("OUT_ACTIVATION_MIN"), c.d("OUT_ACTIVATION_MAX"), 0, got)
    assert_same(got, want, "mul (index)")


@pytest.mark.parametrize("name", ["pad_int8_1", "pad_int8_2"])
def test_conformance_pad(conformance_dir, name):
    c = _case(conformance_dir, name)
    axes = "NHWC"
    shape = tuple(c.d(f"INPUT_{a}") for a in axes)
    before = np.array([c.d(f"PRE_PAD_{a}") for a in axes], np.int32)
    out_shape = tuple(s + int(b) + c.d(f"POST_PAD_{a}") for s, b, a in zip(shape, before, axes))
    want = c.a("output.h", "output").reshape(out_shape)
    got = np.zeros_like(want)
    ctwin.pad_s8(c.a("input_tensor.h", "input_tensor").reshape(shape), before, c.d("PAD_VALUE"), got)
    assert_same(got, want, f"{name} (NHWC)")


@pytest.mark.parametrize("name", TRANSPOSE_CASES)
def test_conformance_transpose(conformance_dir, name):
    c = _case(conformance_dir, name)
    rank = c.d("PERM_SIZE")
    lead = 4 - rank
    in_shape = (1,) * lead + tuple(c.d("IN_DIM")[:rank])
    perm = np.array(list(range(lead)) + [p + lead for p in c.d("PERM")[:rank]], np.int32)
    out_shape = (1,) * lead + tuple(c.d("OUT_DIM")[:rank])
    want = c.a("output.h", "output").reshape(out_shape)
    got = np.zeros_like(want)
    ctwin.transpose_s8(c.a("input_tensor.h", "input_tensor").reshape(in_shape), perm, got)
    assert_same(got, want, f"{name} (4-D index)")


def test_conformance_ds_cnn_s_network(conformance_dir):
    """The whole CMSIS-NN ds_cnn_s network (conv, 4x dw+pw, avgpool, FC, softmax) chained on the C twins."""
    c = _case(conformance_dir, "ds_cnn_s")
    d = c.d

    def conv_like(x, i, depthwise):
        p = f"{'DEPTHWISE_' if depthwise else ''}CONV_2D_{i}_"
        a = f"layer_{i}_{'depthwise_' if depthwise else ''}conv_2d_"
        cin, cout, kh, kw = d(p + "IN_CH"), d(p + "OUT_CH"), d(p + "FILTER_Y"), d(p + "FILTER_X")
        out = np.zeros((1, d(p + "OUTPUT_H"), d(p + "OUTPUT_W"), cout), np.int8)
        q = (c.only(a + "bias"), c.only(a + "output_mult"), c.only(a + "output_shift"))
        geo = (d(p + "INPUT_OFFSET"), d(p + "OUTPUT_OFFSET"), d(p + "STRIDE_Y"), d(p + "STRIDE_X"), d(p + "PAD_Y"),
               d(p + "PAD_X"), d(p + "DILATION_Y"), d(p + "DILATION_X"), d(p + "OUT_ACTIVATION_MIN"),
               d(p + "OUT_ACTIVATION_MAX"), 0)
        if depthwise:
            ctwin.depthwise_conv_s8(x, c.only(a + "weights").reshape(1, kh, kw, cout), *q, cout // cin, *geo, out)
        else:
            ctwin.conv_s8(x, c.only(a + "weights").reshape(cout, kh, kw, cin), *q, *geo, out)
        return out

    x = c.only("input").reshape(1, d("CONV_2D_1_INPUT_H"), d("CONV_2D_1_INPUT_W"), d("CONV_2D_1_IN_CH"))
    x = conv_like(x, 1, False)
    for i in (2, 4, 6, 8):
        x = conv_like(conv_like(x, i, True), i + 1, False)
    pooled = np.zeros((1, 1, 1, x.shape[3]), np.int8)
    ctwin.avgpool_s8(x, d("AVERAGE_POOL_2D_10_FILTER_Y"), d("AVERAGE_POOL_2D_10_FILTER_X"),
                     d("AVERAGE_POOL_2D_10_STRIDE_Y"), d("AVERAGE_POOL_2D_10_STRIDE_X"), d("AVERAGE_POOL_2D_10_PAD_Y"),
                     d("AVERAGE_POOL_2D_10_PAD_X"), d("AVERAGE_POOL_2D_10_OUT_ACTIVATION_MIN"),
                     d("AVERAGE_POOL_2D_10_OUT_ACTIVATION_MAX"), pooled)
    k, n_out = pooled.size, d("FULLY_CONNECTED_12_OUTPUT_W")
    logits = np.zeros((1, n_out), np.int8)
    ctwin.fully_connected_s8(pooled.reshape(1, k), c.only("layer_12_fully_connected_weights").reshape(n_out, k),
                             c.only("layer_12_fully_connected_bias"),
                             np.full(n_out, d("FULLY_CONNECTED_12_OUTPUT_MULTIPLIER"), np.int32),
                             np.full(n_out, d("FULLY_CONNECTED_12_OUTPUT_SHIFT"), np.int32),
                             d("FULLY_CONNECTED_12_INPUT_OFFSET"), 0, d("FULLY_CONNECTED_12_OUTPUT_OFFSET"),
                             d("FULLY_CONNECTED_12_OUT_ACTIVATION_MIN"), d("FULLY_CONNECTED_12_OUT_ACTIVATION_MAX"),
                             0, logits)
    probs = np.zeros_like(logits)
    ctwin.softmax_s8(logits, d("SOFTMAX_13_MULT"), d("SOFTMAX_13_SHIFT"), d("SOFTMAX_13_DIFF_MIN"), probs)
    assert_same(probs.reshape(-1), c.only("output_ref"), "ds_cnn_s softmax output (class)")


# ----------------------------------------------------------------------------------------------------
# no undefined behaviour: the same tests on a -fsanitize=undefined,address build of kernels_s8.c
# ----------------------------------------------------------------------------------------------------

_UBSAN_RUNNER = """
import sys
sys.path.insert(0, {build!r})
import _c_kernels_ubsan as m
import emu.kernels.ctwin as ctwin
ctwin._ffi, ctwin._lib = m.ffi, m.lib
import pytest
sys.exit(pytest.main([{test!r}, "-q", "-p", "no:cacheprovider", "-x", "--run-slow",
                      "-k", "not sanitized and not numba"]))
"""


@pytest.mark.slow
def test_c_kernels_sanitized_build_has_no_undefined_behaviour(tmp_path):
    """Rebuild kernels_s8.c with UBSan+ASan (aborting on the first report) and rerun this file against it."""
    import os
    import shutil
    import subprocess
    import sys

    import cffi

    libs = [subprocess.run(["gcc", f"-print-file-name={lib}"], capture_output=True, text=True).stdout.strip()
            for lib in ("libasan.so", "libubsan.so")] if shutil.which("gcc") else []
    if not libs or not all(os.path.isabs(p) and os.path.exists(p) for p in libs):
        pytest.skip("oracle unavailable: gcc with libasan/libubsan is not installed (apt-get install gcc: Debian's "
                    "gcc brings both)")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    csrc = os.path.join(repo, "csrc")
    sys.path.insert(0, csrc)
    try:
        from cffi_common import CFLAGS, cdef_from_header
    finally:
        sys.path.remove(csrc)
    ffi = cffi.FFI()
    ffi.cdef(cdef_from_header(os.path.join(csrc, "kernels_s8.h")))
    sanitize = ["-fsanitize=undefined,address", "-fno-sanitize-recover=all"]
    ffi.set_source("_c_kernels_ubsan", '#include "kernels_s8.h"', sources=[os.path.join(csrc, "kernels_s8.c")],
                   include_dirs=[csrc], extra_compile_args=CFLAGS + sanitize + ["-fno-wrapv"],
                   extra_link_args=sanitize)
    ffi.compile(tmpdir=str(tmp_path), verbose=False)
    runner = tmp_path / "run.py"
    runner.write_text(_UBSAN_RUNNER.format(build=str(tmp_path), test=os.path.abspath(__file__)))
    env = dict(os.environ, LD_PRELOAD=" ".join(libs), ASAN_OPTIONS="detect_leaks=0",
               PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(runner)], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, (done.stdout[-3000:] + done.stderr[-3000:])
