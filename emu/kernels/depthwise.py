"""depthwise_conv_s8: depthwise 2-D convolution, int8 NHWC x [1,KH,KW,Cin*ch_mult] -> int8 NHWC (TFLM DepthwiseConvPerChannel).

Output channel oc = ic * ch_mult + m reads input channel ic.
acc[oc] = bias[oc] + sum over non-padded taps of (x + input_offset) * (w + filter_offset)   (int32, wrapping)
out     = emu.fixedpoint.requantize_channel(acc, qp, scale, oc, output_offset, act_min, act_max, rounding), qp =
          prepare_requantize(mult, shift, rounding) once per call/bind: fixed-point (DOUBLE_/SINGLE_ROUNDING) or
          float32 (FLOAT32_RNE, keyword `scale`).
filter_offset (keyword, default 0 = CMSIS-NN's symmetric weights) is -zp_w of asymmetric (ORT uint8) weights.
"""
import functools

import numpy as np
from numba import njit

from emu.fixedpoint import requantize_row
from emu.kernels.backends import (KernelArgumentError, check_activation, check_array, check_geometry, check_int,
                                  check_epilogue, check_no_alias)


def depthwise_conv_s8(inp, filt, bias, mult, shift, ch_mult, input_offset, output_offset, stride_h, stride_w,
                      pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, scratch=None, *,
                      filter_offset=0, scale=None, qp=None):
    """Checked entry point: validates dtypes/shapes/ranges (one-line KernelArgumentError), then runs _depthwise_conv_s8.
    rounding FLOAT32_RNE takes the float32 per-channel `scale` (mult/shift may then be None).

    scratch: optional caller-owned int32 buffer of at least Cin*ch_mult values (the accumulator row; CMSIS-NN's
    ctx buffer); when None a fresh one is made here, so the njit kernel itself never allocates.
    """
    _depthwise_conv_s8(*_checked_depthwise_args(inp, filt, bias, mult, shift, ch_mult, input_offset, output_offset,
                                                stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w,
                                                act_min, act_max, rounding, out, scratch, filter_offset, scale, qp))


def bind_depthwise_conv_s8(inp, filt, bias, mult, shift, ch_mult, input_offset, output_offset, stride_h, stride_w,
                           pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, scratch=None, *,
                           filter_offset=0, scale=None, qp=None):
    """Checks the arguments once (as depthwise_conv_s8) and returns a no-argument callable running the unchecked
    kernel on these very arrays (contents may change between calls, never shapes or dtypes)."""
    return functools.partial(_depthwise_conv_s8, *_checked_depthwise_args(
        inp, filt, bias, mult, shift, ch_mult, input_offset, output_offset, stride_h, stride_w, pad_top, pad_left,
        dilation_h, dilation_w, act_min, act_max, rounding, out, scratch, filter_offset, scale, qp))


def _checked_depthwise_args(inp, filt, bias, mult, shift, ch_mult, input_offset, output_offset, stride_h, stride_w,
                            pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, scratch,
                            filter_offset, scale, qp):
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
    rounding, qp, scale = check_epilogue(cout, rounding, bias, mult, shift, scale, qp)
    geo = check_geometry(stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w)
    lo, hi = check_activation(act_min, act_max)
    check_no_alias(out, inp, filt)
    if scratch is None:
        scratch = np.empty(cout, np.int32)
    elif check_array("scratch", scratch, np.int32, 1, writable=True).size < cout:
        raise KernelArgumentError(f"scratch holds {scratch.size} int32 values, depthwise needs {cout}; "
                                  "pass a larger buffer")
    else:
        check_no_alias(scratch, inp, filt, bias, qp, scale, out)
        scratch = scratch[:cout]
    return (inp, filt, bias, qp, scale, ch_mult, check_int("input_offset", input_offset),
            check_int("filter_offset", filter_offset), check_int("output_offset", output_offset), *geo, lo, hi,
            rounding, out, scratch)


@njit(cache=True)
def _depthwise_conv_s8(inp, filt, bias, qp, scale, ch_mult, input_offset, filter_offset, output_offset,
                       stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out,
                       acc):
    """Loops: output pixel -> valid kh -> valid kw -> output channel (contiguous: vectorizes), accumulating in
    the caller's int32 row `acc` (wrapping, explicit casts); then one requantize pass over the channels."""
    n, h, w, cin = inp.shape
    kh, kw, cout = filt.shape[1], filt.shape[2], filt.shape[3]
    oh, ow = out.shape[1], out.shape[2]
    x_flat = inp.reshape(n * h * w * cin)
    w_flat = filt.reshape(kh * kw * cout)
    o_flat = out.reshape(n * oh * ow * cout)
    in_off = np.int32(input_offset)
    f_off = np.int32(filter_offset)
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
                        if ch_mult == 1 and f_off == 0:     # symmetric weights (cmsis-nn): no weight offset add
                            for oc in range(cout):
                                acc[np.uint64(oc)] = np.int32(
                                    acc[np.uint64(oc)] + (np.int32(x_flat[np.uint64(x_row + oc)]) + in_off)
                                    * np.int32(w_flat[np.uint64(w_row + oc)]))
                        elif ch_mult == 1:
                            for oc in range(cout):
                                acc[np.uint64(oc)] = np.int32(
                                    acc[np.uint64(oc)] + (np.int32(x_flat[np.uint64(x_row + oc)]) + in_off)
                                    * (np.int32(w_flat[np.uint64(w_row + oc)]) + f_off))
                        else:
                            for ic in range(cin):
                                xv = np.int32(x_flat[np.uint64(x_row + ic)]) + in_off
                                for mm in range(ch_mult):
                                    oc = ic * ch_mult + mm
                                    acc[np.uint64(oc)] = np.int32(acc[np.uint64(oc)]
                                                                  + xv * (np.int32(w_flat[np.uint64(w_row + oc)])
                                                                          + f_off))
                o_base = ((b * oh + oy) * ow + ox) * cout
                requantize_row(acc, qp, scale, output_offset, act_min, act_max, rounding, o_flat, o_base)
