"""depthwise_conv_s8: depthwise 2-D convolution, int8 NHWC x [1,KH,KW,Cin*ch_mult] -> int8 NHWC (TFLM DepthwiseConvPerChannel).

Output channel oc = ic * ch_mult + m reads input channel ic.
acc[oc] = bias[oc] + sum over non-padded taps of (x + input_offset) * (w + filter_offset)   (int32, wrapping)
out     = emu.fixedpoint.requantize_channel(acc, qp, scale, oc, output_offset, act_min, act_max, rounding), qp =
          prepare_requantize(mult, shift, rounding) once per call/bind: fixed-point (DOUBLE_/SINGLE_ROUNDING) or
          float32 (FLOAT32_RNE, keyword `scale`).
filter_offset (keyword, default 0 = CMSIS-NN's symmetric weights) is -zp_w of asymmetric (ORT uint8) weights.
Speed: with ch_mult == 1 and an int8 input zero-point (every real model) the tile path below runs (offsets folded into
the bias at bind time, each sample copied once into a zero-point padded buffer, 4 pixels x 64 channels accumulated in
registers by emu/kernels/tiles.py, a batch split over Numba's threads); the general loop otherwise.
"""
import numpy as np

from emu.fixedpoint import requantize_row
from emu.jit import njit, prange
from emu.kernels.conv import padded_extent, tile_chunks, tile_threads, tiles_call
from emu.kernels.tiles import (LANES, copy_padded, dw_tile, padded, tile_requantize, tile_requantize_row,
                               wrap_int32_array)
from emu.kernels.backends import (KernelArgumentError, check_activation, check_array, check_geometry, check_int,
                                  check_epilogue, check_no_alias, compiled)


def depthwise_conv_s8(inp, filt, bias, mult, shift, ch_mult, input_offset, output_offset, stride_h, stride_w,
                      pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, scratch=None, *,
                      filter_offset=0, scale=None, qp=None):
    """Checked entry point: validates dtypes/shapes/ranges (one-line KernelArgumentError), then runs _depthwise_conv_s8.
    rounding FLOAT32_RNE takes the float32 per-channel `scale` (mult/shift may then be None).

    scratch: optional caller-owned int32 buffer of at least Cin*ch_mult values (the accumulator row; CMSIS-NN's
    ctx buffer); when None a fresh one is made here, so the njit kernel itself never allocates.
    """
    args = _checked_depthwise_args(inp, filt, bias, mult, shift, ch_mult, input_offset, output_offset, stride_h,
                                   stride_w, pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding,
                                   out, scratch, filter_offset, scale, qp)
    tiled = _tile_args(args, threads=1)
    if tiled is not None:
        depthwise_tiles_call(tiled)()
    else:
        _depthwise_conv_s8(*args)


def bind_depthwise_conv_s8(inp, filt, bias, mult, shift, ch_mult, input_offset, output_offset, stride_h, stride_w,
                           pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, scratch=None, *,
                           filter_offset=0, scale=None, qp=None):
    """Checks the arguments once (as depthwise_conv_s8) and returns a no-argument callable running the unchecked
    kernel on these very arrays (contents may change between calls, never shapes or dtypes)."""
    args = _checked_depthwise_args(inp, filt, bias, mult, shift, ch_mult, input_offset, output_offset, stride_h,
                                   stride_w, pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding,
                                   out, scratch, filter_offset, scale, qp)
    tiled = _tile_args(args, threads=tile_threads())
    if tiled is not None:
        return depthwise_tiles_call(tiled)
    return compiled(_depthwise_conv_s8, *args)


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


# ---- tile path (ch_mult == 1, input zero-point an int8 value) -----------------------------------------------------
# Offsets folded at bind time as in conv's tile path (int32 wrapping sums are order-free):
#   acc[c] = bias'[c] + sum_taps x * w'[tap, c],  w' = w + filter_offset (int32),  bias' = bias + input_offset * sum w'
# over a copy of each sample padded with the input zero-point (a padded tap then adds 0): every window is full, so
# tiles.dw_tile runs 4 output pixels x 64 channels with the accumulators in registers. Samples split over threads as
# in conv.conv_tiles_call.
TILE_ROWS = 4
SLACK = 4 * LANES     # bytes after a padded sample: a 16-channel block may read past the last channel (weights 0)


def pack_depthwise_tiles(filt, bias, input_offset, filter_offset):
    """(w' int32 [KH*KW*Cp], bias' int32 [Cp]) of the tile path (Cp = C rounded up to tiles.LANES, zero padding), or
    None when the input zero-point is outside int8."""
    if not -128 <= -int(input_offset) <= 127:
        return None
    kh, kw, c = filt.shape[1], filt.shape[2], filt.shape[3]
    cp = padded(c, LANES)
    w = filt.reshape(kh * kw, c).astype(np.int64) + np.int64(filter_offset)
    wpk = np.zeros((kh * kw, cp), np.int32)
    wpk[:, :c] = wrap_int32_array(w)
    bias2 = np.zeros(cp, np.int32)
    bias2[:c] = wrap_int32_array(bias.astype(np.int64) + np.int64(input_offset) * w.sum(axis=0))
    return wpk.reshape(-1), bias2


