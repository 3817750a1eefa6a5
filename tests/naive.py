"""Obvious reference implementations of the int8 kernels: Python ints, readable loops, same names and argument
order as emu/kernels (see emu/kernels/__init__.py). Independent of emu.fixedpoint: the rounding primitives are
re-derived here from their definitions (gemmlowp / TFLite). Slow; for small test shapes only.
"""
import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


# ---- integer primitives (Python ints, exact) ---------------------------------------------------------

def wrap32(x):
    """Two's-complement int32 wrap of an exact integer."""
    return (x + (1 << 31)) % (1 << 32) - (1 << 31)


def div_trunc(a, b):
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul, written as in gemmlowp (nudge, truncating division)."""
    if a == INT32_MIN and b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return div_trunc(ab + nudge, 1 << 31)


def rdbp(x, exponent):
    """x / 2^exponent rounded to nearest, ties away from zero."""
    if exponent == 0:
        return x
    q = (abs(x) + (1 << (exponent - 1))) >> exponent
    return q if x >= 0 else -q


def requantize(acc, mult, shift, rounding):
    if rounding == 1:   # single rounding: round(acc * M / 2^(31-shift)), ties toward +inf
        total = 31 - shift
        return wrap32((acc * mult + (1 << (total - 1))) >> total)
    left = max(shift, 0)
    right = max(-shift, 0)
    return rdbp(srdhm(wrap32(acc * (1 << left)), mult), right)


def activate(v, output_offset, act_min, act_max):
    return min(max(v + output_offset, act_min), act_max)


# ---- network kernels --------------------------------------------------------------------------------

def requantize_array(acc, mult, shift, rounding):
    """Vectorised requantize of exact int64 accumulators (wrapped to int32 first) with per-channel mult/shift
    broadcast over the last axis; gemmlowp's formulation in exact int64 numpy (every intermediate < 2^63)."""
    x = _wrap32_array(acc)
    m = np.broadcast_to(np.asarray(mult, np.int64), x.shape)
    s = np.broadcast_to(np.asarray(shift, np.int64), x.shape)
    if rounding == 1:
        total = 31 - s
        return _wrap32_array((x * m + (np.int64(1) << (total - 1))) >> total)
    left, right = np.maximum(s, 0), np.maximum(-s, 0)
    x = _wrap32_array((x.astype(np.uint64) << left.astype(np.uint64)).view(np.int64))   # int32 multiply by 2^left
    ab = x * m
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    high = np.sign(ab + nudge) * (np.abs(ab + nudge) // np.int64(1 << 31))          # C truncating division
    high = np.where((x == INT32_MIN) & (m == INT32_MIN), np.int64(INT32_MAX), high)
    half = np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), np.int64(0))
    return np.sign(high) * ((np.abs(high) + half) >> right)                           # ties away from zero


def _wrap32_array(a):
    return ((a.astype(np.int64).astype(np.uint64) + np.uint64(1 << 31)) & np.uint64(0xFFFFFFFF)).astype(np.int64) - (1 << 31)


FLOAT32_RNE = 2   # rounding code of the onnxruntime profile's float32 epilogue (emu.fixedpoint.FLOAT32_RNE)


def requantize_float32_array(acc32, scale, output_offset, act_min, act_max):
    """MLAS requantization in numpy float32 arrays: clip(float32(acc) * scale, act_min - zp, act_max - zp),
    numpy's rint (round half to even), + zp. acc32: int32 values (already wrapped) [..., C]; scale float32 [C]."""
    v = acc32.astype(np.float32) * np.asarray(scale, np.float32)
    assert v.dtype == np.float32
    v = np.minimum(np.maximum(v, np.float32(act_min - output_offset)), np.float32(act_max - output_offset))
    return np.rint(v).astype(np.int64) + output_offset


