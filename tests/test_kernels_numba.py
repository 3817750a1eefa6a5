"""Numba int8 kernels == tests/naive.py (Python-int references) exactly, on random shapes and parameters incl.
edge cases; == the CMSIS-NN conformance vectors (TFLite reference outputs); == the C twins (conftest's c_kernels)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import naive
from emu import cheader, fixedpoint
from emu.fixedpoint import QP_ROWS, prepare_requantize
from emu.kernels import backends
from emu.kernels.backends import BACKENDS, KERNEL_NAMES, KernelArgumentError, get_backend

NUMBA = get_backend("numba")
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_same(got, want, what):
    """Exact equality; on failure name the count and the first mismatching coordinates."""
    if not np.array_equal(got, want):
        bad = np.argwhere(got != want)
        first = [tuple(int(i) for i in b) for b in bad[:5]]
        pytest.fail(f"{what}: {len(bad)} of {want.size} values differ, first at {first}: "
                    f"got {[int(got[f]) for f in first]}, want {[int(want[f]) for f in first]}")


# ---- strategies ---------------------------------------------------------------------------------------

zero_point_offsets = st.one_of(st.sampled_from([-128, 127, 128, -127, 0]), st.integers(-128, 128))
multipliers = st.one_of(st.sampled_from([0, 1, 1 << 30, INT32_MAX, INT32_MIN, -(1 << 30)]),
                        st.integers(1 << 30, INT32_MAX), st.integers(INT32_MIN, INT32_MAX))
biases = st.one_of(st.sampled_from([0, INT32_MIN, INT32_MAX]), st.integers(-40000, 40000),
                   st.integers(INT32_MIN, INT32_MAX))


@st.composite
def requant_params(draw, count):
    """(rounding, mult[count], shift[count], bias[count]) with shifts valid for the rounding."""
    rounding = draw(st.sampled_from([0, 1]))
    lo, hi = backends.SHIFT_RANGE[rounding]
    shifts = st.one_of(st.integers(-12, 2), st.integers(-31, 30), st.sampled_from([-31, 30, lo, hi, 0]))
    mult = np.array(draw(st.lists(multipliers, min_size=count, max_size=count)), np.int32)
    shift = np.array(draw(st.lists(shifts, min_size=count, max_size=count)), np.int32)
    bias = np.array(draw(st.lists(biases, min_size=count, max_size=count)), np.int32)
    return rounding, mult, shift, bias


@st.composite
def act_ranges(draw):
    lo = draw(st.sampled_from([-128, -128, -100, 0, 127]))
    hi = draw(st.sampled_from([127, 127, 6, 0, -1]))
    return (lo, hi) if lo <= hi else (hi, lo)


def int8_array(draw, shape, flavour=None):
    """Random int8 data; some draws are constant (silence, full scale) to hit edge cases."""
    flavour = flavour or draw(st.sampled_from(["random", "random", "min", "max", "zero", "extremes"]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    if flavour == "min":
        return np.full(shape, -128, np.int8)
    if flavour == "max":
        return np.full(shape, 127, np.int8)
    if flavour == "zero":
        return np.zeros(shape, np.int8)
    if flavour == "extremes":
        return rng.choice(np.array([-128, 127, -1, 0], np.int8), size=shape)
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


def out_size(size, k, stride, dilation, pad_before, pad_after):
    return max(1, (size + pad_before + pad_after - dilation * (k - 1) - 1) // stride + 1)


@st.composite
def conv_cases(draw, depthwise=False):
    n = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    pt, pl = draw(st.integers(0, kh)), draw(st.integers(0, kw))
    oh = out_size(h, kh, sh, dh, pt, draw(st.integers(0, 2)))
    ow = out_size(w, kw, sw, dw, pl, draw(st.integers(0, 2)))
    if depthwise:
        cin, ch_mult = draw(st.integers(1, 5)), draw(st.integers(1, 3))
        cout = cin * ch_mult
        filt_shape = (1, kh, kw, cout)
    else:
        groups = draw(st.sampled_from([1, 1, 2, 3]))
        cin_g = draw(st.one_of(st.integers(1, 4), st.sampled_from([16, 17])))
        cin, cout = groups * cin_g, groups * draw(st.integers(1, 3))
        ch_mult = None
        filt_shape = (cout, kh, kw, cin_g)
    rounding, mult, shift, bias = draw(requant_params(cout))
    lo, hi = draw(act_ranges())
    return dict(inp=int8_array(draw, (n, h, w, cin)), filt=int8_array(draw, filt_shape), bias=bias, mult=mult,
                shift=shift, ch_mult=ch_mult, input_offset=draw(zero_point_offsets),
                output_offset=draw(st.integers(-128, 127)), stride_h=sh, stride_w=sw, pad_top=pt, pad_left=pl,
                dilation_h=dh, dilation_w=dw, act_min=lo, act_max=hi, rounding=rounding,
                out_shape=(n, oh, ow, cout))


def run_conv(impl, c, depthwise):
    out = np.full(c["out_shape"], 99, np.int8)
    args = [c["inp"], c["filt"], c["bias"], c["mult"], c["shift"]]
    if depthwise:
        args.append(c["ch_mult"])
    args += [c[k] for k in ("input_offset", "output_offset", "stride_h", "stride_w", "pad_top", "pad_left",
                            "dilation_h", "dilation_w", "act_min", "act_max", "rounding")]
    (impl.depthwise_conv_s8 if depthwise else impl.conv_s8)(*args, out)
    return out


@st.composite
def fc_cases(draw):
    n, k, outs = draw(st.integers(1, 3)), draw(st.integers(1, 40)), draw(st.integers(1, 8))
    rounding, mult, shift, bias = draw(requant_params(outs))
    per_tensor = draw(st.booleans())
    if per_tensor:
        mult[:], shift[:] = mult[0], shift[0]
    lo, hi = draw(act_ranges())
    return dict(inp=int8_array(draw, (n, k)), filt=int8_array(draw, (outs, k)), bias=bias, mult=mult, shift=shift,
                input_offset=draw(zero_point_offsets), filter_offset=draw(st.sampled_from([0, 0, 128, -127, 5])),
                output_offset=draw(st.integers(-128, 127)), act_min=lo, act_max=hi, rounding=rounding,
                out_shape=(n, outs))


def run_fc(impl, c):
    out = np.full(c["out_shape"], 99, np.int8)
    impl.fully_connected_s8(*[c[k] for k in ("inp", "filt", "bias", "mult", "shift", "input_offset", "filter_offset",
                                             "output_offset", "act_min", "act_max", "rounding")], out)
    return out


@st.composite
def pool_cases(draw):
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    pt, pl = draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))
    # keep every window non-empty: the last window must start inside the input
    oh = min(out_size(h, kh, sh, 1, pt, draw(st.integers(0, kh - 1))), (h - 1 + pt) // sh + 1)
    ow = min(out_size(w, kw, sw, 1, pl, draw(st.integers(0, kw - 1))), (w - 1 + pl) // sw + 1)
    lo, hi = draw(act_ranges())
    return dict(inp=int8_array(draw, (n, h, w, c)), args=(kh, kw, sh, sw, pt, pl, lo, hi), out_shape=(n, oh, ow, c))


def run_pool(fn, c):
    out = np.full(c["out_shape"], 99, np.int8)
    fn(c["inp"], *c["args"], out)
    return out


# ---- naive == numba -------------------------------------------------------------------------------------

@FAST
@given(conv_cases())
def test_conv_matches_naive(c):
    assert_same(run_conv(NUMBA, c, False), run_conv(naive, c, False), "conv_s8")


@FAST
@given(conv_cases(depthwise=True))
def test_depthwise_matches_naive(c):
    assert_same(run_conv(NUMBA, c, True), run_conv(naive, c, True), "depthwise_conv_s8")


@FAST
@given(fc_cases())
def test_fully_connected_matches_naive(c):
    assert_same(run_fc(NUMBA, c), run_fc(naive, c), "fully_connected_s8")


@FAST
@given(pool_cases())
def test_avgpool_matches_naive(c):
    assert_same(run_pool(NUMBA.avgpool_s8, c), run_pool(naive.avgpool_s8, c), "avgpool_s8")


@FAST
@given(pool_cases())
def test_maxpool_matches_naive(c):
    assert_same(run_pool(NUMBA.maxpool_s8, c), run_pool(naive.maxpool_s8, c), "maxpool_s8")


@pytest.mark.slow
@SLOW
@given(conv_cases(), conv_cases(depthwise=True), fc_cases(), pool_cases())
def test_all_weighted_kernels_sweep(conv, dw, fc, pool):
    assert_same(run_conv(NUMBA, conv, False), run_conv(naive, conv, False), "conv_s8")
    assert_same(run_conv(NUMBA, dw, True), run_conv(naive, dw, True), "depthwise_conv_s8")
    assert_same(run_fc(NUMBA, fc), run_fc(naive, fc), "fully_connected_s8")
    assert_same(run_pool(NUMBA.avgpool_s8, pool), run_pool(naive.avgpool_s8, pool), "avgpool_s8")
    assert_same(run_pool(NUMBA.maxpool_s8, pool), run_pool(naive.maxpool_s8, pool), "maxpool_s8")


def test_conv_accumulator_wraps_like_int32():
    """bias INT32_MAX + positive products must wrap to negative (MCU int32), not saturate or widen."""
    inp = np.full((1, 1, 1, 4), 127, np.int8)
    filt = np.full((1, 1, 1, 4), 127, np.int8)
    bias = np.array([INT32_MAX], np.int32)
    mult, shift = np.array([1 << 30], np.int32), np.array([-24], np.int32)
    outs = []
    for impl in (NUMBA, naive):
        out = np.zeros((1, 1, 1, 1), np.int8)
        impl.conv_s8(inp, filt, bias, mult, shift, 128, 0, 1, 1, 0, 0, 1, 1, -128, 127, 0, out)
        outs.append(int(out[0, 0, 0, 0]))
    # acc = INT32_MAX + 4*255*127 wraps to -2^31 + 129539; * 0.5 / 2^24 -> -64 (without the wrap: +64)
    assert outs == [-64, -64]


@settings(max_examples=20, deadline=None)
@given(conv_cases(), conv_cases(depthwise=True))
def test_caller_owned_scratch_gives_same_result(conv, dw):
    """conv_s8 / depthwise_conv_s8 accept an optional caller-owned int32 scratch (reused, dirty) with equal results."""
    want_conv, want_dw = run_conv(NUMBA, conv, False), run_conv(NUMBA, dw, True)
    scratch = np.full(4096, -7, np.int32)
    for c, depthwise, want in ((conv, False, want_conv), (dw, True, want_dw)):
        out = np.full(c["out_shape"], 99, np.int8)
        args = [c["inp"], c["filt"], c["bias"], c["mult"], c["shift"]] + ([c["ch_mult"]] if depthwise else [])
        args += [c[k] for k in ("input_offset", "output_offset", "stride_h", "stride_w", "pad_top", "pad_left",
                                "dilation_h", "dilation_w", "act_min", "act_max", "rounding")]
        fn = NUMBA.depthwise_conv_s8 if depthwise else NUMBA.conv_s8
        fn(*args, out, scratch=scratch)
        assert_same(out, want, "with caller scratch")


def test_maxpool_window_entirely_in_padding_gives_minus_128_then_clamps():
    inp = np.full((1, 1, 1, 2), 50, np.int8)
    for impl in (NUMBA, naive):
        out = np.zeros((1, 1, 2, 2), np.int8)   # second window starts at column 1 of a 1-wide input
        impl.maxpool_s8(inp, 1, 1, 1, 1, 0, 0, -128, 127, out)
        assert out.reshape(-1).tolist() == [50, 50, -128, -128]
        impl.maxpool_s8(inp, 1, 1, 1, 1, 0, 0, -20, 127, out)
        assert out.reshape(-1).tolist() == [50, 50, -20, -20]


def test_avgpool_rounds_half_away_from_zero():
    """sums -3 and 3 over 2 taps: C truncating division gives -2 and 2 (floor division would give -1 for -3)."""
    inp = np.array([-1, -2, 1, 2], np.int8).reshape(1, 2, 2, 1)
    out = np.zeros((1, 2, 1, 1), np.int8)
    NUMBA.avgpool_s8(inp, 1, 2, 1, 1, 0, 0, -128, 127, out)
    assert out.reshape(-1).tolist() == [-2, 2]


@st.composite
def softmax_cases(draw):
    from emu.fixedpoint import quantize_multiplier_greater_than_one
    rows, size = draw(st.integers(1, 4)), draw(st.integers(1, 40))
    s_in = draw(st.floats(1e-3, 2.0))
    mult, shift = quantize_multiplier_greater_than_one(min(s_in * 2 ** 26, 2 ** 31 - 1))
    diff_min = -int((31 * 2 ** 26) // (1 << shift))   # -floor(31 * 2^26 / 2^shift)
    return int8_array(draw, (rows, size)), mult, shift, diff_min


@settings(max_examples=60, deadline=None)
@given(softmax_cases())
def test_softmax_matches_naive(c):
    inp, mult, shift, diff_min = c
    got, want = np.zeros_like(inp), np.zeros_like(inp)
    NUMBA.softmax_s8(inp, mult, shift, diff_min, got)
    naive.softmax_s8(inp, mult, shift, diff_min, want)
    assert_same(got, want, "softmax_s8")


@st.composite
def add_cases(draw):
    size = draw(st.integers(1, 64))
    small_mults = st.one_of(st.integers(1 << 30, INT32_MAX), st.sampled_from([1 << 30, INT32_MAX]))
    return dict(in1=int8_array(draw, (size,)), in2=int8_array(draw, (size,)),
                in1_offset=draw(zero_point_offsets), in1_mult=draw(small_mults), in1_shift=draw(st.integers(-12, 0)),
                in2_offset=draw(zero_point_offsets), in2_mult=draw(small_mults), in2_shift=draw(st.integers(-12, 0)),
                left_shift=draw(st.sampled_from([20, 20, 0, 7, 23])), out_mult=draw(multipliers),
                out_shift=draw(st.integers(-31, 30)), out_offset=draw(st.integers(-128, 127)),
                act=draw(act_ranges()))


@FAST
@given(add_cases())
def test_add_matches_naive(c):
    outs = []
    for impl in (NUMBA, naive):
        out = np.zeros_like(c["in1"])
        impl.add_s8(c["in1"], c["in2"], c["in1_offset"], c["in1_mult"], c["in1_shift"], c["in2_offset"],
                    c["in2_mult"], c["in2_shift"], c["left_shift"], c["out_mult"], c["out_shift"], c["out_offset"],
                    *c["act"], out)
        outs.append(out)
    assert_same(outs[0], outs[1], "add_s8")


@FAST
@given(st.integers(1, 64).flatmap(lambda n: st.tuples(st.just(n), st.data())))
def test_mul_matches_naive(case):
    n, data = case
    in1 = int8_array(data.draw, (n,))
    in2 = int8_array(data.draw, (n,))
    rounding = data.draw(st.sampled_from([0, 1]))
    params = (data.draw(zero_point_offsets), data.draw(zero_point_offsets), data.draw(multipliers),
              data.draw(st.integers(-31, 30)), data.draw(st.integers(-128, 127)))
    act = data.draw(act_ranges())
    outs = []
    for impl in (NUMBA, naive):
        out = np.zeros_like(in1)
        impl.mul_s8(in1, in2, *params, *act, rounding, out)
        outs.append(out)
    assert_same(outs[0], outs[1], "mul_s8")


@FAST
@given(st.data())
def test_pad_and_transpose_match_naive(data):
    shape = tuple(data.draw(st.integers(1, 4)) for _ in range(4))
    inp = int8_array(data.draw, shape, "random")
    before = np.array([data.draw(st.integers(0, 2)) for _ in range(4)], np.int32)
    after = [data.draw(st.integers(0, 2)) for _ in range(4)]
    out_shape = tuple(s + int(b) + a for s, b, a in zip(shape, before, after))
    value = data.draw(st.sampled_from([-128, 0, 127, 5]))
    got, want = np.full(out_shape, 1, np.int8), np.full(out_shape, 2, np.int8)
    NUMBA.pad_s8(inp, before, value, got)
    naive.pad_s8(inp, before, value, want)
    assert_same(got, want, "pad_s8")
    perm = np.array(data.draw(st.permutations(range(4))), np.int32)
    t_shape = tuple(shape[p] for p in perm)
    got, want = np.zeros(t_shape, np.int8), np.ones(t_shape, np.int8)
    NUMBA.transpose_s8(inp, perm, got)
    naive.transpose_s8(inp, perm, want)
    assert_same(got, want, "transpose_s8")
    assert_same(got, np.transpose(inp, perm), "transpose_s8 vs numpy")


# ---- CMSIS-NN conformance vectors (TFLite reference outputs) ---------------------------------------------

def load_case(folder):
    """(defines without the case prefix, arrays by name without the prefix) of one CMSIS-NN test folder: its
    config_data.h and the headers its test_data.h includes (emu.cheader parses)."""
    test_data = folder / "test_data.h"
    if not test_data.is_file():
        pytest.fail(f"{test_data} is missing: the conformance data in ../shared is incomplete")
    headers = ["config_data.h"] + [h for h in cheader.parse_includes(test_data.read_text()) if h != "config_data.h"]
    defines, arrays = {}, {}
    for name in headers:
        d, a = cheader.read_header(folder / name)
        defines.update({k.removeprefix(folder.name.upper() + "_"): v for k, v in d.items()})
        arrays.update({k.removeprefix(folder.name + "_"): v for k, v in a.items() if v is not None})
    return defines, arrays


def test_conformance_softmax(conformance_dir):
    d, a = load_case(conformance_dir / "softmax")
    inp = a["input"].reshape(d["NUM_ROWS"], d["ROW_SIZE"])
    for impl in (NUMBA, naive):
        out = np.zeros_like(inp)
        impl.softmax_s8(inp, d["INPUT_MULT"], d["INPUT_LEFT_SHIFT"], d["DIFF_MIN"], out)
        assert_same(out.reshape(-1), a["output_ref"], f"softmax ({impl.__name__})")


def test_conformance_add_mul(conformance_dir):
    d, a = load_case(conformance_dir / "add")
    for impl in (NUMBA, naive):
        out = np.zeros_like(a["input1"])
        impl.add_s8(a["input1"], a["input2"], d["INPUT1_OFFSET"], d["INPUT1_MULT"], d["INPUT1_SHIFT"],
                    d["INPUT2_OFFSET"], d["INPUT2_MULT"], d["INPUT2_SHIFT"], d["LEFT_SHIFT"], d["OUTPUT_MULT"],
                    d["OUTPUT_SHIFT"], d["OUTPUT_OFFSET"], d["OUT_ACTIVATION_MIN"], d["OUT_ACTIVATION_MAX"], out)
        assert_same(out, a["output_ref"], f"add ({impl.__name__})")
    d, a = load_case(conformance_dir / "mul")
    for impl in (NUMBA, naive):
        out = np.zeros_like(a["input1"])
        impl.mul_s8(a["input1"], a["input2"], d["INPUT1_OFFSET"], d["INPUT2_OFFSET"], d["OUTPUT_MULT"],
                    d["OUTPUT_SHIFT"], d["OUTPUT_OFFSET"], d["OUT_ACTIVATION_MIN"], d["OUT_ACTIVATION_MAX"], 0, out)
        assert_same(out, a["output_ref"], f"mul ({impl.__name__})")


@pytest.mark.parametrize("case", ["pad_int8_1", "pad_int8_2"])
def test_conformance_pad(conformance_dir, case):
    d, a = load_case(conformance_dir / case)
    shape = tuple(d[f"INPUT_{k}"] for k in "NHWC")
    before = np.array([d[f"PRE_PAD_{k}"] for k in "NHWC"], np.int32)
    out_shape = tuple(s + int(b) + d[f"POST_PAD_{k}"] for s, b, k in zip(shape, before, "NHWC"))
    for impl in (NUMBA, naive):
        out = np.zeros(out_shape, np.int8)
        impl.pad_s8(a["input_tensor"].reshape(shape), before, d["PAD_VALUE"], out)
        assert_same(out.reshape(-1), a["output"], f"{case} ({impl.__name__})")


TRANSPOSES = ["transpose_3dim", "transpose_3dim2", "transpose_chwn", "transpose_default", "transpose_matrix",
              "transpose_nchw", "transpose_ncwh", "transpose_nwhc", "transpose_wchn"]


@pytest.mark.parametrize("case", TRANSPOSES)
def test_conformance_transpose(conformance_dir, case):
    d, a = load_case(conformance_dir / case)
    perm = d["PERM"][:d["PERM_SIZE"]]
    in_dims, out_dims = list(d["IN_DIM"][:len(perm)]), list(d["OUT_DIM"][:len(perm)])   # listed padded with 0s
    lead = 4 - len(perm)
    perm4 = np.array(list(range(lead)) + [p + lead for p in perm], np.int32)
    inp = a["input_tensor"].reshape([1] * lead + in_dims)
    out = np.zeros([1] * lead + out_dims, np.int8)
    NUMBA.transpose_s8(inp, perm4, out)
    assert_same(out.reshape(-1), a["output"], case)


CONV_CASES = ["basic", "conv_1_x_n_1", "conv_1_x_n_2", "conv_1_x_n_3", "conv_1_x_n_4", "conv_1_x_n_5",
              "conv_1_x_n_7", "conv_2", "conv_2x2_dilation", "conv_2x2_dilation_5x5_input", "conv_3",
              "conv_3x2_dilation", "conv_3x3_dilation_5x5_input", "conv_dilation_golden", "conv_out_activation",
              "kernel1x1", "kernel1x1_stride_x", "kernel1x1_stride_x_y", "kernel1x1_stride_x_y_1",
              "depthwise_2", "depthwise_dilation", "depthwise_eq_in_out_ch", "depthwise_kernel_3x3",
              "depthwise_kernel_3x3_null_bias", "depthwise_mult_batches", "depthwise_null_bias_0",
              "depthwise_null_bias_1", "depthwise_out_activation"]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conformance_conv_family(conformance_dir, case):
    d, a = load_case(conformance_dir / case)
    n, h, w, cin, cout = d["INPUT_BATCHES"], d["INPUT_H"], d["INPUT_W"], d["IN_CH"], d["OUT_CH"]
    kh, kw = d["FILTER_Y"], d["FILTER_X"]
    oh, ow = d["OUTPUT_H"], d["OUTPUT_W"]
    bias = a.get("biases", np.zeros(cout, np.int32)).astype(np.int32)
    if bias.size != cout:
        bias = np.zeros(cout, np.int32)
    common = (a["output_mult"], a["output_shift"])
    geo = (d["INPUT_OFFSET"], d["OUTPUT_OFFSET"], d["STRIDE_Y"], d["STRIDE_X"], d["PAD_Y"], d["PAD_X"],
           d.get("DILATION_Y", 1), d.get("DILATION_X", 1), d["OUT_ACTIVATION_MIN"], d["OUT_ACTIVATION_MAX"], 0)
    inp = a["input"].reshape(n, h, w, cin)
    out = np.zeros((n, oh, ow, cout), np.int8)
    if "CH_MULT" in d:
        NUMBA.depthwise_conv_s8(inp, a["weights"].reshape(1, kh, kw, cout), bias, *common, d["CH_MULT"], *geo, out)
    else:
        cin_g = a["weights"].size // (cout * kh * kw)
        NUMBA.conv_s8(inp, a["weights"].reshape(cout, kh, kw, cin_g), bias, *common, *geo, out)
    assert_same(out.reshape(-1), a["output_ref"], case)


@pytest.mark.parametrize("case", ["avgpooling", "avgpooling_1", "avgpooling_2", "avgpooling_3", "avgpooling_4",
                                  "maxpooling", "maxpooling_1", "maxpooling_2", "maxpooling_3", "maxpooling_4",
                                  "maxpooling_5", "maxpooling_6"])
def test_conformance_pooling(conformance_dir, case):
    d, a = load_case(conformance_dir / case)
    inp = a["input_tensor"].reshape(d["BATCH_SIZE"], d["INPUT_H"], d["INPUT_W"], d["INPUT_C"])
    out = np.zeros((d["BATCH_SIZE"], d["OUTPUT_H"], d["OUTPUT_W"], d["OUTPUT_C"]), np.int8)
    fn = NUMBA.avgpool_s8 if case.startswith("avg") else NUMBA.maxpool_s8
    fn(inp, d["FILTER_H"], d["FILTER_W"], d["STRIDE_H"], d["STRIDE_W"], d["PADDING_H"], d["PADDING_W"],
       d["ACTIVATION_MIN"], d["ACTIVATION_MAX"], out)
    assert_same(out.reshape(-1), a["output"], case)


# ---- C twins == Numba (the c_kernels fixture: skipped only when no C compiler can build emu._c_kernels) ------

@FAST
@given(conv_cases(), conv_cases(depthwise=True), fc_cases(), pool_cases())
def test_c_backend_matches_numba(c_kernels, conv, dw, fc, pool):
    c = get_backend("c")
    assert_same(run_conv(c, conv, False), run_conv(NUMBA, conv, False), "conv_s8 C vs numba")
    assert_same(run_conv(c, dw, True), run_conv(NUMBA, dw, True), "depthwise_conv_s8 C vs numba")
    assert_same(run_fc(c, fc), run_fc(NUMBA, fc), "fully_connected_s8 C vs numba")
    assert_same(run_pool(c.avgpool_s8, pool), run_pool(NUMBA.avgpool_s8, pool), "avgpool_s8 C vs numba")
    assert_same(run_pool(c.maxpool_s8, pool), run_pool(NUMBA.maxpool_s8, pool), "maxpool_s8 C vs numba")


@FAST
@given(softmax_cases(), add_cases())
def test_c_backend_matches_numba_softmax_add(c_kernels, sm, add):
    c = get_backend("c")
    inp, mult, shift, diff_min = sm
    got, want = np.zeros_like(inp), np.zeros_like(inp)
    c.softmax_s8(inp, mult, shift, diff_min, got)
    NUMBA.softmax_s8(inp, mult, shift, diff_min, want)
    assert_same(got, want, "softmax_s8 C vs numba")
    outs = []
    for impl in (c, NUMBA):
        out = np.zeros_like(add["in1"])
        impl.add_s8(add["in1"], add["in2"], add["in1_offset"], add["in1_mult"], add["in1_shift"], add["in2_offset"],
                    add["in2_mult"], add["in2_shift"], add["left_shift"], add["out_mult"], add["out_shift"],
                    add["out_offset"], *add["act"], out)
        outs.append(out)
    assert_same(outs[0], outs[1], "add_s8 C vs numba")


@st.composite
def wide_conv_cases(draw):
    """Model-sized convolutions (groups 1): channel counts around the 64-long dot blocks, paddings up to beyond the
    kernel, input offsets at and beyond the int16 row limit (conv_s8's fast path vs its general path)."""
    from emu.kernels.conv import ROW_OFFSET_MAX, ROW_OFFSET_MIN
    cin = draw(st.sampled_from([1, 3, 63, 64, 65, 130]))
    cout = draw(st.sampled_from([1, 5, 64, 70]))
    kh, kw = draw(st.sampled_from([(1, 1), (3, 3), (10, 4), (2, 5)]))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    dh, dw = draw(st.sampled_from([(1, 1), (1, 1), (2, 1), (1, 2)]))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 6))
    pt, pl = draw(st.integers(0, kh + 2)), draw(st.integers(0, kw + 2))
    oh = out_size(h, kh, sh, dh, pt, draw(st.integers(0, 3)))
    ow = out_size(w, kw, sw, dw, pl, draw(st.integers(0, 3)))
    rounding, mult, shift, bias = draw(requant_params(cout))
    lo, hi = draw(act_ranges())
    offset = draw(st.one_of(zero_point_offsets, st.sampled_from(
        [ROW_OFFSET_MIN, ROW_OFFSET_MAX, ROW_OFFSET_MIN - 1, ROW_OFFSET_MAX + 1, INT32_MIN + 128, INT32_MAX - 127])))
    return dict(inp=int8_array(draw, (draw(st.integers(1, 2)), h, w, cin)), filt=int8_array(draw, (cout, kh, kw, cin)),
                bias=bias, mult=mult, shift=shift, ch_mult=None, input_offset=offset,
                output_offset=draw(st.integers(-128, 127)), stride_h=sh, stride_w=sw, pad_top=pt, pad_left=pl,
                dilation_h=dh, dilation_w=dw, act_min=lo, act_max=hi, rounding=rounding,
                out_shape=(None, oh, ow, cout))


