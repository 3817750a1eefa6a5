"""Register-tile microkernels of the fast conv / depthwise paths, written as portable LLVM vector IR (Numba intrinsics).

Each kernel computes an R x V tile of int32 accumulators held in registers for the whole reduction (R output pixels
x V blocks of LANES = 16 output channels) and stores it once; the callers (emu/kernels/conv.py, depthwise.py) add
nothing else to the sums, so int32 arithmetic stays exact by construction (vector adds and multiplies wrap mod 2^32,
the MCU's int32 accumulator). The IR is generic (sext / mul / even-odd shuffle / add on <32 x i16>): every LLVM
target legalizes it; x86 selects vpmaddwd, or vpdpwssd where AVX512-VNNI / AVX-VNNI exists (no CPU-specific code, and
the Numba cache is keyed by the host CPU anyway). One exception: quad_tile calls vpdpbusd when the target has
AVX512-VNNI (LLVM does not select it from generic IR) and emits the generic equivalent elsewhere.

madd_tile(R, V)(x, x_off, x_stride, nrows, row_stride, k2, w, w_off, w_stride, init, init_off, acc, acc_off, acc_stride)
    x int8 1-D, w int16 1-D, init/acc int32 1-D. For r < R, j < V*16, with i(r, y, k) = x_off + r*x_stride
    + y*row_stride + 2k and u(y, k) = w_off + (y*k2 + k)*w_stride:
    acc[acc_off + r*acc_stride + j] = init[init_off + j]
        + sum_{y < nrows, k < k2} x[i] * w[u + 2j] + x[i + 1] * w[u + 2j + 1]               (int32, wrapping)
    i.e. a GEMM tile with the weights packed as int16 pairs [K/2][O][2] (pack_pairs) whose K = nrows*2*k2 inputs
    are `nrows` runs of 2*k2 contiguous bytes (one run: a row of the input or of a gathered buffer; KH runs: the
    receptive field of a conv read in place from a padded input).
quad_tile(R, V)(x, x_off, x_stride, k4, w, w_off, w_stride, init, init_off, acc, acc_off, acc_stride)
    x int8 1-D, w int8 1-D, init/acc int32 1-D. For r < R, j < V*16, with i(r, k) = x_off + r*x_stride + 4k and
    u(k) = w_off + k*w_stride + 4j:
    acc[acc_off + r*acc_stride + j] = init[init_off + j] + sum_{k < k4, q < 4} (x[i + q] + 128) * w[u + q]
    (int32, wrapping): the weights packed as int8 quads [K/4][O][4] (pack_groups), x + 128 as unsigned bytes (the
    caller folds -128 * sum w into init). x86 with AVX512-VNNI: vpdpbusd (4 products per lane, no saturation).
dw_tile(R, V)(x, x_off, x_pix, tap_y, tap_x, kh, kw, w, w_off, w_tap, init, init_off, acc, acc_off, acc_stride)
    x int8 1-D, w/init/acc int32 1-D. For r < R, j < V*16:
    acc[acc_off + r*acc_stride + j] = init[init_off + j]
        + sum_{ky < kh, kx < kw} x[x_off + r*x_pix + ky*tap_y + kx*tap_x + j] * w[w_off + (ky*kw + kx)*w_tap + j]
The caller guarantees every index is inside its array (no checks here: these are the innermost loops).
"""
import os

import numpy as np
from llvmlite import ir

from emu.fixedpoint import requantize_row
from emu.jit import cgutils, intrinsic, njit, resolved, types

# The batched tile kernels run a prange region per layer. Numba's OpenMP layer (GNU libgomp) busy-waits at the region's
# end by default; when another process holds the other core, the waiting thread keeps the one the worker needs and a
# region stalls for a scheduler tick (8 ms measured against 2.5 ms single-threaded). Passive waiting (sleep) makes a
# loaded machine cost at most the single-thread time; set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

LANES = 16          # int32 lanes of one accumulator vector (512 bits; split in halves where vectors are narrower)
_I8, _I16, _I32 = ir.IntType(8), ir.IntType(16), ir.IntType(32)
_V32 = ir.VectorType(_I32, LANES)          # accumulators
_W16 = ir.VectorType(_I16, 2 * LANES)      # int16 pairs
_B64 = ir.VectorType(_I8, 4 * LANES)       # int8 quads


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
_QUAD_TILES = {}


