"""Register-tile microkernels of the fast conv / depthwise paths, written as portable LLVM vector IR (Numba intrinsics).

Each kernel computes an R x V tile of int32 accumulators held in registers for the whole reduction (R output pixels
x V blocks of LANES = 16 output channels) and stores it once; the callers (emu/kernels/conv.py, depthwise.py) add
nothing else to the sums, so int32 arithmetic stays exact by construction (vector adds and multiplies wrap mod 2^32,
the MCU's int32 accumulator). The IR is generic (sext / mul / even-odd shuffle / add on <32 x i16>): every LLVM
target legalizes it; x86 selects vpmaddwd, or vpdpwssd where AVX512-VNNI / AVX-VNNI exists (no CPU-specific code, and
the Numba cache is keyed by the host CPU anyway).

madd_tile(R, V)(x, x_off, x_stride, nrows, row_stride, k2, w, w_off, w_stride, init, init_off, acc, acc_off, acc_stride)
    x int8 1-D, w int16 1-D, init/acc int32 1-D. For r < R, j < V*16, with i(r, y, k) = x_off + r*x_stride
    + y*row_stride + 2k and u(y, k) = w_off + (y*k2 + k)*w_stride:
    acc[acc_off + r*acc_stride + j] = init[init_off + j]
        + sum_{y < nrows, k < k2} x[i] * w[u + 2j] + x[i + 1] * w[u + 2j + 1]               (int32, wrapping)
    i.e. a GEMM tile with the weights packed as int16 pairs [K/2][O][2] (pack_pairs) whose K = nrows*2*k2 inputs
    are `nrows` runs of 2*k2 contiguous bytes (one run: a row of the input or of a gathered buffer; KH runs: the
    receptive field of a conv read in place from a padded input).
dw_tile(R, V)(x, x_off, x_pix, tap_y, tap_x, kh, kw, w, w_off, w_tap, init, init_off, acc, acc_off, acc_stride)
    x int8 1-D, w/init/acc int32 1-D. For r < R, j < V*16:
    acc[acc_off + r*acc_stride + j] = init[init_off + j]
        + sum_{ky < kh, kx < kw} x[x_off + r*x_pix + ky*tap_y + kx*tap_x + j] * w[w_off + (ky*kw + kx)*w_tap + j]
The caller guarantees every index is inside its array (no checks here: these are the innermost loops).
"""
import os

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# The batched tile kernels run a prange region per layer. Numba's OpenMP layer (GNU libgomp) busy-waits at the region's
# end by default; when another process holds the other core, the waiting thread keeps the one the worker needs and a
# region stalls for a scheduler tick (8 ms measured against 2.5 ms single-threaded). Passive waiting (sleep) makes a
# loaded machine cost at most the single-thread time; set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

LANES = 16          # int32 lanes of one accumulator vector (512 bits; split in halves where vectors are narrower)
_I8, _I16, _I32 = ir.IntType(8), ir.IntType(16), ir.IntType(32)
_V32 = ir.VectorType(_I32, LANES)          # accumulators
_W16 = ir.VectorType(_I16, 2 * LANES)      # int16 pairs


def _const_mask(values):
    return ir.Constant(ir.VectorType(_I32, len(values)), list(values))


def _madd(builder, a, b):
    """pmaddwd: <32 x i16> a, b -> <16 x i32> (a[2i]*b[2i] + a[2i+1]*b[2i+1]), generic IR."""
    wide = ir.VectorType(_I32, 2 * LANES)
    m = builder.mul(builder.sext(a, wide), builder.sext(b, wide), flags=["nsw"])
    even = builder.shuffle_vector(m, m, _const_mask(range(0, 2 * LANES, 2)))
    odd = builder.shuffle_vector(m, m, _const_mask(range(1, 2 * LANES, 2)))
    return builder.add(even, odd)


def _ptr(builder, base, index, vec_type):
    return builder.bitcast(builder.gep(base, [index]), vec_type.as_pointer())


def _iconst(intp, v):
    return ir.Constant(intp, v)


def _data(context, builder, ty, value):
    return context.make_array(ty)(context, builder, value).data