def _fix_batch(c):
    c["out_shape"] = (c["inp"].shape[0],) + c["out_shape"][1:]
    return c


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wide_conv_cases())
def test_conv_wide_channels_match_naive(c):
    """conv_s8 == naive on model-sized channel counts (64-blocks, zero tails, padding runs, both paths)."""
    c = _fix_batch(c)
    assert_same(run_conv(NUMBA, c, False), run_conv(naive, c, False), "conv_s8 (wide)")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wide_conv_cases(), st.booleans())
def test_conv_fast_path_equals_general_path(c, ort):
    """The int16-row fast path and the general transposed-filter path give identical outputs where both apply."""
    from emu.kernels import conv
    c = _fix_batch(c)
    if not conv.ROW_OFFSET_MIN <= c["input_offset"] <= conv.ROW_OFFSET_MAX:
        c["input_offset"] = 128
    cout = c["filt"].shape[0]
    scale = None
    filter_offset = 0
    if ort:                                     # the onnxruntime profile's epilogue and asymmetric weights
        c["rounding"], scale = FLOAT32_RNE, ort_scales(cout, c["filt"].size)
        filter_offset = int(np.random.default_rng(cout).choice([128, -127, 5, 0]))
    qp = np.zeros((QP_ROWS, cout), np.int64) if ort else prepare_requantize(c["mult"], c["shift"], c["rounding"])
    args = [c["inp"], c["filt"], c["bias"], qp, scale, c["input_offset"], filter_offset] + \
        [c[k] for k in ("output_offset", "stride_h", "stride_w", "pad_top", "pad_left", "dilation_h", "dilation_w",
                        "act_min", "act_max", "rounding")]
    outs = []
    for kernel in (conv._conv_s8_rows, conv._conv_s8):
        out = np.full(c["out_shape"], 99, np.int8)
        kernel(*args, out, np.full(conv.conv_scratch_size(c["filt"].shape), -7, np.int32))
        outs.append(out)
    assert_same(outs[0], outs[1], "conv fast path vs general path")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_cases(), conv_cases(depthwise=True), fc_cases(), pool_cases(), softmax_cases())
