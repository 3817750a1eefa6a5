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
    """Loops: output channel -> output pixel -> kh -> (kw x ic); int32 wrapping accumulator (explicit casts).

    Output channel outermost keeps its filter in L1 and allows the offset split used for windows fully inside
    the input: sum (x + off) * w == sum x * w + off * sum w (mod 2^32), with sum w computed once per channel.
    Windows touching the padding sum (x + off) * w over their valid taps only.
    """
    n, h, w, cin = inp.shape
    cout, kh, kw, cin_g = filt.shape
    oh, ow = out.shape[1], out.shape[2]
    cout_g = cout // (cin // cin_g)
    x_flat = inp.reshape(n * h * w * cin)
    w_flat = filt.reshape(cout * kh * kw * cin_g)
    o_flat = out.reshape(n * oh * ow * cout)
    in_off = np.int32(input_offset)
    # one input row segment [ix, ix + kw) x Cin matches one filter row when taps are adjacent and ungrouped
    row_contiguous = dilation_w == 1 and cin_g == cin
    taps = kh * kw * cin_g
    for oc in range(cout):
        c0 = (oc // cout_g) * cin_g
        w_oc = oc * taps
        w_sum = np.int32(0)
        for t in range(taps):
            w_sum = np.int32(w_sum + np.int32(w_flat[w_oc + t]))
        base_full = np.int32(np.int32(bias[oc]) + np.int32(w_sum * in_off))
        m = mult[oc]
        sh = shift[oc]
        for b in range(n):
            for oy in range(oh):
                iy0 = oy * stride_h - pad_top
                rows_inside = iy0 >= 0 and iy0 + (kh - 1) * dilation_h < h
                for ox in range(ow):
                    ix0 = ox * stride_w - pad_left
                    if rows_inside and ix0 >= 0 and ix0 + (kw - 1) * dilation_w < w:
                        acc = base_full
                        for ky in range(kh):
                            x_row = ((b * h + iy0 + ky * dilation_h) * w + ix0) * cin
                            w_row = w_oc + ky * kw * cin_g
                            if row_contiguous:
                                acc = _dot(x_flat, x_row, w_flat, w_row, kw * cin, acc)
                            else:
                                for kx in range(kw):
                                    acc = _dot(x_flat, x_row + kx * dilation_w * cin + c0, w_flat,
                                               w_row + kx * cin_g, cin_g, acc)
                    else:
                        acc = np.int32(bias[oc])
                        kx_lo = 0
                        while kx_lo < kw and ix0 + kx_lo * dilation_w < 0:
                            kx_lo += 1
                        kx_hi = kw
                        while kx_hi > kx_lo and ix0 + (kx_hi - 1) * dilation_w >= w:
                            kx_hi -= 1
                        for ky in range(kh):
                            iy = iy0 + ky * dilation_h
                            if iy < 0 or iy >= h:
                                continue
                            x_row = ((b * h + iy) * w + ix0) * cin
                            w_row = w_oc + ky * kw * cin_g
                            if row_contiguous:
                                acc = _dot_offset(x_flat, x_row + kx_lo * cin, w_flat, w_row + kx_lo * cin,
                                                  (kx_hi - kx_lo) * cin, in_off, acc)
                            else:
                                for kx in range(kx_lo, kx_hi):
                                    acc = _dot_offset(x_flat, x_row + kx * dilation_w * cin + c0, w_flat,
                                                      w_row + kx * cin_g, cin_g, in_off, acc)
                    v = np.int64(requantize(acc, m, sh, rounding)) + np.int64(output_offset)
                    if v < act_min:
                        v = act_min
                    elif v > act_max:
                        v = act_max
                    o_flat[((b * oh + oy) * ow + ox) * cout + oc] = np.int8(v)


@njit(cache=True)
def _dot(x, x_start, w, w_start, count, acc):
    """acc + sum_t x[x_start+t] * w[w_start+t], int32 wrapping (explicit casts). Indices are non-negative;
    indexing with uint64 skips Numba's negative-index wraparound, which otherwise blocks vectorization."""
    s = np.int32(0)
    for t in range(count):
        s = np.int32(s + np.int32(x[np.uint64(x_start + t)]) * np.int32(w[np.uint64(w_start + t)]))
    return np.int32(acc + s)


@njit(cache=True)
def _dot_offset(x, x_start, w, w_start, count, input_offset, acc):
    """acc + sum_t (x[x_start+t] + input_offset) * w[w_start+t], int32 wrapping (explicit casts); uint64 indices."""
    s = np.int32(0)
    for t in range(count):
        s = np.int32(s + (np.int32(x[np.uint64(x_start + t)]) + input_offset) * np.int32(w[np.uint64(w_start + t)]))
    return np.int32(acc + s)
