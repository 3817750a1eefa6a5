"""pad_s8 / transpose_s8: 4-D int8 data movement (lower-rank tensors are passed with leading 1s).

pad_s8:       out[i] = inp[i - pad_before] where inside the input, else pad_value (pad_after = out - inp - before).
transpose_s8: out[i0,i1,i2,i3] = inp[j] with j[perm[k]] = i[k]; out.shape[k] == inp.shape[perm[k]].
"""
import numpy as np

from emu.jit import njit
from emu.kernels.backends import KernelArgumentError, check_array, check_int, check_no_alias


def pad_s8(inp, pad_before, pad_value, out):
    """Checked entry point: pad_before int32[4] >= 0 and out.shape >= inp.shape + pad_before per axis."""
    inp = check_array("inp", inp, np.int8, 4)
    pad_before = check_array("pad_before", pad_before, np.int32, 1)
    out = check_array("out", out, np.int8, 4, writable=True)
    if pad_before.shape[0] != 4 or int(pad_before.min()) < 0:
        raise KernelArgumentError(f"pad_before must be 4 non-negative int32 values, got {pad_before.tolist()}")
    for k in range(4):
        if out.shape[k] < inp.shape[k] + int(pad_before[k]):
            raise KernelArgumentError(f"out axis {k} has {out.shape[k]} entries, fewer than input {inp.shape[k]} "
                                      f"+ pad_before {int(pad_before[k])}; negative padding is unsupported")
    check_no_alias(out, inp)
    _pad_s8(inp, pad_before, check_int("pad_value", pad_value, -128, 127), out)


def transpose_s8(inp, perm, out):
    """Checked entry point: perm int32[4] a permutation of 0..3, out.shape[k] == inp.shape[perm[k]]."""
    inp = check_array("inp", inp, np.int8, 4)
    perm = check_array("perm", perm, np.int32, 1)
    out = check_array("out", out, np.int8, 4, writable=True)
    if sorted(perm.tolist()) != [0, 1, 2, 3]:
        raise KernelArgumentError(f"perm must be a permutation of 0..3, got {perm.tolist()}")
    expected = tuple(inp.shape[p] for p in perm.tolist())
    if out.shape != expected:
        raise KernelArgumentError(f"out has shape {out.shape}, expected {expected} (inp {inp.shape} permuted by {perm.tolist()})")
    check_no_alias(out, inp)
    _transpose_s8(inp, perm, out)


@njit(cache=True)
def _pad_s8(inp, pad_before, pad_value, out):
    """Fill with pad_value, then copy each contiguous input row (last axis) to its offset."""
    d0, d1, d2, d3 = inp.shape
    out.reshape(out.size)[:] = np.int8(pad_value)
    p0, p1, p2, p3 = pad_before[0], pad_before[1], pad_before[2], pad_before[3]
    for i0 in range(d0):
        for i1 in range(d1):
            for i2 in range(d2):
                for i3 in range(d3):
                    out[i0 + p0, i1 + p1, i2 + p2, i3 + p3] = inp[i0, i1, i2, i3]


@njit(cache=True)
def _axis_stride(axis, d1, d2, d3):
    """C-order element stride of input axis 0..3 for a 4-D array of trailing dims (d1, d2, d3)."""
    if axis == 0:
        return d1 * d2 * d3
    if axis == 1:
        return d2 * d3
    if axis == 2:
        return d3
    return 1


@njit(cache=True)
def _transpose_s8(inp, perm, out):
    """Walk the output in C order; the input index advances by the input stride of axis perm[k]. When the permutation
    keeps the order of the axes longer than 1 (e.g. NCHW -> NHWC with C == 1) the flat data is unchanged: one copy."""
    last = -1
    same_order = True
    for k in range(4):
        if inp.shape[perm[k]] > 1:
            if perm[k] < last:
                same_order = False
            last = perm[k]
    if same_order:
        x_flat = inp.reshape(inp.size)
        o_flat = out.reshape(out.size)
        for i in range(inp.size):
            o_flat[i] = x_flat[i]
        return
    d1, d2, d3 = inp.shape[1], inp.shape[2], inp.shape[3]
    s0 = _axis_stride(perm[0], d1, d2, d3)
    s1 = _axis_stride(perm[1], d1, d2, d3)
    s2 = _axis_stride(perm[2], d1, d2, d3)
    s3 = _axis_stride(perm[3], d1, d2, d3)
    x = inp.reshape(inp.size)
    o = out.reshape(out.size)
    e0, e1, e2, e3 = out.shape
    t = 0
    for i0 in range(e0):
        for i1 in range(e1):
            for i2 in range(e2):
                for i3 in range(e3):
                    o[t] = x[i0 * s0 + i1 * s1 + i2 * s2 + i3 * s3]
                    t += 1
