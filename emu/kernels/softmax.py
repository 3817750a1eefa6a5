"""softmax_s8: TFLM / CMSIS-NN int8 softmax (gemmlowp fixed point), output scale 1/256, zero-point -128.

Per row: diff = x - max(row); entries with diff < diff_min give -128. Otherwise
z = SRDHM(int32(diff << shift), mult) (Q5.26), e = exp_on_negative_values(z) (Q0.31),
sum = sum RDBP(e, 12) (Q12.19, int32), hr = clz(sum), scale = one_over_one_plus_x(int32((sum << hr) - 2^31)),
out = clamp(RDBP(SRDHM(scale, e), 35 - hr) - 128, -128, 127).
"""
import numpy as np

from emu.fixedpoint import (count_leading_zeros32, exp_on_negative_values, one_over_one_plus_x_for_x_in_0_1, rdbp,
                            srdhm, wrap_int32)
from emu.jit import njit
from emu.kernels.backends import check_array, check_int, check_no_alias, check_shape, compiled

ACCUMULATION_INTEGER_BITS = 12  # sum of exps in Q12.19


def softmax_s8(inp, mult, shift, diff_min, out):
    """Checked entry point: inp/out int8 [rows, row_size]; mult > 0, shift 0..31 (left), diff_min <= 0."""
    _softmax_s8(*_checked_softmax_args(inp, mult, shift, diff_min, out))


def bind_softmax_s8(inp, mult, shift, diff_min, out):
    """Checks the arguments once (as softmax_s8) and returns a no-argument callable running the unchecked kernel on
    these very arrays (contents may change between calls, never shapes or dtypes)."""
    return compiled(_softmax_s8, *_checked_softmax_args(inp, mult, shift, diff_min, out))


def _checked_softmax_args(inp, mult, shift, diff_min, out):
    inp = check_array("inp", inp, np.int8, 2)
    out = check_array("out", out, np.int8, 2, writable=True)
    check_shape("out", out, inp.shape)
    check_no_alias(out, inp)
    return (inp, check_int("mult", mult, 0), check_int("shift", shift, 0, 31), check_int("diff_min", diff_min, hi=0),
            out)


@njit(cache=True)
def _softmax_s8(inp, mult, shift, diff_min, out):
    """Loops: row -> (max, sum of exps, outputs); all int32 fixed point with explicit wrapping."""
    rows, row_size = inp.shape
    for r in range(rows):
        mx = np.int32(-128)
        for i in range(row_size):
            if np.int32(inp[r, i]) > mx:
                mx = np.int32(inp[r, i])
        total = np.int32(0)
        for i in range(row_size):
            diff = np.int32(inp[r, i]) - mx
            if diff >= diff_min:
                z = srdhm(wrap_int32(np.int64(diff) << np.int64(shift)), mult)
                total = wrap_int32(np.int64(total) + np.int64(rdbp(exp_on_negative_values(z), ACCUMULATION_INTEGER_BITS)))
        headroom = count_leading_zeros32(total)
        shifted_sum_minus_one = wrap_int32((np.int64(total) << np.int64(headroom)) - np.int64(2147483648))
        scale = one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one)
        bits_over_unit = ACCUMULATION_INTEGER_BITS - headroom + 23   # + 31 - 8 output bits
        for i in range(row_size):
            diff = np.int32(inp[r, i]) - mx
            if diff >= diff_min:
                z = srdhm(wrap_int32(np.int64(diff) << np.int64(shift)), mult)
                v = np.int64(rdbp(srdhm(scale, exp_on_negative_values(z)), bits_over_unit)) - np.int64(128)
                if v < -128:
                    v = -128
                elif v > 127:
                    v = 127
                out[r, i] = np.int8(v)
            else:
                out[r, i] = np.int8(-128)
