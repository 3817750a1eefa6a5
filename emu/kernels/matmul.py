"""matmul_s8: int8 x int8 batched matrix product, int32 accumulation, one requantization.

a [Ba, M, K] (adj_a: stored [Ba, K, M]), b [Bb, K, N] (adj_b: stored [Bb, N, K]), out [B, M, N]; output matrix bi
multiplies a[a_index[bi]] by b[b_index[bi]] (the caller resolves broadcasting of the batch dimensions into these two
int32 index vectors; a constant operand repeats its matrices). acc = sum_k (a + a_offset) * (b + b_offset) (exact
int32); then mode 0: TFLite MultiplyByQuantizedMultiplier(acc, mult, shift) + out_offset (double rounding), clamped
to [act_min, act_max]; mode 1: MLAS MlasRequantizeOutput (float32(acc) * scale, clamped, round half even,
+ out_offset). Integer-only except the float32 epilogue of mode 1; allocation-free.
"""
import numpy as np

from emu import fixedpoint as fx
from emu.jit import njit
from emu.kernels.backends import check_array, check_int, check_no_alias


@njit(cache=True, locals={"acc": "int32"})
def _matmul_s8(a, b, a_index, b_index, adj_a, adj_b, a_offset, b_offset, mode, mult, shift, scale, out_offset,
               act_min, act_max, out):
    nb, m, n = out.shape
    k_depth = a.shape[1] if adj_a else a.shape[2]
    for bi in range(nb):
        ai = a_index[bi]
        bj = b_index[bi]
        for i in range(m):
            for j in range(n):
                acc = np.int32(0)
                for k in range(k_depth):
                    av = a[ai, k, i] if adj_a else a[ai, i, k]
                    bv = b[bj, j, k] if adj_b else b[bj, k, j]
                    acc += (np.int32(av) + a_offset) * (np.int32(bv) + b_offset)
                if mode == 1:
                    out[bi, i, j] = np.int8(fx.requantize_float32(acc, scale, out_offset, act_min, act_max))
                else:
                    v = np.int32(fx.requantize_double(acc, mult, shift)) + out_offset
                    v = act_min if v < act_min else v
                    v = act_max if v > act_max else v
                    out[bi, i, j] = np.int8(v)


def broadcast_index(shape, out_batch):
    """Row of each output batch matrix in an operand whose batch dimensions `shape` (right-aligned, size 1 =
    broadcast) broadcast to `out_batch`: int32 [prod(out_batch)], the operand's matrices flattened row-major."""
    shape = (1,) * (len(out_batch) - len(shape)) + tuple(shape)
    idx = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int32).reshape(shape)
    return np.ascontiguousarray(np.broadcast_to(idx, tuple(out_batch)).reshape(-1), dtype=np.int32)


def bind_matmul_s8(a, b, a_offset, b_offset, mode, mult, shift, scale, out_offset, act_min, act_max, out,
                   a_index=None, b_index=None, adj_a=False, adj_b=False):
    """Check once; returns a no-argument callable running the unchecked kernel on these arrays. a_index/b_index
    None: a batch of 1 broadcasts, otherwise matrix bi of out uses matrix bi of the operand."""
    a = check_array("a", a, np.int8, 3)
    b = check_array("b", b, np.int8, 3)
    out = check_array("out", out, np.int8, 3, writable=True)
    nb, m, n = out.shape
    am, ak = (a.shape[2], a.shape[1]) if adj_a else (a.shape[1], a.shape[2])
    bk, bn = (b.shape[2], b.shape[1]) if adj_b else (b.shape[1], b.shape[2])
    if (am, bk, bn) != (m, ak, n):
        raise ValueError(f"matmul_s8: a {a.shape} x b {b.shape} (adj {bool(adj_a)}, {bool(adj_b)}) does not give "
                         f"out {out.shape}")
    index = []
    for name, x, idx in (("a", a, a_index), ("b", b, b_index)):
        if idx is None:
            if x.shape[0] not in (1, nb):
                raise ValueError(f"matmul_s8: {name} has {x.shape[0]} matrices for {nb} outputs")
            idx = np.arange(nb, dtype=np.int32) if x.shape[0] > 1 else np.zeros(nb, np.int32)
        idx = check_array(f"{name}_index", idx, np.int32, 1)
        if idx.size != nb or (nb and (idx.min() < 0 or idx.max() >= x.shape[0])):
            raise ValueError(f"matmul_s8: {name}_index must hold {nb} rows of 0..{x.shape[0] - 1}")
        index.append(idx)
    check_no_alias(out, a, b)
    args = (a, b, index[0], index[1], bool(adj_a), bool(adj_b), np.int32(check_int("a_offset", a_offset, -255, 255)),
            np.int32(check_int("b_offset", b_offset, -255, 255)), int(mode), np.int32(mult), np.int32(shift),
            np.float32(scale), np.int32(check_int("out_offset", out_offset, -255, 255)),
            np.int32(check_int("act_min", act_min, -128, 127)), np.int32(check_int("act_max", act_max, -128, 127)), out)
    return lambda: _matmul_s8(*args)


def matmul_s8(*args, **kwargs):
    bind_matmul_s8(*args, **kwargs)()
