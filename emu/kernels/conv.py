"""conv_s8: grouped 2-D convolution, int8 NHWC x OHWI -> int8 NHWC (TFLite Micro ConvPerChannel semantics).

acc[oc] = bias[oc] + sum over non-padded taps of (x + input_offset) * (w + filter_offset)   (int32, wrapping)
out     = emu.fixedpoint.requantize_channel(acc, qp, scale, oc, output_offset, act_min, act_max, rounding), qp =
          prepare_requantize(mult, shift, rounding) once per call/bind: clamp(requantize(acc, mult[oc], shift[oc])
          + output_offset) for DOUBLE_/SINGLE_ROUNDING, or the
          onnxruntime profile's float32 epilogue for FLOAT32_RNE (keyword `scale`, float32 per channel).
filter_offset (keyword, default 0 = CMSIS-NN's symmetric weights) is -zp_w of asymmetric (ORT uint8) weights.
groups = Cin // Cin_g; output channel oc reads input channels (oc // (Cout // groups)) * Cin_g + [0, Cin_g).
Speed, tile path (groups == 1, input zero-point an int8 value, w + filter_offset within int16: every real model):
offsets folded into the bias at bind time, weights pre-packed as int16 pairs, the receptive fields of 4 output pixels
read in place (or gathered) and multiplied with 64 output channels at a time in registers (emu/kernels/tiles.py:
vpmaddwd / vpdpwssd on x86); a batch split over Numba's threads. See "tile path" below; bind_conv_s8 and conv_s8 take
it whenever it applies, the paths below otherwise (and tests compare all of them).
Row path (groups == 1 and x + input_offset fits int16, i.e. any real zero-point): per output pixel the
(x + input_offset) values of the receptive field are gathered into an int16 row (0 for padded taps, so they add
nothing), zero-filled up to Kp = KH*KW*Cin rounded up to a multiple of 64; each output channel is one dot product
of that row with its filter row (w + filter_offset widened to int16 and zero-padded to Kp once per call; the path
also needs filter_offset in the int16 row range) in constant 64-long blocks,
which LLVM vectorizes with vpmaddwd. General path (grouped convolution, offsets beyond int16): per output pixel the
int32 accumulators of all output channels live in a scratch row and the innermost loop runs over output channels
against a transposed copy of the filter (w + filter_offset, int32). Both sum the same int32 products with wrapping additions: equal results.
"""
import numpy as np

from emu import jit
from emu.fixedpoint import requantize_row
from emu.jit import njit, prange
from emu.kernels.tiles import (LANES, copy_padded, has_quad_dot, madd_tile, pack_groups, pack_pairs, padded, quad_tile,
                               tile_requantize, tile_requantize_row, wrap_int32_array)
from emu.kernels.backends import (KernelArgumentError, check_activation, check_array, check_geometry, check_int,
                                  check_epilogue, check_no_alias, compiled)


def conv_s8(inp, filt, bias, mult, shift, input_offset, output_offset, stride_h, stride_w, pad_top, pad_left,
            dilation_h, dilation_w, act_min, act_max, rounding, out, scratch=None, *, filter_offset=0, scale=None, qp=None):
    """Checked entry point: validates dtypes/shapes/ranges (one-line KernelArgumentError), then runs run_conv_s8.
    rounding FLOAT32_RNE takes the float32 per-channel `scale` (mult/shift may then be None).

    scratch: optional caller-owned int32 work buffer of at least conv_scratch_size(filt.shape) values (CMSIS-NN's
    ctx buffer); when None a fresh one is made here, so the njit kernels never allocate.
    """
    args = _checked_conv_args(inp, filt, bias, mult, shift, input_offset, output_offset, stride_h, stride_w,
                              pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, scratch,
                              filter_offset, scale, qp)
    tiled = _tile_args(args, threads=1)
    if tiled is not None:
        conv_tiles_call(tiled)()
    else:
        run_conv_s8(*args)


