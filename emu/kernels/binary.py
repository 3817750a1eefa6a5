"""sub_s8, maximum_s8, minimum_s8: TFLite int8 Sub, Maximum and Minimum on equal-length flat arrays (the caller
broadcasts). Integer-only, allocation-free.

sub: TFLite's left-shift-20 scheme, as add_s8 but the difference of the rescaled inputs (emu.kernels.elementwise's
     _add_sub_s8 with subtract=True): out = clamp(requantize_double(int32(a - b), out_mult, out_shift) + out_offset)
maximum / minimum: the raw int8 values (tflite-micro requires equal quantization of inputs and output).
"""
import numpy as np

from emu.jit import njit
from emu.kernels.backends import check_array, check_no_alias, check_shape
from emu.kernels.elementwise import _add_sub_s8, checked_add_args


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
    args = checked_add_args(in1, in2, in1_offset, in1_mult, in1_shift, in2_offset, in2_mult, in2_shift, left_shift,
                            out_mult, out_shift, out_offset, act_min, act_max, out)
    return lambda: _add_sub_s8(*args, True)


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
