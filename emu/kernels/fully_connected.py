"""fully_connected_s8: int8 [N,K] x [Out,K] -> int8 [N,Out] (TFLM FullyConnected int8, per-tensor or per-channel).

acc = bias[o] + sum_k (x + input_offset) * (w + filter_offset)   (int32, wrapping)
out = emu.fixedpoint.requantize_channel(acc, qp, scale, o, output_offset, act_min, act_max, rounding):
      fixed-point (DOUBLE_/SINGLE_ROUNDING, scale None) or float32 (FLOAT32_RNE, keyword `scale`, float32 per output).
Per-tensor quantization = mult/shift arrays filled with one value.
"""
import numpy as np

from emu.fixedpoint import requantize_channel
from emu.jit import njit
from emu.kernels.backends import (check_activation, check_array, check_epilogue, check_int, check_no_alias, check_shape,
                                  compiled)


def fully_connected_s8(inp, filt, bias, mult, shift, input_offset, filter_offset, output_offset,
                       act_min, act_max, rounding, out, *, scale=None, qp=None):
    """Checked entry point: validates dtypes/shapes/ranges (one-line KernelArgumentError), then runs _fully_connected_s8.
    rounding FLOAT32_RNE takes the float32 per-output `scale` (mult/shift may then be None)."""
    _fully_connected_s8(*_checked_fc_args(inp, filt, bias, mult, shift, input_offset, filter_offset, output_offset,
                                          act_min, act_max, rounding, out, scale, qp))


def bind_fully_connected_s8(inp, filt, bias, mult, shift, input_offset, filter_offset, output_offset,
                            act_min, act_max, rounding, out, *, scale=None, qp=None):
    """Checks the arguments once (as fully_connected_s8) and returns a no-argument callable running the unchecked
    kernel on these very arrays (contents may change between calls, never shapes or dtypes)."""
    return compiled(_fully_connected_s8, *_checked_fc_args(
        inp, filt, bias, mult, shift, input_offset, filter_offset, output_offset, act_min, act_max, rounding, out,
        scale, qp))


def _checked_fc_args(inp, filt, bias, mult, shift, input_offset, filter_offset, output_offset,
                     act_min, act_max, rounding, out, scale, qp):
    """fully_connected_s8's checks; returns _fully_connected_s8's arguments."""
    inp = check_array("inp", inp, np.int8, 2)
    filt = check_array("filt", filt, np.int8, 2)
    out = check_array("out", out, np.int8, 2, writable=True)
    n, k = inp.shape
    out_ch = filt.shape[0]
    check_shape("filt", filt, (out_ch, k))
    check_shape("out", out, (n, out_ch))
    rounding, qp, scale = check_epilogue(out_ch, rounding, bias, mult, shift, scale, qp)
    lo, hi = check_activation(act_min, act_max)
    check_no_alias(out, inp, filt)
    return (inp, filt, bias, qp, scale, check_int("input_offset", input_offset),
            check_int("filter_offset", filter_offset), check_int("output_offset", output_offset),
            lo, hi, rounding, out)


@njit(cache=True)
def _fully_connected_s8(inp, filt, bias, qp, scale, input_offset, filter_offset, output_offset,
                        act_min, act_max, rounding, out):
    """Loops: row -> output -> k (contiguous); int32 accumulator (explicit wrapping casts)."""
    n, k = inp.shape
    out_ch = filt.shape[0]
    in_off = np.int32(input_offset)
    f_off = np.int32(filter_offset)
    x_flat = inp.reshape(n * k)
    w_flat = filt.reshape(out_ch * k)
    for b in range(n):
        for o in range(out_ch):
            acc = np.int32(bias[o])
            # uint64 indices: no negative-index wraparound checks, so LLVM vectorizes the dot product
            for i in range(k):
                acc = np.int32(acc + (np.int32(x_flat[np.uint64(b * k + i)]) + in_off)
                               * (np.int32(w_flat[np.uint64(o * k + i)]) + f_off))
            out[b, o] = np.int8(requantize_channel(acc, qp, scale, o, output_offset, act_min, act_max,
                                                   rounding))