def _tile_args(args, threads):
    (inp, filt, bias, qp, scale, ch_mult, input_offset, filter_offset, output_offset, stride_h, stride_w, pad_top,
     pad_left, dilation_h, dilation_w, lo, hi, rounding, out, _) = args
    if ch_mult != 1:
        return None
    packed = pack_depthwise_tiles(filt, bias, input_offset, filter_offset)
    if packed is None:
        return None
    wpk, bias2 = packed
    kh, kw = filt.shape[1], filt.shape[2]
    hp = padded_extent(inp.shape[1], out.shape[1], kh, stride_h, dilation_h, pad_top)
    wp = padded_extent(inp.shape[2], out.shape[2], kw, stride_w, dilation_w, pad_left)
    chunks = tile_chunks(inp.shape[0], threads)
    xpad = np.full((chunks, hp * wp * inp.shape[3] + SLACK), -input_offset, np.int8)   # border: the zero-point
    acc = np.zeros((chunks, TILE_ROWS * bias2.shape[0]), np.int32)
    qp, rounding = tile_requantize(qp, scale, rounding)
    return (inp, filt, wpk, bias2, qp, scale, input_offset, output_offset, stride_h, stride_w, pad_top, pad_left,
            dilation_h, dilation_w, lo, hi, rounding, out, hp, wp, xpad, acc)


def depthwise_tiles_call(tiled):
    return tiles_call(tiled, _depthwise_tiles, _depthwise_tiles_parallel)


_D44, _D14, _D41, _D11 = dw_tile(4, 4), dw_tile(1, 4), dw_tile(4, 1), dw_tile(1, 1)


@njit(cache=True, parallel=True)
def _depthwise_tiles_parallel(inp, filt, wpk, bias2, qp, scale, input_offset, output_offset, stride_h, stride_w,
                              pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, hp, wp,
                              xpad, acc):
    """prange over the scratch rows' contiguous sample ranges (independent outputs), range t using row t."""
    n = inp.shape[0]
    chunks = xpad.shape[0]
    for t in prange(chunks):
        _depthwise_tiles(inp, filt, wpk, bias2, qp, scale, input_offset, output_offset, stride_h, stride_w, pad_top,
                         pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, hp, wp, xpad[t], acc[t],
                         t * n // chunks, (t + 1) * n // chunks)


@njit(cache=True)
def _depthwise_tiles(inp, filt, wpk, bias2, qp, scale, input_offset, output_offset, stride_h, stride_w, pad_top,
                     pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, hp, wp, xpad, acc, b0, b1):
    """Samples [b0, b1): copy into xpad (its border holds the input zero-point: filled once at bind), then per output
    row pixels in tiles of TILE_ROWS (then 1) x channel blocks of 64 (then 16); accumulators to acc [TILE_ROWS, Cp],
    then tile_requantize_row per pixel."""
    n, h, w, c = inp.shape
    kh, kw = filt.shape[1], filt.shape[2]
    oh, ow = out.shape[1], out.shape[2]
    cp = bias2.shape[0]
    x_flat = inp.reshape(n * h * w * c)
    o_flat = out.reshape(n * oh * ow * c)
    row = wp * c
    for b in range(b0, b1):
        copy_padded(x_flat, b, h, w, c, wp, pad_top, pad_left, xpad)
        for oy in range(oh):
            ox = 0
            while ox < ow:
                r_n = TILE_ROWS if ow - ox >= TILE_ROWS else 1
                x0 = (oy * stride_h * wp + ox * stride_w) * c
                c0 = 0
                while c0 < cp:
                    if cp - c0 >= 4 * LANES:
                        if r_n == TILE_ROWS:
                            _D44(xpad, x0 + c0, stride_w * c, dilation_h * row, dilation_w * c, kh, kw, wpk, c0, cp,
                                 bias2, c0, acc, c0, cp)
                        else:
                            _D14(xpad, x0 + c0, stride_w * c, dilation_h * row, dilation_w * c, kh, kw, wpk, c0, cp,
                                 bias2, c0, acc, c0, cp)
                        c0 += 4 * LANES
                    else:
                        if r_n == TILE_ROWS:
                            _D41(xpad, x0 + c0, stride_w * c, dilation_h * row, dilation_w * c, kh, kw, wpk, c0, cp,
                                 bias2, c0, acc, c0, cp)
                        else:
                            _D11(xpad, x0 + c0, stride_w * c, dilation_h * row, dilation_w * c, kh, kw, wpk, c0, cp,
                                 bias2, c0, acc, c0, cp)
                        c0 += LANES
                for r in range(r_n):
                    tile_requantize_row(acc[r * cp:r * cp + c], qp, scale, output_offset, act_min, act_max,
                                        rounding, o_flat, ((b * oh + oy) * ow + ox + r) * c)
                ox += r_n
