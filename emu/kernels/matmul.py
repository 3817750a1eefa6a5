"""matmul_s8: int8 x int8 batched matrix product of two activations, int32 accumulation, one requantization.

a [Ba, M, K], b [Bb, K, N], out [B, M, N] (Ba, Bb: B or 1, broadcast). acc = sum_k (a + a_offset) * (b + b_offset)
(exact int32); then mode 0: TFLite MultiplyByQuantizedMultiplier(acc, mult, shift) + out_offset (double rounding),
clamped to [act_min, act_max]; mode 1: MLAS MlasRequantizeOutput (float32(acc) * scale, clamped, round half even,
+ out_offset). Integer-only except the float32 epilogue of mode 1; allocation-free.
"""
import numpy as np
from numba import njit

from emu import fixedpoint as fx
from emu.kernels.backends import check_array, check_int, check_no_alias


@njit(cache=True)
def _matmul_s8(a, b, a_offset, b_offset, mode, mult, shift, scale, out_offset, act_min, act_max, out):
    nb, m, n = out.shape
    k_depth = a.shape[2]
    for bi in range(nb):
        ai = bi if a.shape[0] > 1 else 0
        bj = bi if b.shape[0] > 1 else 0
        for i in range(m):
            for j in range(n):
                acc = np.int32(0)
                for k in range(k_depth):
                    acc += (np.int32(a[ai, i, k]) + a_offset) * (np.int32(b[bj, k, j]) + b_offset)
                if mode == 1:
                    out[bi, i, j] = np.int8(fx.requantize_float32(acc, scale, out_offset, act_min, act_max))
                else:
                    v = np.int32(fx.requantize_double(acc, mult, shift)) + out_offset
                    v = act_min if v < act_min else v
                    v = act_max if v > act_max else v
                    out[bi, i, j] = np.int8(v)


def bind_matmul_s8(a, b, a_offset, b_offset, mode, mult, shift, scale, out_offset, act_min, act_max, out):
    """Check once; returns a no-argument callable running the unchecked kernel on these arrays."""
    a = check_array("a", a, np.int8, 3)
    b = check_array("b", b, np.int8, 3)
    out = check_array("out", out, np.int8, 3, writable=True)
    nb, m, n = out.shape
    if a.shape[1:] != (m, a.shape[2]) or b.shape[1:] != (a.shape[2], n) or a.shape[0] not in (1, nb) or \
            b.shape[0] not in (1, nb):
        raise ValueError(f"matmul_s8: a {a.shape} x b {b.shape} does not give out {out.shape}")
    check_no_alias(out, a, b)
    args = (a, b, np.int32(check_int("a_offset", a_offset, -255, 255)),
            np.int32(check_int("b_offset", b_offset, -255, 255)), int(mode), np.int32(mult), np.int32(shift),
            np.float32(scale), np.int32(check_int("out_offset", out_offset, -255, 255)),
            np.int32(check_int("act_min", act_min, -128, 127)), np.int32(check_int("act_max", act_max, -128, 127)), out)
    return lambda: _matmul_s8(*args)


def matmul_s8(*args):
    bind_matmul_s8(*args)()