def _accumulators(builder, init_ptr, init_off, intp, R, V):
    """R x V alloca'd vectors (promoted to registers by LLVM), each set to init[init_off + v*16 : +16]."""
    slots = []
    for _ in range(R):
        row = []
        for v in range(V):
            s = cgutils.alloca_once(builder, _V32)
            row.append(s)
        slots.append(row)
    for v in range(V):
        start = builder.load(_ptr(builder, init_ptr, builder.add(init_off, _iconst(intp, v * LANES)), _V32), align=4)
        for r in range(R):
            builder.store(start, slots[r][v])
    return slots


def _store_tile(builder, slots, acc_ptr, acc_off, acc_stride, intp, R, V):
    for r in range(R):
        row = builder.add(acc_off, builder.mul(_iconst(intp, r), acc_stride))
        for v in range(V):
            p = _ptr(builder, acc_ptr, builder.add(row, _iconst(intp, v * LANES)), _V32)
            builder.store(builder.load(slots[r][v]), p, align=4)


_MADD_TILES = {}
_DW_TILES = {}


def madd_tile(R, V):
    """The (R, V) GEMM tile intrinsic (see module doc); one per shape, made on first use."""
    key = (R, V)
    if key not in _MADD_TILES:
        _MADD_TILES[key] = _make_madd_tile(R, V)
    return _MADD_TILES[key]


def dw_tile(R, V):
    """The (R, V) depthwise tile intrinsic (see module doc); one per shape, made on first use."""
    key = (R, V)
    if key not in _DW_TILES:
        _DW_TILES[key] = _make_dw_tile(R, V)
    return _DW_TILES[key]


def _make_madd_tile(R, V):
    @intrinsic
    def tile(typingctx, x, x_off, x_stride, nrows, row_stride, k2, w, w_off, w_stride, init, init_off, acc, acc_off,
             acc_stride):
        ip = types.intp
        sig = types.void(x, ip, ip, ip, ip, ip, w, ip, ip, init, ip, acc, ip, ip)

        def codegen(context, builder, sig, args):
            intp = context.get_value_type(types.intp)
            x_ptr, w_ptr = _data(context, builder, sig.args[0], args[0]), _data(context, builder, sig.args[6], args[6])
            init_ptr, acc_ptr = (_data(context, builder, sig.args[9], args[9]),
                                 _data(context, builder, sig.args[11], args[11]))
            x_off, x_stride, nrows, row_stride, k2, w_off, w_stride, init_off, acc_off, acc_stride = (
                args[1], args[2], args[3], args[4], args[5], args[7], args[8], args[10], args[12], args[13])
            slots = _accumulators(builder, init_ptr, init_off, intp, R, V)
            pair = ir.VectorType(_I8, 2)
            with cgutils.for_range(builder, nrows) as outer:
                ky = outer.index
                x_row = builder.add(x_off, builder.mul(ky, row_stride))
                k_row = builder.mul(ky, k2)
                with cgutils.for_range(builder, k2) as loop:
                    k = loop.index
                    w_row = builder.add(w_off, builder.mul(builder.add(k_row, k), w_stride))
                    wv = [builder.load(_ptr(builder, w_ptr, builder.add(w_row, _iconst(intp, v * 2 * LANES)), _W16),
                                       align=2) for v in range(V)]
                    x_k = builder.add(x_row, builder.add(k, k))
                    for r in range(R):
                        xi = builder.add(x_k, builder.mul(_iconst(intp, r), x_stride))
                        x2 = builder.sext(builder.load(_ptr(builder, x_ptr, xi, pair), align=1),
                                          ir.VectorType(_I16, 2))
                        xb = builder.shuffle_vector(x2, x2, _const_mask([0, 1] * LANES))   # the pair, broadcast
                        for v in range(V):
                            s = slots[r][v]
                            builder.store(builder.add(builder.load(s), _madd(builder, xb, wv[v])), s)
            _store_tile(builder, slots, acc_ptr, acc_off, acc_stride, intp, R, V)
            return context.get_dummy_value()
        return sig, codegen
    return tile