def test_bound_kernels_equal_checked_kernels(conv, dw, fc, pool, sm):
    """backends.bind(numba, name, *args)() (checked once, unchecked kernel per call, run twice on new data) equals
    the checked kernel."""
    names = ("input_offset", "output_offset", "stride_h", "stride_w", "pad_top", "pad_left", "dilation_h",
             "dilation_w", "act_min", "act_max", "rounding")
    cases = [("conv_s8", [conv[k] for k in ("inp", "filt", "bias", "mult", "shift")] + [conv[k] for k in names],
              conv["out_shape"]),
             ("depthwise_conv_s8", [dw[k] for k in ("inp", "filt", "bias", "mult", "shift", "ch_mult")]
              + [dw[k] for k in names], dw["out_shape"]),
             ("fully_connected_s8", [fc[k] for k in ("inp", "filt", "bias", "mult", "shift", "input_offset",
                                                     "filter_offset", "output_offset", "act_min", "act_max",
                                                     "rounding")], fc["out_shape"]),
             ("avgpool_s8", [pool["inp"], *pool["args"]], pool["out_shape"]),
             ("maxpool_s8", [pool["inp"], *pool["args"]], pool["out_shape"]),
             ("softmax_s8", list(sm), sm[0].shape)]
    rng = np.random.default_rng(0)
    for name, args, out_shape in cases:
        inp = args[0].copy()
        bound_out = np.full(out_shape, 99, np.int8)
        run = backends.bind(NUMBA, name, inp, *args[1:], bound_out)
        for _ in range(2):
            inp[...] = rng.integers(-128, 128, inp.shape, dtype=np.int8)
            run()
            want = np.full(out_shape, 99, np.int8)
            getattr(NUMBA, name)(inp.copy(), *args[1:], want)
            assert_same(bound_out, want, f"bound {name}")


