"""Numba kernels of the "onnxruntime" profile (ONNX Runtime / MLAS QDQ semantics), where they differ from
the cmsis-nn kernels: ORT's average pools, elementwise ops, concat requantization and softmax.

Conv, depthwise and fully connected ARE the cmsis-nn kernels (emu.kernels.conv/depthwise/fully_connected) run
with rounding=FLOAT32_RNE, the weights' filter_offset and a float32 per-channel scale: their epilogue is then
emu.fixedpoint.requantize_float32 (MlasRequantizeOutput, x86/SSE order: v = float32(int32 acc) * scale[c],
clamped to [float(act_min - zp), float(act_max - zp)], round half to even, + zp). The *_ort_s8 wrappers below
only keep this module's argument order. Scale per output channel is float32(float32(s_in * s_w[c]) / s_out),
computed once by the importer (see emu.graph.ops.weighted.ort_conv_scales).
Layouts and offsets follow emu.kernels (NHWC int8, OHWI / [1,KH,KW,C*M] / [Out,K] weights,
input_offset = -zp_in, filter_offset = -zp_w, output_offset = +zp_out). uint8 models are run as int8 after a
zero-point shift of -128 (exact: every op here is invariant under x - zp). Kernels never allocate.
MaxPool, Transpose and Reshape are the same in both profiles: the runner uses emu.kernels.pooling.maxpool_s8.
"""
import numpy as np

from emu.fixedpoint import FLOAT32_RNE, requantize_float32
from emu.jit import njit
from emu.kernels.conv import conv_s8
from emu.kernels.depthwise import depthwise_conv_s8
from emu.kernels.fully_connected import fully_connected_s8


@njit(cache=True)
def _global_avgpool(inp, scale, input_offset, output_offset, act_min, act_max, out):
    """MLAS QLinearGlobalAveragePool: acc = sum(x) + input_offset*H*W (int32), requantized with
    scale = s_in / (s_out * float32(H*W))."""
    n_b, in_h, in_w, n_c = inp.shape
    count = np.int32(in_h * in_w)
    for b in range(n_b):
        for c in range(n_c):
            acc = np.int32(np.int32(input_offset) * count)
            for y in range(in_h):
                for x in range(in_w):
                    acc = np.int32(acc + np.int32(inp[b, y, x, c]))
            out[b, 0, 0, c] = np.int8(requantize_float32(acc, scale, output_offset, act_min, act_max))


@njit(cache=True)
def _avgpool(inp, in_scale, in_zero_point, out_scale, out_zero_point, float_zero_point, kernel_h, kernel_w, stride_h, stride_w,
             pad_top, pad_left, count_include_pad, act_min, act_max, out):
    """ORT QLinearAveragePool (float): y = sum_taps float32(s_in * (x - zp_in)) in row-major tap order;
    y /= float32(count); q = clamp(round_half_even(float32(y / s_out) + float32(zp_f)) - zp_f + zp_out), where
    zp_f (float_zero_point) is the zero point ORT adds in float (uint8 domain on x86: zp_out + 128)."""
    n_b, in_h, in_w, n_c = inp.shape
    _, out_h, out_w, _ = out.shape
    zp_f = np.float32(float_zero_point)
    zp_shift = np.int32(float_zero_point - out_zero_point)
    for b in range(n_b):
        for oy in range(out_h):
            h0 = oy * stride_h - pad_top
            h1 = min(h0 + kernel_h, in_h)
            h0 = max(h0, 0)
            for ox in range(out_w):
                w0 = ox * stride_w - pad_left
                w1 = min(w0 + kernel_w, in_w)
                w0 = max(w0, 0)
                count = kernel_h * kernel_w if count_include_pad else (h1 - h0) * (w1 - w0)
                for c in range(n_c):
                    s = np.float32(0)
                    for y in range(h0, h1):
                        for x in range(w0, w1):
                            s = np.float32(s + in_scale * np.float32(np.int32(inp[b, y, x, c]) - in_zero_point))
                    s = np.float32(s / np.float32(count))
                    q = np.int32(np.rint(np.float32(np.float32(s / out_scale) + zp_f))) - zp_shift
                    out[b, oy, ox, c] = np.int8(min(max(q, act_min), act_max))


