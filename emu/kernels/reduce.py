"""reduce_mean_ort_s8: onnxruntime's unfused QDQ ReduceMean over the trailing axes (rows [R, K] of int8 values);
reduce_mean_columns_ort_s8: the same over a run of leading or middle axes ([outer, K, inner], inner > 1);
mean_tflm_s8: tflite-micro's int8 MEAN over one contiguous run of axes ([outer, K, inner]).

ORT dequantizes (float32(x - zp) * s_in), runs its float ReduceMean and quantizes. The float reduction of each
contiguous row is Eigen's vectorized sum (Map<VectorXf>::sum(), SSE Packet4f): the row's unaligned head (up to a
16-byte boundary of ORT's 64-byte aligned buffer: row r starts at float offset r*K), then two 4-lane accumulators
over 8-value blocks, one more 4-value block, the lanes reduced as (l0 + l2) + (l1 + l3), then the head and the
tail added one by one; the mean is that sum / float32(K); QuantizeLinear rounds half to even. All float32.
Leading or middle axes (ORT's OptimizeShapeForFastReduce: size-1 dimensions dropped, neighbours of the same kind
merged into [K, inner] "RK" or [outer, K, inner] "KRK"): RK adds the K rows one after the other, element by element
(memcpy of row 0, then out += row); KRK is math::MatMul(ones[1, K], x[K, inner]) per outer index, which MLAS runs
with its M = 1 kernel (MlasSgemmKernelM1Avx: groups of four rows summed ((r0 + r1) + r2) + r3, each group added to
the running sum as group + sum, then a remaining pair and a remaining row the same way; 1 * x is exact).
"""
import numpy as np

from emu.fixedpoint import requantize_double, wrap_int32
from emu.jit import njit
from emu.kernels.backends import check_activation, check_array, check_int, check_no_alias


@njit(cache=True)
def _dq(v, s, zp):
    return np.float32(np.float32(np.int32(v) - zp) * s)


@njit(cache=True)
def _reduce_mean_ort(inp, s_in, zp_in, s_out, zp_out, act_min, act_max, out):
    n_rows, k = inp.shape
    kf = np.float32(k)
    for r in range(n_rows):
        row = inp[r]
        head = (4 - (r * k) % 4) % 4
        if head > k:
            head = k
        n4 = (k - head) // 4 * 4
        n8 = (k - head) // 8 * 8
        if n4 == 0:
            acc = _dq(row[0], s_in, zp_in)
            for i in range(1, k):
                acc = np.float32(acc + _dq(row[i], s_in, zp_in))
        else:
            a0 = _dq(row[head], s_in, zp_in)
            a1 = _dq(row[head + 1], s_in, zp_in)
            a2 = _dq(row[head + 2], s_in, zp_in)
            a3 = _dq(row[head + 3], s_in, zp_in)
            if n4 > 4:
                b0 = _dq(row[head + 4], s_in, zp_in)
                b1 = _dq(row[head + 5], s_in, zp_in)
                b2 = _dq(row[head + 6], s_in, zp_in)
                b3 = _dq(row[head + 7], s_in, zp_in)
                i = head + 8
                while i < head + n8:
                    a0 = np.float32(a0 + _dq(row[i], s_in, zp_in))
                    a1 = np.float32(a1 + _dq(row[i + 1], s_in, zp_in))
                    a2 = np.float32(a2 + _dq(row[i + 2], s_in, zp_in))
                    a3 = np.float32(a3 + _dq(row[i + 3], s_in, zp_in))
                    b0 = np.float32(b0 + _dq(row[i + 4], s_in, zp_in))
                    b1 = np.float32(b1 + _dq(row[i + 5], s_in, zp_in))
                    b2 = np.float32(b2 + _dq(row[i + 6], s_in, zp_in))
                    b3 = np.float32(b3 + _dq(row[i + 7], s_in, zp_in))
                    i += 8
                a0 = np.float32(a0 + b0)
                a1 = np.float32(a1 + b1)
                a2 = np.float32(a2 + b2)
                a3 = np.float32(a3 + b3)
                if n4 > n8:
                    j = head + n8
                    a0 = np.float32(a0 + _dq(row[j], s_in, zp_in))
                    a1 = np.float32(a1 + _dq(row[j + 1], s_in, zp_in))
                    a2 = np.float32(a2 + _dq(row[j + 2], s_in, zp_in))
                    a3 = np.float32(a3 + _dq(row[j + 3], s_in, zp_in))
            acc = np.float32(np.float32(a0 + a2) + np.float32(a1 + a3))
            for i in range(head):
                acc = np.float32(acc + _dq(row[i], s_in, zp_in))
            for i in range(head + n4, k):
                acc = np.float32(acc + _dq(row[i], s_in, zp_in))
        mean = np.float32(acc / kf)
        q = np.int32(np.rint(np.float32(mean / s_out))) + zp_out
        out[r] = np.int8(min(max(q, act_min), act_max))