def test_bind_checks_arguments_once_at_bind_time():
    inp = np.zeros((1, 3, 3, 2), np.int16)
    filt = np.zeros((2, 1, 1, 2), np.int8)
    q = np.zeros(2, np.int32)
    with pytest.raises(KernelArgumentError, match="dtype"):
        backends.bind(NUMBA, "conv_s8", inp, filt, q, q, q, 0, 0, 1, 1, 0, 0, 1, 1, -128, 127, 0,
                      np.zeros((1, 3, 3, 2), np.int8))
    calls = []
    fallback = backends.bind(type("K", (), {"conv_s8": staticmethod(lambda *a: calls.append(len(a)))}), "conv_s8", 1, 2)
    fallback()
    assert calls == [2]


# ---- registry and argument checks -------------------------------------------------------------------------

def test_registry():
    assert BACKENDS == ("numba", "c")
    for name in KERNEL_NAMES:
        assert callable(getattr(NUMBA, name))
    with pytest.raises(KernelArgumentError, match="unknown kernel backend"):
        get_backend("cuda")


def test_wrappers_reject_bad_arguments():
    inp = np.zeros((1, 3, 3, 2), np.int8)
    filt = np.zeros((2, 1, 1, 2), np.int8)
    q = np.zeros(2, np.int32)
    out = np.zeros((1, 3, 3, 2), np.int8)
    good = [inp, filt, q, q, q, 0, 0, 1, 1, 0, 0, 1, 1, -128, 127, 0, out]
    NUMBA.conv_s8(*good)
    for index, bad, message in [(0, inp.astype(np.int16), "dtype"), (0, np.zeros((1, 3, 3, 4), np.int8)[..., ::2], "C-contiguous"),
                                (2, np.zeros(3, np.int32), "shape"), (7, 0, "stride_h"), (13, 200, "act_min"),
                                (15, 2, "rounding"), (4, np.array([40, 0], np.int32), "shift")]:
        args = list(good)
        args[index] = bad
        if message == "shift":
            args[15] = 1
        with pytest.raises(KernelArgumentError, match=message):
            NUMBA.conv_s8(*args)
            pytest.fail(f"argument {index} = {bad!r} was accepted")
    with pytest.raises(KernelArgumentError, match="scratch holds"):
        NUMBA.conv_s8(*good, scratch=np.zeros(3, np.int32))
    with pytest.raises(KernelArgumentError, match="overlaps"):
        NUMBA.transpose_s8(inp, np.arange(4, dtype=np.int32), inp)
    with pytest.raises(KernelArgumentError, match="no valid tap"):
        NUMBA.avgpool_s8(inp, 1, 1, 1, 1, 2, 2, -128, 127, np.zeros((1, 3, 3, 2), np.int8))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(INT32_MIN, INT32_MAX), multipliers, st.integers(-31, 30)), min_size=1,
                max_size=20), st.sampled_from([0, 1]))