def _activate_channels(acc, mult, shift, output_offset, act_min, act_max, rounding, out, scale=None):
    """acc: exact accumulators [..., C]; wrap to int32, requantize per channel, add the offset, clamp, store
    (rounding FLOAT32_RNE: the float32 epilogue with the per-channel `scale`)."""
    if acc.dtype == object:   # wider than int64 (huge filter offsets): wrap with Python ints first
        acc = np.vectorize(wrap32, otypes=[np.int64])(acc)
    if rounding == FLOAT32_RNE:
        out[...] = requantize_float32_array(_wrap32_array(acc), scale, output_offset, act_min, act_max)
        return
    q = requantize_array(acc, mult, shift, rounding)
    out[...] = np.clip(q + output_offset, act_min, act_max)


def _offset_padded(inp, input_offset, pad_top, pad_left, extra_h, extra_w):
    """int64 copy of inp + input_offset inside a zero border: padding taps then contribute exactly 0."""
    n, h, w, c = inp.shape
    xp = np.zeros((n, pad_top + h + extra_h, pad_left + w + extra_w, c), np.int64)
    xp[:, pad_top:pad_top + h, pad_left:pad_left + w, :] = inp.astype(np.int64) + input_offset
    return xp


def _tap(xp, ky, kx, pad_top, pad_left, stride_h, stride_w, dilation_h, dilation_w, oh, ow):
    """The [N, OH, OW, C] slice of the padded input seen by filter tap (ky, kx)."""
    y0, x0 = ky * dilation_h, kx * dilation_w
    return xp[:, y0:y0 + (oh - 1) * stride_h + 1:stride_h, x0:x0 + (ow - 1) * stride_w + 1:stride_w, :]


def _border(size, k, stride, dilation, pad, out_size):
    """Zero rows/cols needed after the input so every output window's taps exist in the padded array."""
    return max(0, (out_size - 1) * stride + (k - 1) * dilation + 1 - pad - size)


def conv_s8(inp, filt, bias, mult, shift, input_offset, output_offset, stride_h, stride_w, pad_top, pad_left,
            dilation_h, dilation_w, act_min, act_max, rounding, out, *, filter_offset=0, scale=None):
    """Sum over taps of (x + input_offset) * (w + filter_offset), one tap at a time with exact int64 einsum,
    per group (padded taps contribute 0)."""
    n, h, w, cin = inp.shape
    cout, kh, kw, cin_g = filt.shape
    oh, ow = out.shape[1], out.shape[2]
    groups = cin // cin_g
    per_group = cout // groups
    xp = _offset_padded(inp, input_offset, pad_top, pad_left, _border(h, kh, stride_h, dilation_h, pad_top, oh),
                        _border(w, kw, stride_w, dilation_w, pad_left, ow))
    acc = np.zeros((n, oh, ow, cout), np.int64) + bias.astype(np.int64)
    f = filt.astype(np.int64) + filter_offset
    for ky in range(kh):
        for kx in range(kw):
            x = _tap(xp, ky, kx, pad_top, pad_left, stride_h, stride_w, dilation_h, dilation_w, oh, ow)
            for g in range(groups):
                xs = x[..., g * cin_g:(g + 1) * cin_g]
                ws = f[g * per_group:(g + 1) * per_group, ky, kx, :]
                acc[..., g * per_group:(g + 1) * per_group] += np.einsum("nhwc,oc->nhwo", xs, ws)
    _activate_channels(acc, mult, shift, output_offset, act_min, act_max, rounding, out, scale)