def madd_tile(R, V):
    """The (R, V) GEMM tile intrinsic (see module doc); one per shape, made on first use."""
    key = (R, V)
    if key not in _MADD_TILES:
        _MADD_TILES[key] = _make_madd_tile(R, V)
    return resolved(_MADD_TILES[key])


def dw_tile(R, V):
    """The (R, V) depthwise tile intrinsic (see module doc); one per shape, made on first use."""
    key = (R, V)
    if key not in _DW_TILES:
        _DW_TILES[key] = _make_dw_tile(R, V)
    return resolved(_DW_TILES[key])


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


def quad_tile(R, V):
    """The (R, V) u8 x s8 quad tile intrinsic (see module doc); one per shape, made on first use."""
    key = (R, V)
    if key not in _QUAD_TILES:
        _QUAD_TILES[key] = _make_quad_tile(R, V)
    return resolved(_QUAD_TILES[key])


def has_quad_dot():
    """True when Numba's target CPU (the host, or NUMBA_CPU_FEATURES) multiplies u8 x s8 quads in one instruction
    (AVX512-VNNI vpdpbusd): quad_tile is then the faster path; elsewhere it is correct but slower (portable IR), so
    the callers do not choose it."""
    return "+avx512vnni" in _target_features().split(",")


def _target_features():
    """The CPU features Numba compiles for (its codegen's rule: NUMBA_CPU_FEATURES when set, else the host's)."""
    from llvmlite import binding as llvm_binding
    from numba.core import config as numba_config
    return numba_config.CPU_FEATURES or llvm_binding.get_host_cpu_features().flatten()


def _quad_dot(builder, acc, xb, wv, vnni):
    """acc + per 32-bit lane sum of 4 products u8 xb x s8 wv (<64 x i8> each): vpdpbusd, or the same in generic IR."""
    if vnni:
        fnty = ir.FunctionType(_V32, [_V32, _B64, _B64])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.avx512.vpdpbusd.512")
        return builder.call(fn, [acc, xb, wv])
    wide = ir.VectorType(_I32, 4 * LANES)
    m = builder.mul(builder.zext(xb, wide), builder.sext(wv, wide), flags=["nsw"])
    for i in range(4):
        acc = builder.add(acc, builder.shuffle_vector(m, m, _const_mask(range(i, 4 * LANES, 4))))
    return acc


def _make_quad_tile(R, V):
    @intrinsic
    def tile(typingctx, x, x_off, x_stride, k4, w, w_off, w_stride, init, init_off, acc, acc_off, acc_stride):
        ip = types.intp
        sig = types.void(x, ip, ip, ip, w, ip, ip, init, ip, acc, ip, ip)

        def codegen(context, builder, sig, args):
            intp = context.get_value_type(types.intp)
            vnni = "+avx512vnni" in _target_features().split(",")
            x_ptr, w_ptr = _data(context, builder, sig.args[0], args[0]), _data(context, builder, sig.args[4], args[4])
            init_ptr, acc_ptr = (_data(context, builder, sig.args[7], args[7]),
                                 _data(context, builder, sig.args[9], args[9]))
            x_off, x_stride, k4, w_off, w_stride, init_off, acc_off, acc_stride = (
                args[1], args[2], args[3], args[5], args[6], args[8], args[10], args[11])
            slots = _accumulators(builder, init_ptr, init_off, intp, R, V)
            flip = ir.Constant(_I32, 0x80808080)
            with cgutils.for_range(builder, k4) as loop:
                k = loop.index
                w_row = builder.add(w_off, builder.mul(k, w_stride))
                wv = [builder.load(_ptr(builder, w_ptr, builder.add(w_row, _iconst(intp, v * 4 * LANES)), _B64),
                                   align=1) for v in range(V)]
                x_k = builder.add(x_off, builder.mul(k, _iconst(intp, 4)))
                for r in range(R):
                    xi = builder.add(x_k, builder.mul(_iconst(intp, r), x_stride))
                    q = builder.xor(builder.load(_ptr(builder, x_ptr, xi, _I32), align=1), flip)   # x + 128 as u8
                    qv = builder.insert_element(ir.Constant(_V32, None), q, ir.Constant(_I32, 0))
                    xb = builder.bitcast(builder.shuffle_vector(qv, qv, _const_mask([0] * LANES)), _B64)
                    for v in range(V):
                        s = slots[r][v]
                        builder.store(_quad_dot(builder, builder.load(s), xb, wv[v], vnni), s)
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