def test_naive_vector_requantize_equals_scalar(rows, rounding):
    """tests/naive.py's vectorised requantize (used by its conv/FC) equals its scalar Python-int one."""
    acc, mult, shift = (np.array(c, np.int64) for c in zip(*rows))
    got = naive.requantize_array(acc, mult, shift, rounding)
    want = [naive.requantize(int(a), int(m), int(s), rounding) for a, m, s in rows]
    assert got.tolist() == want


@pytest.mark.parametrize("case", ["fully_connected", "fully_connected_out_activation", "fully_connected_null_bias_0",
                                  "fully_connected_mve_0", "fc_per_ch"])
def test_conformance_fully_connected(conformance_dir, case):
    d, a = load_case(conformance_dir / case)
    depth, outs = d["ACCUMULATION_DEPTH"], d["OUT_CH"]
    inp = a["input"].reshape(-1, depth)
    bias = a["biases"] if a.get("biases", np.zeros(0)).size == outs else a.get("bias", np.zeros(outs, np.int32))
    if "output_multiplier" in a:     # per-channel quantization
        mult, shift = a["output_multiplier"], a["output_shift"]
    else:
        mult, shift = np.full(outs, d["OUTPUT_MULTIPLIER"], np.int32), np.full(outs, d["OUTPUT_SHIFT"], np.int32)
    for impl in (NUMBA, naive):
        out = np.zeros((inp.shape[0], outs), np.int8)
        impl.fully_connected_s8(inp, a["weights"].reshape(outs, depth), bias.astype(np.int32), mult, shift,
                                d["INPUT_OFFSET"], d.get("FILTER_OFFSET", 0), d["OUTPUT_OFFSET"],
                                d["OUT_ACTIVATION_MIN"], d["OUT_ACTIVATION_MAX"], 0, out)
        assert_same(out.reshape(-1), a.get("output_ref", a.get("output")), f"{case} ({impl.__name__})")


