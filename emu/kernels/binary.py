"""sub_s8, maximum_s8, minimum_s8: TFLite int8 Sub, Maximum and Minimum on equal-length flat arrays (the caller
broadcasts). Integer-only, allocation-free.

sub: TFLite's left-shift-20 scheme, as add_s8 but the difference of the rescaled inputs:
     a = requantize_double(int32((x1 + in1_offset) << left_shift), in1_mult, in1_shift); b likewise;
     out = clamp(requantize_double(int32(a - b), out_mult, out_shift) + out_offset, act_min, act_max)
maximum / minimum: the raw int8 values (tflite-micro requires equal quantization of inputs and output).
"""
import numpy as np
from numba import njit

from emu.fixedpoint import requantize_double, wrap_int32
from emu.kernels.backends import check_activation, check_array, check_int, check_no_alias, check_shape, check_shift


@njit(cache=True)
def _sub_s8(in1, in2, in1_offset, in1_mult, in1_shift, in2_offset, in2_mult, in2_shift, left_shift,
            out_mult, out_shift, out_offset, act_min, act_max, out):
    for i in range(in1.shape[0]):
        a = wrap_int32((np.int64(in1[i]) + np.int64(in1_offset)) << np.int64(left_shift))
        b = wrap_int32((np.int64(in2[i]) + np.int64(in2_offset)) << np.int64(left_shift))
        d = wrap_int32(np.int64(requantize_double(a, in1_mult, in1_shift))
                       - np.int64(requantize_double(b, in2_mult, in2_shift)))
        v = np.int64(requantize_double(d, out_mult, out_shift)) + np.int64(out_offset)
        if v < act_min:
            v = act_min
        elif v > act_max:
            v = act_max
        out[i] = np.int8(v)


@njit(cache=True)
def _minmax_s8(in1, in2, is_max, out):
    for i in range(in1.shape[0]):
        a = in1[i]
        b = in2[i]
        if is_max:
            out[i] = a if a > b else b
        else:
            out[i] = a if a < b else b


def _check_flat(in1, in2, out):
    in1 = check_array("in1", in1, np.int8, 1)
    in2 = check_array("in2", in2, np.int8, 1)
    out = check_array("out", out, np.int8, 1, writable=True)
    check_shape("in2", in2, in1.shape)
    check_shape("out", out, in1.shape)
    check_no_alias(out, in1, in2)


def bind_sub_s8(in1, in2, in1_offset, in1_mult, in1_shift, in2_offset, in2_mult, in2_shift, left_shift,
                out_mult, out_shift, out_offset, act_min, act_max, out):
    """Check once (as add_s8); returns a no-argument callable running the unchecked kernel."""
    _check_flat(in1, in2, out)
    lo, hi = check_activation(act_min, act_max)
    args = (in1, in2, check_int("in1_offset", in1_offset), check_int("in1_mult", in1_mult),
            check_shift("in1_shift", in1_shift, 0), check_int("in2_offset", in2_offset),
            check_int("in2_mult", in2_mult), check_shift("in2_shift", in2_shift, 0),
            check_int("left_shift", left_shift, 0, 31), check_int("out_mult", out_mult),
            check_shift("out_shift", out_shift, 0), check_int("out_offset", out_offset), lo, hi, out)
    return lambda: _sub_s8(*args)


def sub_s8(*args):
    bind_sub_s8(*args)()


def bind_minmax_s8(in1, in2, is_max, out):
    _check_flat(in1, in2, out)
    flag = bool(is_max)
    return lambda: _minmax_s8(in1, in2, flag, out)


def maximum_s8(in1, in2, out):
    bind_minmax_s8(in1, in2, True, out)()


def minimum_s8(in1, in2, out):
    bind_minmax_s8(in1, in2, False, out)()