# ---- the tile paths' requantization (cmsis-nn double rounding in one 64-bit shift) -------------------------------
# fixedpoint.requantize_pieces (DOUBLE_ROUNDING): x = int32(acc << left), t = x*M + 2^30, v = t >> 31 (the SRDHM; its
# INT32_MAX saturation only binds for x == M == INT32_MIN), out = (v + nudge(v)) >> right with nudge(v) = 2^(right-1)
# for v >= 0, 2^(right-1) - 1 below (0 when right == 0). Nested floor divisions compose (floor((floor(t/a) + n)/b) ==
# floor((t + n*a)/(a*b))) and v < 0 exactly when t < 0, so out = (x*M + add(x*M)) >> (31 + right) with
# add = 2^30 + nudge*2^31 (nudge by the sign of x*M + 2^30): exact in int64 for right <= 31 (|sum| < 2^63) and no M of
# INT32_MIN. TILE_DOUBLE_ROUNDING is the `rounding` the tile kernels then get, qp the pieces below (tile_requantize).
TILE_DOUBLE_ROUNDING = 3
TQ_MULT, TQ_LEFT, TQ_SHIFT, TQ_ADD_POS, TQ_ADD_NEG = range(5)


def tile_requantize(qp, scale, rounding):
    """(qp, rounding) for a tile kernel: the one-shift pieces [5, C] and TILE_DOUBLE_ROUNDING when they apply (double
    rounding, scale None, every left and right shift <= 31, no multiplier INT32_MIN), else qp and rounding as given."""
    if scale is not None or rounding != 0 or qp.shape[1] == 0:
        return qp, rounding
    m, left, right, nudge_pos, nudge_neg = (qp[i] for i in range(5))
    if (m == -(1 << 31)).any() or left.max() > 31 or right.max() > 31:
        return qp, rounding
    tq = np.empty_like(qp)
    tq[TQ_MULT], tq[TQ_LEFT], tq[TQ_SHIFT] = m, left, 31 + right
    tq[TQ_ADD_POS] = (1 << 30) + (nudge_pos << 31)
    tq[TQ_ADD_NEG] = (1 << 30) + (nudge_neg << 31)
    return tq, TILE_DOUBLE_ROUNDING


@njit(cache=True, inline="always")
def tile_requantize_row(acc, qp, scale, output_offset, act_min, act_max, rounding, out, out_start):
    """fixedpoint.requantize_row, with the one-shift form when rounding is TILE_DOUBLE_ROUNDING (see above)."""
    if scale is not None or rounding != TILE_DOUBLE_ROUNDING:
        requantize_row(acc, qp, scale, output_offset, act_min, act_max, rounding, out, out_start)
        return
    m, left, sh, add_pos, add_neg = qp[TQ_MULT], qp[TQ_LEFT], qp[TQ_SHIFT], qp[TQ_ADD_POS], qp[TQ_ADD_NEG]
    off = np.int64(output_offset)
    lo = np.int64(act_min)
    hi = np.int64(act_max)
    for c in range(acc.shape[0]):
        cc = np.uint64(c)
        a_pos = add_pos[cc]      # both loaded: a select of values, not a branch (LLVM vectorizes it)
        a_neg = add_neg[cc]
        p = np.int64(np.int32(np.int64(acc[cc]) << left[cc])) * np.int64(np.int32(m[cc]))
        v = ((p + (a_neg if p < np.int64(-1073741824) else a_pos)) >> sh[cc]) + off
        out[np.uint64(out_start + c)] = np.int8(max(min(v, hi), lo))


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
    return pack_groups(w_rows, 2, np.int16)


def pack_groups(w_rows, group, dtype):
    """[O, K] weights (each within dtype) -> dtype 1-D [ceil(K/group)][Op][group] (Op = O rounded up to LANES, zero
    padding): pairs (int16) for madd_tile, quads (int8) for quad_tile."""
    o, k = w_rows.shape
    kg, op = padded(k, group) // group, padded(o, LANES)
    full = np.zeros((op, group * kg), dtype)
    full[:o, :k] = w_rows
    return np.ascontiguousarray(full.reshape(op, kg, group).transpose(1, 0, 2)).reshape(-1)


def wrap_int32_array(v):
    """int64 values wrapped to int32 (two's complement), as the MCU's accumulator keeps them."""
    v = np.asarray(v, np.int64)
    return (((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)).astype(np.int32)