def bind_conv_s8(inp, filt, bias, mult, shift, input_offset, output_offset, stride_h, stride_w, pad_top, pad_left,
                 dilation_h, dilation_w, act_min, act_max, rounding, out, scratch=None, *, filter_offset=0, scale=None, qp=None):
    """Checks the arguments once (as conv_s8) and returns a no-argument callable running the unchecked kernel on
    these very arrays (a plan's buffers: their contents may change between calls, never their shape or dtype)."""
    args = _checked_conv_args(inp, filt, bias, mult, shift, input_offset, output_offset, stride_h, stride_w,
                              pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, scratch,
                              filter_offset, scale, qp)
    tiled = _tile_args(args, threads=tile_threads())
    if tiled is not None:
        return conv_tiles_call(tiled)
    return compiled(run_conv_s8, *args)


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


# ---- tile path (groups == 1, input zero-point an int8 value, w + filter_offset within int16) ---------------------
# Offsets folded at bind time (int32 arithmetic is a ring: any order of the wrapping sums gives the same int32):
#   acc[o] = bias[o] + sum_k (x_k + input_offset) * w'[o, k],  w' = w + filter_offset
#          = bias'[o] + sum_k x_k * w'[o, k],                 bias' = bias + input_offset * sum_k w'[o, k]
# where a padded tap reads x = -input_offset (the input zero-point: it adds (zp - zp) * w' = 0, as a skipped tap).
# The raw int8 receptive fields of TILE_ROWS output pixels times w' packed as int16 pairs: tiles.madd_tile, 4 x 64
# accumulators in registers. The receptive field is read in place: from the input itself (unpadded stride-1 1x1 conv,
# even Cin: MODE_DIRECT), from a copy of the sample padded with the zero-point (KW*Cin even, no horizontal dilation:
# MODE_PADDED, KH runs of KW*Cin bytes), else gathered row by row (MODE_GATHER). MODE_DIRECT with Cin % 4 == 0 and w'
# within int8 on a CPU with u8 x s8 quad products (tiles.has_quad_dot): "quad", w' packed as int8 quads for
# tiles.quad_tile, which sums (x + 128) * w' (x + 128 as u8), with bias' - 128 * sum_k w'[o, k] then. A batch is split
# into contiguous sample ranges run by Numba's threads (prange over independent outputs, one scratch row per range,
# dynamic scheduling); the result does not depend on the split.
TILE_ROWS = 4
MODE_DIRECT, MODE_PADDED, MODE_GATHER = 0, 1, 2
SLACK = 64            # bytes after a padded sample (a pair read never passes the end; margin for safety)


def tile_threads():
    """Threads a bound tile kernel may split a batch over: Numba's thread pool size (numba.set_num_threads may lower
    the number in use at run time)."""
    return max(1, int(jit.load().config.NUMBA_NUM_THREADS))


def tile_chunks(n, threads):
    """Contiguous sample ranges (= scratch rows) for a batch of n: 1 for one sample or one thread, else up to 8 per
    thread so that a thread slowed by another process leaves its share to the others (dynamic scheduling)."""
    return 1 if n <= 1 or threads <= 1 else min(n, 8 * threads)


def padded_extent(size, out_size, k, stride, dilation, pad):
    """Rows (or columns) of a zero-point padded copy: the input after `pad` leading ones, extended to the last
    window's last tap."""
    return max(pad + size, (out_size - 1) * stride + (k - 1) * dilation + 1)


def pack_conv_tiles(filt, bias, input_offset, filter_offset):
    """(wpk int16 [K2*Op*2], bias' int32 [Op]) of the tile path for an OHWI filter (groups == 1), or None when the
    path does not apply (input zero-point outside int8, or w + filter_offset outside int16). K = KH*KW*Cin,
    K2 = ceil(K/2), Op = Cout rounded up to tiles.LANES (zero padding)."""
    if not -128 <= -int(input_offset) <= 127:
        return None
    cout = filt.shape[0]
    w = filt.reshape(cout, -1).astype(np.int64) + np.int64(filter_offset)
    if w.size and (w.min() < -32768 or w.max() > 32767):
        return None
    bias2 = np.zeros(padded(cout, LANES), np.int32)
    bias2[:cout] = wrap_int32_array(bias.astype(np.int64) + np.int64(input_offset) * w.sum(axis=1))
    return pack_pairs(w), bias2