@njit(cache=True)
def _dq_binary(in1, in2, s1, zp1, s2, zp2, s_out, zp_out, is_mul, act_min, act_max, out):
    """Unfused DQ -> float Add/Mul -> Q (what ORT runs for int8 elementwise ops on x86):
    a = float32(s1 * float32(x1 - zp1)); b likewise; v = a + b (or a * b); q = clamp(rint(v / s_out) + zp_out)."""
    for i in range(out.size):
        a = np.float32(s1 * np.float32(np.int32(in1[i]) - zp1))
        b = np.float32(s2 * np.float32(np.int32(in2[i]) - zp2))
        v = np.float32(a * b) if is_mul else np.float32(a + b)
        q = np.int32(np.rint(np.float32(v / s_out))) + zp_out
        out[i] = np.int8(min(max(q, act_min), act_max))


@njit(cache=True)
def _qlinear_binary(in1, in2, s1, zp1, s2, zp2, s_out, zp_out, is_mul, domain_shift, act_min, act_max, out):
    """Fused MLAS QLinearAdd / QLinearMul (x86 SSE order), on raw values r = x + domain_shift (the type ORT
    runs: 128 for uint8, 0 for int8), zero points likewise shifted:
    Add: ra = s1/s_out, rb = s2/s_out; fixed = float32(zp_out) - (ra*zp1 + rb*zp2);
         q = round_half_even((fixed + float32(r1)*ra) + float32(r2)*rb)
    Mul (MLAS scalar path): v = (s1*float32(r1-zp1)) * (s2*float32(r2-zp2)) / s_out, clamped to the raw range
         minus zp_out; q = round_half_even(v + float32(zp_out))
    then saturate to the raw type range (== [act_min, act_max] + shift), all float32."""
    sh = np.int32(domain_shift)
    z1 = np.int32(zp1) + sh
    z2 = np.int32(zp2) + sh
    zo = np.int32(zp_out) + sh
    ra = np.float32(s1 / s_out)
    rb = np.float32(s2 / s_out)
    fixed = np.float32(np.float32(zo) - np.float32(np.float32(ra * np.float32(z1)) + np.float32(rb * np.float32(z2))))
    lo = np.float32(np.int32(act_min) + sh - zo)
    hi = np.float32(np.int32(act_max) + sh - zo)
    for i in range(out.size):
        r1 = np.int32(in1[i]) + sh
        r2 = np.int32(in2[i]) + sh
        if is_mul:
            va = np.float32(s1 * np.float32(r1 - z1))
            vb = np.float32(s2 * np.float32(r2 - z2))
            v = np.float32(np.float32(va * vb) / s_out)
            v = min(max(v, lo), hi)
            q = np.int32(np.rint(np.float32(v + np.float32(zo))))
        else:
            v = np.float32(np.float32(fixed + np.float32(np.float32(r1) * ra)) + np.float32(np.float32(r2) * rb))
            q = np.int32(np.rint(v))
        q = q - sh
        out[i] = np.int8(min(max(q, act_min), act_max))


@njit(cache=True)
def _dq_requantize(inp, s_in, zp_in, s_out, zp_out, out):
    """DQ -> Q between two scales (unfused Concat inputs): clamp(rint(float32(s_in*(x-zp_in)) / s_out) + zp_out)."""
    for i in range(out.size):
        v = np.float32(s_in * np.float32(np.int32(inp[i]) - zp_in))
        q = np.int32(np.rint(np.float32(v / s_out))) + zp_out
        out[i] = np.int8(min(max(q, -128), 127))


# ---- public wrappers: validate, then call the loops -------------------------------------------------------

def _check(name, a, dtype, ndim=None):
    if not isinstance(a, np.ndarray) or a.dtype != dtype or not a.flags.c_contiguous:
        raise ValueError(f"{name} must be a C-contiguous {np.dtype(dtype).name} array; convert it with "
                         f"np.ascontiguousarray(x, np.{np.dtype(dtype).name})")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")


