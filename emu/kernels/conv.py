"""conv_s8: grouped 2-D convolution, int8 NHWC x OHWI -> int8 NHWC (TFLite Micro ConvPerChannel semantics).

acc[oc] = bias[oc] + sum over non-padded taps of (x + input_offset) * w   (int32, wrapping like the MCU)
out     = clamp(requantize(acc, mult[oc], shift[oc], rounding) + output_offset, act_min, act_max)
groups = Cin // Cin_g; output channel oc reads input channels (oc // (Cout // groups)) * Cin_g + [0, Cin_g).
"""
import numpy as np
from numba import njit

from emu.fixedpoint import requantize
from emu.kernels.backends import (KernelArgumentError, check_activation, check_array, check_geometry, check_int,
                                  check_no_alias, check_per_channel, check_rounding)


def conv_s8(inp, filt, bias, mult, shift, input_offset, output_offset, stride_h, stride_w, pad_top, pad_left,
            dilation_h, dilation_w, act_min, act_max, rounding, out):
    """Checked entry point: validates dtypes/shapes/ranges (one-line KernelArgumentError), then runs _conv_s8."""
    inp = check_array("inp", inp, np.int8, 4)
    filt = check_array("filt", filt, np.int8, 4)
    out = check_array("out", out, np.int8, 4, writable=True)
    n, cin = inp.shape[0], inp.shape[3]
    cout, cin_g = filt.shape[0], filt.shape[3]
    if cin_g == 0 or cin % cin_g:
        raise KernelArgumentError(f"input channels {cin} are not a multiple of the filter's {cin_g} channels per group")
    groups = cin // cin_g
    if cout % groups:
        raise KernelArgumentError(f"output channels {cout} are not divisible by groups {groups}")
    if out.shape[0] != n or out.shape[3] != cout:
        raise KernelArgumentError(f"out has shape {out.shape}, expected ({n}, OH, OW, {cout})")
    rounding = check_rounding(rounding)
    check_per_channel(cout, rounding, bias=bias, mult=mult, shift=shift)
    geo = check_geometry(stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w)
    lo, hi = check_activation(act_min, act_max)
    check_no_alias(out, inp, filt)
    _conv_s8(inp, filt, bias, mult, shift, check_int("input_offset", input_offset),
             check_int("output_offset", output_offset), *geo, lo, hi, rounding, out)


@njit(cache=True)
def _conv_s8(inp, filt, bias, mult, shift, input_offset, output_offset, stride_h, stride_w, pad_top, pad_left,
             dilation_h, dilation_w, act_min, act_max, rounding, out):
    """Loops: output pixel -> output channel -> kh -> kw -> ic; int32 accumulator (explicit wrapping casts)."""
    n, h, w, cin = inp.shape
    cout, kh, kw, cin_g = filt.shape
    oh, ow = out.shape[1], out.shape[2]
    cout_g = cout // (cin // cin_g)
    x_flat = inp.reshape(n * h * w * cin)
    w_flat = filt.reshape(cout * kh * kw * cin_g)
    o_flat = out.reshape(n * oh * ow * cout)
    in_off = np.int32(input_offset)
    # contiguous taps: one input row segment [ix_lo, ix_hi) x Cin matches one filter row segment
    row_contiguous = dilation_w == 1 and cin_g == cin
    for b in range(n):
        for oy in range(oh):
            iy0 = oy * stride_h - pad_top
            for ox in range(ow):
                ix0 = ox * stride_w - pad_left
                # valid kx range (dilation-aware): 0 <= ix0 + kx*dw < w
                kx_lo = 0
                while kx_lo < kw and ix0 + kx_lo * dilation_w < 0:
                    kx_lo += 1
                kx_hi = kw
                while kx_hi > kx_lo and ix0 + (kx_hi - 1) * dilation_w >= w:
                    kx_hi -= 1
                o_base = ((b * oh + oy) * ow + ox) * cout
                for oc in range(cout):
                    c0 = (oc // cout_g) * cin_g
                    acc = np.int32(bias[oc])
                    for ky in range(kh):
                        iy = iy0 + ky * dilation_h
                        if iy < 0 or iy >= h:
                            continue
                        w_row = ((oc * kh + ky) * kw) * cin_g
                        x_row = ((b * h + iy) * w) * cin
                        if row_contiguous:
                            xs = x_row + (ix0 + kx_lo) * cin
                            ws = w_row + kx_lo * cin
                            for t in range((kx_hi - kx_lo) * cin):
                                acc = np.int32(acc + (np.int32(x_flat[xs + t]) + in_off) * np.int32(w_flat[ws + t]))
                        else:
                            for kx in range(kx_lo, kx_hi):
                                xs = x_row + (ix0 + kx * dilation_w) * cin + c0
                                ws = w_row + kx * cin_g
                                for ic in range(cin_g):
                                    acc = np.int32(acc + (np.int32(x_flat[xs + ic]) + in_off)
                                                   * np.int32(w_flat[ws + ic]))
                    v = np.int64(requantize(acc, mult[oc], shift[oc], rounding)) + np.int64(output_offset)
                    if v < act_min:
                        v = act_min
                    elif v > act_max:
                        v = act_max
                    o_flat[o_base + oc] = np.int8(v)
