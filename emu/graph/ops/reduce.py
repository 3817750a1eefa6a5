"""reduce_mean over one contiguous run of axes (attrs k: values averaged, inner: values after the run (1 = trailing
axes), rows: outputs; the input seen as [rows / inner, k, inner]).

mlas: onnxruntime's unfused DequantizeLinear -> float ReduceMean -> QuantizeLinear: over trailing axes (inner = 1)
Eigen's summation order (emu.kernels.reduce.reduce_mean_ort_s8); over leading or middle axes (inner > 1) ORT's RK
order (outer = 1) or KRK order (outer > 1, MLAS's M = 1 SGEMM with a ones vector), see
emu.kernels.reduce.reduce_mean_columns_ort_s8. The importer gives outer/k/inner with size-1 dimensions dropped, so
outer > 1 is exactly ORT's KRK case.
tflite: tflite-micro's int8 MEAN (emu.kernels.reduce.mean_tflm_s8), QuantizedMeanOrSum for every axis set (checked
against tflite-micro, also for keep_dims 4-D over axes 1, 2): (sum - zp_in * count) requantized by the s_in / s_out
multiplier divided by the count (M' = (M << shift) / count, shift = min(floor(log2 count), 32, 31 + exponent)).
"""
from dataclasses import dataclass


from ... import fixedpoint as fx
from .common import FloatBetweenParams, Params, output_range, scale, zp

OPS = ("reduce_mean",)


@dataclass
class ReduceParams(FloatBetweenParams):
    pass


@dataclass
class TflmMeanParams(Params):
    mult: int                    # s_in / s_out with the multiplier divided by the count (QuantizedMeanOrSum)
    shift: int
    zp_in: int
    zp_out: int
    act_min: int
    act_max: int


def prepare(graph, node, profile):
    x, o = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    act_min, act_max = output_range(graph, node, profile)
    if profile.fixed_point:
        # QuantizedMeanOrSum: shift = min(floor(log2 k), 32, 31 + output_shift); M' = (M << shift) / k (int64)
        m, sh = fx.quantize_multiplier(float(scale(x)) / float(scale(o)))
        k = int(node.attrs["k"])
        up = min(k.bit_length() - 1, 32, 31 + int(sh))
        m2 = (int(m) << up) // k if up >= 0 else int(m) // k
        return TflmMeanParams(int(fx.wrap_int32(m2)), int(sh) - up, zp(x), zp(o), act_min, act_max)
    return ReduceParams(scale(x), zp(x), scale(o), zp(o), act_min, act_max)


def bind(p, node, ins, out, kernels):
    from ...kernels.reduce import bind_mean_tflm_s8, bind_reduce_mean_columns_ort_s8, bind_reduce_mean_ort_s8
    k = node.attrs["k"]
    inner = node.attrs.get("inner", 1)
    if isinstance(p, TflmMeanParams):
        return bind_mean_tflm_s8(ins[0].reshape(-1, k, inner), p.mult, p.shift, p.zp_in, p.zp_out, p.act_min,
                                 p.act_max, out.reshape(-1, inner))
    if inner != 1:                 # KRK when one sample has several outer rows (a folded batch does not count)
        grouped = node.attrs["rows"] // inner > 1
        return bind_reduce_mean_columns_ort_s8(ins[0].reshape(-1, k, inner), grouped, p.s_in, p.zp_in, p.s_out,
                                               p.zp_out, p.act_min, p.act_max, out.reshape(-1, inner))
    return bind_reduce_mean_ort_s8(ins[0].reshape(-1, k), p.s_in, p.zp_in, p.s_out, p.zp_out, p.act_min, p.act_max,
                                   out.reshape(-1))