def _make_dw_tile(R, V):
    @intrinsic
    def tile(typingctx, x, x_off, x_pix, tap_y, tap_x, kh, kw, w, w_off, w_tap, init, init_off, acc, acc_off,
             acc_stride):
        ip = types.intp
        sig = types.void(x, ip, ip, ip, ip, ip, ip, w, ip, ip, init, ip, acc, ip, ip)

        def codegen(context, builder, sig, args):
            intp = context.get_value_type(types.intp)
            x_ptr, w_ptr = _data(context, builder, sig.args[0], args[0]), _data(context, builder, sig.args[7], args[7])
            init_ptr, acc_ptr = (_data(context, builder, sig.args[10], args[10]),
                                 _data(context, builder, sig.args[12], args[12]))
            x_off, x_pix, tap_y, tap_x, kh, kw, w_off, w_tap, init_off, acc_off, acc_stride = (
                args[1], args[2], args[3], args[4], args[5], args[6], args[8], args[9], args[11], args[13], args[14])
            slots = _accumulators(builder, init_ptr, init_off, intp, R, V)
            x8 = ir.VectorType(_I8, LANES)
            with cgutils.for_range(builder, kh) as ly:
                ky = ly.index
                x_row = builder.add(x_off, builder.mul(ky, tap_y))
                w_row = builder.add(w_off, builder.mul(builder.mul(ky, kw), w_tap))
                with cgutils.for_range(builder, kw) as lx:
                    kx = lx.index
                    x_tap = builder.add(x_row, builder.mul(kx, tap_x))
                    w_t = builder.add(w_row, builder.mul(kx, w_tap))
                    wv = [builder.load(_ptr(builder, w_ptr, builder.add(w_t, _iconst(intp, v * LANES)), _V32),
                                       align=4) for v in range(V)]
                    for r in range(R):
                        xr = builder.add(x_tap, builder.mul(_iconst(intp, r), x_pix))
                        for v in range(V):
                            xv = builder.load(_ptr(builder, x_ptr, builder.add(xr, _iconst(intp, v * LANES)), x8),
                                              align=1)
                            s = slots[r][v]
                            prod = builder.mul(builder.sext(xv, _V32), wv[v])
                            builder.store(builder.add(builder.load(s), prod), s)
            _store_tile(builder, slots, acc_ptr, acc_off, acc_stride, intp, R, V)
            return context.get_dummy_value()
        return sig, codegen
    return tile


# ---- the padded input image ---------------------------------------------------------------------------

@njit(cache=True, inline="always")
def copy_padded(x_flat, b, h, w, c, wp, pad_top, pad_left, xbuf):
    """Sample b of a flat NHWC int8 batch [n, h, w, c] into the flat padded image xbuf [hp, wp, c] at (pad_top,
    pad_left); the border keeps what the caller filled it with (the input zero-point: padded taps add nothing)."""
    for y in range(h):
        dst = ((pad_top + y) * wp + pad_left) * c
        src = (b * h + y) * w * c
        for i in range(w * c):
            xbuf[np.uint64(dst + i)] = x_flat[np.uint64(src + i)]


# ---- weight packing (bind time, numpy) ----------------------------------------------------------------

def padded(n, multiple):
    return -(-int(n) // multiple) * multiple


def pack_pairs(w_rows):
    """int64/int32 [O, K] weights (already offset: w + filter_offset, each within int16) -> int16 1-D
    [K2][Op][2] for madd_tile (K2 = ceil(K/2), Op = O rounded up to LANES; the padding is zeros)."""
    o, k = w_rows.shape
    k2, op = padded(k, 2) // 2, padded(o, LANES)
    full = np.zeros((op, 2 * k2), np.int16)
    full[:o, :k] = w_rows
    return np.ascontiguousarray(full.reshape(op, k2, 2).transpose(1, 0, 2)).reshape(-1)


def wrap_int32_array(v):
    """int64 values wrapped to int32 (two's complement), as the MCU's accumulator keeps them."""
    v = np.asarray(v, np.int64)
    return (((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)).astype(np.int32)
