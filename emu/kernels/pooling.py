"""avgpool_s8 / maxpool_s8: int8 NHWC pooling over the non-padded taps (TFLM reference AveragePool / MaxPool int8).

avgpool: sum raw int8 over the valid taps (int32), cnt = their number;
         avg = (sum + cnt/2)/cnt if sum > 0 else (sum - cnt/2)/cnt, C truncating division; clamp to act range.
maxpool: max over the valid taps (-128 for a window with no valid tap), clamp to act range.
"""
import numpy as np

from emu.jit import njit
from emu.kernels.backends import (KernelArgumentError, check_activation, check_array, check_geometry, check_int,
                                  check_no_alias, compiled)

AVGPOOL_EMPTY = ("an average-pool window lies entirely in the padding (no valid tap); check the paddings and output "
                 "shape")


def _check_pool(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, act_min, act_max, out):
    inp = check_array("inp", inp, np.int8, 4)
    out = check_array("out", out, np.int8, 4, writable=True)
    n, c = inp.shape[0], inp.shape[3]
    if out.shape[0] != n or out.shape[3] != c:
        raise KernelArgumentError(f"out has shape {out.shape}, expected ({n}, OH, OW, {c})")
    kh = check_int("kernel_h", kernel_h, 1)
    kw = check_int("kernel_w", kernel_w, 1)
    sh, sw, pt, pl, _, _ = check_geometry(stride_h, stride_w, pad_top, pad_left)
    lo, hi = check_activation(act_min, act_max)
    check_no_alias(out, inp)
    return kh, kw, sh, sw, pt, pl, lo, hi


def avgpool_s8(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, act_min, act_max, out):
    """Checked entry point for _avgpool_s8; a window without any valid tap raises KernelArgumentError."""
    args = _check_pool(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, act_min, act_max, out)
    if not _avgpool_s8(inp, *args, out, np.empty(inp.shape[3], np.int32)):
        raise KernelArgumentError(AVGPOOL_EMPTY)


def bind_avgpool_s8(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, act_min, act_max, out):
    """Checks the arguments once (as avgpool_s8) and returns a no-argument callable running the unchecked kernel on
    these very arrays (contents may change between calls, never shapes or dtypes)."""
    args = _check_pool(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, act_min, act_max, out)
    avgpool = compiled(_avgpool_s8, inp, *args, out, np.empty(inp.shape[3], np.int32))

    def run_avgpool():
        if not avgpool():
            raise KernelArgumentError(AVGPOOL_EMPTY)
    return run_avgpool


def bind_maxpool_s8(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, act_min, act_max, out):
    """Checks the arguments once (as maxpool_s8) and returns a no-argument callable running the unchecked kernel."""
    return compiled(_maxpool_s8, inp, *_check_pool(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left,
                                                   act_min, act_max, out), out)


def maxpool_s8(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, act_min, act_max, out):
    """Checked entry point for _maxpool_s8."""
    args = _check_pool(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, act_min, act_max, out)
    _maxpool_s8(inp, *args, out)


@njit(cache=True)
def _tap_range(origin, k, size):
    """Valid filter taps [lo, hi) for a window starting at input index `origin` (stride-1 taps)."""
    lo = -origin if origin < 0 else 0
    hi = size - origin if size - origin < k else k
    if hi < lo:
        hi = lo
    return lo, hi


@njit(cache=True)
def _avgpool_s8(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, act_min, act_max, out, sums):
    """Loops: output pixel -> valid taps -> channels (contiguous, flat uint64 indices), int32 sums (wrapping) in
    the caller's row `sums` [C]; then the rounded division per channel. Returns False if a window is empty."""
    n, h, w, c = inp.shape
    oh, ow = out.shape[1], out.shape[2]
    x_flat = inp.reshape(n * h * w * c)
    o_flat = out.reshape(n * oh * ow * c)
    for b in range(n):
        for oy in range(oh):
            iy0 = oy * stride_h - pad_top
            ky_lo, ky_hi = _tap_range(iy0, kernel_h, h)
            for ox in range(ow):
                ix0 = ox * stride_w - pad_left
                kx_lo, kx_hi = _tap_range(ix0, kernel_w, w)
                cnt = np.int32((ky_hi - ky_lo) * (kx_hi - kx_lo))
                if cnt == 0:
                    return False
                half = np.int32(cnt // 2)
                for ch in range(c):
                    sums[np.uint64(ch)] = np.int32(0)
                for ky in range(ky_lo, ky_hi):
                    for kx in range(kx_lo, kx_hi):
                        x_pix = ((b * h + iy0 + ky) * w + ix0 + kx) * c
                        for ch in range(c):
                            sums[np.uint64(ch)] = np.int32(sums[np.uint64(ch)]
                                                           + np.int32(x_flat[np.uint64(x_pix + ch)]))
                o_base = ((b * oh + oy) * ow + ox) * c
                for ch in range(c):
                    s = sums[np.uint64(ch)]
                    # C truncating division of a non-negative numerator by a positive cnt, sign restored
                    if s > 0:
                        avg = np.int32((s + half) // cnt)
                    else:
                        avg = np.int32(-((half - s) // cnt))
                    if avg < act_min:
                        avg = act_min
                    elif avg > act_max:
                        avg = act_max
                    o_flat[np.uint64(o_base + ch)] = np.int8(avg)
    return True


@njit(cache=True)
def _maxpool_s8(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, act_min, act_max, out):
    """Loops: output pixel -> channel -> valid taps; max starts at -128 (an empty window gives -128 before clamping)."""
    n, h, w, c = inp.shape
    oh, ow = out.shape[1], out.shape[2]
    for b in range(n):
        for oy in range(oh):
            ky_lo, ky_hi = _tap_range(oy * stride_h - pad_top, kernel_h, h)
            for ox in range(ow):
                kx_lo, kx_hi = _tap_range(ox * stride_w - pad_left, kernel_w, w)
                for ch in range(c):
                    m = np.int32(-128)
                    for ky in range(ky_lo, ky_hi):
                        iy = oy * stride_h - pad_top + ky
                        for kx in range(kx_lo, kx_hi):
                            v = np.int32(inp[b, iy, ox * stride_w - pad_left + kx, ch])
                            if v > m:
                                m = v
                    if m < act_min:
                        m = act_min
                    elif m > act_max:
                        m = act_max
                    out[b, oy, ox, ch] = np.int8(m)