@njit(cache=True)
def _reduce_mean_columns_ort(inp, grouped, s_in, zp_in, s_out, zp_out, act_min, act_max, out):
    """inp [outer, k, inner] -> out [outer, inner]: RK (grouped False) or KRK (grouped True) order, see above."""
    n_outer, k, n_inner = inp.shape
    kf = np.float32(k)
    for a in range(n_outer):
        for c in range(n_inner):
            if not grouped:
                acc = _dq(inp[a, 0, c], s_in, zp_in)
                for j in range(1, k):
                    acc = np.float32(acc + _dq(inp[a, j, c], s_in, zp_in))
            else:
                acc = np.float32(0)
                j = 0
                while j + 4 <= k:
                    g = np.float32(_dq(inp[a, j, c], s_in, zp_in) + _dq(inp[a, j + 1, c], s_in, zp_in))
                    g = np.float32(g + _dq(inp[a, j + 2, c], s_in, zp_in))
                    g = np.float32(g + _dq(inp[a, j + 3, c], s_in, zp_in))
                    acc = g if j == 0 else np.float32(g + acc)
                    j += 4
                if k - j >= 2:
                    g = np.float32(_dq(inp[a, j, c], s_in, zp_in) + _dq(inp[a, j + 1, c], s_in, zp_in))
                    acc = g if j == 0 else np.float32(g + acc)
                    j += 2
                if k - j == 1:
                    g = _dq(inp[a, j, c], s_in, zp_in)
                    acc = g if j == 0 else np.float32(g + acc)
            mean = np.float32(acc / kf)
            q = np.int32(np.rint(np.float32(mean / s_out))) + zp_out
            out[a, c] = np.int8(min(max(q, act_min), act_max))


def bind_reduce_mean_columns_ort_s8(inp, grouped, s_in, zp_in, s_out, zp_out, act_min, act_max, out):
    """Check once: inp int8 [outer, K, inner], out int8 [outer, inner]; grouped: ORT's KRK order (outer > 1 after
    dropping size-1 dimensions), else RK. Returns a no-argument callable running the kernel."""
    inp = check_array("inp", inp, np.int8, 3)
    out = check_array("out", out, np.int8, 2, writable=True)
    if out.shape != (inp.shape[0], inp.shape[2]):
        raise ValueError(f"reduce_mean: out has shape {out.shape}, expected {(inp.shape[0], inp.shape[2])}")
    lo, hi = check_activation(act_min, act_max)
    check_no_alias(out, inp)
    args = (inp, bool(grouped), np.float32(s_in), check_int("zp_in", zp_in, -128, 127), np.float32(s_out),
            check_int("zp_out", zp_out, -128, 127), lo, hi, out)
    return lambda: _reduce_mean_columns_ort(*args)


def bind_reduce_mean_ort_s8(inp, s_in, zp_in, s_out, zp_out, act_min, act_max, out):
    """Check once: inp int8 [R, K], out int8 [R]; returns a no-argument callable running the kernel."""
    inp = check_array("inp", inp, np.int8, 2)
    out = check_array("out", out, np.int8, 1, writable=True)
    if out.shape[0] != inp.shape[0]:
        raise ValueError(f"reduce_mean: out has {out.shape[0]} rows, inp {inp.shape[0]}")
    lo, hi = check_activation(act_min, act_max)
    check_no_alias(out, inp)
    args = (inp, np.float32(s_in), check_int("zp_in", zp_in, -128, 127), np.float32(s_out),
            check_int("zp_out", zp_out, -128, 127), lo, hi, out)
    return lambda: _reduce_mean_ort(*args)


def reduce_mean_ort_s8(inp, s_in, zp_in, s_out, zp_out, act_min, act_max, out):
    bind_reduce_mean_ort_s8(inp, s_in, zp_in, s_out, zp_out, act_min, act_max, out)()


# ---- tflite-micro MEAN (int8) ---------------------------------------------------------------------------------

@njit(cache=True)
def _mean_tflm(inp, mult, shift, zp_in, zp_out, act_min, act_max, out):
    """inp [outer, k, inner] int8 -> out [outer, inner]: QuantizedMeanOrSum, out = MultiplyByQuantizedMultiplier(
    int32(sum(x) - zp_in * k), mult, shift) + zp_out, clamped; (mult, shift) is s_in / s_out with the multiplier
    divided by k (the importer's)."""
    n_outer, k, n_inner = inp.shape
    for a in range(n_outer):
        for c in range(n_inner):
            acc = np.int32(0)
            for j in range(k):
                acc = np.int32(acc + np.int32(inp[a, j, c]))
            shifted = wrap_int32(np.int64(acc) - np.int64(zp_in) * np.int64(k))
            v = np.int64(requantize_double(shifted, mult, shift)) + zp_out
            if v < act_min:
                v = act_min
            elif v > act_max:
                v = act_max
            out[a, c] = np.int8(v)


def bind_mean_tflm_s8(inp, mult, shift, zp_in, zp_out, act_min, act_max, out):
    """Check once: inp int8 [outer, k, inner], out int8 [outer, inner]; returns a no-argument callable."""
    inp = check_array("inp", inp, np.int8, 3)
    out = check_array("out", out, np.int8, 2, writable=True)
    if out.shape != (inp.shape[0], inp.shape[2]):
        raise ValueError(f"mean: out has shape {out.shape}, expected {(inp.shape[0], inp.shape[2])}")
    lo, hi = check_activation(act_min, act_max)
    check_no_alias(out, inp)
    args = (inp, check_int("mult", mult), check_int("shift", shift, -62, 62), check_int("zp_in", zp_in, -128, 127),
            check_int("zp_out", zp_out, -128, 127), lo, hi, out)
    return lambda: _mean_tflm(*args)