def conv_tile_mode(inp_shape, filt_shape, out_shape, stride_h, stride_w, pad_top, pad_left, dilation_w):
    _, h, w, cin = inp_shape
    _, kh, kw, _ = filt_shape
    if (kh == 1 and kw == 1 and stride_h == 1 and stride_w == 1 and pad_top == 0 and pad_left == 0
            and tuple(out_shape[1:3]) == (h, w) and cin % 2 == 0):
        return MODE_DIRECT
    if dilation_w == 1 and (kw * cin) % 2 == 0:
        return MODE_PADDED
    return MODE_GATHER


def _tile_args(args, threads):
    """conv_tiles_call's arguments from _checked_conv_args' (packed weights and per-range scratch made here), or None
    when the tile path does not apply."""
    (inp, filt, bias, qp, scale, input_offset, filter_offset, output_offset, stride_h, stride_w, pad_top, pad_left,
     dilation_h, dilation_w, lo, hi, rounding, out, _) = args
    if inp.shape[3] != filt.shape[3]:
        return None
    packed = pack_conv_tiles(filt, bias, input_offset, filter_offset)
    if packed is None:
        return None
    wpk, bias2 = packed
    _, kh, kw, cin = filt.shape
    mode = conv_tile_mode(inp.shape, filt.shape, out.shape, stride_h, stride_w, pad_top, pad_left, dilation_w)
    quad = 0
    if mode == MODE_DIRECT and cin % 4 == 0 and has_quad_dot():
        w = filt.reshape(filt.shape[0], -1).astype(np.int64) + np.int64(filter_offset)
        if w.size and w.min() >= -128 and w.max() <= 127:    # quads: x + 128 (u8) x w' (s8), -128 * sum w' in bias'
            quad = 1
            wpk = pack_groups(w, 4, np.int8).view(np.int16)
            bias2 = wrap_int32_array(bias2.astype(np.int64) - np.int64(128) * np.concatenate(
                [w.sum(axis=1), np.zeros(bias2.shape[0] - w.shape[0], np.int64)]))
    chunks = tile_chunks(inp.shape[0], threads)
    hp = padded_extent(inp.shape[1], out.shape[1], kh, stride_h, dilation_h, pad_top)
    wp = padded_extent(inp.shape[2], out.shape[2], kw, stride_w, dilation_w, pad_left)
    size = {MODE_DIRECT: 1, MODE_PADDED: hp * wp * cin + SLACK,
            MODE_GATHER: TILE_ROWS * padded(kh * kw * cin, 2)}[mode]
    xbuf = np.full((chunks, size), -input_offset, np.int8)     # MODE_PADDED: the border is the zero-point
    acc = np.zeros((chunks, TILE_ROWS * bias2.shape[0]), np.int32)
    qp, rounding = tile_requantize(qp, scale, rounding)
    return (inp, filt, wpk, bias2, qp, scale, input_offset, output_offset, stride_h, stride_w, pad_top, pad_left,
            dilation_h, dilation_w, lo, hi, rounding, out, mode, quad, hp, wp, xbuf, acc)


def parallel_call(fn, *args):
    """A no-argument callable running the parallel kernel fn(*args) with dynamic scheduling (chunk size 1: a thread
    takes the next range when it is done)."""
    def run():
        numba = jit.load()
        old = numba.set_parallel_chunksize(1)
        try:
            fn(*args)
        finally:
            numba.set_parallel_chunksize(old)
    return run


def tiles_call(tiled, serial, parallel):
    """A no-argument callable running a tile path (conv's or depthwise's) on its _tile_args arguments: one njit call
    for the whole batch, split into its scratch rows' contiguous sample ranges over Numba's threads when there are
    several (fixed at bind time, so the result never depends on numba.set_num_threads)."""
    inp, scratch, acc = tiled[0], tiled[-2], tiled[-1]
    if scratch.shape[0] > 1:
        return parallel_call(parallel, *tiled)
    return compiled(serial, *tiled[:-2], scratch[0], acc[0], 0, inp.shape[0])