def depthwise_conv_s8(inp, filt, bias, mult, shift, ch_mult, input_offset, output_offset, stride_h, stride_w,
                      pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out, *, filter_offset=0,
                      scale=None):
    """Output channel ic*ch_mult + m: sum over taps of (x[ic] + input_offset) * (w[oc] + filter_offset), exact int64
    (padded taps contribute 0)."""
    n, h, w, cin = inp.shape
    kh, kw = filt.shape[1], filt.shape[2]
    oh, ow = out.shape[1], out.shape[2]
    xp = _offset_padded(inp, input_offset, pad_top, pad_left, _border(h, kh, stride_h, dilation_h, pad_top, oh),
                        _border(w, kw, stride_w, dilation_w, pad_left, ow))
    xp = np.repeat(xp, ch_mult, axis=3)       # channel ic*ch_mult + m holds input channel ic
    acc = np.zeros((n, oh, ow, cin * ch_mult), np.int64) + bias.astype(np.int64)
    for ky in range(kh):
        for kx in range(kw):
            x = _tap(xp, ky, kx, pad_top, pad_left, stride_h, stride_w, dilation_h, dilation_w, oh, ow)
            acc += x * (filt[0, ky, kx, :].astype(np.int64) + filter_offset)
    _activate_channels(acc, mult, shift, output_offset, act_min, act_max, rounding, out, scale)


def fully_connected_s8(inp, filt, bias, mult, shift, input_offset, filter_offset, output_offset,
                       act_min, act_max, rounding, out, *, scale=None):
    """acc = bias + (x + input_offset) @ (w + filter_offset)^T, exact (Python ints via object arrays)."""
    x = inp.astype(object) + input_offset
    wt = filt.astype(object) + filter_offset
    acc = x.dot(wt.T) + bias.astype(object)
    _activate_channels(acc, mult, shift, output_offset, act_min, act_max, rounding, out, scale)


def _windows(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, out):
    """Yields (b, oy, ox, c, list of the valid tap values)."""
    n, h, w, c = inp.shape
    for b in range(n):
        for oy in range(out.shape[1]):
            for ox in range(out.shape[2]):
                for ch in range(c):
                    taps = []
                    for ky in range(kernel_h):
                        for kx in range(kernel_w):
                            iy = oy * stride_h - pad_top + ky
                            ix = ox * stride_w - pad_left + kx
                            if 0 <= iy < h and 0 <= ix < w:
                                taps.append(int(inp[b, iy, ix, ch]))
                    yield b, oy, ox, ch, taps


def avgpool_s8(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, act_min, act_max, out):
    for b, oy, ox, ch, taps in _windows(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, out):
        if not taps:
            raise ValueError("average-pool window without a valid tap")
        s, cnt = sum(taps), len(taps)
        avg = div_trunc(s + cnt // 2, cnt) if s > 0 else div_trunc(s - cnt // 2, cnt)
        out[b, oy, ox, ch] = min(max(avg, act_min), act_max)


def maxpool_s8(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, act_min, act_max, out):
    for b, oy, ox, ch, taps in _windows(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, out):
        out[b, oy, ox, ch] = min(max(max(taps, default=-128), act_min), act_max)


# ---- gemmlowp fixed point (Python ints), for softmax ----------------------------------------------------

def saturating_rounding_multiply_by_pot(x, exponent):
    """gemmlowp SaturatingRoundingMultiplyByPOT<exponent> on int32."""
    if exponent <= 0:
        return rdbp(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    if x > threshold:
        return INT32_MAX
    if x < -threshold:
        return INT32_MIN
    return x << exponent


def rescale(raw, src_integer_bits, dst_integer_bits):
    """gemmlowp Rescale<dst>(FixedPoint<int32, src>)."""
    return saturating_rounding_multiply_by_pot(raw, src_integer_bits - dst_integer_bits)


def exp_on_interval_between_negative_one_quarter_and_0_excl(a):
    """Q0.31 -> Q0.31, gemmlowp's Taylor polynomial around -1/8."""
    constant_term = 1895147668
    constant_1_over_3 = 715827883
    x = a + (1 << 28)
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rdbp(x4, 2)
    x4_over_24_plus_x3_over_6_plus_x2_over_2 = saturating_rounding_multiply_by_pot(
        srdhm(x4_over_4 + x3, constant_1_over_3) + x2, -1)
    return constant_term + srdhm(constant_term, x + x4_over_24_plus_x3_over_6_plus_x2_over_2)


def exp_on_negative_values(a, integer_bits=5):
    """gemmlowp exp_on_negative_values: FixedPoint<int32, integer_bits> (a <= 0) -> Q0.31."""
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    mask = one_quarter - 1
    a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0))
    remainder = a_mod_quarter_minus_one_quarter - a
    multipliers = {-2: 1672461947, -1: 1302514674, 0: 790015084, 1: 290630308, 2: 39332535, 3: 720401, 4: 242}
    for exponent, multiplier in multipliers.items():
        if integer_bits > exponent:
            shift_amount = fractional_bits + exponent
            if remainder & (1 << shift_amount):
                result = srdhm(result, multiplier)
    if integer_bits > 5:
        clamp_at = -(1 << (fractional_bits + 5))
        if a < clamp_at:
            result = 0
    return INT32_MAX if a == 0 else result