def test_conformance_ds_cnn_s_whole_network(conformance_dir):
    """CMSIS-NN's ds_cnn_s case: conv, 4 x (depthwise, pointwise), average pool, FC, softmax chained through the
    Numba kernels reproduce the reference output (TFLite reference kernels) exactly."""
    folder = conformance_dir / "ds_cnn_s"
    d, a = {}, {}
    for path in sorted(folder.glob("*.h")):
        defines, arrays = cheader.read_header(path)
        d.update(defines)
        a.update({name.removeprefix("ds_cnn_s_"): v for name, v in arrays.items()})

    def conv_layer(x, k, depthwise):
        p = f"{'DEPTHWISE_CONV_2D' if depthwise else 'CONV_2D'}_{k}_"
        stem = f"layer_{k}_{'depthwise_conv_2d' if depthwise else 'conv_2d'}_"
        kh, kw, cout = d[p + "FILTER_Y"], d[p + "FILTER_X"], d[p + "OUT_CH"]
        out = np.zeros((1, d[p + "OUTPUT_H"], d[p + "OUTPUT_W"], cout), np.int8)
        q = (a[stem + "bias"], a[stem + "output_mult"], a[stem + "output_shift"])
        geo = (d[p + "INPUT_OFFSET"], d[p + "OUTPUT_OFFSET"], d[p + "STRIDE_Y"], d[p + "STRIDE_X"], d[p + "PAD_Y"],
               d[p + "PAD_X"], d[p + "DILATION_Y"], d[p + "DILATION_X"], d[p + "OUT_ACTIVATION_MIN"],
               d[p + "OUT_ACTIVATION_MAX"], 0)
        if depthwise:
            NUMBA.depthwise_conv_s8(x, a[stem + "weights"].reshape(1, kh, kw, cout), *q, cout // d[p + "IN_CH"],
                                    *geo, out)
        else:
            NUMBA.conv_s8(x, a[stem + "weights"].reshape(cout, kh, kw, -1), *q, *geo, out)
        return out

    x = a["input"].reshape(1, d["CONV_2D_1_INPUT_H"], d["CONV_2D_1_INPUT_W"], d["CONV_2D_1_IN_CH"])
    x = conv_layer(x, 1, False)
    for k in (2, 4, 6, 8):
        x = conv_layer(conv_layer(x, k, True), k + 1, False)
    p = "AVERAGE_POOL_2D_10_"
    pooled = np.zeros((1, 1, 1, x.shape[3]), np.int8)
    NUMBA.avgpool_s8(x, d[p + "FILTER_Y"], d[p + "FILTER_X"], d[p + "STRIDE_Y"], d[p + "STRIDE_X"], d[p + "PAD_Y"],
                     d[p + "PAD_X"], d[p + "OUT_ACTIVATION_MIN"], d[p + "OUT_ACTIVATION_MAX"], pooled)
    p = "FULLY_CONNECTED_12_"
    outs = a["layer_12_fully_connected_bias"].size
    logits = np.zeros((1, outs), np.int8)
    NUMBA.fully_connected_s8(pooled.reshape(1, -1), a["layer_12_fully_connected_weights"].reshape(outs, -1),
                             a["layer_12_fully_connected_bias"], np.full(outs, d[p + "OUTPUT_MULTIPLIER"], np.int32),
                             np.full(outs, d[p + "OUTPUT_SHIFT"], np.int32), d[p + "INPUT_OFFSET"], 0,
                             d[p + "OUTPUT_OFFSET"], d[p + "OUT_ACTIVATION_MIN"], d[p + "OUT_ACTIVATION_MAX"], 0, logits)
    probs = np.zeros_like(logits)
    NUMBA.softmax_s8(logits, d["SOFTMAX_13_MULT"], d["SOFTMAX_13_SHIFT"], d["SOFTMAX_13_DIFF_MIN"], probs)
    assert_same(probs.reshape(-1), a["output_ref"], "ds_cnn_s output")


