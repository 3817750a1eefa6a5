"""conv_s8: grouped 2-D convolution, int8 NHWC x OHWI -> int8 NHWC (TFLite Micro ConvPerChannel semantics).

acc[oc] = bias[oc] + sum over non-padded taps of (x + input_offset) * (w + filter_offset)   (int32, wrapping)
out     = emu.fixedpoint.requantize_channel(acc, qp, scale, oc, output_offset, act_min, act_max, rounding), qp =
          prepare_requantize(mult, shift, rounding) once per call/bind: clamp(requantize(acc, mult[oc], shift[oc])
          + output_offset) for DOUBLE_/SINGLE_ROUNDING, or the
          onnxruntime profile's float32 epilogue for FLOAT32_RNE (keyword `scale`, float32 per channel).
filter_offset (keyword, default 0 = CMSIS-NN's symmetric weights) is -zp_w of asymmetric (ORT uint8) weights.
groups = Cin // Cin_g; output channel oc reads input channels (oc // (Cout // groups)) * Cin_g + [0, Cin_g).
Speed, fast path (groups == 1 and x + input_offset fits int16, i.e. any real zero-point): per output pixel the
(x + input_offset) values of the receptive field are gathered into an int16 row (0 for padded taps, so they add
nothing), zero-filled up to Kp = KH*KW*Cin rounded up to a multiple of 64; each output channel is one dot product
of that row with its filter row (w + filter_offset widened to int16 and zero-padded to Kp once per call; the path
also needs filter_offset in the int16 row range) in constant 64-long blocks,
which LLVM vectorizes with vpmaddwd. General path (grouped convolution, offsets beyond int16): per output pixel the
int32 accumulators of all output channels live in a scratch row and the innermost loop runs over output channels
against a transposed copy of the filter (w + filter_offset, int32). Both sum the same int32 products with wrapping additions: equal results.
"""
import functools

import numpy as np
from numba import njit

from emu.fixedpoint import requantize_row
from emu.kernels.backends import (KernelArgumentError, check_activation, check_array, check_geometry, check_int,
                                  check_epilogue, check_no_alias)


def conv_s8(inp, filt, bias, mult, shift, input_offset, output_offset, stride_h, stride_w, pad_top, pad_left,
            dilation_h, dilation_w, act_min, act_max, rounding, out, scratch=None, *, filter_offset=0, scale=None, qp=None):
    """Checked entry point: validates dtypes/shapes/ranges (one-line KernelArgumentError), then runs run_conv_s8.
    rounding FLOAT32_RNE takes the float32 per-channel `scale` (mult/shift may then be None).

    scratch: optional caller-owned int32 work buffer of at least conv_scratch_size(filt.shape) values (CMSIS-NN's
    ctx buffer); when None a fresh one is made here, so the njit kernels never allocate.
    """
    run_conv_s8(*_checked_conv_args(inp, filt, bias, mult, shift, input_offset, output_offset, stride_h, stride_w,
                                    pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, scratch,
                                    filter_offset, scale, qp))


def bind_conv_s8(inp, filt, bias, mult, shift, input_offset, output_offset, stride_h, stride_w, pad_top, pad_left,
                 dilation_h, dilation_w, act_min, act_max, rounding, out, scratch=None, *, filter_offset=0, scale=None, qp=None):
    """Checks the arguments once (as conv_s8) and returns a no-argument callable running the unchecked kernel on
    these very arrays (a plan's buffers: their contents may change between calls, never their shape or dtype)."""
    return functools.partial(run_conv_s8, *_checked_conv_args(
        inp, filt, bias, mult, shift, input_offset, output_offset, stride_h, stride_w, pad_top, pad_left,
        dilation_h, dilation_w, act_min, act_max, rounding, out, scratch, filter_offset, scale, qp))