def conv_ort_s8(inp, filt, bias, scale, input_offset, filter_offset, output_offset, stride_h, stride_w, pad_top,
                pad_left, dilation_h, dilation_w, act_min, act_max, out):
    """QLinearConv (groups = Cin // Cin_g), int32 accumulation, float32 per-channel requantization:
    emu.kernels.conv.conv_s8 with rounding FLOAT32_RNE."""
    _check("inp", inp, np.int8, 4)
    _check("filt", filt, np.int8, 4)
    if inp.shape[3] % filt.shape[3] or filt.shape[0] % (inp.shape[3] // filt.shape[3]):
        raise ValueError(f"conv: input channels {inp.shape[3]} and filter {filt.shape} do not form whole groups")
    conv_s8(inp, filt, bias, None, None, input_offset, output_offset, stride_h, stride_w, pad_top, pad_left,
            dilation_h, dilation_w, act_min, act_max, FLOAT32_RNE, out, filter_offset=filter_offset, scale=scale)


def depthwise_conv_ort_s8(inp, filt, bias, scale, ch_mult, input_offset, filter_offset, output_offset, stride_h,
                          stride_w, pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, out):
    """Depthwise QLinearConv (group == Cin), filter [1,KH,KW,Cin*ch_mult], float32 requantization:
    emu.kernels.depthwise.depthwise_conv_s8 with rounding FLOAT32_RNE."""
    depthwise_conv_s8(inp, filt, bias, None, None, ch_mult, input_offset, output_offset, stride_h, stride_w,
                      pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, FLOAT32_RNE, out,
                      filter_offset=filter_offset, scale=scale)


def fully_connected_ort_s8(inp, filt, bias, scale, input_offset, filter_offset, output_offset, act_min, act_max, out):
    """QGemm / QLinearMatMul: [N,K] x [Out,K]^T + bias, float32 per-output requantization:
    emu.kernels.fully_connected.fully_connected_s8 with rounding FLOAT32_RNE."""
    fully_connected_s8(inp, filt, bias, None, None, input_offset, filter_offset, output_offset, act_min, act_max,
                       FLOAT32_RNE, out, scale=scale)


def global_avgpool_ort_s8(inp, scale, input_offset, output_offset, act_min, act_max, out):
    """QLinearGlobalAveragePool over H,W of NHWC int8 -> [N,1,1,C]."""
    _check("inp", inp, np.int8, 4)
    _check("out", out, np.int8, 4)
    if out.shape != (inp.shape[0], 1, 1, inp.shape[3]):
        raise ValueError(f"global average pool: output must be {(inp.shape[0], 1, 1, inp.shape[3])}, got {out.shape}")
    _global_avgpool(inp, np.float32(scale), input_offset, output_offset, act_min, act_max, out)


def avgpool_ort_s8(inp, in_scale, in_zero_point, out_scale, out_zero_point, float_zero_point, kernel_h, kernel_w,
                   stride_h, stride_w, pad_top, pad_left, count_include_pad, act_min, act_max, out):
    """QLinearAveragePool (float sum of dequantized taps, divided by the tap count, re-quantized; the zero point
    is added in float as `float_zero_point`, e.g. out_zero_point + 128 when ORT runs the op in uint8)."""
    _check("inp", inp, np.int8, 4)
    _check("out", out, np.int8, 4)
    _avgpool(inp, np.float32(in_scale), in_zero_point, np.float32(out_scale), out_zero_point, float_zero_point,
             kernel_h, kernel_w,
             stride_h, stride_w, pad_top, pad_left, bool(count_include_pad), act_min, act_max, out)


def dq_binary_ort_s8(in1, in2, s1, zp1, s2, zp2, s_out, zp_out, is_mul, act_min, act_max, out):
    """Elementwise Add (is_mul False) or Mul of equal-length flat int8 arrays via float32 DQ -> op -> Q."""
    for n, a in (("in1", in1), ("in2", in2), ("out", out)):
        _check(n, a, np.int8, 1)
    if not in1.size == in2.size == out.size:
        raise ValueError("elementwise: inputs and output must have the same length (broadcast first)")
    _dq_binary(in1, in2, np.float32(s1), zp1, np.float32(s2), zp2, np.float32(s_out), zp_out, bool(is_mul),
               act_min, act_max, out)


def dq_requantize_ort_s8(inp, s_in, zp_in, s_out, zp_out, out):
    """Re-quantize a flat int8 array from (s_in, zp_in) to (s_out, zp_out) via float32 DQ -> Q."""
    _check("inp", inp, np.int8, 1)
    _check("out", out, np.int8, 1)
    if inp.size != out.size:
        raise ValueError("requantize: input and output lengths differ")
    _dq_requantize(inp, np.float32(s_in), zp_in, np.float32(s_out), zp_out, out)


def qlinear_binary_ort_s8(in1, in2, s1, zp1, s2, zp2, s_out, zp_out, is_mul, domain_shift, act_min, act_max, out):
    """Fused QLinearAdd (is_mul False) / QLinearMul of equal-length flat int8 arrays (MLAS x86 order), run in
    the raw domain x + domain_shift (128: ORT's uint8 kernels, 0: int8 kernels)."""
    for n, a in (("in1", in1), ("in2", in2), ("out", out)):
        _check(n, a, np.int8, 1)
    if not in1.size == in2.size == out.size:
        raise ValueError("elementwise: inputs and output must have the same length (broadcast first)")
    _qlinear_binary(in1, in2, np.float32(s1), zp1, np.float32(s2), zp2, np.float32(s_out), zp_out, bool(is_mul),
                    domain_shift, act_min, act_max, out)


@njit(cache=True)
def _softmax(inp, table, y_scale, out_zero_point_raw, domain_shift, out):
    """ORT QLinearSoftmax (uint32 lookup table, integer division), per row, in the raw domain x + domain_shift:
    e[x] = table[255 - (max - x)]; sum = sum e (uint32, wrapping); q = (e * y_scale + sum/2) / sum (uint32);
    out = min(q + zp_raw, type max) - domain_shift (q >= 0, so only the upper saturation can apply)."""
    n_rows, d = inp.shape
    mask = np.uint64(0xFFFFFFFF)
    for r in range(n_rows):
        xmax = np.int32(-128)
        for i in range(d):
            if np.int32(inp[r, i]) > xmax:
                xmax = np.int32(inp[r, i])
        total = np.uint64(0)
        for i in range(d):
            total = (total + np.uint64(table[255 - (xmax - np.int32(inp[r, i]))])) & mask
        if total == 0:
            continue                                  # ORT leaves the row untouched (never for real tables)
        rounding = total >> np.uint64(1)
        for i in range(d):
            e = np.uint64(table[255 - (xmax - np.int32(inp[r, i]))])
            num = (e * np.uint64(y_scale)) & mask
            v = np.int64(((num + rounding) & mask) // total) + np.int64(out_zero_point_raw - domain_shift)
            out[r, i] = np.int8(v if v < 127 else 127)             # saturates at the type's maximum


def softmax_lookup_table(x_scale, row_length):
    """ORT QlinearBuildLookupTableUint32: table[j] = lrint(qscale * exp((j - 255) * x_scale)) in double,
    qscale = min(UINT32_MAX / row_length, 0x7fffff); uint32[256]."""
    qscale = min(float(0xFFFFFFFF) / float(row_length), float(0x7FFFFF))
    j = np.arange(256, dtype=np.float64)
    return np.rint(qscale * np.exp((j - 255.0) * float(np.float32(x_scale)))).astype(np.uint32)


def softmax_ort_s8(inp, table, y_scale, out_zero_point_raw, domain_shift, out):
    """QLinearSoftmax over the last axis of int8 rows [R, D]; y_scale = uint32(float32(1) / s_out) (truncated)."""
    _check("inp", inp, np.int8, 2)
    _check("out", out, np.int8, 2)
    _check("table", table, np.uint32, 1)
    if table.size != 256 or inp.shape != out.shape:
        raise ValueError("softmax: table must have 256 entries and out the input's shape")
    _softmax(inp, table, np.uint32(y_scale), out_zero_point_raw, domain_shift, out)