# ---- onnxruntime profile epilogue: rounding FLOAT32_RNE, float32 scale, filter_offset ----------------------

FLOAT32_RNE = fixedpoint.FLOAT32_RNE


def ort_scales(count, seed):
    """float32 per-channel scales: real ORT-like ranges plus ties (0.5, 1.5), 1.0, large and tiny values."""
    rng = np.random.default_rng(seed)
    special = np.array([0.5, 1.5, 1.0, 0.25, 3.0, 1e-6, 2.0 ** -20, 0.0001234], np.float32)
    s = rng.uniform(1e-5, 0.05, count).astype(np.float32)
    pick = rng.random(count) < 0.3
    s[pick] = rng.choice(special, int(pick.sum()))
    return s


ort_filter_offsets = st.one_of(st.sampled_from([0, 128, -127, 1, 255]), st.integers(-128, 128),
                               st.integers(-(1 << 20), 1 << 20))


@st.composite
def ort_cases(draw, kind):
    """A conv/depthwise/fc case turned to the onnxruntime profile: FLOAT32_RNE, scale, filter_offset, mult/shift None."""
    c = draw(fc_cases() if kind == "fc" else conv_cases(depthwise=kind == "dw"))
    count = c["out_shape"][-1]
    c.update(rounding=FLOAT32_RNE, scale=ort_scales(count, draw(st.integers(0, 2 ** 32 - 1))), mult=None, shift=None,
             filter_offset=draw(ort_filter_offsets))
    if draw(st.booleans()):          # small accumulators too, so ties and the clamp both happen often
        c["bias"] = np.asarray(np.random.default_rng(count).integers(-300, 300, count), np.int32)
    return c