def _checked_conv_args(inp, filt, bias, mult, shift, input_offset, output_offset, stride_h, stride_w, pad_top,
                       pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, scratch, filter_offset,
                       scale, qp):
    """conv_s8's checks; returns run_conv_s8's arguments (scratch allocated when None)."""
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
    rounding, qp, scale = check_epilogue(cout, rounding, bias, mult, shift, scale, qp)
    geo = check_geometry(stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w)
    lo, hi = check_activation(act_min, act_max)
    check_no_alias(out, inp, filt)
    args = (inp, filt, bias, qp, scale, check_int("input_offset", input_offset),
            check_int("filter_offset", filter_offset), check_int("output_offset", output_offset), *geo, lo, hi,
            rounding, out)
    need = conv_scratch_size(filt.shape)
    if scratch is None:
        scratch = np.empty(need, np.int32)
    elif check_array("scratch", scratch, np.int32, 1, writable=True).size < need:
        raise KernelArgumentError(f"scratch holds {scratch.size} int32 values, conv needs {need}; pass a larger buffer")
    else:
        check_no_alias(scratch, inp, filt, bias, qp, scale, out)
    return args + (scratch,)


# x + input_offset and w + filter_offset must fit int16 for the fast path (x, w in [-128, 127]); real offsets are
# in [-127, 128].
ROW_OFFSET_MIN = -32768 + 128
ROW_OFFSET_MAX = 32767 - 127
DOT_BLOCK = 64   # constant inner trip count: LLVM vectorizes it fully (a runtime trip count defeats it)


