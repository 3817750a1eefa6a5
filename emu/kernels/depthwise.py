"""depthwise_conv_s8: depthwise 2-D convolution, int8 NHWC x [1,KH,KW,Cin*ch_mult] -> int8 NHWC (TFLM DepthwiseConvPerChannel).

Output channel oc = ic * ch_mult + m reads input channel ic.
acc[oc] = bias[oc] + sum over non-padded taps of (x + input_offset) * w   (int32, wrapping)
out     = clamp(requantize(acc, mult[oc], shift[oc], rounding) + output_offset, act_min, act_max)
"""
import functools

import numpy as np
from numba import njit

from emu.fixedpoint import requantize
from emu.kernels.backends import (KernelArgumentError, check_activation, check_array, check_geometry, check_int,
                                  check_no_alias, check_per_channel, check_rounding)


def depthwise_conv_s8(inp, filt, bias, mult, shift, ch_mult, input_offset, output_offset, stride_h, stride_w,
                      pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, scratch=None):
    """Checked entry point: validates dtypes/shapes/ranges (one-line KernelArgumentError), then runs _depthwise_conv_s8.

    scratch: optional caller-owned int32 buffer of at least Cin*ch_mult values (the accumulator row; CMSIS-NN's
    ctx buffer); when None a fresh one is made here, so the njit kernel itself never allocates.
    """
    _depthwise_conv_s8(*_checked_depthwise_args(inp, filt, bias, mult, shift, ch_mult, input_offset, output_offset,
                                                stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w,
                                                act_min, act_max, rounding, out, scratch))


def bind_depthwise_conv_s8(inp, filt, bias, mult, shift, ch_mult, input_offset, output_offset, stride_h, stride_w,
                           pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, scratch=None):
    """Checks the arguments once (as depthwise_conv_s8) and returns a no-argument callable running the unchecked
    kernel on these very arrays (contents may change between calls, never shapes or dtypes)."""
    return functools.partial(_depthwise_conv_s8, *_checked_depthwise_args(
        inp, filt, bias, mult, shift, ch_mult, input_offset, output_offset, stride_h, stride_w, pad_top, pad_left,
        dilation_h, dilation_w, act_min, act_max, rounding, out, scratch))


def _checked_depthwise_args(inp, filt, bias, mult, shift, ch_mult, input_offset, output_offset, stride_h, stride_w,
                            pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, scratch):
    """depthwise_conv_s8's checks; returns _depthwise_conv_s8's arguments (scratch allocated when None)."""
    inp = check_array("inp", inp, np.int8, 4)
    filt = check_array("filt", filt, np.int8, 4)
    out = check_array("out", out, np.int8, 4, writable=True)
    n, cin = inp.shape[0], inp.shape[3]
    ch_mult = check_int("ch_mult", ch_mult, 1)
    cout = cin * ch_mult
    if filt.shape[0] != 1 or filt.shape[3] != cout:
        raise KernelArgumentError(f"filt has shape {filt.shape}, expected (1, KH, KW, {cout}) for Cin {cin} x ch_mult {ch_mult}")
    if out.shape[0] != n or out.shape[3] != cout:
        raise KernelArgumentError(f"out has shape {out.shape}, expected ({n}, OH, OW, {cout})")
    rounding = check_rounding(rounding)
    check_per_channel(cout, rounding, bias=bias, mult=mult, shift=shift)
    geo = check_geometry(stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w)
    lo, hi = check_activation(act_min, act_max)
    check_no_alias(out, inp, filt)
    if scratch is None:
        scratch = np.empty(cout, np.int32)
    elif check_array("scratch", scratch, np.int32, 1, writable=True).size < cout:
        raise KernelArgumentError(f"scratch holds {scratch.size} int32 values, depthwise needs {cout}; "
                                  "pass a larger buffer")
    else:
        check_no_alias(scratch, inp, filt, bias, mult, shift, out)
        scratch = scratch[:cout]
    return (inp, filt, bias, mult, shift, ch_mult, check_int("input_offset", input_offset),
            check_int("output_offset", output_offset), *geo, lo, hi, rounding, out, scratch)


@njit(cache=True)
def _depthwise_conv_s8(inp, filt, bias, mult, shift, ch_mult, input_offset, output_offset, stride_h, stride_w,
                       pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, acc):
    """Loops: output pixel -> valid kh -> valid kw -> output channel (contiguous: vectorizes), accumulating in
    the caller's int32 row `acc` (wrapping, explicit casts); then one requantize pass over the channels."""
    n, h, w, cin = inp.shape
    kh, kw, cout = filt.shape[1], filt.shape[2], filt.shape[3]
    oh, ow = out.shape[1], out.shape[2]
    x_flat = inp.reshape(n * h * w * cin)
    w_flat = filt.reshape(kh * kw * cout)
    o_flat = out.reshape(n * oh * ow * cout)
    in_off = np.int32(input_offset)
    for b in range(n):
        for oy in range(oh):
            iy0 = oy * stride_h - pad_top
            for ox in range(ow):
                ix0 = ox * stride_w - pad_left
                for oc in range(cout):
                    acc[np.uint64(oc)] = bias[np.uint64(oc)]
                for ky in range(kh):
                    iy = iy0 + ky * dilation_h
                    if iy < 0 or iy >= h:
                        continue
                    for kx in range(kw):
                        ix = ix0 + kx * dilation_w
                        if ix < 0 or ix >= w:
                            continue
                        x_row = ((b * h + iy) * w + ix) * cin
                        w_row = (ky * kw + kx) * cout
                        if ch_mult == 1:
                            for oc in range(cout):
                                acc[np.uint64(oc)] = np.int32(
                                    acc[np.uint64(oc)] + (np.int32(x_flat[np.uint64(x_row + oc)]) + in_off)
                                    * np.int32(w_flat[np.uint64(w_row + oc)]))
                        else:
                            for ic in range(cin):
                                xv = np.int32(x_flat[np.uint64(x_row + ic)]) + in_off
                                for mm in range(ch_mult):
                                    oc = ic * ch_mult + mm
                                    acc[np.uint64(oc)] = np.int32(acc[np.uint64(oc)]
                                                                  + xv * np.int32(w_flat[np.uint64(w_row + oc)]))
                o_base = ((b * oh + oy) * ow + ox) * cout
                for oc in range(cout):
                    v = np.int64(requantize(acc[np.uint64(oc)], mult[np.uint64(oc)], shift[np.uint64(oc)], rounding)) \
                        + np.int64(output_offset)
                    if v < act_min:
                        v = act_min
                    elif v > act_max:
                        v = act_max
                    o_flat[np.uint64(o_base + oc)] = np.int8(v)