def run_ort(impl, c, kind):
    out = np.full(c["out_shape"], 99, np.int8)
    if kind == "fc":
        impl.fully_connected_s8(*[c[k] for k in ("inp", "filt", "bias", "mult", "shift", "input_offset",
                                                 "filter_offset", "output_offset", "act_min", "act_max", "rounding")],
                                out, scale=c["scale"])
        return out
    args = [c["inp"], c["filt"], c["bias"], c["mult"], c["shift"]] + ([c["ch_mult"]] if kind == "dw" else [])
    args += [c[k] for k in ("input_offset", "output_offset", "stride_h", "stride_w", "pad_top", "pad_left",
                            "dilation_h", "dilation_w", "act_min", "act_max", "rounding")]
    (impl.depthwise_conv_s8 if kind == "dw" else impl.conv_s8)(*args, out, filter_offset=c["filter_offset"],
                                                              scale=c["scale"])
    return out


@FAST
@given(ort_cases("conv"), ort_cases("dw"), ort_cases("fc"))
def test_float32_epilogue_kernels_match_naive(conv, dw, fc):
    """conv / depthwise / fully connected with rounding FLOAT32_RNE, filter_offset and float32 scales == naive
    (exact int64 accumulators wrapped to int32, numpy float32 epilogue)."""
    for kind, c in (("conv", conv), ("dw", dw), ("fc", fc)):
        assert_same(run_ort(NUMBA, c, kind), run_ort(naive, c, kind), f"{kind} FLOAT32_RNE")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ort_cases("conv"), ort_cases("dw"), ort_cases("fc"))
def test_float32_epilogue_bound_equals_checked(conv, dw, fc):
    """bind_<name> with rounding FLOAT32_RNE / filter_offset / scale (what the onnxruntime runtime binds) equals the
    checked kernel, run twice on new input data."""
    rng = np.random.default_rng(1)
    for kind, c in (("conv", conv), ("dw", dw), ("fc", fc)):
        bound_out = np.full(c["out_shape"], 99, np.int8)
        inp = c["inp"].copy()
        name = {"conv": "conv_s8", "dw": "depthwise_conv_s8", "fc": "fully_connected_s8"}[kind]
        if kind == "fc":
            args = [inp] + [c[k] for k in ("filt", "bias", "mult", "shift", "input_offset", "filter_offset",
                                           "output_offset", "act_min", "act_max", "rounding")]
            kwargs = dict(scale=c["scale"])
        else:
            args = [inp, c["filt"], c["bias"], None, None] + ([c["ch_mult"]] if kind == "dw" else [])
            args += [c[k] for k in ("input_offset", "output_offset", "stride_h", "stride_w", "pad_top", "pad_left",
                                    "dilation_h", "dilation_w", "act_min", "act_max", "rounding")]
            kwargs = dict(scale=c["scale"], filter_offset=c["filter_offset"])
        run = backends.bind(NUMBA, name, *args, bound_out, **kwargs)
        for _ in range(2):
            inp[...] = rng.integers(-128, 128, inp.shape, dtype=np.int8)
            run()
            c["inp"] = inp.copy()
            assert_same(bound_out, run_ort(NUMBA, c, kind), f"bound {name} FLOAT32_RNE")


def test_requantize_float32_matches_numpy_float32():
    """emu.fixedpoint.requantize_float32 == naive's numpy float32 expression on int32 extremes, ties (x.5 after the
    scale), both clamp edges and random accumulators, for several scales and offsets."""
    rng = np.random.default_rng(7)
    accs = np.concatenate([np.array([INT32_MIN, INT32_MAX, 0, 1, -1, 3, -3, 5, -5, 255, -255, 16777217, -16777217],
                                    np.int64), rng.integers(-300, 300, 300), rng.integers(INT32_MIN, INT32_MAX, 300)])
    for scale in (0.5, 1.5, 1.0, 0.0078125, 1e-6, 0.0123, 7.0):
        for zp, lo, hi in ((0, -128, 127), (-128, -128, 127), (127, -128, 127), (5, 0, 6), (-3, -100, 100)):
            want = naive.requantize_float32_array(accs, np.float32(scale), zp, lo, hi)
            got = np.array([fixedpoint.requantize_float32(np.int32(a), np.float32(scale), zp, lo, hi) for a in accs])
            assert_same(got, want, f"requantize_float32 scale {scale} zp {zp}")
    # ties go to even: acc * 0.5 for acc = -5..5
    got = [int(fixedpoint.requantize_float32(np.int32(a), np.float32(0.5), 0, -128, 127)) for a in range(-5, 6)]
    assert got == [-2, -2, -2, -1, 0, 0, 0, 1, 2, 2, 2]


def test_epilogue_argument_errors():
    x = np.zeros((1, 3, 3, 2), np.int8)
    filt = np.zeros((2, 1, 1, 2), np.int8)
    q = np.zeros(2, np.int32)
    out = np.zeros((1, 3, 3, 2), np.int8)
    geo = (0, 0, 1, 1, 0, 0, 1, 1, -128, 127)
    with pytest.raises(KernelArgumentError, match="needs a float32 per-channel scale"):
        NUMBA.conv_s8(x, filt, q, None, None, *geo, FLOAT32_RNE, out)
    with pytest.raises(KernelArgumentError, match="scale must have dtype float32"):
        NUMBA.conv_s8(x, filt, q, None, None, *geo, FLOAT32_RNE, out, scale=np.ones(2))
    with pytest.raises(KernelArgumentError, match="scale has shape"):
        NUMBA.conv_s8(x, filt, q, None, None, *geo, FLOAT32_RNE, out, scale=np.ones(3, np.float32))
    with pytest.raises(KernelArgumentError, match="only used with rounding FLOAT32_RNE"):
        NUMBA.conv_s8(x, filt, q, q, q, *geo, 0, out, scale=np.ones(2, np.float32))
    with pytest.raises(KernelArgumentError, match="rounding"):
        NUMBA.conv_s8(x, filt, q, q, q, *geo, 3, out)
    with pytest.raises(KernelArgumentError, match="rounding"):     # the C twin keeps fixed-point roundings only
        backends.check_rounding(FLOAT32_RNE)