def conv_scratch_size(filt_shape):
    """int32 values of scratch conv_s8 needs for an OHWI filter shape (enough for either path)."""
    cout, kh, kw, cin_g = (int(v) for v in filt_shape)
    k = kh * kw * cin_g
    kp = -(-k // DOT_BLOCK) * DOT_BLOCK
    fast = cout + kp // 2 + cout * kp // 2       # int32 accumulators + int16 row + int16 padded filter rows
    general = cout + cout * k                    # int32 accumulators + int32 transposed filter
    return max(fast, general)


@njit(cache=True)
def run_conv_s8(inp, filt, bias, qp, scale, input_offset, filter_offset, output_offset, stride_h, stride_w,
                pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, scratch):
    """Unchecked entry (arguments as _checked_conv_args returns them: qp [QP_ROWS, Cout] and scale [Cout];
    scratch >= conv_scratch_size): picks the path."""
    if inp.shape[3] == filt.shape[3] and ROW_OFFSET_MIN <= input_offset <= ROW_OFFSET_MAX \
            and ROW_OFFSET_MIN <= filter_offset <= ROW_OFFSET_MAX:
        _conv_s8_rows(inp, filt, bias, qp, scale, input_offset, filter_offset, output_offset, stride_h,
                      stride_w, pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, scratch)
    else:
        _conv_s8(inp, filt, bias, qp, scale, input_offset, filter_offset, output_offset, stride_h, stride_w,
                 pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, scratch)


@njit(cache=True)
def _conv_s8_rows(inp, filt, bias, qp, scale, input_offset, filter_offset, output_offset, stride_h, stride_w,
                  pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, scratch):
    """Fast path (groups == 1, x + input_offset fits int16). Loops: output pixel -> gather the int16 row
    [KH, KW, Cin] -> output channel -> 64-blocks of the row (int16 x int16 products summed in int32, wrapping).

    scratch as int32 [0, Cout): accumulators; as int16 after them: the row [Kp], then the filter rows [Cout, Kp]
    (w + filter_offset widened, zero tail). A zero row entry (padded tap, or the tail) adds nothing.
    """
    n, h, w, cin = inp.shape
    cout, kh, kw, _ = filt.shape
    oh, ow = out.shape[1], out.shape[2]
    k = kh * kw * cin
    kp = ((k + DOT_BLOCK - 1) // DOT_BLOCK) * DOT_BLOCK
    nblk = kp // DOT_BLOCK
    acc = scratch[:cout]
    s16 = scratch.view(np.int16)
    row = s16[2 * cout:2 * cout + kp]
    wp = s16[2 * cout + kp:2 * cout + kp + cout * kp]
    w_in = filt.reshape(cout * k)
    f_off = np.int32(filter_offset)
    for oc in range(cout):
        for i in range(k):
            wp[np.uint64(oc * kp + i)] = np.int16(np.int32(w_in[np.uint64(oc * k + i)]) + f_off)
        for i in range(k, kp):
            wp[np.uint64(oc * kp + i)] = np.int16(0)
    for i in range(k, kp):
        row[np.uint64(i)] = np.int16(0)
    x_flat = inp.reshape(n * h * w * cin)
    o_flat = out.reshape(n * oh * ow * cout)
    in_off = np.int32(input_offset)
    for b in range(n):
        for oy in range(oh):
            iy0 = oy * stride_h - pad_top
            for ox in range(ow):
                ix0 = ox * stride_w - pad_left
                for ky in range(kh):
                    iy = iy0 + ky * dilation_h
                    r_ky = ky * kw * cin
                    if iy < 0 or iy >= h:
                        for i in range(kw * cin):
                            row[np.uint64(r_ky + i)] = np.int16(0)
                    elif dilation_w == 1:
                        # valid taps [kx_lo, kx_hi) read one contiguous input run; the rest of the row is padding
                        kx_lo = min(-ix0, kw) if ix0 < 0 else 0
                        kx_hi = w - ix0 if w - ix0 < kw else kw
                        if kx_hi < kx_lo:
                            kx_hi = kx_lo
                        for i in range(kx_lo * cin):
                            row[np.uint64(r_ky + i)] = np.int16(0)
                        x_run = ((b * h + iy) * w + ix0 + kx_lo) * cin
                        r_run = r_ky + kx_lo * cin
                        for i in range((kx_hi - kx_lo) * cin):
                            row[np.uint64(r_run + i)] = np.int16(np.int32(x_flat[np.uint64(x_run + i)]) + in_off)
                        for i in range(kx_hi * cin, kw * cin):
                            row[np.uint64(r_ky + i)] = np.int16(0)
                    else:
                        for kx in range(kw):
                            ix = ix0 + kx * dilation_w
                            r0 = r_ky + kx * cin
                            if ix < 0 or ix >= w:
                                for ic in range(cin):
                                    row[np.uint64(r0 + ic)] = np.int16(0)
                            else:
                                x_pix = ((b * h + iy) * w + ix) * cin
                                for ic in range(cin):
                                    row[np.uint64(r0 + ic)] = np.int16(np.int32(x_flat[np.uint64(x_pix + ic)])
                                                                       + in_off)
                for oc in range(cout):
                    a = np.int32(bias[np.uint64(oc)])
                    w_row = oc * kp
                    for blk in range(nblk):
                        r = blk * DOT_BLOCK
                        for j in range(DOT_BLOCK):
                            a = np.int32(a + np.int32(row[np.uint64(r + j)]) * np.int32(wp[np.uint64(w_row + r + j)]))
                    acc[np.uint64(oc)] = a
                o_base = ((b * oh + oy) * ow + ox) * cout
                requantize_row(acc, qp, scale, output_offset, act_min, act_max, rounding, o_flat, o_base)


@njit(cache=True)
def _conv_s8(inp, filt, bias, qp, scale, input_offset, filter_offset, output_offset, stride_h, stride_w,
             pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, scratch):
    """General path. Loops: output pixel -> valid kh -> valid kw -> group -> ic -> output channel (vectorizes over Cout).

    scratch[:Cout] holds the int32 accumulators (wrapping, explicit casts); scratch[Cout:] the filter transposed
    to [KH, KW, Cin_g, Cout] (w + filter_offset, int32 wrapping) so the innermost loop is contiguous.
    """
    n, h, w, cin = inp.shape
    cout, kh, kw, cin_g = filt.shape
    oh, ow = out.shape[1], out.shape[2]
    groups = cin // cin_g
    cout_g = cout // groups
    acc = scratch[:cout]
    wt = scratch[cout:cout + cout * kh * kw * cin_g]
    for oc in range(cout):
        for ky in range(kh):
            for kx in range(kw):
                for ic in range(cin_g):
                    wt[np.uint64(((ky * kw + kx) * cin_g + ic) * cout + oc)] = np.int32(
                        np.int64(filt[oc, ky, kx, ic]) + np.int64(filter_offset))
    x_flat = inp.reshape(n * h * w * cin)
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
                        x_pix = ((b * h + iy) * w + ix) * cin
                        for g in range(groups):
                            for ic in range(cin_g):
                                xv = np.int32(x_flat[np.uint64(x_pix + g * cin_g + ic)]) + in_off
                                w_tap = ((ky * kw + kx) * cin_g + ic) * cout + g * cout_g
                                a0 = g * cout_g
                                for j in range(cout_g):
                                    acc[np.uint64(a0 + j)] = np.int32(acc[np.uint64(a0 + j)]
                                                                      + xv * wt[np.uint64(w_tap + j)])
                o_base = ((b * oh + oy) * ow + ox) * cout
                requantize_row(acc, qp, scale, output_offset, act_min, act_max, rounding, o_flat, o_base)