def conv_tiles_call(tiled):
    return tiles_call(tiled, _conv_tiles, _conv_tiles_parallel)


_T44, _T14, _T41, _T11 = madd_tile(4, 4), madd_tile(1, 4), madd_tile(4, 1), madd_tile(1, 1)


@njit(cache=True, parallel=True)
def _conv_tiles_parallel(inp, filt, wpk, bias2, qp, scale, input_offset, output_offset, stride_h, stride_w, pad_top,
                         pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, mode, quad, hp, wp, xbuf,
                         acc):
    """prange over the scratch rows' contiguous sample ranges (independent outputs), range t using row t."""
    n = inp.shape[0]
    chunks = xbuf.shape[0]
    for t in prange(chunks):
        _conv_tiles(inp, filt, wpk, bias2, qp, scale, input_offset, output_offset, stride_h, stride_w, pad_top,
                    pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, mode, quad, hp, wp, xbuf[t],
                    acc[t], t * n // chunks, (t + 1) * n // chunks)


@njit(cache=True)
def _gather_row(inp, b, oy, ox, kh, kw, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, zp, row,
                start):
    """The raw int8 receptive field [KH, KW, Cin] of output pixel (b, oy, ox) into row[start:], padded taps = zp."""
    h, w, cin = inp.shape[1], inp.shape[2], inp.shape[3]
    x_flat = inp.reshape(inp.size)
    iy0 = oy * stride_h - pad_top
    ix0 = ox * stride_w - pad_left
    for ky in range(kh):
        iy = iy0 + ky * dilation_h
        r_ky = start + ky * kw * cin
        for kx in range(kw):
            ix = ix0 + kx * dilation_w
            r0 = r_ky + kx * cin
            if iy < 0 or iy >= h or ix < 0 or ix >= w:
                for ic in range(cin):
                    row[np.uint64(r0 + ic)] = zp
            else:
                x_pix = ((b * h + iy) * w + ix) * cin
                for ic in range(cin):
                    row[np.uint64(r0 + ic)] = x_flat[np.uint64(x_pix + ic)]


@njit(cache=True, inline="always")
def _madd(r_n, v4, src, x_off, x_stride, nrows, row_stride, k2, wpk, o0, op, bias2, acc):
    """One tile call: TILE_ROWS or 1 pixels x 64 (v4) or 16 output channels from o0."""
    if v4:
        if r_n == TILE_ROWS:
            _T44(src, x_off, x_stride, nrows, row_stride, k2, wpk, 2 * o0, 2 * op, bias2, o0, acc, o0, op)
        else:
            _T14(src, x_off, x_stride, nrows, row_stride, k2, wpk, 2 * o0, 2 * op, bias2, o0, acc, o0, op)
    elif r_n == TILE_ROWS:
        _T41(src, x_off, x_stride, nrows, row_stride, k2, wpk, 2 * o0, 2 * op, bias2, o0, acc, o0, op)
    else:
        _T11(src, x_off, x_stride, nrows, row_stride, k2, wpk, 2 * o0, 2 * op, bias2, o0, acc, o0, op)


@njit(cache=True, inline="always")
def _tile_channels(r_n, src, x_off, x_stride, nrows, row_stride, k2, wpk, bias2, acc):
    """All output channel blocks (64s, then 16s) of one pixel tile."""
    op = bias2.shape[0]
    o0 = 0
    while o0 + 4 * LANES <= op:
        _madd(r_n, True, src, x_off, x_stride, nrows, row_stride, k2, wpk, o0, op, bias2, acc)
        o0 += 4 * LANES
    while o0 < op:
        _madd(r_n, False, src, x_off, x_stride, nrows, row_stride, k2, wpk, o0, op, bias2, acc)
        o0 += LANES


_Q44, _Q14, _Q41, _Q11 = quad_tile(4, 4), quad_tile(1, 4), quad_tile(4, 1), quad_tile(1, 1)


@njit(cache=True, inline="always")
def _quad_channels(r_n, src, x_off, x_stride, k4, wq, bias2, acc):
    """All output channel blocks (64s, then 16s) of one pixel tile, u8 x s8 quads (MODE_DIRECT with quad)."""
    op = bias2.shape[0]
    o0 = 0
    while o0 + 4 * LANES <= op:
        if r_n == TILE_ROWS:
            _Q44(src, x_off, x_stride, k4, wq, 4 * o0, 4 * op, bias2, o0, acc, o0, op)
        else:
            _Q14(src, x_off, x_stride, k4, wq, 4 * o0, 4 * op, bias2, o0, acc, o0, op)
        o0 += 4 * LANES
    while o0 < op:
        if r_n == TILE_ROWS:
            _Q41(src, x_off, x_stride, k4, wq, 4 * o0, 4 * op, bias2, o0, acc, o0, op)
        else:
            _Q11(src, x_off, x_stride, k4, wq, 4 * o0, 4 * op, bias2, o0, acc, o0, op)
        o0 += LANES


@njit(cache=True)
def _conv_tiles(inp, filt, wpk, bias2, qp, scale, input_offset, output_offset, stride_h, stride_w, pad_top, pad_left,
                dilation_h, dilation_w, act_min, act_max, rounding, out, mode, quad, hp, wp, xbuf, acc, b0, b1):
    """Samples [b0, b1): output pixels in tiles of TILE_ROWS (then 1; along an output row in MODE_PADDED), each
    tile's accumulators (bias' included) to acc [TILE_ROWS, Op], then tile_requantize_row per pixel."""
    n, h, w, cin = inp.shape
    cout, kh, kw, _ = filt.shape
    oh, ow = out.shape[1], out.shape[2]
    k = kh * kw * cin
    kp = k + (k & 1)
    op = bias2.shape[0]
    zp = np.int8(-input_offset)
    x_flat = inp.reshape(n * h * w * cin)
    o_flat = out.reshape(n * oh * ow * cout)
    pix = oh * ow
    if mode == MODE_PADDED:     # xbuf's border holds the input zero-point (filled once at bind)
        run = kw * cin
        for b in range(b0, b1):
            copy_padded(x_flat, b, h, w, cin, wp, pad_top, pad_left, xbuf)
            for oy in range(oh):
                ox = 0
                while ox < ow:
                    r_n = TILE_ROWS if ow - ox >= TILE_ROWS else 1
                    _tile_channels(r_n, xbuf, (oy * stride_h * wp + ox * stride_w) * cin, stride_w * cin, kh,
                                   dilation_h * wp * cin, run // 2, wpk, bias2, acc)
                    for r in range(r_n):
                        tile_requantize_row(acc[r * op:r * op + cout], qp, scale, output_offset, act_min, act_max,
                                            rounding, o_flat, ((b * oh + oy) * ow + ox + r) * cout)
                    ox += r_n
        return
    p = b0 * pix
    p_end = b1 * pix
    while p < p_end:
        r_n = TILE_ROWS if p_end - p >= TILE_ROWS else 1
        if mode == MODE_DIRECT and quad:
            _quad_channels(r_n, x_flat, p * cin, cin, cin // 4, wpk.view(np.int8), bias2, acc)
        elif mode == MODE_DIRECT:
            _tile_channels(r_n, x_flat, p * cin, cin, 1, 0, cin // 2, wpk, bias2, acc)
        else:
            for r in range(r_n):
                q = p + r
                b = q // pix
                oy = (q - b * pix) // ow
                _gather_row(inp, b, oy, q - b * pix - oy * ow, kh, kw, stride_h, stride_w, pad_top, pad_left,
                            dilation_h, dilation_w, zp, xbuf, r * kp)
                if kp != k:
                    xbuf[np.uint64(r * kp + k)] = np.int8(0)
            _tile_channels(r_n, xbuf, 0, kp, 1, 0, kp // 2, wpk, bias2, acc)
        for r in range(r_n):
            tile_requantize_row(acc[r * op:r * op + cout], qp, scale, output_offset, act_min, act_max, rounding,
                                o_flat, (p + r) * cout)
        p += r_n
