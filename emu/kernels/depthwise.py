"""depthwise_conv_s8: depthwise 2-D convolution, int8 NHWC x [1,KH,KW,Cin*ch_mult] -> int8 NHWC (TFLM DepthwiseConvPerChannel).

Output channel oc = ic * ch_mult + m reads input channel ic.
acc[oc] = bias[oc] + sum over non-padded taps of (x + input_offset) * w   (int32, wrapping)
out     = clamp(requantize(acc, mult[oc], shift[oc], rounding) + output_offset, act_min, act_max)
"""
import numpy as np
from numba import njit

from emu.fixedpoint import requantize
from emu.kernels.backends import (KernelArgumentError, check_activation, check_array, check_geometry, check_int,
                                  check_no_alias, check_per_channel, check_rounding)


def depthwise_conv_s8(inp, filt, bias, mult, shift, ch_mult, input_offset, output_offset, stride_h, stride_w,
                      pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out):
    """Checked entry point: validates dtypes/shapes/ranges (one-line KernelArgumentError), then runs _depthwise_conv_s8."""
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
    _depthwise_conv_s8(inp, filt, bias, mult, shift, ch_mult, check_int("input_offset", input_offset),
                       check_int("output_offset", output_offset), *geo, lo, hi, rounding, out)


@njit(cache=True)
def _depthwise_conv_s8(inp, filt, bias, mult, shift, ch_mult, input_offset, output_offset, stride_h, stride_w,
                       pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out):
    """Loops: output pixel (valid tap ranges computed once) -> input channel -> multiplier -> valid kh -> valid kw;
    int32 wrapping accumulator (explicit casts); uint64 indices (no negative-index wraparound checks)."""
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
            ky_lo = 0
            while ky_lo < kh and iy0 + ky_lo * dilation_h < 0:
                ky_lo += 1
            ky_hi = kh
            while ky_hi > ky_lo and iy0 + (ky_hi - 1) * dilation_h >= h:
                ky_hi -= 1
            for ox in range(ow):
                ix0 = ox * stride_w - pad_left
                kx_lo = 0
                while kx_lo < kw and ix0 + kx_lo * dilation_w < 0:
                    kx_lo += 1
                kx_hi = kw
                while kx_hi > kx_lo and ix0 + (kx_hi - 1) * dilation_w >= w:
                    kx_hi -= 1
                o_base = ((b * oh + oy) * ow + ox) * cout
                for ic in range(cin):
                    for mm in range(ch_mult):
                        oc = ic * ch_mult + mm
                        acc = np.int32(bias[oc])
                        for ky in range(ky_lo, ky_hi):
                            x_row = ((b * h + iy0 + ky * dilation_h) * w + ix0) * cin + ic
                            w_row = ky * kw * cout + oc
                            for kx in range(kx_lo, kx_hi):
                                acc = np.int32(acc + (np.int32(x_flat[np.uint64(x_row + kx * dilation_w * cin)])
                                                      + in_off) * np.int32(w_flat[np.uint64(w_row + kx * cout)]))
                        v = np.int64(requantize(acc, mult[oc], shift[oc], rounding)) + np.int64(output_offset)
                        if v < act_min:
                            v = act_min
                        elif v > act_max:
                            v = act_max
                        o_flat[np.uint64(o_base + oc)] = np.int8(v)
