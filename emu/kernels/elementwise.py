"""add_s8 / mul_s8: TFLite int8 elementwise Add and Mul on equal-length flat arrays (the caller broadcasts).

add: a = int32((x1 + in1_offset) << left_shift); a1 = requantize_double(a, in1_mult, in1_shift); same for a2;
     out = clamp(requantize_double(int32(a1 + a2), out_mult, out_shift) + out_offset, act_min, act_max)
     (always double rounding: TFLite's MultiplyByQuantizedMultiplierSmallerThanOneExp).
mul: acc = int32((x1 + in1_offset) * (x2 + in2_offset));
     out = clamp(requantize(acc, out_mult, out_shift, rounding) + out_offset, act_min, act_max), evaluated as
     fixedpoint.requantize_prepared on the pieces qp (derived here, or a requantizer's own with keyword qp)
"""
import numpy as np

from emu.fixedpoint import requantize_double, requantize_prepared, wrap_int32
from emu.jit import njit
from emu.kernels.backends import (check_activation, check_array, check_epilogue, check_int, check_no_alias,
                                  check_shape, check_shift)


def add_s8(in1, in2, in1_offset, in1_mult, in1_shift, in2_offset, in2_mult, in2_shift, left_shift,
           out_mult, out_shift, out_offset, act_min, act_max, out):
    """Checked entry point for _add_sub_s8 (left_shift 0..31, shifts in the double-rounding range)."""
    _add_sub_s8(*checked_add_args(in1, in2, in1_offset, in1_mult, in1_shift, in2_offset, in2_mult, in2_shift,
                                  left_shift, out_mult, out_shift, out_offset, act_min, act_max, out), False)


def checked_add_args(in1, in2, in1_offset, in1_mult, in1_shift, in2_offset, in2_mult, in2_shift, left_shift,
                     out_mult, out_shift, out_offset, act_min, act_max, out):
    """add_s8's (and sub_s8's) checks; returns _add_sub_s8's arguments before `subtract`."""
    in1 = check_array("in1", in1, np.int8, 1)
    in2 = check_array("in2", in2, np.int8, 1)
    out = check_array("out", out, np.int8, 1, writable=True)
    check_shape("in2", in2, in1.shape)
    check_shape("out", out, in1.shape)
    lo, hi = check_activation(act_min, act_max)
    check_no_alias(out, in1, in2)
    return (in1, in2, check_int("in1_offset", in1_offset), check_int("in1_mult", in1_mult),
            check_shift("in1_shift", in1_shift, 0), check_int("in2_offset", in2_offset),
            check_int("in2_mult", in2_mult), check_shift("in2_shift", in2_shift, 0),
            check_int("left_shift", left_shift, 0, 31), check_int("out_mult", out_mult),
            check_shift("out_shift", out_shift, 0), check_int("out_offset", out_offset), lo, hi, out)


def mul_s8(in1, in2, in1_offset, in2_offset, out_mult, out_shift, out_offset, act_min, act_max, rounding, out, *,
           qp=None):
    """Checked entry point for _mul_s8. qp: a requantizer's prepared int64 pieces [QP_ROWS, 1] (then out_mult and
    out_shift are unused); None derives them from (out_mult, out_shift, rounding)."""
    in1 = check_array("in1", in1, np.int8, 1)
    in2 = check_array("in2", in2, np.int8, 1)
    out = check_array("out", out, np.int8, 1, writable=True)
    check_shape("in2", in2, in1.shape)
    check_shape("out", out, in1.shape)
    lo, hi = check_activation(act_min, act_max)
    rounding, qp, _ = check_epilogue(1, rounding, np.zeros(1, np.int32), None if qp is not None else
                                     np.array([check_int("out_mult", out_mult)], np.int32),
                                     None if qp is not None else np.array([check_int("out_shift", out_shift)], np.int32), None, qp)
    check_no_alias(out, in1, in2)
    _mul_s8(in1, in2, check_int("in1_offset", in1_offset), check_int("in2_offset", in2_offset), qp,
            check_int("out_offset", out_offset), lo, hi, rounding, out)


@njit(cache=True)
def _add_sub_s8(in1, in2, in1_offset, in1_mult, in1_shift, in2_offset, in2_mult, in2_shift, left_shift,
                out_mult, out_shift, out_offset, act_min, act_max, out, subtract):
    """add (subtract False) or TFLite SUB (True: the difference of the rescaled inputs), see the module doc."""
    for i in range(in1.shape[0]):
        a = wrap_int32((np.int64(in1[i]) + np.int64(in1_offset)) << np.int64(left_shift))
        b = wrap_int32((np.int64(in2[i]) + np.int64(in2_offset)) << np.int64(left_shift))
        a1 = np.int64(requantize_double(a, in1_mult, in1_shift))
        a2 = np.int64(requantize_double(b, in2_mult, in2_shift))
        s = wrap_int32(a1 - a2 if subtract else a1 + a2)
        v = np.int64(requantize_double(s, out_mult, out_shift)) + np.int64(out_offset)
        if v < act_min:
            v = act_min
        elif v > act_max:
            v = act_max
        out[i] = np.int8(v)


@njit(cache=True)
def _mul_s8(in1, in2, in1_offset, in2_offset, qp, out_offset, act_min, act_max, rounding, out):
    for i in range(in1.shape[0]):
        acc = wrap_int32((np.int64(in1[i]) + np.int64(in1_offset)) * (np.int64(in2[i]) + np.int64(in2_offset)))
        v = np.int64(requantize_prepared(acc, qp, 0, rounding)) + np.int64(out_offset)
        if v < act_min:
            v = act_min
        elif v > act_max:
            v = act_max
        out[i] = np.int8(v)