def one_over_one_plus_x_for_x_in_0_1(a):
    """gemmlowp: Q0.31 a in [0,1) -> Q0.31 1/(1+a) (Newton-Raphson on 1/(half denominator), Q2.29)."""
    s = a + INT32_MAX
    half_denominator = div_trunc(s + (1 if s >= 0 else -1), 2)
    constant_48_over_17 = 1515870810
    constant_neg_32_over_17 = -1010580540
    x = constant_48_over_17 + srdhm(half_denominator, constant_neg_32_over_17)
    for _ in range(3):
        one_minus_half_denominator_times_x = (1 << 29) - srdhm(half_denominator, x)
        x = x + rescale(srdhm(x, one_minus_half_denominator_times_x), 4, 2)
    return rescale(x, 1, 0)   # ExactMulByPot<-1> (Q2 -> Q1, same raw), then Rescale<0>


def softmax_s8(inp, mult, shift, diff_min, out):
    for r in range(inp.shape[0]):
        row = [int(v) for v in inp[r]]
        mx = max(row)
        exps = []
        for v in row:
            diff = v - mx
            exps.append(exp_on_negative_values(srdhm(wrap32(diff * (1 << shift)), mult)) if diff >= diff_min else None)
        total = sum(rdbp(e, 12) for e in exps if e is not None)       # Q12.19
        headroom = 32 - total.bit_length()
        scale = one_over_one_plus_x_for_x_in_0_1(wrap32((total << headroom) - (1 << 31)))
        for i, e in enumerate(exps):
            if e is None:
                out[r, i] = -128
            else:
                out[r, i] = min(max(rdbp(srdhm(scale, e), 12 - headroom + 31 - 8) - 128, -128), 127)


# ---- elementwise and layout -------------------------------------------------------------------------------

def add_s8(in1, in2, in1_offset, in1_mult, in1_shift, in2_offset, in2_mult, in2_shift, left_shift,
           out_mult, out_shift, out_offset, act_min, act_max, out):
    for i in range(in1.shape[0]):
        a = wrap32((int(in1[i]) + in1_offset) * (1 << left_shift))
        b = wrap32((int(in2[i]) + in2_offset) * (1 << left_shift))
        s = wrap32(requantize(a, in1_mult, in1_shift, 0) + requantize(b, in2_mult, in2_shift, 0))
        out[i] = activate(requantize(s, out_mult, out_shift, 0), out_offset, act_min, act_max)


def mul_s8(in1, in2, in1_offset, in2_offset, out_mult, out_shift, out_offset, act_min, act_max, rounding, out):
    for i in range(in1.shape[0]):
        acc = wrap32((int(in1[i]) + in1_offset) * (int(in2[i]) + in2_offset))
        out[i] = activate(requantize(acc, out_mult, out_shift, rounding), out_offset, act_min, act_max)


def pad_s8(inp, pad_before, pad_value, out):
    out[...] = pad_value
    idx = tuple(slice(int(p), int(p) + d) for p, d in zip(pad_before, inp.shape))
    out[idx] = inp


def transpose_s8(inp, perm, out):
    for index in np.ndindex(*out.shape):
        src = [0] * 4
        for k in range(4):
            src[int(perm[k])] = index[k]
        out[index] = inp[tuple(src)]
